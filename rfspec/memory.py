"""Will it fit? Memory estimates from the layer table, checked before anything is allocated.

A 6000 x 6000 px visualisation, or a grid of many 4,000 px images, needs more memory than most
machines have; unchecked, XLA allocates until the kernel kills the process (or the machine
swaps to a halt). `check_fits` (one optimisation step of a batch, as `visualize_grid` runs it)
and `check_forward_fits` (`rfspec.forward`) refuse such a call up front with a `UserError` that
names the estimate, the limit and the fix. They are pure arithmetic on static shapes plus one
look-up of the memory available, so they cost microseconds and are safe at trace time.

The estimates count float32 activation values with `rfspec.models.layers.blob_hws`, the same layer
table the model is built from:

* a step keeps every blob from the input up to the tap for the backward pass and needs their
  gradients and XLA's temporaries: `STEP_BYTES_PER_VALUE` per value of that chain, per image;
* a forward keeps only a few blobs alive at a time: the input, the outputs asked for, and
  `FORWARD_LIVE_BLOBS` times the largest blob on the way.

The limit is what can still be allocated: on CPU the host's available memory (MemAvailable, and
the container's cgroup limit where one is set), shared by every CPU device; on a GPU or TPU the
allocator's `bytes_limit` minus `bytes_in_use` of each device. `RFSPEC_MEMORY_LIMIT` (e.g. "64G")
replaces it, e.g. on a machine with swap. Where no limit can be found, nothing is refused.
"""

from __future__ import annotations

import math
import os
import re
from typing import Sequence

import jax

from rfspec.errors import UserError
from rfspec.models import layers as googlenet  # the layer table only (no model code)

__all__ = ["ENV_LIMIT", "FORWARD_LIVE_BLOBS", "STEP_BYTES_PER_VALUE", "available_bytes", "check_fits",
           "check_forward_fits", "estimate_forward_bytes", "estimate_step_bytes"]

# Bytes per float32 activation value (input to tap) in one optimisation step, per image.
# Calibrated against XLA's `compile().memory_analysis()` of the engine's vmapped chunk, temp
# bytes per value: CPU 7.3 at 512 px up to inception_4c/output (batch 4 and 8), 7.4 at 224 px
# (batch 32), 8.2 at 128 px to inception_4c/5x5, 10.0 at 1024 px to conv2/3x3; H200 GPU (jax
# 0.11) 5.2-7.1 for the same shapes; and against peak RSS on CPU (8.4 per value per added image
# at 512 px). 12 covers these with a margin. (the old atlas estimate's 24 predates the engine's custom
# max-pool and conv+ReLU gradients, which halved the step's memory.)
STEP_BYTES_PER_VALUE = 12
# XLA's temporaries of a forward, in units of its largest blob (memory_analysis): CPU 1.0-2.25
# at 128-2048 px; H200 GPU up to 2.6 (224 px to prob, batch 64); 3.7 at 64 px, where fixed
# costs of a few kB dominate. 3 covers them.
FORWARD_LIVE_BLOBS = 3
ENV_LIMIT = "RFSPEC_MEMORY_LIMIT"

_FLOAT32 = 4
_ITEMSIZE = {"float32": 4, "bfloat16": 2}
_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


# ----------------------------------------------------------------------------- estimates


def _chain_values(image_hw: tuple[int, int], taps: Sequence[str]) -> tuple[int, int, int]:
  """(values of the input and every blob needed for `taps`, of the largest such blob, of the
  taps themselves), per image."""
  hws = googlenet.blob_hws(tuple(int(v) for v in image_hw))
  needed = googlenet.ancestors(tuple(taps))
  total = largest = 3 * hws[googlenet.INPUT][0] * hws[googlenet.INPUT][1]
  for layer in googlenet.LAYERS:
    if layer.name in needed:
      h, w = hws[layer.name]
      n = max(h, 0) * max(w, 0) * layer.channels
      total += n
      largest = max(largest, n)
  outputs = 0
  for tap in taps:
    h, w = hws[tap]
    outputs += max(h, 0) * max(w, 0) * googlenet.LAYER_BY_NAME[tap].channels
  return total, largest, outputs


def _param_bytes(taps: Sequence[str]) -> int:
  needed = googlenet.ancestors(tuple(taps))
  return _FLOAT32 * sum(math.prod(s) for name, p in googlenet.param_shapes().items() if name in needed
                        for s in p.values())


def estimate_step_bytes(cfg, batch: int) -> int:
  """Estimated memory (bytes) of one optimisation step of `batch` images under `cfg` (a VisConfig).

  `STEP_BYTES_PER_VALUE` per activation value from the input (at `cfg.net_hw`, the canvas
  included) up to `cfg.tap`, per image (halved in proportion for dtype "bfloat16", whose
  activations take 2 bytes; not measured), plus the parameters the tap needs, once.
  E.g. inception_4c/output at 224 px: about 68 MB per image, plus 8 MB of parameters.
  """
  total, _, _ = _chain_values(cfg.net_hw, (cfg.tap,))
  per_value = STEP_BYTES_PER_VALUE * _ITEMSIZE.get(cfg.dtype, _FLOAT32) / _FLOAT32
  return int(batch * total * per_value) + _param_bytes((cfg.tap,))


def estimate_forward_bytes(image_hw: tuple[int, int], batch: int, taps: Sequence[str]) -> int:
  """Estimated memory (bytes) of `rfspec.forward` on `batch` float32 images of `image_hw` up to
  `taps`: the input, the outputs, `FORWARD_LIVE_BLOBS` x the largest blob, and the parameters."""
  taps = googlenet.normalize_taps(taps)
  _, largest, outputs = _chain_values(image_hw, taps)
  h, w = (int(v) for v in image_hw)
  values = 3 * h * w + FORWARD_LIVE_BLOBS * largest + outputs
  return int(batch * values * _FLOAT32) + _param_bytes(taps)


# ----------------------------------------------------------------------------- limits


def _parse_size(text: str) -> int:
  m = re.fullmatch(r"\s*(\d+(?:\.\d*)?)\s*([KMGT]?)(?:i?B)?\s*", text, re.IGNORECASE)
  if not m:
    raise UserError(f"{ENV_LIMIT}={text!r} is not a size; write bytes or a number with K, M, G or T "
                    f"(binary units), e.g. {ENV_LIMIT}=64G, or unset it to use the measured limit.")
  return int(float(m[1]) * _UNITS[m[2].upper()])


def _read_int(path: str) -> int | None:
  try:
    with open(path) as f:
      text = f.read().strip()
  except OSError:
    return None
  return int(text) if text.isdigit() else None  # "max" (no limit) and junk -> None


def _host_available() -> tuple[int | None, str]:
  """Bytes the host can still allocate, and where the number comes from."""
  available, source = None, ""
  try:
    with open("/proc/meminfo") as f:
      for line in f:
        if line.startswith("MemAvailable:"):
          available, source = int(line.split()[1]) * 1024, "available host memory (MemAvailable)"
          break
  except (OSError, ValueError, IndexError):
    pass
  if available is None:
    try:
      available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
      source = "free host memory"
    except (ValueError, OSError, AttributeError):
      pass
  # A container's limit is below what the host reports: cgroup v2, then v1.
  for limit_file, usage_file in (("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
                                 ("/sys/fs/cgroup/memory/memory.limit_in_bytes",
                                  "/sys/fs/cgroup/memory/memory.usage_in_bytes")):
    limit, usage = _read_int(limit_file), _read_int(usage_file)
    if limit is not None and usage is not None and limit < (1 << 60):  # v1 "no limit" is ~2^63
      left = max(0, limit - usage)
      if available is None or left < available:
        available, source = left, f"left under this container's memory limit ({limit_file})"
      break
  return available, source


def available_bytes(device: jax.Device | None = None) -> tuple[int | None, str]:
  """(bytes that can still be allocated for `device`, what that number is); None if unknown.

  CPU devices share the host's memory, so for any CPU device this is the host's. `$RFSPEC_MEMORY_LIMIT`
  (bytes, or e.g. "64G") replaces the measurement: the host's total for CPU, each device's for
  accelerators.
  """
  override = os.environ.get(ENV_LIMIT, "").strip()
  if override:
    return _parse_size(override), f"the limit {ENV_LIMIT}={override} sets"
  device = device if device is not None else jax.devices()[0]
  if device.platform == "cpu":
    return _host_available()
  try:
    stats = device.memory_stats() or {}
  except Exception:  # some backends do not implement it
    stats = {}
  if stats.get("bytes_limit"):
    left = int(stats["bytes_limit"]) - int(stats.get("bytes_in_use", 0))
    return left, f"free memory of {device.platform.upper()} device {device.id} ({device.device_kind})"
  return None, ""


# ----------------------------------------------------------------------------- checks


def _gb(n: float) -> str:
  return f"{n / 1e9:.1f} GB" if n >= 1e8 else f"{n / 1e6:.0f} MB"


def _limit(devices: Sequence[jax.Device] | None) -> tuple[list[jax.Device], int | None, str]:
  """The devices, the memory one shard may use, and its description. CPU devices share the
  host: their limit is the whole host's, for the whole batch."""
  devices = list(jax.devices() if devices is None else devices)
  if devices[0].platform == "cpu":
    limit, what = available_bytes(devices[0])
    return devices, limit, what
  found = [(b, w) for b, w in map(available_bytes, devices) if b is not None]
  if not found:
    return devices, None, ""
  return devices, *min(found)


def _per_shard(devices: Sequence[jax.Device], batch: int) -> int:
  """Images that must fit one limit: the batch is padded to a multiple of the devices and split
  over them; CPU devices pool the host's memory, so there the whole padded batch counts."""
  per_device = -(-batch // len(devices))
  return per_device * len(devices) if devices[0].platform == "cpu" else per_device


def _largest_batch(estimate, limit: int) -> int:
  """The largest batch whose `estimate(batch)` (fixed + batch x per image) fits `limit`."""
  per_image = estimate(2) - estimate(1)
  fixed = estimate(1) - per_image
  return int(max(0, (limit - fixed) // max(per_image, 1)))


def check_fits(cfg, batch: int, devices: Sequence[jax.Device] | None = None) -> None:
  """Raises UserError if one optimisation step of `batch` images under `cfg` cannot fit in memory.

  Call it before compiling or allocating anything for a `visualize` / `visualize_grid` /
  `visualize_batch` call: `batch` is the number of images optimised together (positions x seeds
  of a grid), sharded over `devices` (default `jax.devices()`).

  Raises:
    UserError: `estimate_step_bytes` exceeds the memory available (see `available_bytes`); the
      message names both, how many images would fit, and the fixes.
  """
  batch = int(batch)
  devices, limit, what = _limit(devices)
  if limit is None or batch < 1:
    return
  per_shard = _per_shard(devices, batch)
  need = estimate_step_bytes(cfg, per_shard)
  if need <= limit:
    return
  cpu = devices[0].platform == "cpu"
  fits = _largest_batch(lambda b: estimate_step_bytes(cfg, b), limit) * (1 if cpu else len(devices))
  one = estimate_step_bytes(cfg, 1)
  shard = "" if cpu or len(devices) == 1 else f" per device ({per_shard} of {batch} images on each of {len(devices)})"
  where = f"VisConfig(tap={cfg.tap!r}, image_hw={tuple(cfg.image_hw)}" + (
      f", canvas_pad={cfg.canvas_pad})" if cfg.canvas_pad else ")")
  if fits >= 1:
    fix = (f"At most {fits} image(s) of this size fit per call: split the work into smaller calls "
           f"(fewer positions or seeds each), use a smaller image_hw, or a device with more memory")
  else:
    fix = (f"Not even one image of this size fits (one needs about {_gb(one)}): use a smaller "
           f"image_hw (or canvas_pad), an earlier tap, or a device with more memory")
  raise UserError(
      f"{where} on a batch of {batch} image(s) needs about {_gb(need)} of memory for one optimisation "
      f"step{shard}, more than the {_gb(limit)} of {what}, so it was not started. The estimate counts "
      f"{STEP_BYTES_PER_VALUE} bytes per activation value from the input up to the tap "
      f"(rfspec.memory.estimate_step_bytes). {fix}; if you know it fits (e.g. with swap), set "
      f"{ENV_LIMIT} (e.g. {ENV_LIMIT}=64G) to replace the limit.")


def check_forward_fits(image_hw: tuple[int, int], batch: int, taps: Sequence[str],
                       devices: Sequence[jax.Device] | None = None) -> None:
  """Raises UserError if `rfspec.forward` on `batch` images of `image_hw` up to `taps` cannot fit.

  `devices` defaults to the default device, where `forward` runs (all CPU devices share the
  host's memory).
  """
  batch = int(batch)
  _, limit, what = _limit(jax.devices()[:1] if devices is None else devices)
  if limit is None or batch < 1:
    return
  taps = googlenet.normalize_taps(taps)
  need = estimate_forward_bytes(image_hw, batch, taps)
  if need <= limit:
    return
  fits = _largest_batch(lambda b: estimate_forward_bytes(image_hw, b, taps), limit)
  h, w = (int(v) for v in image_hw)
  if fits >= 1:
    fix = f"At most {fits} image(s) of this size fit per call: pass fewer images per call, or smaller images"
  else:
    fix = "Not even one image of this size fits: resize the images, or ask for an earlier tap"
  raise UserError(
      f"rfspec.forward on {batch} image(s) of {h}x{w} px up to {', '.join(map(repr, taps))} needs about "
      f"{_gb(need)} of memory, more than the {_gb(limit)} of {what}, so it was not started "
      f"(estimate: the input, the outputs and {FORWARD_LIVE_BLOBS:g}x the largest blob, 4 bytes per value; "
      f"rfspec.memory.estimate_forward_bytes). {fix}; if you know it fits (e.g. with swap), set "
      f"{ENV_LIMIT} (e.g. {ENV_LIMIT}=64G) to replace the limit.")

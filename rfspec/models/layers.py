"""The BVLC GoogLeNet deploy net as a table: `LAYERS`, the single source of truth for the architecture.

The Flax module and the Caffe weight mapping (`rfspec.models.googlenet`), the blob-size arithmetic
(`blob_hws`), the memory estimates (`rfspec.memory`) and the receptive-field geometry
(`rfspec.geometry`) all walk this one table, so they cannot disagree. Pure Python and numpy: no
model code, so anything may import it.

Every entry is one Caffe layer whose name equals its top blob, so layer names double as tap
names. In-place layers are folded in: a conv entry includes its ReLU (Caffe's blobs hold
post-ReLU values), and the test-time dropout before the classifier is the identity.

Layout conventions: activations are NHWC, conv kernels HWIO (Caffe stores OIHW), positions
on a tap's grid are (row, col).
"""

from __future__ import annotations

import difflib
import functools
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rfspec.errors import UserError

INPUT = "data"


class Layer(NamedTuple):
  """One Caffe layer of the deploy net.

  Attributes:
    name: Caffe layer name == its top blob name == the tap name.
    kind: "conv" (with in-place ReLU), "maxpool", "avepool", "lrn", "concat", "fc" or "softmax".
    bottoms: names of the input blobs ("data" is the network input).
    k: kernel side in the layer's input pixels (1 for non-spatial layers).
    s: stride.
    p: symmetric zero padding.
    channels: output channels (classes for "fc" and "softmax").
  """

  name: str
  kind: str
  bottoms: tuple[str, ...]
  k: int = 1
  s: int = 1
  p: int = 0
  channels: int = 0


def _inception(name: str, bottom: str, c1: int, c3r: int, c3: int, c5r: int, c5: int,
               cp: int) -> tuple[Layer, ...]:
  """The 8 layers of one inception module, in deploy.prototxt order."""
  n = lambda suffix: f"{name}/{suffix}"
  return (
      Layer(n("1x1"), "conv", (bottom,), 1, 1, 0, c1),
      Layer(n("3x3_reduce"), "conv", (bottom,), 1, 1, 0, c3r),
      Layer(n("3x3"), "conv", (n("3x3_reduce"),), 3, 1, 1, c3),
      Layer(n("5x5_reduce"), "conv", (bottom,), 1, 1, 0, c5r),
      Layer(n("5x5"), "conv", (n("5x5_reduce"),), 5, 1, 2, c5),
      Layer(n("pool"), "maxpool", (bottom,), 3, 1, 1, 0),  # channels filled in below
      Layer(n("pool_proj"), "conv", (n("pool"),), 1, 1, 0, cp),
      Layer(n("output"), "concat", (n("1x1"), n("3x3"), n("5x5"), n("pool_proj")), channels=c1 + c3 + c5 + cp),
  )


def _fill_channels(layers: Sequence[Layer]) -> tuple[Layer, ...]:
  """Pass-through layers (pool, LRN) inherit their bottom's channel count."""
  channels = {INPUT: 3}
  out = []
  for layer in layers:
    if layer.channels == 0:
      layer = layer._replace(channels=channels[layer.bottoms[0]])
    channels[layer.name] = layer.channels
    out.append(layer)
  return tuple(out)


LAYERS: tuple[Layer, ...] = _fill_channels((
    Layer("conv1/7x7_s2", "conv", (INPUT,), 7, 2, 3, 64),
    Layer("pool1/3x3_s2", "maxpool", ("conv1/7x7_s2",), 3, 2, 0),
    Layer("pool1/norm1", "lrn", ("pool1/3x3_s2",)),
    Layer("conv2/3x3_reduce", "conv", ("pool1/norm1",), 1, 1, 0, 64),
    Layer("conv2/3x3", "conv", ("conv2/3x3_reduce",), 3, 1, 1, 192),
    Layer("conv2/norm2", "lrn", ("conv2/3x3",)),
    Layer("pool2/3x3_s2", "maxpool", ("conv2/norm2",), 3, 2, 0),
    *_inception("inception_3a", "pool2/3x3_s2", 64, 96, 128, 16, 32, 32),
    *_inception("inception_3b", "inception_3a/output", 128, 128, 192, 32, 96, 64),
    Layer("pool3/3x3_s2", "maxpool", ("inception_3b/output",), 3, 2, 0),
    *_inception("inception_4a", "pool3/3x3_s2", 192, 96, 208, 16, 48, 64),
    *_inception("inception_4b", "inception_4a/output", 160, 112, 224, 24, 64, 64),
    *_inception("inception_4c", "inception_4b/output", 128, 128, 256, 24, 64, 64),
    *_inception("inception_4d", "inception_4c/output", 112, 144, 288, 32, 64, 64),
    *_inception("inception_4e", "inception_4d/output", 256, 160, 320, 32, 128, 128),
    Layer("pool4/3x3_s2", "maxpool", ("inception_4e/output",), 3, 2, 0),
    *_inception("inception_5a", "pool4/3x3_s2", 256, 160, 320, 32, 128, 128),
    *_inception("inception_5b", "inception_5a/output", 384, 192, 384, 48, 128, 128),
    Layer("pool5/7x7_s1", "avepool", ("inception_5b/output",), 7, 1, 0),
    Layer("loss3/classifier", "fc", ("pool5/7x7_s1",), channels=1000),
    Layer("prob", "softmax", ("loss3/classifier",), channels=1000),
))

LAYER_BY_NAME: dict[str, Layer] = {layer.name: layer for layer in LAYERS}

# Every blob of deploy.prototxt except the input, in network order.
TAPS: tuple[str, ...] = tuple(layer.name for layer in LAYERS)

# Caffe's LRN parameters (both norm layers use the defaults k=1).
LRN_SIZE, LRN_ALPHA, LRN_BETA, LRN_K = 5, 1e-4, 0.75, 1.0

# The classifier needs pool5 to be 1x1, i.e. inputs of this many pixels per side.
CLASSIFY_MIN, CLASSIFY_MAX = 223, 254

# Padding modes, `GoogLeNet(pad_mode=...)` / `forward(..., pad_mode=...)`: "zero" is Caffe's (zero
# for convs and average pools, -inf for max pools); "reflect" (the padding ablation in
# rfspec.runs.sweep) mirrors the blob into every conv's and pool's padding and ceil-mode overhang
# instead, so no layer sees an artificial border. An explicit argument, never global state, so
# jit caches key on it.
PAD_MODES = ("zero", "reflect")


def check_pad_mode(mode: str) -> str:
  if mode not in PAD_MODES:
    raise UserError(f"Unknown padding mode {mode!r}; choose one of {PAD_MODES}.")
  return mode


# ----------------------------------------------------------------------------- validation


def check_tap(tap: str) -> Layer:
  """Returns the layer for `tap`, or raises UserError suggesting the closest tap names."""
  try:
    return LAYER_BY_NAME[tap]
  except (KeyError, TypeError):
    close = difflib.get_close_matches(str(tap), TAPS, n=3, cutoff=0.5)
    hint = f" Did you mean {', '.join(map(repr, close))}?" if close else ""
    raise UserError(f"Unknown tap {tap!r}.{hint} See rfspec.TAPS for all {len(TAPS)} tap names.") from None


def normalize_taps(taps: str | Sequence[str]) -> tuple[str, ...]:
  """A tap name or a sequence of them -> a validated tuple (order kept, duplicates dropped)."""
  taps = (taps,) if isinstance(taps, str) else tuple(taps)
  if not taps:
    raise UserError("Ask for at least one tap, e.g. taps=('inception_4c/output',).")
  for tap in taps:
    check_tap(tap)
  return tuple(dict.fromkeys(taps))


def ancestors(taps: Sequence[str]) -> frozenset[str]:
  """Names of every layer needed to compute `taps` (the taps included)."""
  needed, stack = set(), list(taps)
  while stack:
    name = stack.pop()
    if name != INPUT and name not in needed:
      needed.add(name)
      stack.extend(LAYER_BY_NAME[name].bottoms)
  return frozenset(needed)


# ----------------------------------------------------------------------------- blob sizes


def conv_out(n: int, k: int, s: int, p: int) -> int:
  """Caffe convolution output length: floor((n + 2p - k) / s) + 1."""
  return (n + 2 * p - k) // s + 1


def pool_out(n: int, k: int, s: int, p: int) -> int:
  """Caffe pooling output length: ceil mode, minus one if the last window starts in the padding."""
  out = -(-(n + 2 * p - k) // s) + 1
  if p > 0 and (out - 1) * s >= n + p:
    out -= 1
  return out


def layer_out(layer: Layer, n: int) -> int:
  """Output length along one spatial axis of `layer` for input length `n`."""
  if layer.kind == "conv":
    return conv_out(n, layer.k, layer.s, layer.p)
  if layer.kind in ("maxpool", "avepool"):
    return pool_out(n, layer.k, layer.s, layer.p)
  if layer.kind in ("fc", "softmax"):
    return 1
  return n  # lrn, concat


@functools.lru_cache(maxsize=None)
def blob_hws(image_hw: tuple[int, int]) -> dict[str, tuple[int, int]]:
  """Spatial size (h, w) of every blob for an input of `image_hw` = (H, W) pixels.

  Sizes < 1 mean the input is too small to reach that blob.
  """
  hws = {INPUT: tuple(image_hw)}
  for layer in LAYERS:
    h, w = hws[layer.bottoms[0]]
    hws[layer.name] = (layer_out(layer, h), layer_out(layer, w)) if min(h, w) >= 1 else (0, 0)
  return hws


def min_input_size(tap: str) -> int:
  """Smallest square input side (px) whose `tap` blob is non-empty."""
  check_tap(tap)
  lo = 1
  while min(blob_hws((lo, lo))[tap]) < 1:
    lo += 1
  return lo


def blob_hw(tap: str, image_hw: tuple[int, int]) -> tuple[int, int]:
  """Grid (h, w) of `tap` for an (H, W) input; raises UserError if the input is too small."""
  check_tap(tap)
  image_hw = tuple(int(v) for v in image_hw)
  hw = blob_hws(image_hw)[tap]
  if min(hw) < 1:
    raise UserError(f"An input of {image_hw[0]}x{image_hw[1]} px is too small for tap {tap!r}; "
                     f"it needs at least {min_input_size(tap)} px per side.")
  return hw


# Optimised images may overshoot [0, 1] a little; 0-255 images are far beyond these.
_IMAGE_RANGE = (-1.0, 2.0)


def check_images(images) -> None:
  """Raises UserError unless `images` are float RGB [N, H, W, 3] or [H, W, 3] with values near [0, 1].

  Integer dtypes (uint8 0-255 images) and concrete values outside [-1, 2] are refused with the fix
  (divide by 255); under `jit` (traced values) only the shape and dtype are checked.
  """
  shape = tuple(images.shape)
  if len(shape) not in (3, 4) or shape[-1] != 3:
    raise UserError(f"images must be [N, H, W, 3] (or one [H, W, 3]) RGB in [0, 1]; got shape {shape}.")
  if 0 in shape:
    raise UserError(f"images is empty (shape {shape}); pass at least one image of at least 1x1 px, "
                    "[N, H, W, 3] with N >= 1.")
  dtype = images.dtype
  if not jnp.issubdtype(dtype, jnp.floating):  # jnp knows bfloat16 is a float
    raise UserError(f"images have dtype {dtype}; rfspec takes float RGB in [0, 1]. If they are 0-255 "
                    "pixels, divide by 255: images.astype(np.float32) / 255.")
  if isinstance(images, jax.core.Tracer):
    return
  xp = np if isinstance(images, np.ndarray) else jnp  # numpy stays on the host, uncopied
  lo, hi = float(xp.min(images)), float(xp.max(images))
  if lo < _IMAGE_RANGE[0] or hi > _IMAGE_RANGE[1]:
    raise UserError(f"images have values in [{lo:g}, {hi:g}]; rfspec takes RGB in [0, 1]. If they are "
                    "0-255 pixels, divide by 255 (rfspec.files.load_image already returns [0, 1]).")


def check_input_hw(taps: Sequence[str], image_hw: tuple[int, int]) -> None:
  """Raises UserError if an (H, W) input cannot produce every tap in `taps`."""
  for tap in taps:
    blob_hw(tap, image_hw)
    if LAYER_BY_NAME[tap].kind in ("fc", "softmax") and blob_hws(tuple(image_hw))["pool5/7x7_s1"] != (1, 1):
      raise UserError(f"Tap {tap!r} classifies, which needs pool5 to be 1x1: inputs of "
                       f"{CLASSIFY_MIN}-{CLASSIFY_MAX} px per side (got {image_hw[0]}x{image_hw[1]}). "
                       "Resize the image, or ask for an earlier tap.")


def param_shapes() -> dict[str, dict[str, tuple[int, ...]]]:
  """Flax parameter shapes, keyed by Caffe layer name: {"kernel": HWIO or (K, N), "bias": (N,)}."""
  channels = {INPUT: 3, **{layer.name: layer.channels for layer in LAYERS}}
  shapes = {}
  for layer in LAYERS:
    c_in = channels[layer.bottoms[0]]
    if layer.kind == "conv":
      shapes[layer.name] = {"kernel": (layer.k, layer.k, c_in, layer.channels), "bias": (layer.channels,)}
    elif layer.kind == "fc":
      shapes[layer.name] = {"kernel": (c_in, layer.channels), "bias": (layer.channels,)}
  return shapes

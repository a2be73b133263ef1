"""Measured speed for planning: image-steps/s of the engine at 224 px per tap, and the ETA prior.

One image-step is one ascent step (forward to the tap + input gradient + update) of one image.
`CPU_224` holds what `experiments/benchmark.py --sections=throughput` measured on this project's
2-core CPU VM (zipser2015 recipe, a 2 x 2 grid per call, 10 steps per call, after compiling; the
JSON is `experiments/results/benchmark_cpu.json`, which also records the load average: measured with
nothing else running, 1-minute load average 1.2-1.9, the benchmark's own threads; on a busy machine
a run's measured rate takes over after its first call).
Every run's ETA before its first step comes from here (through `cpu_prior`);
after a tap's first chunk the run's own measured rate replaces it.

    from rfspec import throughput
    print(throughput.markdown_table())            # the README's table
    throughput.seconds_per_image_step("inception_4c/5x5", (224, 224))
"""

from __future__ import annotations

import functools
from typing import Callable, Sequence

from rfspec import masks as masks_lib
from rfspec.models import googlenet

__all__ = ["CPU_224", "CPU_GRID_SECONDS", "MEASURED", "cpu_prior", "markdown_table", "seconds_per_image_step",
           "tap_macs"]

# image-steps/s at 224 x 224 px on 2 CPU cores, from experiments/results/benchmark_cpu.json
# ("throughput" section); the taps the figures, atlas and sweep use.
CPU_224: dict[str, float] = {
    "conv2/3x3": 61.93,
    "inception_3b/output": 35.61,
    "inception_4a/output": 32.41,
    "inception_4c/5x5": 29.81,
    "inception_4e/5x5": 23.49,
    "inception_5b/output": 19.68,
}
# How CPU_224 was measured (from the same JSON).
MEASURED = {
    "command": "python -m experiments.benchmark --weights=../shared/weights/bvlc_googlenet.caffemodel --sections=grad,flops,compile,throughput --repeats=9 --throughput_steps=10 --workdir=/tmp/bench_full_thr",
    "load_average_1_5_15_min_at_start": [1.22, 1.54, 1.88],
    "load_average_1_5_15_min_at_end": [1.86, 1.68, 1.88],
    "cpu_model": "AMD EPYC",
    "cpu_count": 2,
    "rfspec_commit": "2b9abd1aeb6a5cfa5f0e555a0d3d77e6b02670ab",
}
_IMAGE_HW = (224, 224)


def _gmacs(tap: str, image_hw: tuple[int, int]) -> float:
  return tap_macs(tap, image_hw) / 1e9


def seconds_per_image_step(tap: str, image_hw: tuple[int, int] = _IMAGE_HW) -> float:
  """Seconds of one image-step of `tap` at `image_hw` on the measured CPU.

  A measured tap at 224 px is its table entry; any other tap or size scales the measured
  seconds per forward multiply-add (`tap_macs`) of the nearest measured tap in
  cost (the per-MAC cost drifts with depth: small deep blobs use the cores less well).
  """
  image_hw = tuple(int(v) for v in image_hw)
  if image_hw == _IMAGE_HW and CPU_224.get(tap):
    return 1.0 / CPU_224[tap]
  macs = _gmacs(tap, image_hw)
  per_mac = {t: 1.0 / r / _gmacs(t, _IMAGE_HW) for t, r in CPU_224.items() if r > 0}
  nearest = min(per_mac, key=lambda t: abs(_gmacs(t, _IMAGE_HW) - macs))
  return per_mac[nearest] * macs


def markdown_table(image_hw: tuple[int, int] = _IMAGE_HW, atlas_image_steps: int = 196 * 2000,
                   run_image_steps: int = 300_000) -> str:
  """The planning table: per tap, image-steps/s, and the hours of the paper's atlas (196 positions
  x 2,000 steps, one seed) and of a 300k image-step run."""
  lines = [f"| tap ({image_hw[0]} px) | image-steps/s | GMAC per forward | paper's atlas (196 x 2,000) | 300k image-steps |",
           "| --- | ---: | ---: | ---: | ---: |"]
  for tap in CPU_224:
    s = seconds_per_image_step(tap, image_hw)
    lines.append(f"| {tap} | {1 / s:.1f} | {_gmacs(tap, image_hw):.2f} | {atlas_image_steps * s / 3600:.1f} h | "
                 f"{run_image_steps * s / 3600:.1f} h |")
  return "\n".join(lines)


# ----------------------------------------------------------------------------- the cost model


def tap_macs(tap: str, image_hw: tuple[int, int]) -> int:
  """Multiply-adds of the convolutions (and the classifier) a forward pass to `tap` needs: its
  ancestors in `googlenet.LAYERS`. A prior for how an image-step's cost grows with depth."""
  return _tap_macs(tap, tuple(int(v) for v in image_hw))


@functools.lru_cache(maxsize=None)  # pure in (tap, size), and every ETA line asks for it again
def _tap_macs(tap: str, image_hw: tuple[int, int]) -> int:
  needed, todo = set(), [tap]
  while todo:
    name = todo.pop()
    if name != googlenet.INPUT and name not in needed:
      needed.add(name)
      todo.extend(googlenet.LAYER_BY_NAME[name].bottoms)
  channels = {googlenet.INPUT: 3, **{layer.name: layer.channels for layer in googlenet.LAYERS}}
  macs = 0
  for layer in googlenet.LAYERS:
    if layer.name in needed and layer.kind in ("conv", "fc"):
      h, w, c = masks_lib.tap_shape(layer.name, image_hw) if layer.kind == "conv" else (1, 1, layer.channels)
      c_in = sum(channels[b] for b in layer.bottoms)
      if layer.kind == "fc":
        bh, bw, _ = masks_lib.tap_shape(layer.bottoms[0], image_hw)
        c_in *= bh * bw
      macs += h * w * layer.k * layer.k * c_in * c
  return macs


# Seconds each grid call costs besides its steps on 2 CPU cores: compiling it, the channel rule's
# forward passes and its figure's share of the measurements (a quick run is mostly this).
CPU_GRID_SECONDS = 12.0


def cpu_prior(image_hw: tuple[int, int], grids: Sequence[tuple[str, str, int]] = ()) -> Callable[[str], float]:
  """A `RunProgress` prior: seconds per image-step of `tap` at `image_hw` on 2 CPU cores (the
  measured table, `seconds_per_image_step`), with each planned grid call's
  overhead (`CPU_GRID_SECONDS`) spread over its tap's image-steps.

  Args:
    image_hw: the run's input size.
    grids: the run's planned (name, tap, image-steps), for the overhead share; empty: none.
  """
  work: dict[str, int] = {}
  calls: dict[str, int] = {}
  for _, tap, n in grids:
    work[tap] = work.get(tap, 0) + int(n)
    calls[tap] = calls.get(tap, 0) + 1

  def prior(tap: str) -> float:
    step = seconds_per_image_step(tap, tuple(image_hw))
    return step + (CPU_GRID_SECONDS * calls[tap] / work[tap] if work.get(tap) else 0.0)

  return prior

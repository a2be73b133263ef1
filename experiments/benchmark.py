"""Speed measurements; every speed claim rfspec makes comes from here, as JSON.

  python -m experiments.benchmark --weights=../shared/weights/bvlc_googlenet.caffemodel \
      --sections=forward,visualize --workdir=/tmp/bench

Sections:
  forward:   jitted rfspec.forward at 224 px (batch 1 and 8) against OpenCV's Caffe importer
             (the test extra installs it), on the same inputs, median of --repeats runs after
             warm-up. `ratio` = rfspec time / OpenCV time (<= 1 means rfspec is no slower).
  visualize: image-steps/s of (a) one visualize_grid call on a P x S grid, (b) the same work as a
             Python loop of single visualize calls, (c) compile time; achieved FLOP/s from XLA's
             cost analysis, and on a GPU the share of the device's peak.

Prints one JSON document on stdout (and writes DIR/benchmark.json with --workdir).
"""

from __future__ import annotations

import os
import platform
import sys
import time

from absl import flags
import numpy as np

from experiments import _cli

_WEIGHTS = _cli.define_weights_flag()
_WORKDIR = _cli.define_workdir_flag(required=False)
_SECTIONS = flags.DEFINE_list("sections", ["forward", "visualize"], "Which sections to run.")
_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed repetitions per measurement (median reported).")
_GRID = flags.DEFINE_list("grid", ["9", "8"], "P,S of the visualize grid (positions x seeds).")
_STEPS = flags.DEFINE_integer("steps", 8, "Optimisation steps per image in the visualize section.")
_SIZES = flags.DEFINE_list("sizes", ["224", "64"], "Image sides for the visualize section.")
_TAP = flags.DEFINE_string("tap", "inception_4c/output", "Tap for the visualize section.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype of the net.")

# Dense bf16 / tf32 peaks (FLOP/s) used for "share of peak"; from the vendors' data sheets.
_PEAK_FLOPS = {"H100": {"float32": 494.7e12 / 2, "bfloat16": 989.4e12}, "H200": {"float32": 494.7e12 / 2, "bfloat16": 989.4e12}}


def _median_time(fn, repeats: int) -> float:
  times = []
  for _ in range(repeats):
    t0 = time.perf_counter()
    fn()
    times.append(time.perf_counter() - t0)
  return float(np.median(times))


def bench_forward(params, repeats: int) -> dict:
  """rfspec.forward vs OpenCV at 224 px, batch 1 and 8."""
  import jax

  import rfspec

  try:
    import cv2
  except ImportError:
    cv2 = None
  shared = os.environ.get("RFSPEC_SHARED", os.path.join(os.path.dirname(__file__), "..", "..", "shared"))
  DEPLOY = os.path.join(shared, "reference", "bvlc_googlenet", "deploy.prototxt")
  CAFFEMODEL = os.path.join(shared, "weights", "bvlc_googlenet.caffemodel")

  results = []
  for batch in (1, 8):
    images = np.random.default_rng(batch).uniform(size=(batch, 224, 224, 3)).astype(np.float32)
    run = lambda: jax.block_until_ready(rfspec.forward(params, images, taps="prob"))
    t0 = time.perf_counter()
    run()
    compile_s = time.perf_counter() - t0
    ours = _median_time(run, repeats)
    row = {"batch": batch, "rfspec_s": ours, "rfspec_compile_s": compile_s, "rfspec_images_per_s": batch / ours}
    if cv2 is not None and os.path.exists(DEPLOY) and os.path.exists(CAFFEMODEL):
      net = cv2.dnn.readNetFromCaffe(str(DEPLOY), str(CAFFEMODEL))
      blob = np.ascontiguousarray((images[..., ::-1] * 255 - np.array([104, 117, 123], np.float32)).transpose(0, 3, 1, 2))

      def cv_run():
        net.setInput(blob)
        return net.forward("prob")

      cv_run()
      theirs = _median_time(cv_run, repeats)
      row.update(opencv_s=theirs, opencv_images_per_s=batch / theirs, ratio=ours / theirs)
    else:
      row["opencv"] = "unavailable (pip install opencv-python-headless<5, and RFSPEC_SHARED)"
    print(f"forward batch {batch}: {row}", file=sys.stderr)
    results.append(row)
  return {"forward": results}


def step_flops(params, cfg, batch: int) -> float:
  """XLA's FLOP count for one ascent step (objective + gradient) on `batch` images.

  Counted on one step rather than the whole run: cost analysis does not multiply a scan body
  by its trip count.
  """
  import jax
  import jax.numpy as jnp

  from rfspec import objectives

  dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[cfg.dtype]

  def objective(image, mask):
    act = objectives.tap_activation(params, image[None], cfg.tap, pre_relu=cfg.objective == "pre_relu", dtype=dtype)
    return objectives.node_objective(act[0], mask)

  h, w, c = cfg.tap_shape
  images = jax.ShapeDtypeStruct((batch, *cfg.image_hw, 3), jnp.float32)
  masks = jax.ShapeDtypeStruct((batch, h, w, c), jnp.float32)
  compiled = jax.jit(jax.vmap(jax.value_and_grad(objective))).lower(images, masks).compile()
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", 0.0)) if cost else 0.0


def bench_visualize(params, repeats: int) -> dict:
  """Grid call vs a Python loop of single calls, compile time, and achieved FLOP/s."""
  import jax
  import jax.numpy as jnp

  from rfspec import engine as vis
  from rfspec import masks as masks_lib

  P, S = (int(v) for v in _GRID.value)
  device = jax.devices()[0]
  out = []
  for side in (int(s) for s in _SIZES.value):
    cfg = vis.VisConfig(tap=_TAP.value, image_hw=(side, side), steps=_STEPS.value, chunk=_STEPS.value,
                        dtype=_DTYPE.value)
    h, w, _ = cfg.tap_shape
    every = [(i, j) for i in range(h) for j in range(w)]
    positions = [every[k] for k in np.linspace(0, len(every) - 1, P).round().astype(int)]
    node_masks = masks_lib.node_masks(cfg.tap, 0, cfg.image_hw, positions)
    seeds = np.arange(S, dtype=np.int32)
    n_img_steps = P * S * cfg.steps

    quiet = lambda _: None
    grid_fn = lambda: vis.visualize_grid(params, seeds, node_masks, cfg, progress=quiet)
    t0 = time.perf_counter()
    grid_fn()
    first_grid = time.perf_counter() - t0
    grid_s = _median_time(grid_fn, max(1, repeats // 3))

    single = lambda p, s: vis.visualize(params, int(seeds[s]), node_masks[p], cfg, progress=quiet)
    single(0, 0)  # compile once; the loop then reuses it
    t0 = time.perf_counter()
    for p in range(P):
      for s in range(S):
        single(p, s)
    loop_s = time.perf_counter() - t0

    row = {
        "image_hw": [side, side], "grid": [P, S], "steps": cfg.steps, "tap": cfg.tap, "recipe": "deepdream", "dtype": cfg.dtype,
        "grid_s": grid_s, "grid_image_steps_per_s": n_img_steps / grid_s,
        "loop_s": loop_s, "loop_image_steps_per_s": n_img_steps / loop_s,
        "grid_speedup_vs_loop": loop_s / grid_s, "grid_compile_plus_first_run_s": first_grid,
        "grid_compile_s": max(first_grid - grid_s, 0.0),
    }
    flops = step_flops(params, cfg, P * S) * cfg.steps
    if flops:
      row["flops_per_call"] = flops
      row["achieved_tflops"] = flops / grid_s / 1e12
      for name, peaks in _PEAK_FLOPS.items():
        if name in device.device_kind:
          row["peak_share"] = flops / grid_s / peaks[cfg.dtype]
    print(f"visualize {side}px: {row}", file=sys.stderr, flush=True)
    out.append(row)
  return {"visualize": out}


def main(argv):
  del argv
  import jax

  import rfspec
  from rfspec import io

  unknown = set(_SECTIONS.value) - {"forward", "visualize"}
  if unknown:
    raise _cli.UserError(f"Unknown --sections {sorted(unknown)}; choose from forward, visualize.")
  params = rfspec.load_params(_WEIGHTS.value)
  report = {
      "device": str(jax.devices()[0].device_kind), "platform": jax.default_backend(),
      "device_count": jax.device_count(), "cpu_count": os.cpu_count(), "host": platform.machine(),
      "jax": jax.__version__,
  }
  if "forward" in _SECTIONS.value:
    report.update(bench_forward(params, _REPEATS.value))
  if "visualize" in _SECTIONS.value:
    report.update(bench_visualize(params, _REPEATS.value))
  if _WORKDIR.value:
    io.write_json(os.path.join(_cli.ensure_workdir(_WORKDIR.value), "benchmark.json"), report)
  import json

  print(json.dumps(report))


if __name__ == "__main__":
  _cli.run(main)

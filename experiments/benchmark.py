"""Speed measurements; every speed claim rfspec makes comes from here, as JSON.

  python -m experiments.benchmark --weights=../shared/weights/bvlc_googlenet.caffemodel \
      --sections=forward,visualize --workdir=/tmp/bench

Sections:
  forward:   jitted rfspec.forward at 224 px (batch 1 and 8) against OpenCV's Caffe importer
             (the test extra installs it), on the same inputs, median of --repeats runs after
             warm-up, the two interleaved. `ratio` = rfspec time / OpenCV time (<= 1 means rfspec is no slower).
  visualize: image-steps/s of (a) one visualize_grid call on a P x S grid, (b) the same work as a
             Python loop of single visualize calls, (c) compile time; achieved FLOP/s from XLA's
             cost analysis, and on a GPU the share of the device's peak.
  step:      one ascent step's core at 224 px, batch --step_batch, up to --tap: the forward alone
             vs forward + input gradient of Σ mask · act, inside a compiled loop of --step_loop
             steps with each step's batch cut as the engine cuts it (`in_parts`: 2 half-batches
             on a lone CPU device; `step_over_forward` is judged on it), the same loop on the
             whole batch (`loop`), and as one jitted call per step (`single_call`).
  peer:      Lucent's `render_vis` side by side with rfspec's visualize_grid, same work: 224 px,
             --peer_steps steps, batch --peer_batch, a channel objective at --tap (Lucent's
             InceptionV1 layer of the same name, e.g. mixed4c), for each recipe in
             --peer_recipes: "lucid" against Lucent's Fourier + decorrelated image, standard
             transforms and Adam 0.05; "zipser2015" against Lucent's closest equivalent (a pixel
             image, 0-1 px jitter, SGD). Lucent's InceptionV1 is built with pretrained=False (its
             weights cannot be downloaded here): the same compute, random weights. Needs the
             `bench` extra (pip install -e .[bench]); `ratio` = rfspec image-steps/s / Lucent's.

  grad:      a user's own objective, jax.jit(jax.grad(f)) of f = Σ mask · rfspec.forward(...)[--tap] vs
             jax.jit(f), batch --step_batch at --step_size px, single calls interleaved:
             `grad_over_forward` (also without the batch cut, without jit, and with
             rfspec.engine.keep_freed_memory() on: `kept_memory_over_forward`).
  flops:     the engine's achieved FLOP rate (XLA's count per image-step x image-steps/s) on a
             zipser2015 grid at --flops_tap, --step_size px, divided by a --matmul_size² float32
             matmul's rate in the same process: `flops_over_matmul`. When the chunk runs two steps
             per scan iteration, on CPU also that chunk against one step per iteration, in
             interleaved pairs: `unrolled_over_one_step`; on a lone CPU device also the batch's
             pieces called from their own threads (as visualize_grid runs them) against one call
             cut inside: `threaded_over_one_call`.
  compile:   two fresh processes with one empty persistent compilation cache, one after the other:
             `warm_compile_over_cold` = the second's first grid call / the first's.
  throughput: zipser2015 grid image-steps/s at --step_size px for each of --throughput_taps (the
             numbers `rfspec/throughput.py` records for planning and ETAs).
  grid:      the atlas-sized grid (--scale_grid, default 196 x 4) per --scale_dtypes: image-steps/s,
             compile, FLOPs and share of a known GPU's peak, peak memory (for a GPU:
             experiments/device_check.sh).

Every section records in one process what its ratio compares, and the JSON records the load
average at start and end (the project's CPUs are shared: compare ratios, not times).

Prints one JSON document on stdout (and writes DIR/benchmark.json with --workdir).
"""

from __future__ import annotations

import functools
import os
import platform
import sys
import time

from absl import flags
import numpy as np

from experiments import _cli, _engine_timing

_WEIGHTS = _cli.define_weights_flag()
_WORKDIR = _cli.define_workdir_flag(required=False)
_SECTIONS = flags.DEFINE_list("sections", ["forward", "visualize"], "Which sections to run.")
_REPEATS = flags.DEFINE_integer("repeats", 10, "Timed repetitions per measurement (median reported).")
_GRID = flags.DEFINE_list("grid", ["9", "8"], "P,S of the visualize grid (positions x seeds).")
_STEPS = flags.DEFINE_integer("steps", 8, "Optimisation steps per image in the visualize section.")
_SIZES = flags.DEFINE_list("sizes", ["224", "64"], "Image sides for the visualize section.")
_TAP = flags.DEFINE_string("tap", "inception_4c/output", "Tap for the visualize section.")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Compute dtype of the net.")
_STEP_BATCH = flags.DEFINE_integer("step_batch", 4, "Batch of the step section.")
_STEP_SIZE = flags.DEFINE_integer("step_size", 224, "Image side (px) of the step and peer sections.")
_STEP_LOOP = flags.DEFINE_integer("step_loop", 32, "Steps per compiled call in the step section's loop (the "
                                  "engine's default VisConfig.chunk).")
_PEER_STEPS = flags.DEFINE_integer("peer_steps", 16, "Optimisation steps per run in the peer section.")
_PEER_BATCH = flags.DEFINE_integer("peer_batch", 4, "Images optimised together in the peer section.")
_PEER_RECIPES = flags.DEFINE_list("peer_recipes", ["lucid", "zipser2015"], "rfspec recipes the peer section times.")
_TORCH_THREADS = flags.DEFINE_integer(
    "torch_threads", 0, "Threads for Lucent's torch (0: torch's default). On a loaded machine torch's OpenMP "
    "threads can be many times slower than one thread; the JSON records the load average.")
_FLOPS_TAP = flags.DEFINE_string("flops_tap", "inception_4c/5x5", "Tap of the flops, compile and grid sections "
                                  "(zipser2015 recipe at --step_size px).")
_FLOPS_GRID = flags.DEFINE_list("flops_grid", ["2", "2"], "P,S of the flops section's grid.")
_FLOPS_STEPS = flags.DEFINE_integer("flops_steps", 20, "Steps per grid call in the flops section.")
_MATMUL = flags.DEFINE_integer("matmul_size", 2048, "Side of the float32 matmul the flops section divides by.")
_COMPILE_STEPS = flags.DEFINE_integer("compile_steps", 4, "Steps of the grid the compile section times (small: "
                                      "its first call is mostly compilation).")
_THROUGHPUT_TAPS = flags.DEFINE_list("throughput_taps", [
    "conv2/3x3", "inception_3b/output", "inception_4a/output", "inception_4c/5x5", "inception_4e/5x5",
    "inception_5b/output"], "Taps of the throughput section (those the figures, atlas and sweep use).")
_THROUGHPUT_GRID = flags.DEFINE_list("throughput_grid", ["2", "2"], "P,S of each throughput grid call.")
_THROUGHPUT_STEPS = flags.DEFINE_integer("throughput_steps", 8, "Steps per timed grid call in the throughput section.")
_SCALE_GRID = flags.DEFINE_list("scale_grid", ["196", "4"], "P,S of the grid section (the paper's atlas: 196 "
                                "positions of inception_4c/5x5 x 4 seeds).")
_SCALE_STEPS = flags.DEFINE_integer("scale_steps", 20, "Steps per grid call in the grid section.")
_SCALE_DTYPES = flags.DEFINE_list("scale_dtypes", ["float32", "bfloat16"], "Compute dtypes of the grid section.")
_GRAD_KEEP = flags.DEFINE_boolean("grad_keep_memory", True, "In the grad section, also time the gradient with "
                                  "rfspec.engine.keep_freed_memory() on (sets glibc's arena_max=1 for the whole run).")
_PROBE = flags.DEFINE_boolean("first_call_probe", False, "Internal (the compile section's subprocess): time this "
                              "process's first grid call and a second one, print them as JSON and exit.")
_PEER_CHANNEL = 7

SECTIONS = ("forward", "visualize", "step", "peer", "grad", "flops", "compile", "throughput", "grid")
# The sections that matter on a GPU (experiments/device_check.sh runs them).
GPU_SECTIONS = ("grid", "flops", "grad", "compile", "throughput", "peer")
# Lucent's InceptionV1 name of each rfspec tap the peer section supports.
_LUCENT_LAYERS = {f"inception_{b}/output": f"mixed{b}" for b in ("3a", "3b", "4a", "4b", "4c", "4d", "4e", "5a", "5b")}

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
    runs = {"rfspec": run}
    if cv2 is not None and os.path.exists(DEPLOY) and os.path.exists(CAFFEMODEL):
      net = cv2.dnn.readNetFromCaffe(str(DEPLOY), str(CAFFEMODEL))
      blob = np.ascontiguousarray((images[..., ::-1] * 255 - np.array([104, 117, 123], np.float32)).transpose(0, 3, 1, 2))

      def cv_run():
        net.setInput(blob)
        return net.forward("prob")

      cv_run()
      runs["opencv"] = cv_run
    # Interleaved, so a burst of load on this shared machine hits both alike.
    times = {name: [] for name in runs}
    for _ in range(repeats):
      for name, fn in runs.items():
        t0 = time.perf_counter()
        fn()
        times[name].append(time.perf_counter() - t0)
    ours = float(np.median(times["rfspec"]))
    row = {"batch": batch, "rfspec_s": ours, "rfspec_compile_s": compile_s, "rfspec_images_per_s": batch / ours}
    if "opencv" in runs:
      theirs = float(np.median(times["opencv"]))
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


def _minor_faults() -> int:
  import resource

  return resource.getrusage(resource.RUSAGE_SELF).ru_minflt


def bench_step(params, repeats: int) -> dict:
  """Forward alone vs forward + input gradient on [--step_batch, side, side, 3], measured three ways.

  `in_parts`: --step_loop steps inside one compiled lax.scan, the image nudged by each step's
  result so nothing is hoisted out of the loop, and each step's batch cut into
  `engine.batch_parts` independent pieces (2 on a lone CPU device): how the engine runs its
  steps (cfg.chunk steps per call), so `step_over_forward` is judged on it. `loop`: the same
  loop on the whole batch at once. `single_call`: one jitted call per step. XLA's CPU runtime
  maps a fresh temporary buffer for every call, and the step's (every blob the backward needs)
  is large: the page faults it takes (`minor_faults_per_call`) cost a single call tens of ms
  that a loop pays once per call.
  """
  import jax
  import jax.numpy as jnp

  from rfspec import engine, objectives

  dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[_DTYPE.value]
  side, batch, tap, n = _STEP_SIZE.value, _STEP_BATCH.value, _TAP.value, _STEP_LOOP.value
  parts = engine.batch_parts(jax.devices()[:1])
  images = jnp.asarray(np.random.default_rng(0).uniform(size=(batch, side, side, 3)).astype(np.float32))
  act = lambda p, x: objectives.tap_activation(p, x, tap, dtype=dtype)
  mask = jnp.zeros(jax.jit(act)(params, images).shape[1:], jnp.float32).at[..., _PEER_CHANNEL].set(1.0)
  objective = lambda p, x: objectives.node_objective(act(p, x), mask).sum()
  grad = jax.grad(objective, argnums=1)
  # Each image's objective broadcast over its pixels: a per-image result, so the pieces stay
  # independent, and (like the gradient) the same shape as the batch it nudges.
  forward = lambda p, x: objectives.node_objective(act(p, x), mask).reshape(-1, 1, 1, 1)
  loop = lambda fn, k: jax.jit(lambda p, x: jax.lax.scan(
      lambda x, _: (x + 1e-9 * engine.apply_in_parts(lambda xs: fn(p, xs), k, x), None), x, None, length=n)[0])
  fns = {
      ("single_call", "forward"): (jax.jit(objective), 1),
      ("single_call", "step"): (jax.jit(jax.value_and_grad(objective, argnums=1)), 1),
      ("loop", "forward"): (loop(forward, 1), n),
      ("loop", "step"): (loop(grad, 1), n),
      ("in_parts", "forward"): (loop(forward, parts), n),
      ("in_parts", "step"): (loop(grad, parts), n),
  }
  times = {key: [] for key in fns}
  faults = {key: [] for key in fns}
  for fn, _ in fns.values():
    jax.block_until_ready(fn(params, images))
  # Interleaved, so a burst of load on this shared machine hits all alike.
  for _ in range(repeats):
    for key, (fn, per_call) in fns.items():
      f0, t0 = _minor_faults(), time.perf_counter()
      jax.block_until_ready(fn(params, images))
      times[key].append((time.perf_counter() - t0) / per_call)
      faults[key].append(_minor_faults() - f0)
  row = {"image_hw": [side, side], "batch": batch, "tap": tap, "dtype": _DTYPE.value, "repeats": repeats,
         "loop_steps": n, "parts": parts}
  for way in ("in_parts", "loop", "single_call"):
    sub = {}
    for kind in ("forward", "step"):
      t = times[(way, kind)]
      sub.update({f"{kind}_s": float(np.median(t)), f"{kind}_s_quartiles": np.percentile(t, [25, 75]).tolist(),
                  f"{kind}_minor_faults_per_call": float(np.median(faults[(way, kind)]))})
    sub["step_over_forward"] = sub["step_s"] / sub["forward_s"]
    row[way] = sub
  row["step_over_forward"] = row["in_parts"]["step_over_forward"]
  print(f"step: {row}", file=sys.stderr, flush=True)
  return {"step": row}


def _zipser_cfg(tap: str, side: int, steps: int, dtype: str = "float32"):
  from rfspec import engine as vis

  return vis.VisConfig.from_recipe("zipser2015", tap=tap, image_hw=(side, side), steps=steps, chunk=steps, dtype=dtype)


def _grid_inputs(cfg, positions: int, seeds: int):
  """`positions` single-node masks spread over the tap's grid (channel 7), and seeds 0..S-1."""
  from rfspec import masks as masks_lib

  h, w, _ = cfg.tap_shape
  every = [(i, j) for i in range(h) for j in range(w)]
  picks = np.linspace(0, len(every) - 1, positions).round().astype(int) if positions <= len(every) else \
      np.arange(positions) % len(every)
  return np.arange(seeds, dtype=np.int32), masks_lib.node_masks(cfg.tap, _PEER_CHANNEL, cfg.image_hw,
                                                                [every[k] for k in picks])


_KEEP_MEMORY_AB = False


def _set_arena_max_1() -> bool:
  import ctypes

  try:
    return bool(ctypes.CDLL("libc.so.6").mallopt(-8, 1))  # M_ARENA_MAX
  except (OSError, AttributeError):
    return False


def bench_grad(params, repeats: int) -> dict:
  """A user's own objective: jax.jit(jax.grad(f)) of f = Σ mask · rfspec.forward(...)[tap] against
  jax.jit(f), single calls interleaved, batch --step_batch at --step_size px, up to --tap.

  `grad_over_forward` is judged on the default call (the batch cut `forward`'s gradient takes on
  a lone CPU device); `uncut_over_forward` is the same with grad_parts=1, and `eager_over_forward`
  jax.grad without jit (what a notebook writes first).
  """
  import jax
  import jax.numpy as jnp

  import rfspec
  from rfspec.models import googlenet

  side, batch, tap = _STEP_SIZE.value, _STEP_BATCH.value, _TAP.value
  dtype = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}[_DTYPE.value]
  images = jnp.asarray(np.random.default_rng(0).uniform(size=(batch, side, side, 3)).astype(np.float32))
  shape = rfspec.forward(params, images[:1], taps=tap, dtype=dtype)[tap].shape[1:]
  mask = jnp.zeros(shape, jnp.float32).at[..., _PEER_CHANNEL].set(1.0)

  def objective(x, parts=None):
    act = rfspec.forward(params, x, taps=tap, dtype=dtype, grad_parts=parts)[tap]
    return jnp.sum(act.astype(jnp.float32) * mask)

  from rfspec import engine

  grad = jax.jit(jax.grad(objective))
  fns = {"forward": jax.jit(objective), "grad": grad,
         "grad_uncut": jax.jit(jax.grad(lambda x: objective(x, 1))), "grad_eager": jax.grad(objective)}
  if _KEEP_MEMORY_AB:  # the same jitted gradient with engine.keep_freed_memory() on for its call
    fns["grad_kept_memory"] = grad
  for fn in fns.values():
    jax.block_until_ready(fn(images))
  times = {k: [] for k in fns}
  faults = {k: [] for k in fns}
  for _ in range(repeats):  # interleaved, so a burst of load hits all alike
    for k, fn in fns.items():
      kept = k == "grad_kept_memory"
      if kept:
        engine.keep_freed_memory(True)
        jax.block_until_ready(fn(images))  # the heap grows once; the timed call reuses it
      f0, t0 = _minor_faults(), time.perf_counter()
      jax.block_until_ready(fn(images))
      times[k].append(time.perf_counter() - t0)
      faults[k].append(_minor_faults() - f0)
      if kept:
        engine.keep_freed_memory(False)
  med = {k: float(np.median(v)) for k, v in times.items()}
  row = {"image_hw": [side, side], "batch": batch, "tap": tap, "dtype": _DTYPE.value, "repeats": repeats,
         "parts": googlenet.default_grad_parts(), **{f"{k}_s": v for k, v in med.items()},
         **{f"{k}_minor_faults_per_call": float(np.median(v)) for k, v in faults.items()},
         "grad_over_forward": med["grad"] / med["forward"], "uncut_over_forward": med["grad_uncut"] / med["forward"],
         "eager_over_forward": med["grad_eager"] / med["forward"]}
  if "grad_kept_memory" in med:
    row["kept_memory_over_forward"] = med["grad_kept_memory"] / med["forward"]
  print(f"grad: {row}", file=sys.stderr, flush=True)
  return {"grad": row, "grad_over_forward": row["grad_over_forward"]}


def _matmul_rate(n: int):
  """A jitted n x n float32 matmul: (call, FLOPs per call)."""
  import jax
  import jax.numpy as jnp

  rng = np.random.default_rng(1)
  a, b = (jnp.asarray(rng.standard_normal((n, n)).astype(np.float32)) for _ in range(2))
  fn = jax.jit(jnp.dot)
  jax.block_until_ready(fn(a, b))
  return (lambda: jax.block_until_ready(fn(a, b))), 2.0 * n ** 3


def bench_flops(params, repeats: int) -> dict:
  """The engine's achieved FLOP rate on a zipser2015 grid (--flops_tap, --step_size px, --flops_grid,
  --flops_steps steps per call) divided by a --matmul_size² float32 matmul's, both timed in this
  process, interleaved. FLOPs per image-step are XLA's count (`step_flops`)."""
  import jax

  from rfspec import engine as vis

  P, S = (int(v) for v in _FLOPS_GRID.value)
  cfg = _zipser_cfg(_FLOPS_TAP.value, _STEP_SIZE.value, _FLOPS_STEPS.value, _DTYPE.value)
  seeds, masks = _grid_inputs(cfg, P, S)
  grid = lambda: vis.visualize_grid(params, seeds, masks, cfg, progress=None)
  grid()  # compile
  matmul, mm_flops = _matmul_rate(_MATMUL.value)
  grid_t, mm_t = [], []
  for _ in range(max(1, repeats // 2)):
    t0 = time.perf_counter()
    grid()
    grid_t.append(time.perf_counter() - t0)
    for _ in range(3):
      t0 = time.perf_counter()
      matmul()
      mm_t.append(time.perf_counter() - t0)
  per_step = step_flops(params, cfg, P * S) / (P * S)
  rate = P * S * cfg.steps / float(np.median(grid_t))
  achieved, roof = per_step * rate, mm_flops / float(np.median(mm_t))
  row = {"tap": cfg.tap, "recipe": cfg.recipe, "image_hw": list(cfg.image_hw), "grid": [P, S], "steps": cfg.steps,
         "dtype": cfg.dtype, "grid_s": float(np.median(grid_t)), "image_steps_per_s": rate,
         "flops_per_image_step": per_step, "achieved_gflops": achieved / 1e9, "matmul_size": _MATMUL.value,
         "matmul_s": float(np.median(mm_t)), "matmul_gflops": roof / 1e9, "flops_over_matmul": achieved / roof}
  # The pairs on CPU only: on a GPU they would cost the device check a second large compile.
  if jax.default_backend() == "cpu":
    if vis._chunk_unroll(min(cfg.chunk, cfg.steps)) > 1:
      row.update(_engine_timing.unroll_pairs(params, cfg, seeds, masks, max(1, repeats // 2)))
    if vis.batch_parts(jax.devices()) > 1:
      row.update(_engine_timing.threaded_pieces_pairs(params, cfg, seeds, masks, max(1, repeats // 2)))
  print(f"flops: {row}", file=sys.stderr, flush=True)
  return {"flops": row, "flops_over_matmul": row["flops_over_matmul"]}


def first_call_probe(params) -> dict:
  """This process's first grid call (compile + run, or a read from JAX's persistent cache) and
  a second call (run only), for the compile section."""
  from rfspec import engine as vis

  cfg = _zipser_cfg(_FLOPS_TAP.value, _STEP_SIZE.value, _COMPILE_STEPS.value, _DTYPE.value)
  seeds, masks = _grid_inputs(cfg, 2, 2)
  times = []
  for _ in range(2):
    t0 = time.perf_counter()
    vis.visualize_grid(params, seeds, masks, cfg, progress=None)
    times.append(time.perf_counter() - t0)
  import jax

  return {"first_call_s": times[0], "second_call_s": times[1], "cache_dir": jax.config.jax_compilation_cache_dir}


def bench_compile(repeats: int) -> dict:
  """Two fresh processes, one after the other, with the same empty persistent-cache directory:
  the first compiles cold and fills the cache, the second reads it back. `warm_compile_over_cold`
  = the second's first grid call / the first's (each including one run of --compile_steps steps,
  which only makes the ratio larger); `compile_only_ratio` subtracts that run (a second call)."""
  import subprocess
  import tempfile

  del repeats
  runs = []
  with tempfile.TemporaryDirectory(prefix="rfspec-compile-cache-") as cache:
    for _ in range(2):
      cmd = [sys.executable, "-m", "experiments.benchmark", f"--weights={_WEIGHTS.value}", "--first_call_probe",
             f"--flops_tap={_FLOPS_TAP.value}", f"--step_size={_STEP_SIZE.value}",
             f"--compile_steps={_COMPILE_STEPS.value}", f"--dtype={_DTYPE.value}"]
      proc = subprocess.run(cmd, cwd=os.path.dirname(os.path.dirname(os.path.abspath(__file__))),
                            env=dict(os.environ, RFSPEC_COMPILE_CACHE=cache), capture_output=True, text=True)
      if proc.returncode:
        raise RuntimeError(f"compile probe failed ({proc.returncode}): {proc.stderr[-2000:]}")
      import json

      runs.append(json.loads(proc.stdout.strip().splitlines()[-1]))
    entries = len(os.listdir(cache))
  cold, warm = runs
  compile_cold = max(cold["first_call_s"] - cold["second_call_s"], 1e-9)
  compile_warm = max(warm["first_call_s"] - warm["second_call_s"], 0.0)
  row = {"tap": _FLOPS_TAP.value, "image_hw": [_STEP_SIZE.value] * 2, "grid": [2, 2], "steps": _COMPILE_STEPS.value,
         "recipe": "zipser2015", "cold": cold, "warm": warm, "cache_entries": entries,
         "warm_compile_over_cold": warm["first_call_s"] / cold["first_call_s"],
         "compile_only_ratio": compile_warm / compile_cold}
  print(f"compile: {row}", file=sys.stderr, flush=True)
  return {"compile": row, "warm_compile_over_cold": row["warm_compile_over_cold"]}


def bench_throughput(params, repeats: int) -> dict:
  """Image-steps/s of a zipser2015 grid (--throughput_grid, --throughput_steps steps per call) at
  --step_size px per tap in --throughput_taps: what `rfspec.throughput` records for planning."""
  from rfspec import engine as vis

  P, S = (int(v) for v in _THROUGHPUT_GRID.value)
  calls, first = {}, {}
  for tap in _THROUGHPUT_TAPS.value:  # compile every tap's grid first
    cfg = _zipser_cfg(tap, _STEP_SIZE.value, _THROUGHPUT_STEPS.value, _DTYPE.value)
    seeds, masks = _grid_inputs(cfg, P, S)
    calls[tap] = functools.partial(vis.visualize_grid, params, seeds, masks, cfg, progress=None)
    t0 = time.perf_counter()
    calls[tap]()
    first[tap] = time.perf_counter() - t0
  times = {tap: [] for tap in calls}
  for _ in range(max(1, repeats // 3)):  # then the taps in turn, so a burst of load hits all alike
    for tap, call in calls.items():
      t0 = time.perf_counter()
      call()
      times[tap].append(time.perf_counter() - t0)
  rows, rates = [], {}
  for tap in calls:
    seconds = float(np.median(times[tap]))
    rates[tap] = P * S * _THROUGHPUT_STEPS.value / seconds
    rows.append({"tap": tap, "grid_s": seconds, "grid_s_all": times[tap], "first_call_s": first[tap],
                 "image_steps_per_s": rates[tap]})
    print(f"throughput {tap}: {rows[-1]}", file=sys.stderr, flush=True)
  return {"throughput": {"image_hw": [_STEP_SIZE.value] * 2, "recipe": "zipser2015", "grid": [P, S],
                         "steps": _THROUGHPUT_STEPS.value, "dtype": _DTYPE.value, "image_steps_per_s": rates,
                         "rows": rows}}


def _peak_memory_bytes(device) -> tuple[int | None, str]:
  stats = device.memory_stats() if hasattr(device, "memory_stats") else None
  if stats and "peak_bytes_in_use" in stats:
    return int(stats["peak_bytes_in_use"]), "device peak_bytes_in_use"
  import resource

  return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "process max RSS (host)"


def bench_grid(params, repeats: int) -> dict:
  """The atlas-sized grid (--scale_grid, default 196 positions x 4 seeds of --flops_tap, zipser2015,
  --step_size px, --scale_steps steps per call) for each of --scale_dtypes: image-steps/s, compile,
  XLA's FLOPs, the share of the device's peak (known GPUs) and peak memory."""
  import jax

  from rfspec import engine as vis

  P, S = (int(v) for v in _SCALE_GRID.value)
  device = jax.devices()[0]
  rows = []
  for dtype in _SCALE_DTYPES.value:
    cfg = _zipser_cfg(_FLOPS_TAP.value, _STEP_SIZE.value, _SCALE_STEPS.value, dtype)
    seeds, masks = _grid_inputs(cfg, P, S)
    grid = lambda: vis.visualize_grid(params, seeds, masks, cfg, progress=None)
    t0 = time.perf_counter()
    grid()
    first = time.perf_counter() - t0
    seconds = _median_time(grid, max(1, repeats // 3))
    per_step = step_flops(params, cfg, min(P * S, 8)) / min(P * S, 8)
    rate = P * S * cfg.steps / seconds
    peak, peak_kind = _peak_memory_bytes(device)
    row = {"tap": cfg.tap, "recipe": cfg.recipe, "image_hw": list(cfg.image_hw), "grid": [P, S], "steps": cfg.steps,
           "dtype": dtype, "grid_s": seconds, "first_call_s": first, "image_steps_per_s": rate,
           "flops_per_image_step": per_step, "achieved_tflops": per_step * rate / 1e12,
           "peak_memory_bytes": peak, "peak_memory_kind": peak_kind,
           "atlas_2000_steps_s_estimate": P * S * 2000 / rate}
    for name, peaks in _PEAK_FLOPS.items():
      if name in device.device_kind:
        row["peak_share"] = per_step * rate / peaks[dtype]
    print(f"grid {dtype}: {row}", file=sys.stderr, flush=True)
    rows.append(row)
  return {"grid": rows}


_BENCH_EXTRA = ("The peer section needs the optional `bench` extra (torch, torch-lucent, kornia==0.4.1, decorator): "
                "pip install -e .[bench] (best in a separate virtualenv), or leave `peer` out of --sections.")


def _lucent_rate(tap: str, recipe: str, side: int, batch: int, steps: int, repeats: int) -> dict:
  """Lucent's render_vis on its InceptionV1 (random weights), image-steps/s after a warm-up."""
  try:
    import torch
    from lucent.modelzoo import inceptionv1
    from lucent.optvis import param as lparam
    from lucent.optvis import render, transform
  except ImportError as e:
    raise _cli.UserError(f"{_BENCH_EXTRA} (import failed: {e})") from None
  if tap not in _LUCENT_LAYERS:
    raise _cli.UserError(f"The peer section compares inception outputs only (--tap one of {sorted(_LUCENT_LAYERS)}); "
                         f"got {tap!r}.")
  if _TORCH_THREADS.value:
    torch.set_num_threads(_TORCH_THREADS.value)
  torch.manual_seed(0)
  model = inceptionv1(pretrained=False).eval()
  objective = f"{_LUCENT_LAYERS[tap]}:{_PEER_CHANNEL}"
  if recipe == "lucid":
    param_f = lambda: lparam.image(side, batch=batch, fft=True, decorrelate=True)
    transforms, optimizer = transform.standard_transforms, None  # render_vis's default: Adam, lr 0.05
    setup = "fft=True, decorrelate=True, standard_transforms, Adam(lr=0.05)"
  else:
    param_f = lambda: lparam.image(side, batch=batch, fft=False, decorrelate=False)
    # jitter(2): random crops shifting by 0-1 px (Lucent rejects 1), the nearest to the recipe's 1 px roll.
    transforms, optimizer = [transform.jitter(2)], lambda ps: torch.optim.SGD(ps, lr=1.5 / 255)
    setup = "fft=False, decorrelate=False, [jitter(2)], SGD(lr=1.5/255)"
  run = lambda n: render.render_vis(model, objective, param_f, optimizer=optimizer, transforms=transforms,
                                    thresholds=(n,), show_image=False, progress=False)
  run(2)  # warm-up
  seconds = _median_time(lambda: run(steps), repeats)
  return {"lucent_s": seconds, "lucent_image_steps_per_s": batch * steps / seconds,
          "lucent_objective": objective, "lucent_setup": setup, "lucent_pretrained": False,
          "torch": torch.__version__, "torch_threads": torch.get_num_threads()}


def bench_peer(params, repeats: int) -> dict:
  """rfspec's grid vs Lucent's render_vis, image-steps/s on the same CPU for the same work."""
  import rfspec
  from rfspec import engine as vis

  side, batch, steps = _STEP_SIZE.value, _PEER_BATCH.value, _PEER_STEPS.value
  repeats = max(1, repeats // 3)
  rows = []
  for recipe in _PEER_RECIPES.value:
    try:
      cfg = vis.VisConfig.from_recipe(recipe, tap=_TAP.value, image_hw=(side, side), steps=steps, chunk=steps,
                                      dtype=_DTYPE.value)
    except ValueError as e:
      rows.append({"recipe": recipe, "rfspec": f"n/a: {e}"})
      continue
    mask = rfspec.node_mask(cfg.tap, _PEER_CHANNEL, cfg.image_hw)[None]  # the whole channel, like Lucent's
    seeds = np.arange(batch, dtype=np.int32)
    grid = lambda: vis.visualize_grid(params, seeds, mask, cfg, progress=lambda _: None)
    grid()  # compile
    ours = _median_time(grid, repeats)
    row = {"recipe": recipe, "image_hw": [side, side], "batch": batch, "steps": steps, "tap": cfg.tap,
           "dtype": cfg.dtype, "rfspec_s": ours, "rfspec_image_steps_per_s": batch * steps / ours}
    row.update(_lucent_rate(cfg.tap, recipe, side, batch, steps, repeats))
    row["ratio"] = row["rfspec_image_steps_per_s"] / row["lucent_image_steps_per_s"]
    print(f"peer {recipe}: {row}", file=sys.stderr, flush=True)
    rows.append(row)
  return {"peer": rows}


def _cpu_model() -> str | None:
  """The CPU's model name (Linux), so runs on different machines are not compared by mistake."""
  try:
    with open("/proc/cpuinfo") as f:
      names = [line.split(":", 1)[1].strip() for line in f if line.startswith("model name")]
  except OSError:
    return platform.processor() or None
  return names[0] if names else None


def _git_commit() -> str | None:
  """The checkout's commit (what was measured), or None outside a git checkout."""
  import subprocess

  try:
    out = subprocess.run(["git", "rev-parse", "HEAD"], cwd=os.path.dirname(os.path.abspath(__file__)),
                         capture_output=True, text=True, timeout=10)
  except (OSError, subprocess.SubprocessError):
    return None
  return out.stdout.strip() or None


def main(argv):
  del argv
  # Zero timed runs would report the median of nothing (NaN) as a speed.
  for flag in (_REPEATS, _STEPS, _STEP_BATCH, _STEP_LOOP, _PEER_STEPS, _PEER_BATCH, _FLOPS_STEPS, _MATMUL,
               _COMPILE_STEPS, _THROUGHPUT_STEPS, _SCALE_STEPS):
    if flag.value < 1:
      raise _cli.UserError(f"--{flag.name}={flag.value}: it must be a whole number >= 1.")
  import jax

  import rfspec
  from rfspec import files

  unknown = set(_SECTIONS.value) - set(SECTIONS)
  if unknown:
    raise _cli.UserError(f"Unknown --sections {sorted(unknown)}; choose from {', '.join(SECTIONS)}.")
  if "peer" in _SECTIONS.value:  # fail before loading weights or timing anything
    try:
      import lucent  # noqa: F401
    except ImportError as e:
      raise _cli.UserError(f"{_BENCH_EXTRA} (import failed: {e})") from None
  global _KEEP_MEMORY_AB
  # engine.keep_freed_memory's A/B in the grad section needs one glibc heap for every thread,
  # chosen before JAX's threads first allocate (i.e. before the weights reach the device).
  _KEEP_MEMORY_AB = "grad" in _SECTIONS.value and not _PROBE.value and _GRAD_KEEP.value and \
      _set_arena_max_1()
  params = rfspec.load_params(_WEIGHTS.value)
  if _PROBE.value:  # the compile section's subprocess: its cache dir comes from $RFSPEC_COMPILE_CACHE
    import json

    print(json.dumps(first_call_probe(params)))
    return
  # Every other timing here is of this process's own compiles (the cache would hide them).
  jax.config.update("jax_compilation_cache_dir", None)
  report = {
      "device": str(jax.devices()[0].device_kind), "platform": jax.default_backend(),
      "device_count": jax.device_count(), "cpu_count": os.cpu_count(), "host": platform.machine(),
      "cpu_model": _cpu_model(),
      "jax": jax.__version__, "rfspec_commit": _git_commit(), "malloc_arena_max_1": _KEEP_MEMORY_AB, "load_average_1_5_15_min_at_start": list(os.getloadavg()),
      "weights": _WEIGHTS.value, "weights_sha256": _cli.weights_digest(_WEIGHTS.value),  # as every output JSON
  }
  if "forward" in _SECTIONS.value:
    report.update(bench_forward(params, _REPEATS.value))
  if "visualize" in _SECTIONS.value:
    report.update(bench_visualize(params, _REPEATS.value))
  if "step" in _SECTIONS.value:
    report.update(bench_step(params, _REPEATS.value))
  if "peer" in _SECTIONS.value:
    report.update(bench_peer(params, _REPEATS.value))
  if "grad" in _SECTIONS.value:
    report.update(bench_grad(params, _REPEATS.value))
  if "flops" in _SECTIONS.value:
    report.update(bench_flops(params, _REPEATS.value))
  if "compile" in _SECTIONS.value:
    report.update(bench_compile(_REPEATS.value))
  if "throughput" in _SECTIONS.value:
    report.update(bench_throughput(params, _REPEATS.value))
  if "grid" in _SECTIONS.value:
    report.update(bench_grid(params, _REPEATS.value))
  report["sections"] = list(_SECTIONS.value)
  report["command"] = " ".join(["python -m experiments.benchmark"] + sys.argv[1:])
  report["load_average_1_5_15_min_at_end"] = list(os.getloadavg())
  if _WORKDIR.value:
    files.write_json(os.path.join(_cli.ensure_workdir(_WORKDIR.value), "benchmark.json"), report)
  import json

  print(json.dumps(report))


if __name__ == "__main__":
  _cli.run(main)

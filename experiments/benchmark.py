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
_PEER_CHANNEL = 7

SECTIONS = ("forward", "visualize", "step", "peer")
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
  for flag in (_REPEATS, _STEPS, _STEP_BATCH, _STEP_LOOP, _PEER_STEPS, _PEER_BATCH):
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
  params = rfspec.load_params(_WEIGHTS.value)
  report = {
      "device": str(jax.devices()[0].device_kind), "platform": jax.default_backend(),
      "device_count": jax.device_count(), "cpu_count": os.cpu_count(), "host": platform.machine(),
      "cpu_model": _cpu_model(),
      "jax": jax.__version__, "rfspec_commit": _git_commit(), "load_average_1_5_15_min_at_start": list(os.getloadavg()),
  }
  if "forward" in _SECTIONS.value:
    report.update(bench_forward(params, _REPEATS.value))
  if "visualize" in _SECTIONS.value:
    report.update(bench_visualize(params, _REPEATS.value))
  if "step" in _SECTIONS.value:
    report.update(bench_step(params, _REPEATS.value))
  if "peer" in _SECTIONS.value:
    report.update(bench_peer(params, _REPEATS.value))
  report["load_average_1_5_15_min_at_end"] = list(os.getloadavg())
  if _WORKDIR.value:
    files.write_json(os.path.join(_cli.ensure_workdir(_WORKDIR.value), "benchmark.json"), report)
  import json

  print(json.dumps(report))


if __name__ == "__main__":
  _cli.run(main)

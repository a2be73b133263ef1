"""Timings of the engine's own variants, for experiments/benchmark.py; no flags, so tests can import it."""

from __future__ import annotations

import time

import numpy as np


def unroll_pairs(params, cfg, seeds, masks, repeats: int) -> dict:
  """The engine's chunk (two steps per scan iteration, `engine._chunk_unroll`) against the same
  chunk at one step per iteration: interleaved pairs of calls, the batch cut as visualize_grid
  cuts it. `unrolled_over_one_step` is the median of the pairs' time ratios; `max_abs_diff`
  between their images (0: the same numbers)."""
  import jax

  from rfspec import engine as vis

  flat_seeds = np.tile(np.asarray(seeds, np.int32), len(masks))  # b = p * S + s, as the engine flattens
  flat_masks = np.repeat(np.asarray(masks), len(seeds), axis=0)
  parts = vis.batch_parts(jax.devices())
  unroll = vis._chunk_unroll(min(cfg.chunk, cfg.steps))
  fns = {u: vis._chunk_fns(cfg, u) for u in (unroll, 1)}
  run = lambda f: jax.block_until_ready(f.chunk(params, flat_seeds, flat_masks, f.init(flat_seeds), np.int32(0),
                                                parts=parts))
  images = {u: np.asarray(run(f)[2]) for u, f in fns.items()}  # compile
  times = {u: [] for u in fns}
  for _ in range(repeats):
    for u, f in fns.items():
      t0 = time.perf_counter()
      run(f)
      times[u].append(time.perf_counter() - t0)
  ratios = np.array(times[unroll]) / np.array(times[1])
  return {"unroll": unroll, "unrolled_s": float(np.median(times[unroll])), "one_step_s": float(np.median(times[1])),
          "unrolled_over_one_step": float(np.median(ratios)),
          "unrolled_over_one_step_quartiles": [float(q) for q in np.percentile(ratios, [25, 75])],
          "max_abs_diff": float(np.abs(images[unroll] - images[1]).max())}


def threaded_pieces_pairs(params, cfg, seeds, masks, repeats: int) -> dict:
  """The engine's batch pieces as calls from their own threads (how `visualize_grid` runs a batch
  that splits evenly on a lone CPU device) against one call that cuts the batch inside: interleaved
  pairs of one chunk each. `threaded_over_one_call` is the median of the pairs' time ratios;
  `threaded_max_abs_diff` between their images (0: the same numbers)."""
  import concurrent.futures

  import jax

  from rfspec import engine as vis

  flat_seeds = np.tile(np.asarray(seeds, np.int32), len(masks))  # b = p * S + s, as the engine flattens
  flat_masks = np.repeat(np.asarray(masks), len(seeds), axis=0)
  parts = vis.batch_parts(jax.devices())
  fns = vis._chunk_fns(cfg)
  halves = np.array_split(np.arange(len(flat_seeds)), parts)

  def one_call():
    return jax.block_until_ready(fns.chunk(params, flat_seeds, flat_masks, fns.init(flat_seeds), np.int32(0),
                                           parts=parts))[2]

  def piece(rows):
    s, m = flat_seeds[rows], flat_masks[rows]
    return jax.block_until_ready(fns.chunk(params, s, m, fns.init(s), np.int32(0), parts=1))[2]

  with concurrent.futures.ThreadPoolExecutor(parts) as pool:
    threaded = lambda: np.concatenate(list(pool.map(piece, halves)))
    diff = float(np.abs(np.asarray(one_call()) - threaded()).max())  # also compiles both
    times = {"one_call": [], "threaded": []}
    for _ in range(repeats):
      for name, run in (("one_call", one_call), ("threaded", threaded)):
        t0 = time.perf_counter()
        run()
        times[name].append(time.perf_counter() - t0)
  ratios = np.array(times["threaded"]) / np.array(times["one_call"])
  return {"threaded_s": float(np.median(times["threaded"])), "one_call_s": float(np.median(times["one_call"])),
          "threaded_over_one_call": float(np.median(ratios)),
          "threaded_over_one_call_quartiles": [float(q) for q in np.percentile(ratios, [25, 75])],
          "threaded_max_abs_diff": diff}

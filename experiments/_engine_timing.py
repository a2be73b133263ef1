"""Timings of the engine's own variants, for experiments/benchmark.py; no flags, so tests can import it."""

from __future__ import annotations

import time

import numpy as np


def _flat(seeds, masks):
  """(seeds [P * S], masks [P * S, ...]): the grid flattened as the engine flattens it, b = p * S + s."""
  return np.tile(np.asarray(seeds, np.int32), len(masks)), np.repeat(np.asarray(masks), len(seeds), axis=0)


def _pairs(new, old, repeats: int) -> tuple[float, float, np.ndarray]:
  """Interleaved calls of `new` and `old`: (median seconds of each, the pairs' time ratios new / old)."""
  times = {new: [], old: []}
  for _ in range(repeats):
    for run in (new, old):
      t0 = time.perf_counter()
      run()
      times[run].append(time.perf_counter() - t0)
  return float(np.median(times[new])), float(np.median(times[old])), np.array(times[new]) / np.array(times[old])


def _ratio(name: str, ratios: np.ndarray) -> dict:
  return {name: float(np.median(ratios)), f"{name}_quartiles": [float(q) for q in np.percentile(ratios, [25, 75])]}


def unroll_pairs(params, cfg, seeds, masks, repeats: int) -> dict:
  """The engine's chunk (two steps per scan iteration, `engine._chunk_unroll`) against the same
  chunk at one step per iteration: interleaved pairs of calls, the batch cut as visualize_grid
  cuts it. `unrolled_over_one_step` is the median of the pairs' time ratios; `max_abs_diff`
  between their images (0: the same numbers)."""
  import jax

  from rfspec import engine as vis

  flat_seeds, flat_masks = _flat(seeds, masks)
  parts = vis.batch_parts(jax.devices())
  unroll = vis._chunk_unroll(min(cfg.chunk, cfg.steps))
  fns = {u: vis._chunk_fns(cfg, u) for u in (unroll, 1)}
  runs = {u: (lambda f=f: jax.block_until_ready(f.chunk(params, flat_seeds, flat_masks, f.init(flat_seeds),
                                                        np.int32(0), parts=parts))[2]) for u, f in fns.items()}
  images = {u: np.asarray(run()) for u, run in runs.items()}  # compile
  unrolled_s, one_step_s, ratios = _pairs(runs[unroll], runs[1], repeats)
  return {"unroll": unroll, "unrolled_s": unrolled_s, "one_step_s": one_step_s,
          **_ratio("unrolled_over_one_step", ratios), "max_abs_diff": float(np.abs(images[unroll] - images[1]).max())}


def threaded_pieces_pairs(params, cfg, seeds, masks, repeats: int) -> dict:
  """The engine's batch pieces as calls from their own threads (how `visualize_grid` runs a batch
  of two or more on a lone CPU device; give an even grid, since the engine pads an odd one) against
  one call that cuts the batch inside: interleaved pairs of one chunk each. `threaded_over_one_call` is the median of the pairs' time ratios;
  `threaded_max_abs_diff` between their images (0: the same numbers)."""
  import concurrent.futures

  import jax

  from rfspec import engine as vis

  flat_seeds, flat_masks = _flat(seeds, masks)
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
    threaded_s, one_call_s, ratios = _pairs(threaded, one_call, repeats)
  return {"threaded_s": threaded_s, "one_call_s": one_call_s, **_ratio("threaded_over_one_call", ratios),
          "threaded_max_abs_diff": diff}

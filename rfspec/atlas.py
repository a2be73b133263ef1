"""The position atlas: one node type (tap, channel) visualised at every position of its grid.

Zipser's driver looped over all 14 x 14 positions of `inception_4c/5x5`; the atlas is that loop
as compiled batches of one `rfspec.engine.visualize_grid` call each. Tile (i, j, s) is the
computation of `rfspec.visualize(params, seeds[s], rfspec.node_mask(tap, channel, cfg.image_hw,
(i, j)), cfg)`.

Exactness: a batch of one rounds differently from a batch of many; under zipser2015 (a step
normalised by the mean non-zero |g|, max-pool near-ties) such float differences grow with the
steps, so a lone `visualize` call matches a tile to ~1e-6 after 2 steps (tests/atlas_test.py) but
by 0.05 at most after 6 steps at 96 px. The batch's own `visualize_grid` call (same masks, same
padding, same device count; atlas.json of `experiments.position_atlas` records them) remakes a
tile bit for bit.

Batches. The positions x seeds grid is cut into batches of `batch_positions` positions (all
seeds of a position stay together). Every batch has the same shape -- the last one is padded
with copies of its own first position, whose results are dropped -- so the engine's chunk
function is compiled once for the whole atlas. `batch_positions` defaults to
`default_batch_positions`, a documented memory estimate (see there); pass it to override.

Resume. `position_atlas` takes an optional `store` (any object with `load` and `save`, see
`BatchStore`): finished batches are handed to `store.save`, and a batch that `store.load`
returns is not recomputed. The library itself never touches the disk; `experiments.position_atlas`
backs the store with `rfspec.files`'s atomic writers.

Conventions: positions are (i, j) = (row, col) of the tap's grid (at `cfg.net_hw`, which is
`cfg.image_hw` unless a padding canvas is set), 0-based; pixels are (y, x) = (row, col); images
RGB in [0, 1]. Numbers only: the mosaic and heat map live in `rfspec.plots`, the HTML page in
`rfspec.report`.
"""

from __future__ import annotations

import functools
import math
import os
import time
from typing import Callable, NamedTuple, Protocol, Sequence

import jax
import numpy as np

from rfspec import masks as masks_lib
from rfspec import objectives
from rfspec.engine import Progress, VisConfig, embed_canvas, initial_image, visualize_grid
from rfspec.errors import UserError
from rfspec.models import googlenet

__all__ = ["Atlas", "AtlasProgress", "BatchStore", "BatchResult", "CentreSpecificity", "ChannelChoice", "active_channel",
           "bytes_per_element", "check_atlas_args", "check_spatial_tap",
           "default_batch_positions", "plan_batches", "position_atlas", "psi_vs_centre", "tile_boxes"]

Position = tuple[int, int]

# Bytes per float32 activation value during one optimisation step: the forward activation (kept
# for the backward pass), its gradient and XLA's temporaries. Calibrated on CPU against XLA's own
# `compile().memory_analysis()` of the vmapped step for inception_4c/5x5: temp bytes per element
# 43 MB at 128 px (this estimate: 42 MB) and 13 MB at 64 px (10.5 MB).
_BYTES_PER_VALUE = 4 * 6
# Share of a device's memory the atlas may plan for (params, compiled code and the host copy of
# the results need the rest).
_MEMORY_SHARE = 0.5
# On CPU, vmapped batches beyond a few elements per device are no faster (the cores are already
# busy), and a smaller batch loses less work to a kill; accelerators get what memory allows.
_CPU_MAX_ELEMENTS_PER_DEVICE = 4


class Atlas(NamedTuple):
  """The result of `position_atlas`.

  The positions form a lattice: every combination of `rows` and `cols` (for positions=None,
  every node of the tap's grid, so R, C = h, w).

  Attributes:
    images: float32 [R, C, S, H, W, 3] RGB in [0, 1]; [r, c, s] is node (rows[r], cols[c]) from
      seeds[s]. NaN-free.
    traces: float32 [R, C, S, steps], the objective at each step (see `rfspec.engine.VisResult`).
    start_activation: float32 [R, C, S], the node's blob value (the tap as Caffe stores it) on
      the seed's start image; 0 means the node was off at the start.
    final_activation: float32 [R, C, S], the node's blob value on the final image (no jitter).
    rows: int [R], the i (row) of each atlas row on the tap's grid.
    cols: int [C], the j (col) of each atlas column.
    seeds: int [S].
    batch_positions: positions per compiled batch that were used.
    batches: number of batches; resumed: how many of them came from the store.
  """

  images: np.ndarray
  traces: np.ndarray
  start_activation: np.ndarray
  final_activation: np.ndarray
  rows: np.ndarray
  cols: np.ndarray
  seeds: np.ndarray
  batch_positions: int
  batches: int
  resumed: int


class BatchResult(NamedTuple):
  """One finished batch, only its real (unpadded) positions.

  Attributes:
    positions: int [B, 2], (i, j) = (row, col) of each position of the batch.
    images: float32 [B, S, H, W, 3].
    traces: float32 [B, S, steps].
    start_activation, final_activation: float32 [B, S].
  """

  positions: np.ndarray
  images: np.ndarray
  traces: np.ndarray
  start_activation: np.ndarray
  final_activation: np.ndarray


class BatchStore(Protocol):
  """Where finished batches go and come back from (e.g. one atomically written file per batch).

  `load(index, positions)` returns the `BatchResult` saved for batch `index` if it exists, is
  intact and holds exactly `positions` (int [B, 2]); otherwise None (the batch is recomputed).
  `save(index, result)` must write atomically: a kill leaves either the whole batch or nothing.
  The store is responsible for keying batches by everything else that determines the pixels
  (weights, cfg, channel, seeds, batch size).
  """

  def load(self, index: int, positions: np.ndarray) -> BatchResult | None: ...

  def save(self, index: int, result: BatchResult) -> None: ...


class AtlasProgress(NamedTuple):
  """What a `progress` callback receives, over the WHOLE atlas (not one batch).

  Attributes:
    batch: 1-based index of the batch running (or just finished).
    batches: number of batches.
    step: steps done in this batch; steps: cfg.steps.
    done: fraction of the atlas's compute done, in [0, 1] (resumed batches count as done).
    image_steps_per_s: real (unpadded) image-steps per second, compile time excluded once known.
    elapsed_s: seconds since `position_atlas` started.
    eta_s: estimated seconds to finish the whole atlas (inf until a rate is known).
    batch_done: True on the call made after a batch is finished and saved.
  """

  batch: int
  batches: int
  step: int
  steps: int
  done: float
  image_steps_per_s: float
  elapsed_s: float
  eta_s: float
  batch_done: bool = False


# ----------------------------------------------------------------------------- planning


def bytes_per_element(cfg: VisConfig) -> int:
  """Estimated device memory (bytes) of one grid element (one image, one seed) during a step.

  The estimate: every blob from the input up to `cfg.tap` at `cfg.net_hw` (the activations the
  backward pass needs), times `_BYTES_PER_VALUE` = 4 bytes x 6 (value, gradient, temporaries;
  calibrated against XLA's memory analysis). For inception_4c/5x5 at 224 px: about 130 MB.
  """
  hws = googlenet.blob_hws(tuple(cfg.net_hw))
  needed = googlenet.ancestors((cfg.tap,))
  values = 3 * cfg.net_hw[0] * cfg.net_hw[1]
  for layer in googlenet.LAYERS:
    if layer.name in needed:
      h, w = hws[layer.name]
      values += h * w * layer.channels
  return int(values * _BYTES_PER_VALUE)


def _device_memory(device: jax.Device) -> int:
  """Bytes one device may use: its allocator's limit, or for CPU the host's physical memory
  shared by all CPU devices."""
  stats = None
  try:
    stats = device.memory_stats()
  except Exception:  # some backends do not implement it
    stats = None
  if stats and stats.get("bytes_limit"):
    return int(stats["bytes_limit"])
  try:
    total = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
  except (ValueError, OSError, AttributeError):
    total = 8 << 30
  return int(total) // max(1, len([d for d in jax.devices() if d.platform == device.platform]))


def default_batch_positions(cfg: VisConfig, n_seeds: int, n_positions: int,
                            devices: Sequence[jax.Device] | None = None) -> int:
  """Positions per compiled batch, from the device count and memory.

  elements per device = floor(`_MEMORY_SHARE` x device memory / `bytes_per_element(cfg)`) (at
  least 1; on CPU at most `_CPU_MAX_ELEMENTS_PER_DEVICE`), times the number of devices; divided
  by the seeds per position; at least 1 and at most `n_positions`. Device memory is the
  allocator's limit (GPU/TPU) or the host's memory split over the CPU devices.
  """
  devices = list(jax.devices() if devices is None else devices)
  per_device = max(1, int(_MEMORY_SHARE * _device_memory(devices[0]) // bytes_per_element(cfg)))
  if devices[0].platform == "cpu":
    per_device = min(per_device, _CPU_MAX_ELEMENTS_PER_DEVICE)
  return int(min(n_positions, max(1, per_device * len(devices) // n_seeds)))


def plan_batches(positions: Sequence[Position], batch_positions: int) -> list[np.ndarray]:
  """Cuts positions into batches of exactly `batch_positions` (the last padded with copies of
  its own first position). Returns a list of int [batch_positions, 2]; the real positions of
  batch k are positions[k * batch_positions:(k + 1) * batch_positions]."""
  positions = np.asarray(positions, np.int64).reshape(-1, 2)
  out = []
  for start in range(0, len(positions), batch_positions):
    chunk = positions[start:start + batch_positions]
    pad = np.repeat(chunk[:1], batch_positions - len(chunk), axis=0)
    out.append(np.concatenate([chunk, pad]))
  return out


def check_spatial_tap(tap: str) -> None:
  """Raises UserError unless `tap` is a known tap with a spatial grid."""
  try:
    layer = googlenet.check_tap(tap)
  except ValueError as e:
    raise UserError(str(e)) from None
  if layer.kind in ("fc", "softmax"):
    raise UserError(f"Tap {tap!r} has no spatial grid (it classifies), so there are no positions to map; "
                    "pick a spatial tap such as 'inception_4c/5x5' (anything from 'conv1/7x7_s2' to "
                    "'pool5/7x7_s1'; see rfspec.geometry.spatial_taps()).")


def check_atlas_args(tap: str, channel, seeds, cfg: VisConfig, positions=None):
  """Validates the atlas's inputs on the host; raises UserError with the fix.

  Returns:
    (rows int [R], cols int [C], seeds int32 [S]); positions=None gives every row and col of
    the tap's grid.
  """
  check_spatial_tap(tap)
  if cfg.tap != tap:
    raise UserError(f"cfg.tap is {cfg.tap!r} but the atlas was asked for tap {tap!r}; build the config "
                    f"with tap={tap!r}, e.g. VisConfig.from_recipe(recipe, tap={tap!r}, ...).")
  if cfg.canvas_pad:
    raise UserError(f"The atlas maps the positions of the image itself; cfg.canvas_pad must be 0 (got "
                    f"{cfg.canvas_pad}). Use rfspec.specificity's padding ablation for canvases.")
  h, w, n_channels = cfg.tap_shape
  if isinstance(channel, bool) or not isinstance(channel, (int, np.integer)) or not 0 <= channel < n_channels:
    raise UserError(f"channel must be an int in 0..{n_channels - 1}: {tap!r} has {n_channels} channels; "
                    f"got {channel!r}.")
  arr = np.asarray(seeds)
  if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer) \
      or arr.min() < np.iinfo(np.int32).min or arr.max() > np.iinfo(np.int32).max:
    raise UserError(f"seeds must be a non-empty list of ints that fit in int32, e.g. [0, 1]; got {seeds!r}.")
  if len(set(arr.tolist())) != arr.size:
    raise UserError(f"seeds must be distinct (a repeated seed repeats its image); got {arr.tolist()}.")
  if positions is None:
    return np.arange(h), np.arange(w), arr.astype(np.int32)
  try:
    given = masks_lib._positions(positions, tap, (h, w))
  except ValueError as e:
    raise UserError(str(e)) from None
  rows, cols = sorted({i for i, _ in given}), sorted({j for _, j in given})
  if len(set(given)) != len(given) or set(given) != {(i, j) for i in rows for j in cols}:
    raise UserError("positions must form a lattice: every (i, j) = (row, col) combination of a set of rows "
                    f"and a set of columns, each once (got {len(given)} positions over rows {rows} and cols "
                    f"{cols}). Use rfspec.masks.lattice(tap, image_hw, n) or None for every position.")
  return np.asarray(rows), np.asarray(cols), arr.astype(np.int32)


# ----------------------------------------------------------------------------- the node type


class ChannelChoice(NamedTuple):
  """The channel `active_channel` picked and why.

  Attributes:
    channel: the channel index.
    active_share: share of the (position, seed) pairs where its node is non-zero at the start (1.0
      when the rule's first clause held).
    min_start: its smallest start value over those pairs.
    candidates: how many channels were active at every pair.
  """

  channel: int
  active_share: float
  min_start: float
  candidates: int


def active_channel(params, cfg: VisConfig, seeds: Sequence[int], positions: Sequence[Position] | None = None
                   ) -> ChannelChoice:
  """The atlas's node type: `rfspec.selection`'s rule, with a fallback for large position sets.

  Rule (`rfspec.selection.rank_channels`): rank the channels of `cfg.tap` by their node's
  WEAKEST start activation over every seed's start image at every position in `positions` (None:
  the whole grid), strongest first, ties to the lower index; take the first. If no channel is
  active (> 0) at every (position, seed) pair -- likely over a whole 14 x 14 grid -- take the one
  active at the most pairs (ties: the larger mean start value, then the lower index), and say so
  in `active_share`. Why: under the zipser2015 objective (1/2 Σ mask · relu(z)^2) a node that is
  0 at the start gets no gradient and never moves, so its tile stays the start noise.

  Args:
    params: GoogLeNet params.
    cfg: the atlas's `VisConfig` (its tap, size and recipe make the start images).
    seeds: the atlas's seeds.
    positions: (i, j) = (row, col) positions shown; None for every position.

  Returns:
    `ChannelChoice`.
  """
  from rfspec import selection

  h, w, _ = cfg.tap_shape
  positions = [(i, j) for i in range(h) for j in range(w)] if positions is None else list(positions)
  act = np.asarray(selection.start_activations(params, cfg, positions, seeds), np.float64)  # [S, P, C]
  act = act.reshape(-1, act.shape[-1])  # [pairs, C]
  active = act > 0
  everywhere = np.flatnonzero(active.all(axis=0))
  if everywhere.size:
    c = selection.rank_channels(params, cfg, positions=positions, seeds=seeds, k=1)[0]
  else:
    count, mean = active.sum(axis=0), act.mean(axis=0)
    c = int(np.lexsort((np.arange(act.shape[1]), -mean, -count))[0])
  return ChannelChoice(int(c), float(active[:, c].mean()), float(act[:, c].min()), int(everywhere.size))


# ----------------------------------------------------------------------------- the atlas


@functools.partial(jax.jit, static_argnames=("cfg",))
def _tap_blob(params, images, cfg: VisConfig):
  return objectives.tap_activation(params, embed_canvas(images, cfg), cfg.tap, mean_bgr=cfg.caffe_mean)


def _blob(params, images: np.ndarray, channel: int, cfg: VisConfig) -> np.ndarray:
  """`cfg.tap`'s channel as Caffe stores it (post-ReLU), as the run's net sees the image (its
  canvas and `caffe_mean`): images [N, H, W, 3] -> float32 [N, h, w]."""
  return np.asarray(_tap_blob(params, np.asarray(images, np.float32), cfg)[..., channel], np.float32)


def _at(blob: np.ndarray, positions: np.ndarray) -> np.ndarray:
  """blob [B, S, h, w] (or [S, h, w], shared by all positions) -> [B, S] values at each position."""
  if blob.ndim == 3:
    return blob[:, positions[:, 0], positions[:, 1]].T.copy()
  return blob[np.arange(len(positions)), :, positions[:, 0], positions[:, 1]]


def position_atlas(params, tap: str, channel: int, seeds: Sequence[int], cfg: VisConfig, *,
                   positions: Sequence[Position] | None = None, batch_positions: int | None = None,
                   progress: Callable[[AtlasProgress], None] | None = None, store: BatchStore | None = None,
                   devices: Sequence[jax.Device] | None = None) -> Atlas:
  """Visualises one node type at every position of its grid (or a lattice of them) x seeds.

  Tile [r, c, s] is `rfspec.visualize(params, seeds[s], rfspec.node_mask(tap, channel,
  cfg.net_hw, (rows[r], cols[c])), cfg)` up to float rounding (see the module docstring). The grid runs as batches of `batch_positions`
  positions x all seeds, each one `visualize_grid` call of the same shape (one compile for the
  whole atlas), sharded over `devices`.

  Args:
    params: GoogLeNet params (see `rfspec.load_params`).
    tap: a spatial tap, e.g. "inception_4c/5x5"; must equal `cfg.tap`.
    channel: the node type, 0 <= channel < the tap's channels.
    seeds: S distinct int seeds.
    cfg: `VisConfig` (any recipe), e.g. `VisConfig.from_recipe("zipser2015", tap=tap, ...)`.
    positions: None for every (i, j) = (row, col) of the tap's grid; or a lattice of them (every
      combination of some rows and some columns, any order), e.g. `rfspec.masks.lattice`.
    batch_positions: positions per compiled batch; None: `default_batch_positions` (memory and
      device count).
    progress: called after every compiled chunk with an `AtlasProgress` over the whole atlas, and
      once more after each batch is saved (batch_done=True).
    store: a `BatchStore` to resume from and save finished batches to; None keeps nothing.
    devices: devices to shard each batch over; default `jax.devices()`.

  Returns:
    `Atlas`: images float32 [R, C, S, H, W, 3] (R, C = the grid's h, w for positions=None; else
    the lattice's distinct rows and cols, ascending), traces, start and final node activations,
    and the rows, cols and seeds they belong to.

  Raises:
    UserError: unknown or non-spatial tap, cfg for another tap, channel out of range, bad seeds,
      positions off the grid or not a lattice, batch_positions < 1.
    NonFiniteError: a tile went NaN/inf (the message names its batch element).
  """
  rows, cols, seeds = check_atlas_args(tap, channel, seeds, cfg, positions)
  channel = int(channel)
  coords = np.array([(i, j) for i in rows for j in cols], np.int64)
  n_pos, n_seeds = len(coords), len(seeds)
  if batch_positions is None:
    batch_positions = default_batch_positions(cfg, n_seeds, n_pos, devices)
  if isinstance(batch_positions, bool) or not isinstance(batch_positions, (int, np.integer)) or batch_positions < 1:
    raise UserError(f"batch_positions must be an int >= 1 (positions per compiled batch); got {batch_positions!r}.")
  batch_positions = int(min(batch_positions, n_pos))
  plan = plan_batches(coords, batch_positions)
  n_batches = len(plan)

  # Progress bookkeeping over the whole atlas, in units of "batch-steps" (each batch costs the same).
  total_units = n_batches * cfg.steps
  real_per_unit = n_pos * n_seeds / n_batches  # real image-steps per batch-step, on average
  t0 = time.perf_counter()
  clock = dict(units=0, rate_t=None, rate_units=0, computed=False, resumed_units=0)

  def report(batch: int, step: int, batch_done: bool = False):
    if progress is None:
      return
    now = time.perf_counter()
    units = clock["units"]
    rate = None
    if clock["rate_t"] is not None and units > clock["rate_units"] and now > clock["rate_t"]:
      rate = (units - clock["rate_units"]) / (now - clock["rate_t"])
    elif clock["computed"] and now > t0:  # only the first chunk so far: its time includes compiling
      rate = (units - clock["resumed_units"]) / (now - t0)
    eta = (total_units - units) / rate if rate else (0.0 if units >= total_units else math.inf)
    progress(AtlasProgress(batch, n_batches, step, cfg.steps, units / total_units,
                           (rate or 0.0) * real_per_unit, now - t0, eta, batch_done))

  # The start images do not depend on the position: one forward pass serves every batch.
  start_blob = _blob(params, np.stack([np.asarray(initial_image(int(s), cfg)) for s in seeds]), channel, cfg)
  parts = []
  resumed = 0
  for k, padded in enumerate(plan):
    n_real = min(batch_positions, n_pos - k * batch_positions)
    real = padded[:n_real]
    done = store.load(k, real) if store is not None else None
    if done is not None:
      resumed += 1
      clock["units"] += cfg.steps
      clock["resumed_units"] += cfg.steps
      # Resumed work costs no time: restart the rate clock so the ETA reflects computing only.
      if clock["rate_t"] is not None:
        clock["rate_t"], clock["rate_units"] = time.perf_counter(), clock["units"]
      parts.append(done)
      report(k + 1, cfg.steps, batch_done=True)
      continue
    base_units = clock["units"]

    def on_chunk(info: Progress, k=k, base_units=base_units):
      clock["units"], clock["computed"] = base_units + info.step, True
      if clock["rate_t"] is None:  # the first chunk computed: compile included, start the clock here
        clock["rate_t"], clock["rate_units"] = time.perf_counter(), clock["units"]
      report(k + 1, info.step)

    masks = np.stack([masks_lib.node_mask(tap, channel, cfg.net_hw, (int(i), int(j))) for i, j in padded])
    grid = visualize_grid(params, seeds, masks, cfg, return_trace=True, progress=on_chunk, devices=devices)
    images = grid.images[:n_real].astype(np.float32)
    # Padded like the grid, so this forward pass too has one shape for every batch.
    final_blob = _blob(params, grid.images.reshape(-1, *images.shape[2:]), channel, cfg)
    final_act = _at(final_blob.reshape(batch_positions, n_seeds, *final_blob.shape[1:])[:n_real], real)
    result = BatchResult(real.copy(), images, grid.traces[:n_real].astype(np.float32), _at(start_blob, real),
                         final_act)
    if store is not None:
      store.save(k, result)
    parts.append(result)
    clock["units"] = base_units + cfg.steps
    report(k + 1, cfg.steps, batch_done=True)

  def gather(field):
    flat = np.concatenate([getattr(p, field) for p in parts])
    return flat.reshape(len(rows), len(cols), *flat.shape[1:])

  return Atlas(gather("images"), gather("traces"), gather("start_activation"), gather("final_activation"),
               rows, cols, seeds, batch_positions, n_batches, resumed)


# ----------------------------------------------------------------------------- numbers per tile


def tile_boxes(cfg: VisConfig, rows: Sequence[int], cols: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
  """RF boxes and inside fractions of the atlas's tiles.

  Returns:
    (boxes int [R, C, 4] (top, left, bottom, right), half-open, in the optimised image's pixels
    (y, x) -- shifted by the canvas if cfg has one -- and inside float [R, C], the share of each
    RF inside the image the net sees).
  """
  from rfspec.geometry import receptive_field

  rf = receptive_field(cfg.tap, cfg.net_hw)
  pad = cfg.canvas_pad
  boxes = np.array([[[v - pad for v in rf.box(int(i), int(j))] for j in cols] for i in rows], np.int64)
  inside = np.array([[rf.inside_fraction(int(i), int(j)) for j in cols] for i in rows], np.float64)
  return boxes, inside


class CentreSpecificity(NamedTuple):
  """PSI of each atlas position against the centre (`psi_vs_centre`).

  Attributes:
    psi: float [R, C], PSI_p = (PSI[p, ref] + PSI[ref, p]) / 2; NaN where the pair's seed
      ceiling is below `min_ceiling` or nothing is left to compare; 0 at the reference itself.
    ceiling: float [R, C], the pair's mean seed ceiling (S_pp + S_qq) / 2, both orders averaged.
    reference: (r, c) of the reference tile: the centre, or the lattice node nearest it.
    space: the similarity space (`rfspec.metrics.FEATURE_TAP` or "pixel").
    min_ceiling: `rfspec.metrics.MIN_CEILING`.
  """

  psi: np.ndarray
  ceiling: np.ndarray
  reference: tuple[int, int]
  space: str
  min_ceiling: float


def psi_vs_centre(params, atlas: Atlas, cfg: VisConfig) -> CentreSpecificity:
  """Position specificity of each atlas tile against the centre tile, by `rfspec.metrics`.

  Each pair (p, centre) goes through `rfspec.metrics.specificity_matrix` (the same measure and
  regions as the specificity sweep): images of different seeds compared after aligning the RF
  centres, on the RF boxes grown by `cfg.jitter` (what a step's gradient can reach), in GoogLeNet's
  `metrics.FEATURE_TAP` features when both the RF and the image sides are at least
  `metrics.FEATURE_MIN_RF` px (the region compared must hold whole feature RFs), else in pixels. Needs S >= 2 seeds (else all NaN). With S seeds each ceiling is a mean over S(S-1)
  ordered pairs of different seeds: with 2 seeds a single pair, so treat single values as noisy.

  Returns:
    `CentreSpecificity`.
  """
  import jax.numpy as jnp

  from rfspec import _metrics_old as metrics
  from rfspec.geometry import box_masks, receptive_field

  rows, cols = [int(i) for i in atlas.rows], [int(j) for j in atlas.cols]
  rf = receptive_field(cfg.tap, cfg.image_hw)
  ci, cj = masks_lib.named_positions(cfg.tap, cfg.image_hw)["centre"]
  ref = (int(np.argmin(np.abs(np.asarray(rows) - ci))), int(np.argmin(np.abs(np.asarray(cols) - cj))))
  # The compared region is at most the RF and at most the image: feature space needs it to hold
  # whole feature RFs (the sweep's FEATURE_MIN_RF rule, applied to the region, not the RF alone).
  space = metrics.FEATURE_TAP if min(rf.size, *cfg.image_hw) >= metrics.FEATURE_MIN_RF else metrics.PIXEL
  psi = np.full((len(rows), len(cols)), np.nan)
  ceiling = np.full_like(psi, np.nan)
  if atlas.images.shape[2] >= 2:
    ref_pos = (rows[ref[0]], cols[ref[1]])
    for r, i in enumerate(rows):
      for c, j in enumerate(cols):
        pair = [(i, j), ref_pos]
        spec = metrics.specificity_matrix(
            jnp.asarray(np.stack([atlas.images[r, c], atlas.images[ref]])),
            jnp.asarray([rf.centre(*p) for p in pair], jnp.float32),
            jnp.asarray(box_masks(cfg.tap, cfg.image_hw, pair, grow=cfg.jitter)), params=params, space=space)
        ceil = 0.5 * (np.asarray(spec.s_pp, np.float64) + np.asarray(spec.s_qq, np.float64))
        p = np.where(ceil >= metrics.MIN_CEILING, np.asarray(spec.psi, np.float64), np.nan)
        psi[r, c] = 0.5 * (p[0, 1] + p[1, 0])
        ceiling[r, c] = 0.5 * (ceil[0, 1] + ceil[1, 0])
  return CentreSpecificity(psi, ceiling, ref, space, float(metrics.MIN_CEILING))

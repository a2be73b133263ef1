"""The position atlas as a run: one node type at every position of its grid, each against the centre.

Zipser's driver looped over all 14 x 14 positions of `inception_4c/5x5`; the atlas is that loop as
compiled batches. For one channel (THE channel rule, `rfspec.selection.choose_channels`, unless
the config names one) and every position of a lattice (or the whole grid), S starts per position
are visualized; each position gets its own first S seeds of the candidate list whose start image
drives its node (zipser2015 never moves a node that starts at 0). Then every tile is compared with
the centre tile by THE measure (`rfspec.metrics`): psi_auc on the common RF-frame window of the
pair, with a bootstrap interval (`rfspec.claims.condition_psi`), NaN with a reason where it is
undefined (too few starts, a window below `metrics.MIN_WINDOW_SHARE` of the RF).

A notebook calls exactly what `python -m experiments.position_atlas` calls:

    settings = runs.atlas.settings_from_config(config)     # validates everything, loads nothing
    with runs.Store(workdir, weights_sha256=digest, schema=runs.atlas.SCHEMA) as store:
      result = runs.atlas.run_atlas(params, settings, store)
    result.psi                                             # [R, C] psi_auc vs the centre tile

Batches. The positions are cut into batches of `batch_positions` positions x S starts; every batch
has the same shape (the last is padded with copies of its own first position, whose results are
dropped), so the whole atlas compiles once. Each batch is one `rfspec.engine.visualize_batch` call
and one unit of the `Store`: a killed run resumes without redoing finished batches, bit for bit.

Exactness: element b of a batch is `rfspec.visualize(params, seeds[b], masks[b], cfg)` computed as
the batch computes it; a batch of one rounds differently, and under zipser2015 (a step normalised
by the mean non-zero |g|) such float differences grow with the steps. The batch's own
`visualize_batch` call (its seeds and positions are in `AtlasResult.batch_seeds` / `batch_plan`)
remakes a tile bit for bit on the same device count.

Conventions: positions are (i, j) = (row, col) of the tap's grid, 0-based; pixels (y, x) = (row,
col); images RGB in [0, 1]; boxes and rects (top, left, bottom, right) px, half-open, boxes may
extend past the image. Numbers only: the mosaic and heat map live in `rfspec.plots`, the page in
`rfspec.report`, the files in `rfspec.files`.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import numbers
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rfspec import claims, geometry, memory, metrics, objectives, selection
from rfspec import masks as masks_lib
from rfspec.engine import VisConfig, embed_canvas, initial_image, visualize_batch
from rfspec.errors import UserError
from rfspec.files import plain_numbers as _num  # JSON numbers: NaN/inf -> None
from rfspec.progress import RunProgress, check_run_progress
from rfspec.throughput import cpu_prior
from rfspec.runs.store import Store

check_spatial_tap = geometry.check_spatial_tap  # the atlas's public name for it

__all__ = ["Atlas", "AtlasResult", "AtlasSettings", "CentrePsi", "MIN_TILE_PX", "SCHEMA", "bytes_per_element",
           "check_atlas_args", "check_spatial_tap", "default_batch_positions", "plan_batches", "planned_work",
           "position_atlas", "psi_vs_centre", "run_atlas", "settings_from_config", "summary", "tile_boxes"]

SCHEMA = 1  # bump when a stored batch's format changes
MEASURE_VERSION = 1  # bump when `psi_vs_centre` changes: the measure is redone from the stored batches
MIN_TILE_PX = 160  # a mosaic tile smaller than this hides the pattern's structure (issue 22)

Position = tuple[int, int]

# Share of the memory available that the atlas plans a batch for (the host copy of the results, the
# judge and the figures need the rest).
_MEMORY_SHARE = 0.5
# On CPU, vmapped batches beyond a few elements per device are no faster (the cores are already
# busy), and a smaller batch loses less work to a kill; accelerators get what memory allows.
_CPU_MAX_ELEMENTS_PER_DEVICE = 4


# ----------------------------------------------------------------------------- settings


@dataclasses.dataclass(frozen=True)
class AtlasSettings:
  """Everything that decides an atlas, validated (`settings_from_config`).

  Attributes:
    tap: a spatial tap, e.g. "inception_4c/5x5".
    vis: `VisConfig` fields plus "recipe" (JSON-able).
    channel: the node type; -1 lets THE channel rule pick it (ranked: the most robustly driven).
    seeds: candidate start seeds in order of preference; each position takes the first
      `seeds_per_position` of them whose start image drives its node.
    seeds_per_position: S starts per position (>= `metrics.MIN_SEEDS`, so psi_auc is defined).
    lattice: 0 for every position of the grid, or n for an n x n lattice (`rfspec.masks.lattice`).
    batch_positions: positions per compiled batch; 0 sizes it from device memory and count.
    mosaic_tile: px of the longer side of each tile in the mosaic and on the page (>= MIN_TILE_PX).
    n_boot, n_perm: bootstrap draws and permutations of each tile's psi_auc.
    psi_key: the integer behind the measure's `jax.random.key`.
    smoke_test: a quick run that checks the pipeline only (the page and summary say so).
    variant: the config variant's name.
  """

  tap: str
  vis: dict
  channel: int = -1
  seeds: tuple = tuple(range(16))
  seeds_per_position: int = 3
  lattice: int = 0
  batch_positions: int = 0
  mosaic_tile: int = MIN_TILE_PX
  n_boot: int = 1000
  n_perm: int = 1000
  psi_key: int = 0
  smoke_test: bool = False
  variant: str = ""

  def cfg(self) -> VisConfig:
    fields = {k: (tuple(v) if isinstance(v, list) else v) for k, v in self.vis.items() if k != "recipe"}
    return VisConfig.from_recipe(self.vis.get("recipe", "zipser2015"), tap=self.tap, **fields)

  def positions(self) -> list[Position]:
    """The atlas's positions (i, j), row-major: the lattice, or every node of the grid."""
    cfg = self.cfg()
    if self.lattice == 0:
      h, w, _ = cfg.tap_shape
      return [(i, j) for i in range(h) for j in range(w)]
    return masks_lib.lattice(self.tap, cfg.image_hw, self.lattice)

  def to_dict(self) -> dict:
    return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}

  def run_key(self) -> dict:
    """What decides the pixels of every batch (not the views, not the measure)."""
    return dict(tap=self.tap, vis=self.cfg().fields(), channel=self.channel, seeds=list(self.seeds),
                seeds_per_position=self.seeds_per_position, lattice=self.lattice)


_DEFAULTS = {f.name: f.default for f in dataclasses.fields(AtlasSettings)}


def _whole(v) -> bool:
  return isinstance(v, numbers.Integral) and not isinstance(v, bool)


def settings_from_config(config) -> AtlasSettings:
  """Validates an atlas config as a whole, before any weights load or compile.

  `config` is an `ml_collections.ConfigDict` or a dict with the `AtlasSettings` fields. Every bad
  field is named in ONE UserError paragraph, each with its fix.
  """
  get = config.get if hasattr(config, "get") else lambda k, d=None: getattr(config, k, d)
  val = lambda name: get(name, _DEFAULTS.get(name))  # noqa: E731
  bad: list[str] = []

  def whole(name: str, lo: int, hi: int, why: str = "") -> int:
    v = val(name)
    if not _whole(v) or not lo <= v <= hi:
      bad.append(f"config.{name} must be a whole number in [{lo}, {hi}]{why}; got {v!r}.")
      return int(_DEFAULTS[name])
    return int(v)

  tap = val("tap")
  cfg = None
  try:
    check_spatial_tap(tap)
  except UserError as e:
    bad.append(f"config.tap: {e}")
    tap = None
  vis = val("vis")
  vis = dict(vis.to_dict() if hasattr(vis, "to_dict") else vis or {})
  if tap is not None:
    try:
      cfg = AtlasSettings(tap=tap, vis=vis).cfg()
    except (TypeError, ValueError) as e:  # UserError is a ValueError
      bad.append(f"config.vis does not work for tap {tap!r}: {' '.join(str(e).split())}")
  if cfg is not None and cfg.canvas_pad:
    bad.append(f"config.vis.canvas_pad must be 0: the atlas maps positions of the image itself (got "
               f"{cfg.canvas_pad}); the padding ablation lives in the specificity sweep.")
    cfg = None
  n_channels = cfg.tap_shape[-1] if cfg is not None else 1 << 16
  channel = whole("channel", -1, n_channels - 1, " (-1: THE channel rule picks it)")
  s = whole("seeds_per_position", metrics.MIN_SEEDS, 4096,
            f" (psi_auc needs at least metrics.MIN_SEEDS = {metrics.MIN_SEEDS} starts per position)")
  seeds = val("seeds")
  if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__len__") or not all(_whole(v) for v in seeds):
    bad.append(f"config.seeds must be a list of whole numbers (candidate start seeds), e.g. (0, 1, 2, 3); "
               f"got {seeds!r}.")
    seeds = _DEFAULTS["seeds"]
  else:
    seeds = tuple(int(v) for v in seeds)
    info = np.iinfo(np.int32)
    if any(not info.min <= v <= info.max for v in seeds):
      bad.append(f"config.seeds must fit in int32; got {list(seeds)}.")
    elif len(set(seeds)) != len(seeds):
      bad.append(f"config.seeds must be distinct (a repeated seed repeats its image); got {list(seeds)}.")
    elif len(seeds) < s:
      bad.append(f"config.seeds holds {len(seeds)} seed(s) {list(seeds)}, fewer than config.seeds_per_position = "
                 f"{s}: list at least {s} (more lets the rule skip starts that leave a node off), e.g. "
                 f"{tuple(range(max(4 * s, 8)))}.")
  lattice = whole("lattice", 0, 4096, " (0: every position)")
  if cfg is not None and lattice:
    try:
      masks_lib.lattice(tap, cfg.image_hw, lattice)
    except UserError as e:
      bad.append(f"config.lattice: {e}")
  batch_positions = whole("batch_positions", 0, 1 << 16, " (0: sized from device memory)")
  mosaic_tile = whole("mosaic_tile", MIN_TILE_PX, 2048, " (px of a mosaic tile's longer side)")
  n_boot = whole("n_boot", 20, 100_000)
  n_perm = whole("n_perm", 20, 100_000)
  psi_key = whole("psi_key", 0, 2 ** 31 - 1)
  if cfg is not None and not bad:  # one batch (batch_positions x S images; at least one position) must fit
    try:
      memory.check_fits(cfg, max(batch_positions, 1) * s)
    except UserError as e:
      bad.append(f"config.vis.image_hw / config.batch_positions: {' '.join(str(e).split())}")
  if bad:
    raise UserError(" ".join([f"The atlas config has {len(bad)} bad field(s):"] + bad))
  return AtlasSettings(tap=tap, vis=vis, channel=channel, seeds=seeds, seeds_per_position=s, lattice=lattice,
                       batch_positions=batch_positions, mosaic_tile=mosaic_tile, n_boot=n_boot, n_perm=n_perm,
                       psi_key=psi_key, smoke_test=bool(val("smoke_test")), variant=str(val("variant") or ""))


# ----------------------------------------------------------------------------- planning


def bytes_per_element(cfg: VisConfig) -> int:
  """Estimated memory (bytes) of one batch element (one image) during a step: `rfspec.memory`'s
  estimate, the one the engine checks every grid call against."""
  return memory.estimate_step_bytes(cfg, 2) - memory.estimate_step_bytes(cfg, 1)


def default_batch_positions(cfg: VisConfig, n_seeds: int, n_positions: int,
                            devices: Sequence[jax.Device] | None = None) -> int:
  """Positions per compiled batch, from the device count and the memory available.

  elements per device = floor(`_MEMORY_SHARE` x `rfspec.memory.available_bytes` / `bytes_per_element`)
  (at least 1; on CPU, whose devices share the host, the host's memory split over them and at most
  `_CPU_MAX_ELEMENTS_PER_DEVICE`), times the number of devices; divided by the seeds per position;
  at least 1 and at most `n_positions`. Unknown memory plans one element per device.
  """
  devices = list(jax.devices() if devices is None else devices)
  available, _ = memory.available_bytes(devices[0])
  if available is None:
    per_device = 1
  else:
    if devices[0].platform == "cpu":
      available //= len(devices)
    per_device = max(1, int(_MEMORY_SHARE * available // bytes_per_element(cfg)))
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


def check_atlas_args(tap: str, channel, seeds, cfg: VisConfig, positions=None):
  """Validates `position_atlas`'s inputs on the host; raises UserError with the fix.

  Returns:
    (rows int [R], cols int [C], seeds int32 [S]); positions=None gives every row and col.
  """
  check_spatial_tap(tap)
  if cfg.tap != tap:
    raise UserError(f"cfg.tap is {cfg.tap!r} but the atlas was asked for tap {tap!r}; build the config "
                    f"with tap={tap!r}, e.g. VisConfig.from_recipe(recipe, tap={tap!r}, ...).")
  if cfg.canvas_pad:
    raise UserError(f"The atlas maps the positions of the image itself; cfg.canvas_pad must be 0 (got "
                    f"{cfg.canvas_pad}). Use the specificity sweep's padding ablation for canvases.")
  h, w, n_channels = cfg.tap_shape
  if not _whole(channel) or not 0 <= channel < n_channels:
    raise UserError(f"channel must be an int in 0..{n_channels - 1}: {tap!r} has {n_channels} channels; "
                    f"got {channel!r}.")
  arr = np.asarray(seeds)
  if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer) \
      or arr.min() < np.iinfo(np.int32).min or arr.max() > np.iinfo(np.int32).max:
    raise UserError(f"seeds must be a non-empty list of ints that fit in int32, e.g. [0, 1, 2]; got {seeds!r}.")
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


def _check_progress(progress, default=None):
  """progress -> a `RunProgress`, or `default` for None or False (False: silence, as a user would write
  it); anything else is a UserError naming what to pass."""
  if progress is None or progress is False:
    return default
  if not isinstance(progress, RunProgress):
    raise UserError(f"progress must be a rfspec.progress.RunProgress (e.g. RunProgress(quiet=True)), or None or False "
                    f"for silence; got {progress!r}.")
  return progress


def _check_batch_positions(batch_positions) -> None:
  if not _whole(batch_positions) or batch_positions < 1:
    raise UserError(f"batch_positions must be an int >= 1 (positions per compiled batch); got {batch_positions!r}.")


def tile_boxes(cfg: VisConfig, rows: Sequence[int], cols: Sequence[int]) -> tuple[np.ndarray, np.ndarray]:
  """RF boxes int [R, C, 4] (top, left, bottom, right), half-open, image px (y, x), and the share of
  each RF inside the image, float [R, C]."""
  rf = geometry.receptive_field(cfg.tap, cfg.image_hw)
  boxes = np.array([[rf.box(int(i), int(j)) for j in cols] for i in rows], np.int64)
  inside = np.array([[rf.inside_fraction(int(i), int(j)) for j in cols] for i in rows], np.float64)
  return boxes, inside


# ----------------------------------------------------------------------------- the batches


@functools.partial(jax.jit, static_argnames=("cfg",))
def _tap_blob(params, images, cfg: VisConfig):
  return objectives.tap_activation(params, embed_canvas(images, cfg), cfg.tap, mean_bgr=cfg.caffe_mean,
                                   pad_mode=cfg.pad_mode)


def _node_values(params, images: np.ndarray, nodes: np.ndarray, channel: int, cfg: VisConfig) -> np.ndarray:
  """The tap's blob (post-ReLU, as the run's net sees it) at node (i, j) of `channel` for each image:
  images [N, H, W, 3], nodes int [N, 2] -> float32 [N]. One compiled call per batch shape."""
  blob = np.asarray(_tap_blob(params, jnp.asarray(images, jnp.float32), cfg))
  return blob[np.arange(len(nodes)), nodes[:, 0], nodes[:, 1], channel].astype(np.float32)


class _Visuals(NamedTuple):
  images: np.ndarray  # [P, S, H, W, 3]
  traces: np.ndarray  # [P, S, steps]
  final_activation: np.ndarray  # [P, S]
  plan: np.ndarray  # int [batches, batch_positions, 2]
  batch_seeds: np.ndarray  # int [batches, batch_positions, S]
  resumed: int


def _batch_name(k: int) -> str:
  return f"atlas/batch_{k:03d}"


def _visualize_positions(params, cfg: VisConfig, channel: int, coords: np.ndarray, seeds: np.ndarray,
                         batch_positions: int, store: Store, progress: RunProgress | None, key: dict,
                         devices=None) -> _Visuals:
  """Every (position, start) in batches of `batch_positions` positions x S starts, each one
  `visualize_batch` call of the same shape and one Store unit.

  coords int [P, 2] (i, j); seeds int [P, S] (position p's own starts)."""
  n_pos, n_s = seeds.shape
  plan = plan_batches(coords, batch_positions)
  images, traces, finals, batch_seeds, resumed = [], [], [], [], 0
  for k, padded in enumerate(plan):
    lo = k * batch_positions
    n_real = min(batch_positions, n_pos - lo)
    idx = np.concatenate([np.arange(lo, lo + n_real), np.full(batch_positions - n_real, lo)])
    flat_seeds = seeds[idx].reshape(-1)
    name = _batch_name(k)
    unit_key = dict(key, batch=k, batch_positions=batch_positions, positions=padded.tolist(),
                    seeds=flat_seeds.tolist())
    hit = store.load(name, unit_key)
    if hit is None:
      node_masks = np.stack([masks_lib.node_mask(cfg.tap, channel, cfg.net_hw, (int(i), int(j)))
                             for i, j in padded for _ in range(n_s)])
      res = visualize_batch(params, flat_seeds, node_masks, cfg,
                            progress=None if progress is None else progress.callback(name, cfg.tap), devices=devices)
      # The padded batch through the net in one shape, so this too compiles once.
      final = _node_values(params, res.images, np.repeat(padded, n_s, axis=0), channel, cfg)
      arrays = dict(images=res.images.reshape(batch_positions, n_s, *res.images.shape[1:])[:n_real],
                    traces=res.traces.reshape(batch_positions, n_s, -1)[:n_real],
                    final_activation=final.reshape(batch_positions, n_s)[:n_real])
      store.save(name, unit_key, arrays, dict(positions=padded[:n_real].tolist()))
    else:
      arrays = hit[0]
      resumed += 1
      if progress is not None:
        progress.skip(name, tap=cfg.tap, work=batch_positions * n_s * cfg.steps)
    images.append(arrays["images"])
    traces.append(arrays["traces"])
    finals.append(arrays["final_activation"])
    batch_seeds.append(seeds[idx])
  return _Visuals(np.concatenate(images).astype(np.float32), np.concatenate(traces).astype(np.float32),
                  np.concatenate(finals).astype(np.float32), np.stack(plan), np.stack(batch_seeds), resumed)


# ----------------------------------------------------------------------------- the public lattice function


class Atlas(NamedTuple):
  """The result of `position_atlas`: the tiles of one node type, every seed at every position.

  Attributes:
    images: float32 [R, C, S, H, W, 3] RGB in [0, 1]; [r, c, s] is node (rows[r], cols[c]) from seeds[s].
    traces: float32 [R, C, S, steps], the objective at each step (see `rfspec.engine.VisResult`).
    start_activation: float32 [R, C, S], the node's blob value on the seed's start image; 0 means
      the node was off at the start (zipser2015 then never moves it).
    final_activation: float32 [R, C, S], the node's blob value on the final image (no jitter).
    rows: int [R], the i (row) of each atlas row on the tap's grid; cols: int [C], the j (col).
    seeds: int [S].
    batch_positions: positions per compiled batch; batches: their number; resumed: how many came
      from the store.
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


def position_atlas(params, tap: str, channel: int, seeds: Sequence[int], cfg: VisConfig, *,
                   positions: Sequence[Position] | None = None, batch_positions: int | None = None,
                   progress: RunProgress | None = None, store: Store | None = None,
                   devices: Sequence[jax.Device] | None = None) -> Atlas:
  """Visualises one node type at every position of its grid (or a lattice of them) x the same seeds.

  Tile [r, c, s] is `rfspec.visualize(params, seeds[s], rfspec.node_mask(tap, channel,
  cfg.image_hw, (rows[r], cols[c])), cfg)` up to float rounding (see the module docstring). The
  positions run as batches of `batch_positions` positions x all seeds, each one compiled call of
  the same shape (one compile for the whole atlas), sharded over `devices`. `run_atlas` is the
  full run (channel rule, per-position starts, psi_auc vs the centre).

  Args:
    params: GoogLeNet params (see `rfspec.load_params`).
    tap: a spatial tap, e.g. "inception_4c/5x5"; must equal `cfg.tap`.
    channel: the node type, 0 <= channel < the tap's channels.
    seeds: S distinct int seeds, the same at every position.
    cfg: `VisConfig` (any recipe, no canvas).
    positions: None for every (i, j) = (row, col) of the tap's grid; or a lattice of them (every
      combination of some rows and some columns, any order), e.g. `rfspec.masks.lattice`.
    batch_positions: positions per compiled batch; None: `default_batch_positions`.
    progress: a `RunProgress` that reports every compiled chunk over the whole atlas; None or False: silence.
    store: a `rfspec.runs.Store` to resume finished batches from and save them to; None keeps nothing.
    devices: devices to shard each batch over; default `jax.devices()`.

  Returns:
    `Atlas` (images [R, C, S, H, W, 3]; R, C = the grid's h, w for positions=None, else the
    lattice's distinct rows and cols, ascending).

  Raises:
    UserError: unknown or non-spatial tap, cfg for another tap, channel out of range, bad seeds,
      positions off the grid or not a lattice, batch_positions < 1.
    NonFiniteError: a tile went NaN/inf (the message names its batch element).
  """
  progress = _check_progress(progress)
  rows, cols, seeds = check_atlas_args(tap, channel, seeds, cfg, positions)
  coords = np.array([(i, j) for i in rows for j in cols], np.int64)
  if batch_positions is None:
    batch_positions = default_batch_positions(cfg, len(seeds), len(coords), devices)
  _check_batch_positions(batch_positions)
  batch_positions = int(min(batch_positions, len(coords)))
  per_position = np.broadcast_to(seeds.astype(np.int64), (len(coords), len(seeds)))
  key = dict(tap=tap, channel=int(channel), vis=cfg.fields())
  vis = _visualize_positions(params, cfg, int(channel), coords, per_position, batch_positions,
                             store if store is not None else Store(None), progress, key, devices)
  # The start images do not depend on the position: one forward pass serves every tile.
  blob = np.asarray(_tap_blob(params, jnp.stack([initial_image(int(s), cfg) for s in seeds]), cfg))[..., int(channel)]
  start = blob[:, coords[:, 0], coords[:, 1]].T  # [P, S]
  shape = (len(rows), len(cols))
  return Atlas(vis.images.reshape(*shape, *vis.images.shape[1:]), vis.traces.reshape(*shape, *vis.traces.shape[1:]),
               start.reshape(*shape, -1).astype(np.float32), vis.final_activation.reshape(*shape, -1), rows, cols,
               seeds, batch_positions, len(vis.plan), vis.resumed)


# ----------------------------------------------------------------------------- the measure


class CentrePsi(NamedTuple):
  """psi_auc of each position against the reference (centre) position, on their common window.

  Attributes:
    psi: float [P] psi_auc = 2 P(W > B) - 1 (0: the tile's patterns are as alike to the centre's
      as to each other; 1: every pair of its own starts is more alike than any pair across);
      NaN where undefined (see `reason`).
    ci: float [P, 2] the bootstrap interval (`metrics.CI_LEVEL`; starts resampled).
    degenerate: bool [P] every bootstrap draw gave the same value (widened, see `metrics.interval`).
    p_value: float [P] permutation p of psi_auc > 0 (position labels swapped).
    n: int [P] independent units behind the interval.
    share: float [P] the common window's area / the RF's area.
    window: int [P, 4] (u0, v0, u1, v1) the common window in the RF frame (row, col offsets).
    rects: int [P, 2, 4] image px of that window: [p, 0] placed at position p, [p, 1] at the reference.
    reason: tuple of P str: "" where psi is defined, else why not.
    reference: the reference's index into the positions.
  """

  psi: np.ndarray
  ci: np.ndarray
  degenerate: np.ndarray
  p_value: np.ndarray
  n: np.ndarray
  share: np.ndarray
  window: np.ndarray
  rects: np.ndarray
  reason: tuple
  reference: int


def psi_vs_centre(params, images, seeds, boxes, image_hw: tuple[int, int], reference: int, *, key: jax.Array,
                  n_boot: int = 1000, n_perm: int = 1000) -> CentrePsi:
  """THE measure (`rfspec.metrics`) for every position against one reference position.

  Each pair (p, reference) is compared on its common RF-frame window only (`metrics.frame_windows`):
  every image of both positions is described by the judge layer on that window
  (`metrics.describe`), and psi_auc between the two groups, its bootstrap interval and permutation
  p come from `rfspec.claims.condition_psi` (one channel). Pairs of images from the same start
  seed are left out (shared start noise is not the node's preference).

  Args:
    params: GoogLeNet params (the judge's).
    images: [P, S, H, W, 3] one node type at P positions, S starts each.
    seeds: int [P, S] each image's start seed.
    boxes: int [P, 4] FULL RF boxes (top, left, bottom, right); they may extend past the image.
    image_hw: (H, W).
    reference: index of the reference position (the centre).
    key: the bootstrap / permutation key; position p uses `fold_in(key, p)`.
    n_boot, n_perm: bootstrap draws and permutations.

  Returns:
    `CentrePsi`; the reference itself is NaN ("the reference itself").
  """
  images = np.asarray(images, np.float32)
  seeds = np.asarray(seeds, np.int64)
  n_p, n_s = images.shape[:2]
  windows = metrics.frame_windows(boxes, image_hw)
  rects = metrics.window_rects(boxes, windows)  # [P, P, 4]: window[p, q] placed at p
  pair_rects = np.stack([rects[:, reference], rects[reference, :]], axis=1)  # [P, 2, 4]
  psi, ci = np.full(n_p, np.nan), np.full((n_p, 2), np.nan)
  degenerate, p_value, n = np.zeros(n_p, bool), np.full(n_p, np.nan), np.zeros(n_p, np.int64)
  reason = []
  for p in range(n_p):
    if p == reference:
      reason.append("the reference itself")
      continue
    if n_s < metrics.MIN_SEEDS:
      reason.append(f"{n_s} start(s) per position, fewer than the {metrics.MIN_SEEDS} psi_auc needs")
      continue
    if not windows.defined[p, reference]:
      reason.append(windows.reason[p][reference])
      continue
    # Both groups in one call of one shape ([2, S]), so the judge compiles once for the atlas.
    x = jnp.asarray(np.stack([images[p], images[reference]]))
    r = jnp.asarray(np.broadcast_to(pair_rects[p][:, None], (2, n_s, 4)))
    desc = np.asarray(metrics.describe(params, x, r))
    res = claims.condition_psi(desc[0][None], desc[1][None], seeds[p][None], seeds[reference][None],
                               jax.random.fold_in(key, p), n_boot=n_boot, n_perm=n_perm)
    psi[p], ci[p] = res["estimate"], res["ci"]
    degenerate[p], p_value[p], n[p] = res["degenerate"], res["p_value"], res["n"]
    reason.append("" if math.isfinite(res["estimate"]) else "no pair of distinct starts to compare")
  return CentrePsi(psi, ci, degenerate, p_value, n, windows.share[:, reference].copy(),
                   windows.window[:, reference].copy(), pair_rects, tuple(reason), int(reference))


def reference_index(tap: str, image_hw: tuple[int, int], rows: Sequence[int], cols: Sequence[int]) -> tuple[int, int]:
  """(r, c) of the tile nearest the grid's centre node (the centre itself when the lattice holds it)."""
  ci, cj = masks_lib.named_positions(tap, image_hw)["centre"]
  return int(np.argmin(np.abs(np.asarray(rows) - ci))), int(np.argmin(np.abs(np.asarray(cols) - cj)))


# ----------------------------------------------------------------------------- the run


class AtlasResult(NamedTuple):
  """An atlas run's numbers (`run_atlas`). R, C: lattice rows and cols; S: starts per position.

  Attributes:
    images: float32 [R, C, S, H, W, 3] RGB in [0, 1]; [r, c, s] is node (rows[r], cols[c]) from
      start seeds[r, c, s].
    seeds: int [R, C, S] each tile's start seeds (each position its own, by THE channel rule).
    traces: float32 [R, C, S, steps] the objective at each step; traces[..., -1] is the final one.
    start_activation, final_activation: float32 [R, C, S] the node's blob value on the start image
      and on the final image (no jitter).
    rows: int [R] the i (row) of each atlas row on the tap's grid; cols: int [C] the j (col).
    tap, channel: the node type. channel_rule: how it and the starts were chosen, in words.
    eligible_channels: how many channels passed the rule.
    boxes: int [R, C, 4] full RF boxes (top, left, bottom, right), image px, may extend past it.
    inside: float [R, C] share of each RF inside the image.
    reference: (r, c) of the centre tile (the lattice node nearest the grid's centre).
    psi: float [R, C] psi_auc of each tile against the centre on their common RF-frame window;
      NaN where undefined (the centre itself, too few starts, a window below
      `metrics.MIN_WINDOW_SHARE` of the RF): `psi_reason` says which.
    psi_ci: float [R, C, 2] its bootstrap interval; psi_degenerate: bool [R, C] a collapsed one;
      psi_p_value: float [R, C] permutation p of psi_auc > 0.
    psi_reason: R tuples of C str ("" where defined).
    window_share: float [R, C] the common window's area / the RF's.
    window_rects: int [R, C, 2, 4] image px (top, left, bottom, right) of the common window:
      [r, c, 0] placed at the tile, [r, c, 1] placed at the centre tile.
    batch_positions, batches, resumed: positions per compiled batch, their number, how many came
      from the store.
    batch_plan: int [batches, batch_positions, 2] the positions of each batch as it ran (the last
      padded with its own first position); batch_seeds: int [batches, batch_positions, S].
    settings: `AtlasSettings.to_dict()`.
  """

  images: np.ndarray
  seeds: np.ndarray
  traces: np.ndarray
  start_activation: np.ndarray
  final_activation: np.ndarray
  rows: np.ndarray
  cols: np.ndarray
  tap: str
  channel: int
  channel_rule: str
  eligible_channels: int
  boxes: np.ndarray
  inside: np.ndarray
  reference: tuple
  psi: np.ndarray
  psi_ci: np.ndarray
  psi_degenerate: np.ndarray
  psi_p_value: np.ndarray
  psi_reason: tuple
  window_share: np.ndarray
  window_rects: np.ndarray
  batch_positions: int
  batches: int
  resumed: int
  batch_plan: np.ndarray
  batch_seeds: np.ndarray
  settings: dict


def _batch_positions(settings: AtlasSettings, n_positions: int, devices=None) -> int:
  bp = settings.batch_positions or default_batch_positions(settings.cfg(), settings.seeds_per_position, n_positions,
                                                           devices)
  return int(min(bp, n_positions))


def planned_work(settings: AtlasSettings, devices=None) -> list[tuple[str, str, int]]:
  """(grid name, tap, image-steps) of every compiled batch, for the whole run's ETA."""
  n_pos = len(settings.positions())
  bp = _batch_positions(settings, n_pos, devices)
  work = bp * settings.seeds_per_position * settings.cfg().steps
  return [(_batch_name(k), settings.tap, work) for k in range(-(-n_pos // bp))]


def _choose(params, settings: AtlasSettings, cfg: VisConfig, coords: list[Position]):
  """THE channel rule over the atlas's positions: (channel, seeds [P, S], start [P, S], rule, eligible)."""
  s = settings.seeds_per_position
  if settings.channel < 0:
    choice = selection.choose_channels(params, cfg, coords, n_channels=1, n_seeds=s, seed_pool=settings.seeds)
    k, rule = 0, f"THE channel rule (rfspec.selection): {choice.rule}"
  else:
    # Every eligible channel, so the given one's starts are exactly what the rule gives it.
    choice = selection.choose_channels(params, cfg, coords, n_channels=cfg.tap_shape[-1], n_seeds=s,
                                       seed_pool=settings.seeds)
    hit = np.flatnonzero(choice.channels == settings.channel)
    if not hit.size:
      raise UserError(
          f"config.channel = {settings.channel}: its node is not on (> 0) on the start image of {s} of the seeds "
          f"{list(settings.seeds)} at every one of the {len(coords)} positions, and with objective {cfg.objective!r} "
          f"a node that starts at 0 never moves. Use channel=-1 (the rule picks one of the {len(choice.eligible)} "
          "that qualify), list more seeds, or use a smaller lattice.")
    k = int(hit[0])
    rule = f"channel given in the config; its starts by THE channel rule (rfspec.selection): {choice.rule}"
  return (int(choice.channels[k]), np.asarray(choice.seeds[k], np.int64), np.asarray(choice.start_activation[k]),
          rule, int(len(choice.eligible)))


def run_atlas(params, settings: AtlasSettings, store: Store, *, progress: RunProgress | None = None,
              key: jax.Array | None = None, devices: Sequence[jax.Device] | None = None) -> AtlasResult:
  """Visualizes and measures the atlas (see the module docstring).

  Args:
    params: GoogLeNet params.
    settings: `settings_from_config(...)`.
    store: where batches and the measure are kept and resumed from (`Store(None)` keeps nothing).
    progress: the run's `RunProgress`; None: one that prints on stderr, priced by `cpu_prior` before the
      first step; False: silence.
    key: the measure's key; default `jax.random.key(settings.psi_key)`.
    devices: devices to shard each batch over; default `jax.devices()`.

  Raises:
    UserError: no channel (or not the given one) has enough starts at every position.
  """
  cfg = settings.cfg()
  coords = settings.positions()
  rows, cols = sorted({i for i, _ in coords}), sorted({j for _, j in coords})
  n_r, n_c, n_s = len(rows), len(cols), settings.seeds_per_position
  bp = _batch_positions(settings, len(coords), devices)
  plan = planned_work(settings, devices)
  progress = check_run_progress(progress, lambda: RunProgress(plan, label="position_atlas",
                                                              prior_s=cpu_prior(cfg.image_hw, plan)))
  channel, seeds, start, rule, eligible = _choose(params, settings, cfg, coords)
  progress.note(f"{settings.tap} channel {channel} ({eligible} channels qualify), {n_r} x {n_c} positions x {n_s} "
                f"starts, {-(-len(coords) // bp)} batches of {bp} positions")
  vis = _visualize_positions(params, cfg, channel, np.asarray(coords, np.int64), seeds, bp, store, progress,
                             dict(settings.run_key(), channel=channel), devices)
  boxes, inside = tile_boxes(cfg, rows, cols)
  ref = reference_index(settings.tap, cfg.image_hw, rows, cols)
  measure_key = dict(settings.run_key(), channel=channel, measure_version=MEASURE_VERSION, n_boot=settings.n_boot,
                     n_perm=settings.n_perm, psi_key=settings.psi_key, batch_positions=bp)
  hit = store.load("atlas/psi", measure_key)
  if hit is None:
    progress.note("psi_auc of every tile against the centre, on their common RF-frame windows")
    m = psi_vs_centre(params, vis.images, seeds, boxes.reshape(-1, 4), cfg.image_hw, ref[0] * n_c + ref[1],
                      key=jax.random.key(settings.psi_key) if key is None else key, n_boot=settings.n_boot,
                      n_perm=settings.n_perm)
    store.save("atlas/psi", measure_key, {f: np.asarray(getattr(m, f)) for f in CentrePsi._fields
                                          if f not in ("reason", "reference")},
               dict(reason=list(m.reason), reference=m.reference))
  else:
    arrays, meta = hit
    m = CentrePsi(**arrays, reason=tuple(meta["reason"]), reference=int(meta["reference"]))
  grid = lambda a: np.asarray(a).reshape(n_r, n_c, *np.asarray(a).shape[1:])  # noqa: E731
  reason = tuple(tuple(m.reason[r * n_c:(r + 1) * n_c]) for r in range(n_r))
  return AtlasResult(
      images=grid(vis.images), seeds=grid(seeds), traces=grid(vis.traces), start_activation=grid(start),
      final_activation=grid(vis.final_activation), rows=np.asarray(rows), cols=np.asarray(cols), tap=settings.tap,
      channel=channel, channel_rule=rule, eligible_channels=eligible, boxes=boxes, inside=inside, reference=ref,
      psi=grid(m.psi), psi_ci=grid(m.ci), psi_degenerate=grid(m.degenerate), psi_p_value=grid(m.p_value),
      psi_reason=reason, window_share=grid(m.share), window_rects=grid(m.rects), batch_positions=bp,
      batches=len(vis.plan), resumed=vis.resumed, batch_plan=vis.plan, batch_seeds=vis.batch_seeds,
      settings=settings.to_dict())


# ----------------------------------------------------------------------------- plain numbers




def summary(result: AtlasResult, *, weights: str = "", weights_sha256: str = "") -> dict:
  """The atlas as plain JSON-able numbers (no images): settings, channel and rule, per-tile numbers
  (position, seeds, box, inside share, activations, psi_auc vs the centre with interval or the
  reason it is undefined, the common window's rects), and how to remake any tile bit for bit."""
  st = result.settings
  cfg = AtlasSettings(**st).cfg()
  rf = geometry.receptive_field(result.tap, cfg.image_hw)
  n_c = len(result.cols)
  tiles = []
  for r, i in enumerate(result.rows):
    for c, j in enumerate(result.cols):
      k, n = divmod(r * n_c + c, result.batch_positions)
      tiles.append(dict(
          r=r, c=c, position=[int(i), int(j)], seeds=result.seeds[r, c].tolist(), batch=k, index_in_batch=n,
          box=result.boxes[r, c].tolist(), inside_fraction=float(result.inside[r, c]),
          start_activation=_num(result.start_activation[r, c]), final_activation=_num(result.final_activation[r, c]),
          final_objective=_num(result.traces[r, c, :, -1]), psi_auc=_num(result.psi[r, c]),
          psi_ci=_num(result.psi_ci[r, c]), psi_degenerate=bool(result.psi_degenerate[r, c]),
          psi_p_value=_num(result.psi_p_value[r, c]), psi_reason=result.psi_reason[r][c],
          window_share=float(result.window_share[r, c]), window_rect=result.window_rects[r, c, 0].tolist(),
          centre_window_rect=result.window_rects[r, c, 1].tolist()))
  ref = result.reference
  return dict(
      variant=st["variant"], smoke_test=st["smoke_test"], settings=dict(st, vis_config=cfg.fields()),
      weights=weights, weights_sha256=weights_sha256, tap=result.tap, channel=result.channel,
      channel_rule=result.channel_rule, eligible_channels=result.eligible_channels,
      seeds_per_position=st["seeds_per_position"], rows=result.rows.tolist(), cols=result.cols.tolist(),
      grid=list(cfg.tap_shape[:2]), image_hw=list(cfg.image_hw), recipe=cfg.recipe, steps=cfg.steps,
      rf=dict(size=rf.size, stride=rf.stride, offset=rf.offset, grid=list(rf.grid)),
      reference=dict(r=ref[0], c=ref[1], position=[int(result.rows[ref[0]]), int(result.cols[ref[1]])]),
      measure=dict(
          what="psi_auc = 2 P(W > B) - 1 of each tile's starts against the centre tile's, on the pair's common "
               "RF-frame window only (rfspec.metrics: judge descriptors of inception_3a/output, pairs of the same "
               "start left out; 0: indistinguishable, 1: every within pair beats every between pair)",
          judge=metrics.JUDGE_TAP, min_window_share=metrics.MIN_WINDOW_SHARE, min_seeds=metrics.MIN_SEEDS,
          ci_level=metrics.CI_LEVEL, n_boot=st["n_boot"], n_perm=st["n_perm"], psi_key=st["psi_key"]),
      batches=result.batches, batch_positions=result.batch_positions, resumed_batches=result.resumed,
      batch_plan=result.batch_plan.tolist(), batch_seeds=result.batch_seeds.tolist(),
      regenerate=("cfg = rfspec.VisConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in "
                  "settings['vis_config'].items()}); k = tile['batch']; masks = np.stack([rfspec.node_mask(tap, "
                  "channel, cfg.image_hw, tuple(p)) for p in batch_plan[k] for _ in range(seeds_per_position)]); "
                  "out = rfspec.engine.visualize_batch(params, np.ravel(batch_seeds[k]), masks, cfg).images; "
                  "out[tile['index_in_batch'] * seeds_per_position + s] is the tile's image s, bit for bit on the "
                  "same device count (a lone rfspec.visualize rounds differently, and zipser2015 grows such "
                  "differences with the steps)."),
      tiles=tiles)

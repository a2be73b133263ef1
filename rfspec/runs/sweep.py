"""The claims sweep as a library function: `run_sweep(params, settings, store)` -> `SweepResult`.

For each tap: positions from the centre node to the corner along the diagonal (plus the corner's
true mirror about the image), K channels and S starts per (channel, position) by THE channel rule
(`rfspec.selection.choose_channels`, a random draw of eligible channels), every (channel,
position, start) visualized in compiled batches of one shape (resumable, `Store`), the first
channel also tiled over every position; then the measurements the claims need
(`claims.TapMeasures`: judge descriptors on every common RF-frame window, transfer activations,
the truncation null, the mirror ablation's windows, spectrum slopes). The claims come from
`rfspec.claims`. Optional ablations per tap: input size (the centre node at 2x the image side,
where more of its RF is inside) and padding (reflect instead of zero padding), each on the same
RF-frame window.

A notebook calls exactly what `python -m experiments.specificity` calls:

    settings = runs.sweep.settings_from_config(config)      # validates everything, loads nothing
    with runs.Store(workdir, weights_sha256=digest) as store:
      result = runs.sweep.run_sweep(params, settings, store)
    result.claims[1].verdict

Conventions: positions (i, j) = (row, col) on a tap's grid; pixels (y, x); images RGB in [0, 1];
boxes (top, left, bottom, right) px, half-open, may extend past the image.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rfspec import claims, geometry, memory, metrics, objectives, selection
from rfspec import masks as masks_lib
from rfspec.engine import VisConfig, initial_image, visualize_batch
from rfspec.errors import UserError
from rfspec.files import plain_numbers as _num  # JSON numbers: NaN/inf -> None
from rfspec.models import googlenet
from rfspec.progress import RunProgress, check_run_progress
from rfspec.throughput import cpu_prior
from rfspec.runs.store import Store

__all__ = ["SCHEMA", "SweepResult", "SweepSettings", "TapRun", "natural_photos", "run_sweep", "settings_from_config"]

SCHEMA = 1  # bump when a stored visual batch's format changes
MEASURES_VERSION = 2  # bump when `measure_tap` changes: the measures are recomputed from the stored batches
NATURAL_SIZE = 224


# ----------------------------------------------------------------------------- settings


@dataclasses.dataclass(frozen=True)
class SweepSettings:
  """Everything that decides a sweep, validated (`settings_from_config`).

  Attributes:
    taps: spatial taps, network order.
    vis: `VisConfig` fields plus "recipe" (JSON-able), shared by every tap.
    channels_per_tap: K channels drawn per tap (fewer when fewer are eligible; reported).
    seeds_per_position: S starts per (channel, position).
    seed_pool: candidate start seeds are 0 .. seed_pool - 1 (`selection.choose_channels`).
    channel_key: the integer behind the channel draw's `jax.random.key`.
    n_positions: positions along the diagonal, centre to corner.
    mirror: add the corner's true mirror position (the mirror ablation).
    tiled: also visualize the first channel tiled over every position (claim 5).
    realism_steps: claim 5's images (the first channel's centre node and the channel tiled, from the
      centre's S starts) are an arm of their own, run for this many steps (0: the main grid's), so
      the start noise can decay (its share is checked) without running the whole grid longer.
    batch: grid elements per compiled batch (every batch has this shape).
    n_boot, n_perm: bootstrap draws and permutations.
    snapshot_steps: also measure the images after these step counts (the pilot).
    input_size_taps, padding_taps: taps that get the input-size / padding ablation.
    ablation_channels, ablation_seeds: the ablations' K and S.
    smoke_test: a quick run that checks the pipeline only (verdicts "not evaluated").
    variant: the config variant's name.
  """

  taps: tuple
  vis: dict
  channels_per_tap: int = 6
  seeds_per_position: int = 8
  seed_pool: int = 32
  channel_key: int = 0
  n_positions: int = 4
  mirror: bool = True
  tiled: bool = True
  realism_steps: int = 0
  batch: int = 16
  n_boot: int = 1000
  n_perm: int = 1000
  snapshot_steps: tuple = ()
  input_size_taps: tuple = ()
  padding_taps: tuple = ()
  ablation_channels: int = 2
  ablation_seeds: int = 4
  smoke_test: bool = False
  variant: str = ""

  def cfg(self, tap: str, **overrides) -> VisConfig:
    fields = {k: (tuple(v) if isinstance(v, list) else v) for k, v in self.vis.items() if k != "recipe"}
    return VisConfig.from_recipe(self.vis.get("recipe", "zipser2015"), tap=tap, **{**fields, **overrides})

  @property
  def image_hw(self) -> tuple[int, int]:
    return tuple(int(v) for v in self.vis["image_hw"])

  def to_dict(self) -> dict:
    return {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}


def _default(name: str):
  d = {f.name: f.default for f in dataclasses.fields(SweepSettings)}.get(name)
  return None if d is dataclasses.MISSING else d


def _whole(v) -> bool:
  return isinstance(v, (int, np.integer)) and not isinstance(v, bool)


def settings_from_config(config) -> SweepSettings:
  """Validates a sweep config as a whole (before any weights load or compile): UserError otherwise.

  `config` is an `ml_collections.ConfigDict` or a dict with the `SweepSettings` fields. Every bad
  field is named in ONE UserError paragraph, each with its fix.
  """
  get = config.get if hasattr(config, "get") else lambda k, d=None: getattr(config, k, d)
  val = lambda name: get(name, _default(name))  # noqa: E731
  bad: list[str] = []

  def whole(name: str, lo: int, hi: int, why: str = "") -> int:
    v = val(name)
    if not _whole(v) or not lo <= v <= hi:
      bad.append(f"config.{name} must be a whole number in [{lo}, {hi}]{why}; got {v!r}.")
      return max(lo, int(_default(name) or 0))
    return int(v)

  def tap_list(name: str) -> tuple:
    v = val(name) or ()
    if isinstance(v, (str, bytes)) or not hasattr(v, "__iter__"):
      bad.append(f"config.{name} must be a list of tap names, e.g. ('conv2/3x3', 'inception_4c/5x5'); got {v!r}.")
      return ()
    return tuple(str(t) for t in v)

  taps = tap_list("taps")
  good_taps = []
  if not taps and not bad:
    bad.append("config.taps is empty; name spatial taps, e.g. ('conv2/3x3', 'inception_4c/5x5').")
  for tap in taps:
    try:
      googlenet.check_tap(tap)
    except ValueError as e:
      bad.append(f"config.taps: {' '.join(str(e).split())}")
      continue
    if tap not in geometry.spatial_taps():
      bad.append(f"config.taps: {tap!r} has no spatial grid, so it has no positions; use spatial taps from "
                 "conv2/3x3 to inception_5b/output.")
    elif tap == metrics.JUDGE_TAP:
      bad.append(f"config.taps: {tap!r} is the judge layer (rfspec.metrics.JUDGE_TAP); judging it by its own "
                 "features is circular. Drop it, or sweep a branch such as 'inception_3a/5x5'.")
    else:
      good_taps.append(tap)
  if len(set(taps)) != len(taps):
    bad.append(f"config.taps lists a tap twice: {list(taps)}.")
  vis = val("vis")
  vis = dict(vis.to_dict() if hasattr(vis, "to_dict") else vis or {})
  max_k = min([googlenet.LAYER_BY_NAME[t].channels for t in good_taps] or [1024])
  k = whole("channels_per_tap", 2, max_k, " (claim 3's auc_id compares a node's starts with another channel's, so "
            f"it needs at least 2 channels per tap; the fewest channels of config.taps is {max_k})")
  s = whole("seeds_per_position", metrics.MIN_SEEDS, 4096,
            f" (psi_auc needs at least metrics.MIN_SEEDS = {metrics.MIN_SEEDS} starts per position)")
  pool = whole("seed_pool", s, 2 ** 31 - 1, " (the candidate start seeds 0 .. seed_pool - 1, at least "
               "seeds_per_position; more lets the channel rule skip starts that leave a node off)")
  n_pos = whole("n_positions", 2, 64, " (positions along the diagonal, centre to corner)")
  n_boot = whole("n_boot", 20, 100_000)
  n_perm = whole("n_perm", 20, 100_000)
  batch = whole("batch", 1, 1 << 16, " (grid elements per compiled batch)")
  a_k = whole("ablation_channels", 1, max_k)
  a_s = whole("ablation_seeds", 2, 4096)
  channel_key = whole("channel_key", 0, 2 ** 31 - 1)
  realism_steps = whole("realism_steps", 0, 2 ** 31 - 1, " (0: claim 5's arm runs the main grid's steps)")
  snaps = val("snapshot_steps") or ()
  if isinstance(snaps, (str, bytes)) or not hasattr(snaps, "__iter__") or not all(_whole(v) for v in snaps):
    bad.append(f"config.snapshot_steps must be whole step counts, e.g. (300, 600); got {val('snapshot_steps')!r}.")
    snaps = ()
  snaps = tuple(sorted({int(v) for v in snaps}))
  ablation = {name: tap_list(name) for name in ("input_size_taps", "padding_taps")}
  for name, listed in ablation.items():
    missing = [t for t in listed if t not in taps]
    if missing:
      bad.append(f"config.{name}: {missing} are not in config.taps {list(taps)}; the ablation reuses a swept tap.")
  settings = SweepSettings(
      taps=taps, vis=vis, channels_per_tap=k, seeds_per_position=s, seed_pool=pool, channel_key=channel_key,
      n_positions=n_pos, mirror=bool(val("mirror")), tiled=bool(val("tiled")), realism_steps=realism_steps,
      batch=batch, n_boot=n_boot, n_perm=n_perm, snapshot_steps=snaps, input_size_taps=ablation["input_size_taps"],
      padding_taps=ablation["padding_taps"], ablation_channels=a_k, ablation_seeds=a_s,
      smoke_test=bool(val("smoke_test")), variant=str(val("variant") or ""))
  cfg = None
  for tap in good_taps:  # bad vis fields or an image too small for a tap: VisConfig says which
    try:
      cfg = cfg or settings.cfg(tap)
      settings.cfg(tap)
    except (TypeError, ValueError) as e:  # UserError is a ValueError
      bad.append(f"config.vis does not work for tap {tap!r}: {' '.join(str(e).split())}")
      break
  for tap in good_taps if cfg is not None and not bad else ():  # every compiled batch has `batch` images
    try:
      memory.check_fits(settings.cfg(tap), batch)
    except UserError as e:
      bad.append(f"config.vis.image_hw / config.batch: {' '.join(str(e).split())}")
      break
  if cfg is not None and snaps:
    from rfspec.engine import check_snapshot_steps

    try:
      check_snapshot_steps(snaps, cfg)
    except UserError as e:
      bad.append(f"config.snapshot_steps: {' '.join(str(e).split())}")
  if bad:
    raise UserError(" ".join([f"The sweep config has {len(bad)} bad field(s):"] + bad))
  return settings


# ----------------------------------------------------------------------------- results


class TapRun(NamedTuple):
  """What the sweep knows about one tap besides its measures.

  Attributes:
    tap: the tap.
    rule: the channel rule in words; eligible: channels that passed; asked: K asked for.
    seconds: wall time spent on it in this process (0 when restored from the store).
    resumed: restored from the store.
    ablations: {"input_size": {...}, "padding": {...}} numbers where run.
  """

  tap: str
  rule: str
  eligible: int
  asked: int
  seconds: float
  resumed: bool
  ablations: dict


class SweepResult(NamedTuple):
  """A sweep's numbers.

  Attributes:
    settings: `SweepSettings.to_dict()`.
    measures: one `claims.TapMeasures` per tap.
    summaries: one `claims.TapSummary` per tap (bootstrap draws and permutation nulls inside).
    runs: one `TapRun` per tap.
    claims: five `claims.Claim`s.
    realism: `claims.Realism` (natural photos' spectrum slopes) or None.
    padding_control: classification under zero vs reflect padding on the natural photos, or None.
    pilot: {step: {"claims": [Claim], "summaries": [TapSummary]}} for `snapshot_steps` (else {}).
  """

  settings: dict
  measures: tuple
  summaries: tuple
  runs: tuple
  claims: tuple
  realism: Any
  padding_control: Any
  pilot: dict


# ----------------------------------------------------------------------------- natural photos


def natural_photos(paths: Sequence[str] = (), *, size: int = NATURAL_SIZE) -> tuple[np.ndarray, tuple[str, ...]]:
  """Natural reference photos, [N, size, size, 3] RGB in [0, 1], and their names.

  The given files, then scikit-image's bundled photos when it is installed (the `test` extra):
  photos of at least 2 x size px on both sides give two crops (top-left and bottom-right quarter
  regions, resized), smaller ones one centre crop, so the set reaches 20 or more distinct views.
  """
  from rfspec import files

  images, names = [], []
  for p in paths:
    images.append(files.load_image(p, (size, size)))
    names.append(str(p).rsplit("/", 1)[-1])
  try:
    from skimage import data as skdata
  except ImportError:
    return (np.stack(images) if images else np.zeros((0, size, size, 3), np.float32)), tuple(names)
  from PIL import Image

  for name in ("astronaut", "brick", "camera", "chelsea", "clock", "coffee", "coins", "grass", "gravel",
               "hubble_deep_field", "immunohistochemistry", "moon", "retina", "rocket", "cell"):
    try:
      a = np.asarray(getattr(skdata, name)())
    except Exception:  # a photo that needs a download: skip it
      continue
    if a.ndim == 2:
      a = np.repeat(a[..., None], 3, -1)
    a = a[..., :3].astype(np.uint8)
    h, w = a.shape[:2]
    crops = ([("tl", a[: h // 2 + h // 4, : w // 2 + w // 4]), ("br", a[h // 4:, w // 4:])]
             if min(h, w) >= 2 * size else [("c", a)])
    for tag, c in crops:
      side = min(c.shape[:2])
      y0, x0 = (c.shape[0] - side) // 2, (c.shape[1] - side) // 2
      im = Image.fromarray(c[y0:y0 + side, x0:x0 + side]).resize((size, size), Image.BILINEAR)
      images.append(np.asarray(im, np.float32) / 255.0)
      names.append(f"skimage.{name}:{tag}")
  return np.stack(images), tuple(names)


# ----------------------------------------------------------------------------- one tap


class _Plan(NamedTuple):
  positions: list
  roles: tuple
  boxes: np.ndarray


def _plan(tap: str, settings: SweepSettings) -> _Plan:
  hw = settings.image_hw
  diag = geometry.diagonal_positions(tap, hw, settings.n_positions)
  roles = ["centre"] + ["diagonal"] * (len(diag) - 2) + ["corner"]
  positions = list(diag)
  if settings.mirror:
    m = geometry.mirror_node(tap, hw, diag[-1])
    if m not in positions:
      positions.append(m)
      roles.append("mirror")
  rf = geometry.receptive_field(tap, hw)
  return _Plan(positions, tuple(roles[:len(positions)]), np.array([rf.box(*p) for p in positions], np.int64))


# params are an argument, so one compile serves every call with the same tap, mean, padding and batch.
_blob = jax.jit(objectives.tap_activation, static_argnames=("tap", "pre_relu", "dtype", "mean_bgr", "pad_mode"))


def _tap_values(params, images: np.ndarray, cfg: VisConfig, batch: int = 16) -> np.ndarray:
  """The tap's blob on each image: float32 [N, h, w, C] (no jitter, the run's net), in fixed batches."""
  out = []
  for lo in range(0, len(images), batch):
    x = images[lo:lo + batch]
    pad = batch - len(x)
    x = jnp.asarray(np.concatenate([x, np.repeat(x[:1], pad, 0)]) if pad else x)
    out.append(np.asarray(_blob(params, x, tap=cfg.tap, mean_bgr=cfg.caffe_mean, pad_mode=cfg.pad_mode))[:len(images[lo:lo + batch])])
  return np.concatenate(out).astype(np.float32)


def _node_values(params, images: np.ndarray, cfg: VisConfig, nodes: np.ndarray, channels: np.ndarray,
                 batch: int = 16) -> np.ndarray:
  """The tap's blob at node (i, j), channel c, for each image: float32 [N] (no jitter, the run's net)."""
  out = []
  for lo in range(0, len(images), batch):
    a = _tap_values(params, images[lo:lo + batch], cfg, batch)
    n = nodes[lo:lo + batch]
    out.append(a[np.arange(len(a)), n[:, 0], n[:, 1], channels[lo:lo + batch]])
  return np.concatenate(out).astype(np.float32)


def _visualize(params, cfg: VisConfig, seeds: np.ndarray, node_masks: np.ndarray, settings: SweepSettings,
               store: Store, unit: str, key: Any, progress: RunProgress, snapshot_steps=()) -> tuple[np.ndarray, np.ndarray]:
  """Every (seed, mask) element, in batches of `settings.batch` (the last padded with copies of its
  first element), each a stored unit. Returns (images [E, H, W, 3], snapshots [n_snap, E, H, W, 3])."""
  n, b = len(seeds), settings.batch
  images, snaps = [], []
  for i, lo in enumerate(range(0, n, b)):
    idx = np.arange(lo, min(lo + b, n))
    full = np.concatenate([idx, np.full(b - len(idx), idx[0])])
    name = f"{unit}/batch_{i:03d}"
    bkey = dict(key, batch=i, seeds=seeds[full].tolist(), masks=_mask_digest(node_masks[full]),
                snapshot_steps=list(snapshot_steps))
    hit = store.load(name, bkey)
    if hit is None:
      res = visualize_batch(params, seeds[full], node_masks[full], cfg, snapshot_steps=snapshot_steps,
                            progress=progress.callback(name, cfg.tap))
      arrays = dict(images=res.images, final_objective=res.traces[:, -1], snapshots=res.snapshots)
      store.save(name, bkey, arrays, dict(elements=len(idx)))
    else:
      progress.skip(name, tap=cfg.tap, work=b * cfg.steps)
      arrays = hit[0]
    images.append(arrays["images"][:len(idx)])
    snaps.append(arrays["snapshots"][:, :len(idx)])
  return np.concatenate(images), np.concatenate(snaps, axis=1)


def _mask_digest(masks: np.ndarray) -> list:
  """Where each mask is on: [[i, j, c] or "tiled c"] (a mask is one node or a whole channel)."""
  out = []
  for m in masks:
    nz = np.argwhere(m > 0)
    out.append(nz[0].tolist() if len(nz) == 1 else f"tiled {int(nz[0, 2])}")
  return out


def _mirror_windows(plan: _Plan, windows: metrics.FrameWindows, rf_size: int) -> np.ndarray | None:
  """Image rects [4, 4] for the mirror ablation: corner and centre on W*, mirror and centre on the
  mirror image of W* (RF frame flipped: u -> R - u). W* is the corner's common window with the centre,
  cut to what the mirrored window also has, so both comparisons see mirror-image windows."""
  if "mirror" not in plan.roles:
    return None
  c, m = plan.roles.index("corner"), plan.roles.index("mirror")
  r = rf_size
  flip = lambda w: np.array([r - w[2], r - w[3], r - w[0], r - w[1]])  # noqa: E731
  w_c, w_m = windows.window[c, 0], windows.window[m, 0]
  fm = flip(w_m)
  star = np.array([max(w_c[0], fm[0]), max(w_c[1], fm[1]), min(w_c[2], fm[2]), min(w_c[3], fm[3])])
  if star[2] <= star[0] or star[3] <= star[1]:
    return None
  star_m = flip(star)
  b = plan.boxes
  at = lambda p, w: np.array([b[p, 0] + w[0], b[p, 1] + w[1], b[p, 0] + w[2], b[p, 1] + w[3]])  # noqa: E731
  return np.stack([at(c, star), at(0, star), at(m, star_m), at(0, star_m)])


def measure_tap(params, cfg: VisConfig, plan: _Plan, choice: selection.ChannelChoice, images: np.ndarray,
                final_act: np.ndarray, realism: tuple | None, *, erf_off: np.ndarray) -> claims.TapMeasures:
  """The compact measurements of one tap (see `claims.TapMeasures`).

  Args:
    images: [K, P, S, H, W, 3] every (channel, position, start).
    final_act: [K, P, S] the node's value on each final image.
    realism: `realism_measures(...)` of claim 5's images, or None.
  """
  hw = cfg.image_hw
  k_n, p_n, s_n = images.shape[:3]
  rf = geometry.receptive_field(cfg.tap, hw)
  windows = metrics.frame_windows(plan.boxes, hw)
  alive = ~claims.dead_runs(final_act)
  desc = np.stack([metrics.window_descriptors(params, images[k], plan.boxes, windows) for k in range(k_n)])
  rects_c = metrics.window_rects(plan.boxes, windows)[:, 0]  # window[p, centre] at p
  nulls = [metrics.null_images(images[k, 0], plan.boxes, 0, windows) for k in range(k_n)]  # [P, S, ...] each
  null_desc = np.stack([np.asarray(metrics.describe(params, jnp.asarray(nl), jnp.asarray(
      np.broadcast_to(rects_c[:, None], (p_n, s_n, 4))))) for nl in nulls])
  pos = np.asarray(plan.positions)
  transfer = np.stack([metrics.transfer_activations(params, images[k], plan.boxes, windows, pos, int(c), tap=cfg.tap,
                                                    mean_bgr=cfg.caffe_mean, pad_mode=cfg.pad_mode)
                       for k, c in enumerate(choice.channels)])
  null_transfer = np.stack([metrics.transfer_activations(params, nl, plan.boxes, windows, pos, int(c), tap=cfg.tap,
                                                         mean_bgr=cfg.caffe_mean, pad_mode=cfg.pad_mode)
                            for nl, c in zip(nulls, choice.channels)])
  mirror_rects = _mirror_windows(plan, windows, rf.size)
  if mirror_rects is None:
    mirror_desc = np.zeros((k_n, 0, s_n, desc.shape[-1]), np.float32)
  else:
    c, m = plan.roles.index("corner"), plan.roles.index("mirror")
    which = [c, 0, m, 0]
    x = images[:, which]  # [K, 4, S, ...]
    r = np.broadcast_to(mirror_rects[None, :, None], (k_n, 4, s_n, 4))
    mirror_desc = np.asarray(metrics.describe(params, jnp.asarray(x), jnp.asarray(r)))
  if realism is None:
    realism = {f: np.zeros((0,)) for f in REALISM_FIELDS}
  return claims.TapMeasures(
      tap=cfg.tap, image_hw=tuple(hw), rf_size=int(rf.size), positions=pos, roles=tuple(plan.roles), boxes=plan.boxes,
      inside=np.array([rf.inside_fraction(*p) for p in plan.positions]), erf_off=np.asarray(erf_off, np.float64),
      window=windows.window, share=windows.share, defined=windows.defined, channels=np.asarray(choice.channels),
      eligible=int(len(choice.eligible)), seeds=np.asarray(choice.seeds), final_act=np.asarray(final_act, np.float32),
      alive=alive, desc=desc.astype(np.float32), null_desc=null_desc.astype(np.float32),
      transfer=transfer.astype(np.float32), null_transfer=null_transfer.astype(np.float32),
      mirror_desc=mirror_desc.astype(np.float32), **{k: np.asarray(v, np.float64) for k, v in realism.items()})


REALISM_FIELDS = ("single_slope", "tiled_slope", "single_start_share", "tiled_start_share", "single_final", "tiled_final")
REALISM_VERSION = 1  # bump when realism_measures changes: the realism units are measured again (their images stay)


def realism_measures(params, cfg: VisConfig, single: np.ndarray, tiled: np.ndarray, steps: int, seeds: np.ndarray,
                     node: tuple[int, int], channel: int) -> dict:
  """Claim 5's numbers for one tap: {field: [S]} for `REALISM_FIELDS`.

  Args:
    single, tiled: [S, H, W, 3] the channel's node at `node` and the channel tiled, from starts `seeds`
      [S], after `steps` steps.
  """
  starts = np.stack([np.asarray(initial_image(int(s), cfg)) for s in seeds])
  remnant = (1.0 - cfg.decay) ** steps  # the decay shrinks the start's deviation from the mean colour each step
  s_n = len(single)
  blob = _tap_values(params, np.concatenate([single, tiled]), cfg)  # [2S, h, w, C]
  return {k: np.asarray(v, np.float64) for k, v in dict(
      single_slope=metrics.spectrum_slope(single), tiled_slope=metrics.spectrum_slope(tiled),
      single_start_share=metrics.start_remnant_share(single, starts, remnant),
      tiled_start_share=metrics.start_remnant_share(tiled, starts, remnant),
      single_final=blob[:s_n, node[0], node[1], channel], tiled_final=blob[s_n:, ..., channel].mean(axis=(1, 2))).items()}


def measures_to_arrays(m: claims.TapMeasures) -> tuple[dict, dict]:
  """(arrays, meta) for a Store unit."""
  meta = dict(tap=m.tap, image_hw=list(m.image_hw), rf_size=m.rf_size, roles=list(m.roles), eligible=m.eligible)
  arrays = {f: np.asarray(getattr(m, f)) for f in claims.TapMeasures._fields if f not in meta}
  return arrays, meta


def measures_from_arrays(arrays: dict, meta: dict) -> claims.TapMeasures:
  return claims.TapMeasures(tap=meta["tap"], image_hw=tuple(meta["image_hw"]), rf_size=int(meta["rf_size"]),
                            roles=tuple(meta["roles"]), eligible=int(meta["eligible"]),
                            **{f: arrays[f] for f in claims.TapMeasures._fields if f in arrays})


# ----------------------------------------------------------------------------- the sweep


def _realism_elements(tap: str, channel: int, seeds: np.ndarray, plan: _Plan, hw):
  """The channel's centre node, then the channel tiled, each from the centre's starts `seeds` [S]."""
  seeds = np.asarray(seeds, np.int64)
  single = masks_lib.node_mask(tap, int(channel), hw, plan.positions[0])
  tiled = masks_lib.node_mask(tap, int(channel), hw, None)
  return np.concatenate([seeds, seeds]), np.stack([single] * len(seeds) + [tiled] * len(seeds)).astype(np.float32)


def _realism_key(settings: SweepSettings, tap: str) -> dict:
  return dict(_tap_key(settings, tap), arm="realism", realism_version=REALISM_VERSION)


def _realism_arm(params, cfg: VisConfig, settings: SweepSettings, plan: _Plan, channel: int, seeds: np.ndarray,
                 store: Store, unit: str, tap_key: dict, progress: RunProgress) -> dict:
  """Claim 5's arm (`realism_steps`): its images (a stored batch) and their numbers (a stored
  unit of their own, so the arm reruns alone without touching the tap's measures)."""
  key = _realism_key(settings, cfg.tap)
  steps = settings.realism_steps or cfg.steps
  hit = store.load(f"{unit}/realism_measures", key)
  if hit is not None:
    progress.skip(f"{unit}/realism/batch_000", tap=cfg.tap, work=2 * len(seeds) * steps)
    return {f: hit[0][f] for f in REALISM_FIELDS}
  r_cfg = dataclasses.replace(cfg, steps=steps)
  r_seeds, r_masks = _realism_elements(cfg.tap, channel, seeds, plan, cfg.image_hw)
  imgs, _ = _visualize(params, r_cfg, r_seeds, r_masks, dataclasses.replace(settings, batch=len(r_seeds)), store,
                       f"{unit}/realism", dict(tap_key, arm="realism"), progress)
  s_n = len(seeds)
  out = realism_measures(params, r_cfg, imgs[:s_n], imgs[s_n:], steps, seeds, plan.positions[0], channel)
  store.save(f"{unit}/realism_measures", key, out, dict(tap=cfg.tap, channel=int(channel)))
  return out


def _elements(tap: str, choice: selection.ChannelChoice, plan: _Plan, hw):
  """Flat (seed, mask) elements: every (channel, position, start)."""
  k_n, p_n, s_n = choice.seeds.shape
  seeds, masks = [], []
  for k in range(k_n):
    for p in range(p_n):
      m = masks_lib.node_mask(tap, int(choice.channels[k]), hw, plan.positions[p])
      for s in range(s_n):
        seeds.append(int(choice.seeds[k, p, s]))
        masks.append(m)
  return np.asarray(seeds, np.int64), np.stack(masks).astype(np.float32)


def _tap_key(settings: SweepSettings, tap: str) -> dict:
  d = settings.to_dict()
  return dict(tap=tap, vis=d["vis"], k=d["channels_per_tap"], s=d["seeds_per_position"], pool=d["seed_pool"],
              channel_key=d["channel_key"], n_positions=d["n_positions"], mirror=d["mirror"], tiled=d["tiled"],
              **({"realism_steps": d["realism_steps"]} if d["realism_steps"] else {}))


def planned_work(settings: SweepSettings) -> list[tuple[str, str, int]]:
  """(grid name, tap, image-steps) per compiled batch of the main grids, for the whole run's ETA (the
  ablations join when they start)."""
  grids = []
  for tap in settings.taps:
    n_p = len(_plan(tap, settings).positions)
    n = settings.channels_per_tap * n_p * settings.seeds_per_position
    steps = settings.cfg(tap).steps
    unit = f"sweep/{geometry.tap_filename(tap)}"
    grids += [(f"{unit}/batch_{i:03d}", tap, settings.batch * steps) for i in range(-(-n // settings.batch))]
    if settings.tiled:
      grids.append((f"{unit}/realism/batch_000", tap, 2 * settings.seeds_per_position * (settings.realism_steps or steps)))
  return grids


def run_sweep(params, settings: SweepSettings, store: Store, *, natural: tuple[np.ndarray, tuple] | None = None,
              progress: RunProgress | None = None, key: jax.Array | None = None) -> SweepResult:
  """Visualizes, measures and decides (see the module docstring).

  Args:
    params: GoogLeNet params.
    settings: `settings_from_config(...)`.
    store: where units are kept and resumed from (`Store(None)` keeps nothing).
    natural: (images [N, 224, 224, 3], names) natural photos for claim 5 and the padding control;
      default `natural_photos()`.
    progress: the run's `RunProgress`; None: one that prints on stderr, priced by `cpu_prior` before the
      first step; False: silence.
    key: the analysis key (bootstrap, permutations, ERF noise); default `jax.random.key(0)`.
  """
  key = jax.random.key(0) if key is None else key
  grids = planned_work(settings)
  progress = check_run_progress(progress, lambda: RunProgress(grids, label="specificity",
                                                              prior_s=cpu_prior(settings.image_hw, grids)))
  hw = settings.image_hw
  natural = natural_photos() if natural is None else natural
  measures, runs, pilot_measures = [], [], {}
  # What the store already holds leaves the plan before the first step, so the ETA prices only what is left.
  hits = {}
  for tap in settings.taps:
    unit = f"sweep/{geometry.tap_filename(tap)}"
    hits[tap] = None if settings.snapshot_steps else store.load(
        unit + "/measures", dict(_tap_key(settings, tap), measures_version=MEASURES_VERSION))
    have_realism = settings.tiled and store.load(f"{unit}/realism_measures", _realism_key(settings, tap)) is not None
    for name, g_tap, work in grids:
      if g_tap == tap and (hits[tap] is not None if "/realism/" not in name else have_realism):
        progress.skip(name, tap=tap, work=work)
  for t, tap in enumerate(settings.taps):
    t0 = time.perf_counter()
    cfg = settings.cfg(tap)
    plan = _plan(tap, settings)
    tap_key = _tap_key(settings, tap)
    unit = f"sweep/{geometry.tap_filename(tap)}"
    measures_key = dict(tap_key, measures_version=MEASURES_VERSION)
    hit = hits[tap]
    if hit is not None:
      m = measures_from_arrays(*hit)
      if settings.tiled:
        m = m._replace(**_realism_arm(params, cfg, settings, plan, int(m.channels[0]), m.seeds[0, 0], store, unit,
                                      tap_key, progress))
      measures.append(m)
      runs.append(TapRun(tap, hit[1]["rule"], m.eligible, settings.channels_per_tap, 0.0, True,
                         hit[1].get("ablations", {})))
      progress.note(f"[{tap}] restored from the store")
      continue
    choice = selection.choose_channels(params, cfg, plan.positions, n_channels=settings.channels_per_tap,
                                       n_seeds=settings.seeds_per_position, seed_pool=range(settings.seed_pool),
                                       key=jax.random.fold_in(jax.random.key(settings.channel_key), t))
    progress.note(f"[{tap}] channels {choice.channels.tolist()} ({len(choice.eligible)} eligible), "
                  f"{len(plan.positions)} positions x {settings.seeds_per_position} starts")
    seeds, node_masks = _elements(tap, choice, plan, hw)
    images, snaps = _visualize(params, cfg, seeds, node_masks, settings, store, unit, tap_key, progress,
                               settings.snapshot_steps)
    k_n, p_n, s_n = choice.seeds.shape
    main = k_n * p_n * s_n
    nodes = np.array([plan.positions[p] for k in range(k_n) for p in range(p_n) for _ in range(s_n)])
    chans = np.repeat(choice.channels, p_n * s_n)
    arm = None
    if settings.tiled:
      arm = _realism_arm(params, cfg, settings, plan, int(choice.channels[0]), choice.seeds[0, 0], store, unit, tap_key,
                         progress)
    # The analysis below takes minutes at 224 px with nothing else to report: say what it is doing.
    progress.note(f"[{tap}] measuring {main} images: effective RFs, RF-frame descriptors, transfer, nulls")
    erf_off = geometry.erf_off_share(params, tap, hw, plan.positions, key=jax.random.fold_in(key, 1000 + t))

    def measure(imgs):
      final = _node_values(params, imgs, cfg, nodes, chans).reshape(k_n, p_n, s_n)
      return measure_tap(params, cfg, plan, choice, imgs.reshape(k_n, p_n, s_n, *imgs.shape[1:]), final, arm,
                         erf_off=erf_off)

    m = measure(images)
    for n_step, step in enumerate(settings.snapshot_steps):
      pilot_measures.setdefault(step, []).append(measure(snaps[n_step]))
    if tap in settings.input_size_taps or tap in settings.padding_taps:
      progress.note(f"[{tap}] ablations (their grids join the run's image-steps as they start)")
    ablations = _ablations(params, settings, tap, cfg, plan, choice, images.reshape(
        k_n, p_n, s_n, *images.shape[1:]), store, unit, tap_key, progress, jax.random.fold_in(key, 2000 + t))
    arrays, meta = measures_to_arrays(m)
    store.save(unit + "/measures", measures_key, arrays, dict(meta, rule=choice.rule, ablations=ablations))
    measures.append(m)
    runs.append(TapRun(tap, choice.rule, len(choice.eligible), settings.channels_per_tap,
                       time.perf_counter() - t0, False, ablations))
  return _decide(params, settings, measures, runs, pilot_measures, natural, key, progress)


def _decide(params, settings, measures, runs, pilot_measures, natural, key, progress) -> SweepResult:
  progress.note("bootstrap and permutation nulls")
  summaries = [claims.summarize_tap(m, jax.random.fold_in(key, t), n_boot=settings.n_boot, n_perm=settings.n_perm)
               for t, m in enumerate(measures)]
  realism = None
  if len(natural[0]):
    realism = claims.Realism(metrics.spectrum_slope(natural[0]), tuple(natural[1]))
  s_n = settings.seeds_per_position
  verdicts = claims.decide(list(zip(measures, summaries)), image_hw=settings.image_hw, n_starts=s_n, realism=realism,
                           smoke_test=settings.smoke_test, key=jax.random.fold_in(key, 99), n_boot=settings.n_boot)
  pilot = {}
  for step, ms in pilot_measures.items():
    sums = [claims.summarize_tap(m, jax.random.fold_in(key, t), n_boot=settings.n_boot, n_perm=settings.n_perm)
            for t, m in enumerate(ms)]
    pilot[int(step)] = dict(summaries=sums, claims=claims.decide(
        list(zip(ms, sums)), image_hw=settings.image_hw, n_starts=s_n, realism=realism, smoke_test=settings.smoke_test,
        key=jax.random.fold_in(key, 99), n_boot=settings.n_boot))
  control = padding_control(params, natural[0]) if settings.padding_taps and len(natural[0]) else None
  return SweepResult(settings.to_dict(), tuple(measures), tuple(summaries), tuple(runs), tuple(verdicts), realism,
                     control, pilot)


# ----------------------------------------------------------------------------- ablations


def padding_control(params, images) -> dict:
  """Does reflect padding change what the net sees in natural photos? images [N, 224, 224, 3].

  Returns the share of photos whose top-1 class is unchanged, and per photo the top-1 under each
  padding and the probability reflect padding gives the zero-padding top-1.
  """
  x = jnp.asarray(images, jnp.float32)
  zero = np.asarray(googlenet.forward(params, x, ("prob",))["prob"], np.float64)
  refl = np.asarray(googlenet.forward(params, x, ("prob",), pad_mode="reflect")["prob"], np.float64)
  return dict(n=int(len(x)), top1_unchanged=float(np.mean(zero.argmax(1) == refl.argmax(1))),
              top1_zero=zero.argmax(1).tolist(), top1_reflect=refl.argmax(1).tolist(),
              prob_of_zero_top1_under_reflect=refl[np.arange(len(zero)), zero.argmax(1)].tolist(),
              confidence_zero=zero.max(1).tolist())


def _first_on(on: np.ndarray, n: int) -> np.ndarray | None:
  """Indices of the first n True entries of on [M], or None if fewer."""
  idx = np.flatnonzero(on)
  return idx[:n] if len(idx) >= n else None


def _ablations(params, settings: SweepSettings, tap, cfg, plan, choice, images, store, unit, tap_key, progress,
               key) -> dict:
  out = {}
  ka = min(settings.ablation_channels, len(choice.channels))
  sa = settings.ablation_seeds
  pool = np.arange(settings.seed_pool)
  if tap in settings.input_size_taps:
    out["input_size"] = _input_size(params, settings, cfg, plan, choice.channels[:ka], pool, sa, store, unit, tap_key,
                                    progress, jax.random.fold_in(key, 1))
  if tap in settings.padding_taps:
    out["padding"] = _padding(params, settings, cfg, plan, choice, images, ka, sa, store, unit, tap_key, progress,
                              jax.random.fold_in(key, 2))
  return out


def _input_size(params, settings, cfg, plan, channels, pool, sa, store, unit, tap_key, progress, key) -> dict:
  """The centre node at 2x the image side (more of its RF inside) vs at 1x, compared on the RF-frame
  window both see (the part inside at 1x): does the pattern there change when the rest of the RF
  becomes visible? psi_auc between the two sizes per channel, pooled."""
  hw = cfg.image_hw
  big = dataclasses.replace(cfg, image_hw=(2 * hw[0], 2 * hw[1]))
  c1 = plan.positions[0]
  c2 = geometry.diagonal_positions(cfg.tap, big.image_hw, 1)[0]
  rf1, rf2 = geometry.receptive_field(cfg.tap, hw), geometry.receptive_field(cfg.tap, big.image_hw)
  a1 = selection.start_activations(params, cfg, [c1], pool)[:, 0]  # [M, C]
  a2 = selection.start_activations(params, big, [c2], pool)[:, 0]
  chans, seeds = [], []
  for c in channels:
    idx = _first_on((a1[:, c] > 0) & (a2[:, c] > 0), sa)
    if idx is not None:
      chans.append(int(c))
      seeds.append(pool[idx])
  if not chans:
    return dict(skipped=f"no channel has {sa} starts that drive its centre node at both sizes")
  seeds = np.asarray(seeds)
  imgs = []
  for which, c_cfg, node in (("1x", cfg, c1), ("2x", big, c2)):
    m = np.stack([masks_lib.node_mask(cfg.tap, c, c_cfg.image_hw, node) for c in chans for _ in range(sa)])
    s = dataclasses.replace(settings, batch=len(m))
    ims, _ = _visualize(params, c_cfg, seeds.reshape(-1), m, s, store, f"{unit}/input_size_{which}",
                        dict(tap_key, ablation="input_size", size=which, channels=chans), progress)
    imgs.append(ims.reshape(len(chans), sa, *ims.shape[1:]))
  b1, b2 = np.array(rf1.box(*c1)), np.array(rf2.box(*c2))
  # The RF-frame window both sizes see: the 1x inside part (at 2x the whole RF is inside or more of it).
  w = metrics.frame_windows(np.stack([b1, b1]), hw).window[0, 0]
  w2 = metrics.frame_windows(np.stack([b2, b2]), big.image_hw).window[0, 0]
  w = np.array([max(w[0], w2[0]), max(w[1], w2[1]), min(w[2], w2[2]), min(w[3], w2[3])])
  r1 = np.array([b1[0] + w[0], b1[1] + w[1], b1[0] + w[2], b1[1] + w[3]])
  r2 = np.array([b2[0] + w[0], b2[1] + w[1], b2[0] + w[2], b2[1] + w[3]])
  d1 = np.asarray(metrics.describe(params, jnp.asarray(imgs[0]), jnp.asarray(np.broadcast_to(r1, (len(chans), sa, 4)))))
  d2 = np.asarray(metrics.describe(params, jnp.asarray(imgs[1]), jnp.asarray(np.broadcast_to(r2, (len(chans), sa, 4)))))
  res = claims.condition_psi(d1, d2, seeds, seeds, key, n_boot=settings.n_boot, n_perm=settings.n_perm)
  res.pop("boot")
  return dict(channels=chans, image_hw=[list(hw), list(big.image_hw)],
              inside=[rf1.inside_fraction(*c1), rf2.inside_fraction(*c2)],
              window_share=float((w[2] - w[0]) * (w[3] - w[1]) / rf1.size ** 2), **res)


def _padding(params, settings, cfg, plan, choice, images, ka, sa, store, unit, tap_key, progress, key) -> dict:
  """psi_auc(corner, centre) with reflect padding vs zero padding (Caffe's), on the same window and the
  same starts: if position specificity comes from the zero border rather than from the RF's missing
  content, it falls under reflect padding."""
  refl = dataclasses.replace(cfg, pad_mode="reflect")
  corner = plan.roles.index("corner")
  ps = [0, corner]
  act = selection.start_activations(params, refl, [plan.positions[p] for p in ps], np.unique(choice.seeds))
  uniq = np.unique(choice.seeds)
  chans, idx_keep = [], []
  for k in range(ka):
    c = int(choice.channels[k])
    keep = []
    for s in range(choice.seeds.shape[2]):  # slot s: its seeds at the centre and the corner must drive both nets
      ok = all(act[np.searchsorted(uniq, choice.seeds[k, p, s]), n, c] > 0 for n, p in enumerate(ps))
      if ok:
        keep.append(s)
    if len(keep) >= sa:
      chans.append(k)
      idx_keep.append(keep[:sa])
  if not chans:
    return dict(skipped=f"no channel has {sa} starts that drive it under both paddings")
  seeds = np.array([[choice.seeds[k, p, s] for s in keep] for k, keep in zip(chans, idx_keep) for p in ps])
  m = np.stack([masks_lib.node_mask(cfg.tap, int(choice.channels[k]), cfg.image_hw, plan.positions[p])
                for k in chans for p in ps for _ in range(sa)])
  s = dataclasses.replace(settings, batch=len(m))
  r_imgs, _ = _visualize(params, refl, seeds.reshape(-1), m, s, store, f"{unit}/padding_reflect",
                         dict(tap_key, ablation="padding", channels=[int(choice.channels[k]) for k in chans]), progress)
  r_imgs = r_imgs.reshape(len(chans), 2, sa, *r_imgs.shape[1:])
  z_imgs = np.stack([[images[k, p, keep] for p in ps] for k, keep in zip(chans, idx_keep)])
  windows = metrics.frame_windows(plan.boxes, cfg.image_hw)
  rects = metrics.window_rects(plan.boxes, windows)
  r_corner, r_centre = rects[corner, 0], rects[0, corner]
  seeds = seeds.reshape(len(chans), 2, sa)

  def desc(x):
    r = np.stack([np.broadcast_to(r_centre, (sa, 4)), np.broadcast_to(r_corner, (sa, 4))])
    return np.asarray(metrics.describe(params, jnp.asarray(x), jnp.asarray(np.broadcast_to(r, (len(chans), 2, sa, 4)))))

  dz, dr = desc(z_imgs), desc(r_imgs)
  zero = claims.condition_psi(dz[:, 1], dz[:, 0], seeds[:, 1], seeds[:, 0], key, n_boot=settings.n_boot,
                              n_perm=settings.n_perm)
  reflect = claims.condition_psi(dr[:, 1], dr[:, 0], seeds[:, 1], seeds[:, 0], key, n_boot=settings.n_boot,
                                 n_perm=settings.n_perm)
  diff_boot = np.asarray(reflect.pop("boot")) - np.asarray(zero.pop("boot"))
  ci = metrics.interval(diff_boot, int(len(chans) * sa), bounds=(-2, 2))
  return dict(channels=[int(choice.channels[k]) for k in chans], zero=zero, reflect=reflect,
              reflect_minus_zero=reflect["estimate"] - zero["estimate"], reflect_minus_zero_ci=[ci.lo, ci.hi],
              reflect_minus_zero_degenerate=ci.degenerate)


# ----------------------------------------------------------------------------- plain numbers




def claim_dict(c: claims.Claim) -> dict:
  d = c._asdict()
  d.update(estimate=_num(c.estimate), ci=_num(c.ci), null=_num(c.null), p_value=_num(c.p_value),
           second={k: (_num(v) if isinstance(v, (float, tuple, list, np.ndarray)) else v) for k, v in c.second.items()})
  return d


def _column_percentile(x: np.ndarray, q: float) -> np.ndarray:
  """Each column's q-th percentile over its finite rows; NaN for a column with none (the centre's
  own column, which is never compared), without numpy's All-NaN warning on the user's console."""
  x = np.asarray(x, np.float64)
  if not x.size:
    return np.zeros((0,))
  out = np.full(x.shape[1:], np.nan)
  some = np.isfinite(x).any(axis=0)
  out[some] = np.nanpercentile(x[:, some], q, axis=0)
  return out


def tap_dict(m: claims.TapMeasures, s: claims.TapSummary, r: TapRun) -> dict:
  """One tap's numbers (no images, no draws): positions, windows, per-position indices with 95 %
  intervals, nulls, dead runs, the channel rule, the ablations."""
  units = s.units

  def ci(boot, bounds=None):
    out = []
    for col in np.asarray(boot).T:
      iv = metrics.interval(col, units, bounds=bounds)
      out.append(dict(ci=_num([iv.lo, iv.hi]), degenerate=iv.degenerate))
    return out

  mirror_iv = metrics.interval(s.mirror_boot, units, bounds=(-2, 2))
  return dict(
      tap=m.tap, rf_size=m.rf_size, channels=[int(c) for c in m.channels], channels_eligible=m.eligible,
      channels_asked=r.asked, channel_rule=r.rule, starts_per_position=int(m.seeds.shape[2]),
      positions=[[int(v) for v in p] for p in m.positions], roles=list(m.roles), boxes=m.boxes.tolist(),
      inside=_num(m.inside), erf_off=_num(m.erf_off), window_share_with_centre=_num(m.share[0]),
      window_defined_with_centre=[bool(v) for v in m.defined[0]],
      psi_vs_centre=_num(s.psi_centre), psi_vs_centre_ci=ci(s.psi_centre_boot, (-1, 1)),
      psi_truncation_null=_num(s.psi_null),
      psi_permutation_95=_num(_column_percentile(s.psi_centre_perm, 95)),
      auc_id=_num(s.auc_id), auc_id_ci=ci(s.auc_id_boot, (0, 1)),
      transfer=_num(s.transfer), transfer_ci=ci(s.transfer_boot), transfer_truncation_null=_num(s.transfer_null),
      pairs=[[int(p), int(q)] for p, q in zip(s.pair_p, s.pair_q)], psi_pairs=_num(s.psi_pairs),
      mirror=dict(estimate=_num(s.mirror), ci=_num([mirror_iv.lo, mirror_iv.hi]), degenerate=mirror_iv.degenerate,
                  what="psi_auc(mirror, centre) - psi_auc(corner, centre) on mirror-image windows (0: the net treats "
                       "mirror positions alike)"),
      dead_runs=s.dead, runs=s.runs, final_activation_median=_num(np.median(m.final_act)),
      realism={f: _num(getattr(m, f)) for f in REALISM_FIELDS},
      ablations=r.ablations, seconds=r.seconds, resumed=r.resumed)


def summary(result: SweepResult, *, weights: str = "", weights_sha256: str = "") -> dict:
  """The sweep as plain JSON-able numbers: settings, the five claims, per-tap numbers, dead runs."""
  st = result.settings
  taps = [tap_dict(m, s, r) for m, s, r in zip(result.measures, result.summaries, result.runs)]
  settings = dict(st, image_hw=list(st["vis"]["image_hw"]), recipe=st["vis"].get("recipe"), steps=st["vis"].get("steps"),
                  seeds=f"S = {st['seeds_per_position']} starts per (channel, position) from seeds 0..{st['seed_pool'] - 1}",
                  judge=metrics.JUDGE_TAP, min_window_share=metrics.MIN_WINDOW_SHARE,
                  equivalence_margin=claims.EQUIVALENCE_MARGIN, ci_level=metrics.CI_LEVEL)
  out = dict(settings=settings, weights=weights, weights_sha256=weights_sha256,
             claims=[claim_dict(c) for c in result.claims],
             dead_runs={t["tap"]: dict(dead=t["dead_runs"], of=t["runs"]) for t in taps}, taps=taps,
             natural_photos=None if result.realism is None else dict(
                 n=len(result.realism.natural_slope), names=list(result.realism.natural_names),
                 slope_median=_num(np.median(result.realism.natural_slope))),
             padding_control=result.padding_control)
  if result.pilot:
    out["pilot"] = {str(step): dict(claims=[claim_dict(c) for c in v["claims"]],
                                    taps=[dict(tap=m.tap, psi_vs_centre=_num(s.psi_centre), auc_id=_num(s.auc_id),
                                               transfer=_num(s.transfer), dead_runs=s.dead,
                                               **{f: _num(getattr(m, f)) for f in REALISM_FIELDS})
                                          for m, s in zip(result.measures, v["summaries"])])
                    for step, v in result.pilot.items()}
    last = str(st["vis"]["steps"])
    out["pilot"][last] = dict(claims=out["claims"], taps=[dict(
        tap=t["tap"], psi_vs_centre=t["psi_vs_centre"], auc_id=t["auc_id"], transfer=t["transfer"],
        dead_runs=t["dead_runs"], **t["realism"]) for t in taps])
  return out

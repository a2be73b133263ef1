"""The paper's figures as a run: `run_figures(params, settings, store)` -> `FiguresResult`.

A figure (Zipser 2015, Figures 1-6) is a set of panels (node types: tap + channel), a list of
named RF positions (or none: tiled, every position of the channel at once) and a list of seeds.
Each panel is ONE compiled `visualize_grid` call over positions x seeds and one `Store` unit, so a
killed run resumes panel by panel. Per figure, the numbers behind "what we see" come from THE
measure (`rfspec.metrics`, `rfspec.claims.condition_psi`): psi_auc between every pair of positions
on their common RF-frame window, with a 95 % bootstrap interval over seeds, and auc_id where the
figure has a floor (another channel of the same tap at the same positions); each number that
cannot be computed says why instead.

A notebook calls exactly what `python -m experiments.reproduce_paper` calls:

    settings = runs.figures.settings_from_config(config)   # validates everything, loads nothing
    with runs.Store(workdir, weights_sha256=digest, schema=runs.figures.SCHEMA) as store:
      result = runs.figures.run_figures(params, settings, store)
    result.figures[1].panels[0].images          # [P, S, H, W, 3]

Conventions: positions (i, j) = (row, col) on a tap's grid; pixels (y, x) = (row, col); images RGB
in [0, 1]; boxes (top, left, bottom, right) px, half-open, may extend past the image.
"""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import math
import time
import zlib
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rfspec import claims, geometry, memory, metrics, objectives, selection
from rfspec import masks as masks_lib
from rfspec import throughput
from rfspec.engine import VisConfig, visualize_grid
from rfspec.errors import UserError
from rfspec.models import googlenet
from rfspec.progress import RunProgress, check_run_progress
from rfspec.runs.store import Store

__all__ = ["CHANNEL_RULE_POSITIONS", "CHANNEL_RULE_SEEDS", "Estimate", "FigureResult", "FigureSpec", "FiguresResult",
           "FiguresSettings", "PairPsi", "Panel", "PanelResult", "REGENERATE", "SCHEMA", "figure_dict",
           "figure_numbers",
           "planned_work", "run_figures", "settings_from_config", "step_prior"]

SCHEMA = 1  # bump when a stored panel's format changes
NUMBERS_VERSION = 1  # bump when `figure_numbers` changes: the numbers are recomputed from the stored panels

# Where and for which seeds the channel rule asks a node to be on at the start: the paper's column
# and the seeds of Figures 2 and 3, plus whatever a figure shows. So a node type is the same
# channel in every figure that shows it (Fig 1 left and Fig 4; Fig 1 right, Fig 2 and Fig 5;
# Fig 3 and Fig 6).
CHANNEL_RULE_POSITIONS = ("top", "middle", "bottom")
CHANNEL_RULE_SEEDS = (0, 1, 2)

# How to remake any image from a figure's JSON, bit for bit. Only the same grid call (same seeds,
# same positions, same rfspec version, backend and device count) does that: a lone
# rfspec.visualize agrees to float rounding at first, and zipser2015's normalised step amplifies it.
REGENERATE = (
    "grid = rfspec.visualize_grid(params, seeds, rfspec.masks.node_masks(tap, channel, image_hw, positions), "
    "rfspec.VisConfig(**vis_config)); image = grid[p, s], with tap, channel, positions (i, j), seeds and "
    "vis_config from the panel's entry (image_hw = tuple(vis_config['image_hw']); tiled: masks = "
    "rfspec.node_mask(tap, channel, image_hw, None)[None], p = 0). The same call with the same rfspec version, "
    "backend and device count gives the same image bit for bit.")


# ----------------------------------------------------------------------------- settings


class Panel(NamedTuple):
  """A node type. channel < 0 means "the rank-th channel by `rfspec.selection`'s rule"."""

  tap: str
  channel: int = -1
  rank: int = 0


@dataclasses.dataclass(frozen=True)
class FigureSpec:
  """One figure: panels x positions (rows; none = tiled) x seeds (columns)."""

  name: str
  title: str
  claim: str
  panels: tuple  # of Panel
  positions: tuple  # names from `rfspec.masks.named_positions`; () = tiled
  seeds: tuple  # ints

  @property
  def tiled(self) -> bool:
    return not self.positions


@dataclasses.dataclass(frozen=True)
class FiguresSettings:
  """Everything that decides a figures run, validated (`settings_from_config`).

  Attributes:
    figures: the figures to make, in order.
    vis: `VisConfig` fields plus "recipe" (JSON-able), shared by every panel.
    n_boot, n_perm: bootstrap draws and permutations behind each number.
    analysis_seed: the integer behind the numbers' `jax.random.key`.
    smoke_test: a quick run that checks the pipeline only (every output says so).
    variant: the config variant's name.
  """

  figures: tuple
  vis: dict
  n_boot: int = 1000
  n_perm: int = 1000
  analysis_seed: int = 0
  smoke_test: bool = False
  variant: str = ""

  def cfg(self, tap: str) -> VisConfig:
    fields = {k: (tuple(v) if isinstance(v, list) else v) for k, v in self.vis.items() if k != "recipe"}
    return VisConfig.from_recipe(self.vis.get("recipe", "zipser2015"), tap=tap, **fields)

  @property
  def image_hw(self) -> tuple[int, int]:
    return tuple(int(v) for v in self.vis["image_hw"])

  def to_dict(self) -> dict:
    d = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
    d["figures"] = [dict(dataclasses.asdict(f), panels=[p._asdict() for p in f.panels]) for f in self.figures]
    return d


def _get(config, name, default=None):
  return config.get(name, default) if hasattr(config, "get") else getattr(config, name, default)


def _whole(value, what: str, lo: int, hi: int) -> int:
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not lo <= int(value) <= hi:
    raise UserError(f"{what} must be a whole number in [{lo}, {hi}]; got {value!r}.")
  return int(value)


def settings_from_config(config, *, only: Sequence[str] = ()) -> FiguresSettings:
  """Validates a figures config as a whole, before any weights load or compile (UserError otherwise).

  Every bad field is named in ONE UserError paragraph (each figure's first bad field, and every
  bad top-level field), each with its fix. The largest grid call of each tap must fit in memory
  (`rfspec.memory.check_fits`), so a size that cannot is refused here, not after the weights load.

  Args:
    config: an `ml_collections.ConfigDict` or dict: figures {name: {title, claim, panels [{tap,
      channel, rank}], positions, seeds}}, vis {recipe, VisConfig fields}, n_boot, n_perm,
      analysis_seed, smoke_test, variant.
    only: figure names to keep (all when empty), in the config's order.
  """
  figs = _get(config, "figures")
  figs = dict(figs.to_dict() if hasattr(figs, "to_dict") else figs or {})
  unknown = [n for n in only if n not in figs]
  if unknown:
    raise UserError(f"Unknown figure(s) {unknown}; this config has {sorted(figs)}. Use --figures=fig1,fig2 or "
                    "--config=experiments/configs/figN.py.")
  names = [n for n in figs if not only or n in only]
  if not names:
    raise UserError("The config names no figures; use experiments/configs/reproduce_paper.py or a figN.py config.")
  bad: list[str] = []

  def collect(fn, *args):
    try:
      return fn(*args)
    except UserError as e:
      bad.append(" ".join(str(e).split()))
      return None

  vis = _get(config, "vis")
  vis = dict(vis.to_dict() if hasattr(vis, "to_dict") else vis or {})
  hw = vis.get("image_hw")
  if hw is None:
    raise UserError("config.vis has no image_hw; pick a variant, e.g. --config=experiments/configs/"
                    "reproduce_paper.py:cpu (or :full, :quick).")
  if isinstance(hw, (str, bytes)) or not hasattr(hw, "__len__") or len(hw) != 2 or \
      not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in hw):
    raise UserError(f"config.vis.image_hw must be (H, W), two whole numbers of pixels, e.g. (224, 224); got {hw!r}.")
  vis["image_hw"] = [int(v) for v in hw]
  specs = [spec for spec in (collect(_figure_spec, n, figs[n], vis) for n in names) if spec is not None]
  counts = {name: collect(_whole, _get(config, name, default), f"config.{name}", lo, hi)
            for name, default, lo, hi in (("n_boot", 1000, 20, 100_000), ("n_perm", 1000, 20, 100_000),
                                          ("analysis_seed", 0, 0, 2 ** 31 - 1))}
  settings = FiguresSettings(
      figures=tuple(specs), vis=vis, **{k: (v if v is not None else 20) for k, v in counts.items()},
      smoke_test=bool(_get(config, "smoke_test", False)), variant=str(_get(config, "variant", "")))
  largest = {}  # tap -> images in its largest grid call (one panel: positions x seeds; tiled: seeds)
  for f in specs:
    for p in f.panels:
      largest[p.tap] = max(largest.get(p.tap, 0), max(len(f.positions), 1) * len(f.seeds))
  for tap, batch in largest.items():
    try:  # bad vis fields, or an image too small for a tap: VisConfig says which
      cfg = settings.cfg(tap)
    except (TypeError, ValueError) as e:
      bad.append(f"config.vis does not work for tap {tap!r}: {' '.join(str(e).split())}")
      break
    try:
      memory.check_fits(cfg, batch)
    except UserError as e:
      bad.append(f"config.vis.image_hw: {' '.join(str(e).split())}")
      break
  if bad:
    raise UserError(" ".join([f"The figures config has {len(bad)} bad field(s):"] + bad))
  return settings


def _figure_spec(name: str, fig: dict, vis: dict) -> FigureSpec:
  where = f"config.figures.{name}"
  panels = []
  for n, p in enumerate(fig.get("panels") or ()):
    tap = str(p.get("tap", ""))
    try:
      layer = googlenet.check_tap(tap)
    except ValueError as e:
      raise UserError(f"{where}.panels[{n}].tap: {e}") from None
    if tap not in geometry.spatial_taps():
      raise UserError(f"{where}.panels[{n}].tap: {tap!r} has no spatial grid, so it has no RF positions; use a "
                      "spatial tap from conv2/3x3 to inception_5b/output.")
    channel = _whole(p.get("channel", -1), f"{where}.panels[{n}].channel", -1, layer.channels - 1)
    panels.append(Panel(tap, channel, _whole(p.get("rank", 0), f"{where}.panels[{n}].rank", 0, layer.channels - 1)))
  if not panels:
    raise UserError(f"{where}.panels is empty; give at least one node type, e.g. dict(tap='inception_4c/5x5').")
  if len(set(panels)) != len(panels):
    raise UserError(f"{where}.panels lists the same node type twice: {[tuple(p) for p in panels]}.")
  seeds = fig.get("seeds") or ()
  if isinstance(seeds, (str, bytes)) or not hasattr(seeds, "__iter__"):
    raise UserError(f"{where}.seeds must be a list of whole numbers, e.g. (0, 1, 2); got {seeds!r}.")
  seeds = tuple(seeds)
  if not seeds:
    raise UserError(f"{where}.seeds is empty; give the start seeds, e.g. (0, 1, 2).")
  if not all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 0 <= v < 2 ** 31 for v in seeds):
    raise UserError(f"{where}.seeds must be whole numbers in [0, 2147483647], e.g. (0, 1, 2); got {list(seeds)}.")
  seeds = tuple(int(v) for v in seeds)
  if len(set(seeds)) != len(seeds):
    raise UserError(f"{where}.seeds lists a seed twice: {list(seeds)}; each column is its own start.")
  positions = tuple(str(p) for p in (fig.get("positions") or ()))
  hw = tuple(vis["image_hw"])
  for panel in panels:
    try:
      named = masks_lib.named_positions(panel.tap, hw)
    except ValueError as e:
      raise UserError(f"config.vis.image_hw {list(hw)} is too small for {panel.tap}: {e}") from None
    bad = [p for p in positions if p not in named]
    if bad:
      raise UserError(f"{where}.positions: unknown position name(s) {bad}; choose from {sorted(named)} "
                      "(rfspec.masks.named_positions), or () for a tiled figure.")
  if len(set(positions)) != len(positions):
    raise UserError(f"{where}.positions lists a position twice: {list(positions)}.")
  return FigureSpec(name, str(fig.get("title", name)), str(fig.get("claim", "")), tuple(panels), positions, seeds)


# ----------------------------------------------------------------------------- results


class Estimate(NamedTuple):
  """A number with its 95 % interval, or why there is none.

  Attributes:
    value: the estimate; NaN when undefined (then `why` says why).
    lo, hi: the bootstrap interval; meaningful only when not `degenerate`.
    degenerate: every bootstrap draw gave the same value (at n units that is no interval).
    n: independent units behind it (seeds here).
    p_value: permutation p-value (NaN where none is computed).
    why: "" when defined, else the reason.
  """

  value: float
  lo: float = math.nan
  hi: float = math.nan
  degenerate: bool = False
  n: int = 0
  p_value: float = math.nan
  why: str = ""


class PairPsi(NamedTuple):
  """psi_auc between positions p < q of one panel, on their common RF-frame window.

  Attributes:
    p, q: row indices into the panel's positions.
    window_share: the common window's area / the RF's area.
    psi_auc: 2 P(W > B) - 1 (0: the positions' patterns are indistinguishable, 1: separable).
  """

  p: int
  q: int
  window_share: float
  psi_auc: Estimate


class PanelResult(NamedTuple):
  """One node type of a figure.

  Attributes:
    tap, channel, rank: the node type (channel resolved); rule: how the channel was chosen.
    rf_size, rf_stride: RF side and stride in px; grid: (h, w) of the tap's output.
    position_names: P names ("top", ...); () when tiled.
    positions: int [P, 2] (i, j) = (row, col) on the tap's grid; [0, 2] when tiled.
    boxes: int [P, 4] full RF boxes (top, left, bottom, right) px, half-open, may extend past the
      image; [0, 4] when tiled.
    inside: float [P] share of each RF inside the image; [0] when tiled.
    seeds: int [S] one column per seed.
    images: float32 [P, S, H, W, 3] RGB in [0, 1]; [1, S, H, W, 3] when tiled (every position at once).
    final_activation: float32 [P, S] the node's value on the final image (no jitter); tiled: the
      sum over every position of the channel.
    psi_auc: one `PairPsi` per pair p < q (empty when tiled).
    auc_id: one `Estimate` per position: P(within-seed pairs > pairs with another channel of the
      same tap at that position) (0.5: no more alike than other channels); undefined (see the
      figure's `auc_id_why`) without such a floor.
    vis_config: the `VisConfig` fields of the grid call (JSON-able).
    seconds: wall time the grid took when it was made; resumed: restored from the store.
  """

  tap: str
  channel: int
  rank: int
  rule: str
  rf_size: int
  rf_stride: int
  grid: tuple
  position_names: tuple
  positions: np.ndarray
  boxes: np.ndarray
  inside: np.ndarray
  seeds: np.ndarray
  images: np.ndarray
  final_activation: np.ndarray
  psi_auc: tuple
  auc_id: tuple
  vis_config: dict
  seconds: float
  resumed: bool


class FigureResult(NamedTuple):
  """One figure: its panels and its numbers.

  Attributes:
    name, title, claim: from the config (claim: the paper's words).
    tiled: every position at once (one row) instead of named positions.
    panels: `PanelResult`s, in config order.
    psi_why: why no psi_auc of the figure can be computed, when one reason holds for all (tiled,
      too few seeds), said once; else "" (a pair's own reason, e.g. a small common window, is in
      its `Estimate.why`).
    auc_id_why: likewise for auc_id (tiled, too few seeds, no floor).
    seconds: wall time of the figure when it was made (panels and numbers); resumed: every part
      was restored from the store.
  """

  name: str
  title: str
  claim: str
  tiled: bool
  panels: tuple
  psi_why: str
  auc_id_why: str
  seconds: float
  resumed: bool


class FiguresResult(NamedTuple):
  """A figures run.

  Attributes:
    settings: `FiguresSettings.to_dict()`.
    figures: one `FigureResult` per figure, in order.
    seconds: wall time of this call (restored parts cost only their loading).
  """

  settings: dict
  figures: tuple
  seconds: float


# ----------------------------------------------------------------------------- work and its prior


def _grid_name(fig: FigureSpec, k: int) -> str:
  return f"[{fig.name}] panel {k + 1}/{len(fig.panels)} {fig.panels[k].tap}"


def planned_work(settings: FiguresSettings) -> list[tuple[str, str, int]]:
  """(grid name, tap, image-steps) per panel of every figure, in run order (one grid call each)."""
  steps = int(settings.vis["steps"])
  return [(_grid_name(f, k), p.tap, max(len(f.positions), 1) * len(f.seeds) * steps)
          for f in settings.figures for k, p in enumerate(f.panels)]


def step_prior(settings: FiguresSettings) -> Callable[[str], float]:
  """Seconds per image-step of each tap before it has run: THE prior behind the ETA printed before
  the first step: `rfspec.throughput.cpu_prior`, from its measured table."""
  return throughput.cpu_prior(settings.image_hw, planned_work(settings))


# ----------------------------------------------------------------------------- one panel


def final_activation(params, images, masks, cfg: VisConfig) -> np.ndarray:
  """Σ mask · act(tap) for images [B, H, W, 3] and masks [B, h, w, C] -> float32 [B] (no jitter),
  as the run's net sees them (`cfg.caffe_mean`, `cfg.pad_mode`)."""
  act = np.asarray(objectives.tap_activation(params, jnp.asarray(images), cfg.tap, mean_bgr=cfg.caffe_mean,
                                             pad_mode=cfg.pad_mode), np.float64)
  return (act * np.asarray(masks, np.float64)).sum(axis=(1, 2, 3)).astype(np.float32)


def _panel_key(settings: FiguresSettings, fig: FigureSpec, panel: Panel) -> dict:
  return dict(panel=panel._asdict(), positions=list(fig.positions), seeds=list(fig.seeds), vis=settings.vis,
              rule=dict(positions=list(CHANNEL_RULE_POSITIONS), seeds=list(CHANNEL_RULE_SEEDS)))


def _coords(fig: FigureSpec, tap: str, hw) -> list:
  named = masks_lib.named_positions(tap, hw)
  return [named[p] for p in fig.positions]


def _choose(params, cfg: VisConfig, fig: FigureSpec, panel: Panel) -> tuple[int, str]:
  """The panel's channel and the rule in words (THE channel rule over the paper's column and seeds
  0-2, plus what the figure shows)."""
  if panel.channel >= 0:
    return panel.channel, "channel given in the config"
  named = masks_lib.named_positions(cfg.tap, cfg.image_hw)
  shown = [named[p] for p in dict.fromkeys([*CHANNEL_RULE_POSITIONS, *fig.positions])]
  seeds = sorted(set(CHANNEL_RULE_SEEDS) | set(fig.seeds))
  choice = selection.choose_channels(params, cfg, shown, n_channels=panel.rank + 1, n_seeds=len(seeds),
                                     seed_pool=seeds)
  if len(choice.channels) <= panel.rank:
    raise UserError(
        f"Figure {fig.name}: only {len(choice.channels)} channel(s) of {cfg.tap} are on at the start at every position "
        f"{[tuple(map(int, p)) for p in shown]} for seeds {seeds}, so rank {panel.rank} has none (with objective "
        f"{cfg.objective!r} a node that is 0 at the start never moves). Use a lower rank, or name a channel.")
  return int(choice.channels[panel.rank]), f"rank {panel.rank} by the channel rule (rfspec.selection): {choice.rule}"


def _run_panel(params, settings, fig: FigureSpec, k: int, store: Store,
               progress: RunProgress) -> tuple[dict, dict, bool]:
  """(arrays, meta, resumed=False) of panel k: its channel by the rule, then ONE compiled grid call
  over positions x seeds; saved as a store unit."""
  panel = fig.panels[k]
  unit, key, name = f"figures/{fig.name}/panel_{k}", _panel_key(settings, fig, panel), _grid_name(fig, k)
  t0 = time.perf_counter()
  cfg = settings.cfg(panel.tap)
  channel, rule = _choose(params, cfg, fig, panel)
  masks = (masks_lib.node_mask(cfg.tap, channel, cfg.image_hw, None)[None] if fig.tiled
           else masks_lib.node_masks(cfg.tap, channel, cfg.image_hw, _coords(fig, cfg.tap, cfg.image_hw)))
  images = np.asarray(visualize_grid(params, list(fig.seeds), masks, cfg, progress=progress.callback(name, cfg.tap)))
  n_p, n_s = images.shape[:2]
  final = final_activation(params, images.reshape(-1, *images.shape[2:]), np.repeat(masks, n_s, axis=0), cfg)
  arrays = dict(images=images.astype(np.float32), final_activation=final.reshape(n_p, n_s))
  meta = dict(channel=int(channel), rule=rule, seconds=time.perf_counter() - t0,
              vis_config={k2: (list(v) if isinstance(v, tuple) else v) for k2, v in dataclasses.asdict(cfg).items()})
  store.save(unit, key, arrays, meta)
  return arrays, meta, False


# ----------------------------------------------------------------------------- the numbers

TILED_WHY = "tiled: each image drives every position at once, so there are no positions to compare"


def _seeds_why(n_seeds: int) -> str:
  return (f"needs at least {metrics.MIN_SEEDS} seeds per position (within-position pairs to compare and resample); "
          f"this figure shows {n_seeds}")


@functools.partial(jax.jit, static_argnames=("n_units", "n_boot"))
def _auc_id_draws(desc, labels, ids, unit, own, key, *, n_units: int, n_boot: int):
  """(estimate, bootstrap draws [n_boot]) of auc_id for label `own`; a draw resamples the n_units
  start seeds (unit [N]: each image's seed index) with replacement."""
  i, j = metrics.upper_pairs(desc.shape[0])
  cmp = metrics.compare(metrics.cosine(desc, desc)[i, j])
  est = metrics.auc_id_from(cmp, ids, labels, jnp.ones(len(ids)), own)

  def draw(k):
    counts = jnp.bincount(jax.random.randint(k, (n_units,), 0, n_units), length=n_units).astype(jnp.float32)
    return metrics.auc_id_from(cmp, ids, labels, counts[unit], own)

  return est, jax.vmap(draw)(jax.random.split(key, n_boot))


def _auc_id(desc: np.ndarray, labels: np.ndarray, ids: np.ndarray, own: int, key: jax.Array, n_boot: int) -> Estimate:
  """auc_id of label `own` among descriptors desc [N, C] of several channels at one position (labels
  [N]: which channel; ids [N]: start seeds, pairs with a shared start left out), with a bootstrap
  over seeds (one compiled call)."""
  uniq, unit = np.unique(ids, return_inverse=True)
  est, boot = _auc_id_draws(jnp.asarray(desc), jnp.asarray(labels), jnp.asarray(ids), jnp.asarray(unit.reshape(-1)),
                            own, key, n_units=len(uniq), n_boot=int(n_boot))
  iv = metrics.interval(np.asarray(boot), len(uniq), bounds=(0.0, 1.0))
  return Estimate(float(est), iv.lo, iv.hi, iv.degenerate, iv.n)


def figure_numbers(params, taps: Sequence[str], channels: Sequence[int], images: Sequence[np.ndarray],
                   boxes: Sequence[np.ndarray], seeds, image_hw, key: jax.Array, *, n_boot: int = 1000,
                   n_perm: int = 1000) -> tuple[list[tuple[tuple, tuple]], str, str]:
  """The numbers of one figure, by THE measure (`rfspec.metrics`, `rfspec.claims.condition_psi`).

  Args:
    params: GoogLeNet params (the judge, `metrics.JUDGE_TAP`).
    taps, channels: each panel's node type.
    images: per panel [P, S, H, W, 3] (tiled: [1, S, ...] with no boxes).
    boxes: per panel int [P, 4] full RF boxes; [0, 4] when tiled.
    seeds: int [S], the same for every panel.
    image_hw: (H, W).
    key: the figure's analysis key.

  Returns:
    ([(psi_pairs, auc_ids)] per panel, psi_why, auc_id_why): psi_pairs a `PairPsi` per pair p < q,
    auc_ids an `Estimate` per position (each undefined one with its reason); psi_why / auc_id_why:
    the reason when one holds for every such number of the figure (tiled, too few seeds, no
    floor), else "".
  """
  seeds = np.asarray(seeds, np.int64)
  n_s = len(seeds)
  tiled = len(boxes[0]) == 0
  if tiled:
    return [((), ()) for _ in taps], TILED_WHY, TILED_WHY
  enough = n_s >= metrics.MIN_SEEDS
  desc = [metrics.window_descriptors(params, im, b, metrics.frame_windows(b, image_hw)) if enough else None
          for im, b in zip(images, boxes)]  # [P, S, P, C] each
  out = []
  for k, (tap, b) in enumerate(zip(taps, boxes)):
    windows = metrics.frame_windows(b, image_hw)
    n_p = len(b)
    pairs = []
    for p in range(n_p):
      for q in range(p + 1, n_p):
        if not enough:
          est = Estimate(math.nan, why=_seeds_why(n_s))
        elif not windows.defined[p, q]:
          est = Estimate(math.nan, why=windows.reason[p][q])
        else:
          r = claims.condition_psi(desc[k][p, :, q][None], desc[k][q, :, p][None], seeds[None], seeds[None],
                                   jax.random.fold_in(jax.random.fold_in(key, k), p * n_p + q), n_boot=n_boot,
                                   n_perm=n_perm)
          est = Estimate(r["estimate"], r["ci"][0], r["ci"][1], bool(r["degenerate"]), int(r["n"]), r["p_value"])
        pairs.append(PairPsi(p, q, float(windows.share[p, q]), est))
    # The floor: other channels of the same tap at the same positions, with the same seeds.
    floor = [j for j, (t, c) in enumerate(zip(taps, channels)) if t == tap and j != k and c != channels[k]]
    if not enough:
      why = _seeds_why(n_s)
    elif not floor:
      why = ("needs a floor: another channel of the same tap at the same positions; this figure shows one channel "
             "per tap")
    else:
      why = ""
    auc = []
    for p in range(n_p):
      if why:
        auc.append(Estimate(math.nan, why=why))
        continue
      group = [k, *floor]
      x = np.concatenate([desc[j][p, :, p] for j in group])  # each on its own window at p
      labels = np.repeat(np.arange(len(group)), n_s)
      auc.append(_auc_id(x, labels, np.tile(seeds, len(group)), 0,
                         jax.random.fold_in(jax.random.fold_in(key, 1000 + k), p), n_boot))
    out.append((tuple(pairs), tuple(auc)))
  # A reason that holds for the whole figure is said once; a pair's own reason stays with the pair.
  psi_why = "" if enough else _seeds_why(n_s)
  auc_why = "" if any(not e.why for _, auc in out for e in auc) else why
  return out, psi_why, auc_why


def _estimate_json(e: Estimate) -> dict:
  num = lambda v: None if v is None or not math.isfinite(v) else float(v)  # noqa: E731
  return dict(value=num(e.value), lo=num(e.lo), hi=num(e.hi), degenerate=bool(e.degenerate), n=int(e.n),
              p_value=num(e.p_value), why=e.why)


def _estimate_from(d: dict) -> Estimate:
  nan = lambda v: math.nan if v is None else float(v)  # noqa: E731
  return Estimate(nan(d["value"]), nan(d["lo"]), nan(d["hi"]), bool(d["degenerate"]), int(d["n"]), nan(d["p_value"]),
                  d["why"])


def _numbers_json(numbers, psi_why: str, auc_why: str) -> dict:
  return dict(psi_why=psi_why, auc_id_why=auc_why, panels=[dict(
      psi_auc=[dict(p=e.p, q=e.q, window_share=e.window_share, psi_auc=_estimate_json(e.psi_auc)) for e in pairs],
      auc_id=[_estimate_json(e) for e in auc]) for pairs, auc in numbers])


def _numbers_from(d: dict):
  numbers = [(tuple(PairPsi(e["p"], e["q"], float(e["window_share"]), _estimate_from(e["psi_auc"]))
                    for e in panel["psi_auc"]), tuple(_estimate_from(e) for e in panel["auc_id"]))
             for panel in d["panels"]]
  return numbers, d["psi_why"], d["auc_id_why"]


# ----------------------------------------------------------------------------- the run


def _figure_key(settings: FiguresSettings, fig: FigureSpec) -> jax.Array:
  # By name, not by order, so a figure's numbers do not depend on which other figures run with it.
  return jax.random.fold_in(jax.random.key(settings.analysis_seed), zlib.crc32(fig.name.encode()) & 0x7FFFFFFF)


def run_figures(params, settings: FiguresSettings, store: Store, *,
                progress: RunProgress | None = None) -> FiguresResult:
  """Makes every figure of `settings` (see the module docstring).

  Args:
    params: GoogLeNet params.
    settings: `settings_from_config(...)`.
    store: where panels and numbers are kept and resumed from (`Store(None)` keeps nothing).
    progress: the run's `RunProgress`; default one that prints on stderr with `step_prior`'s ETA
      (False, or `RunProgress(..., quiet=True)`, for silence). Its first line, before any step, gives
      the ETA of the work left.

  Returns:
    `FiguresResult`.
  """
  t_run = time.perf_counter()
  progress = check_run_progress(progress, lambda: RunProgress(planned_work(settings), label="figures",
                                                              prior_s=step_prior(settings)))
  hw = settings.image_hw
  # Restored panels first, so the ETA before the first step prices only the work left.
  work = {name: n for name, _, n in planned_work(settings)}
  stored = {}
  for fig in settings.figures:
    for k, panel in enumerate(fig.panels):
      hit = store.load(f"figures/{fig.name}/panel_{k}", _panel_key(settings, fig, panel))
      if hit is not None:
        stored[fig.name, k] = hit
        progress.skip(_grid_name(fig, k), tap=panel.tap, work=work[_grid_name(fig, k)])
  todo = len(work) - len(stored)
  progress.note(f"{len(settings.figures)} figure(s): {todo} grid call(s) to run, {len(stored)} restored from the "
                f"store; {hw[0]}x{hw[1]} px, {settings.vis['steps']} steps; ETA before the first step from a prior "
                "(2 CPU cores), then measured")
  figures = []
  for fig in settings.figures:
    t0 = time.perf_counter()
    parts = []
    for k in range(len(fig.panels)):
      if (fig.name, k) in stored:
        parts.append((*stored[fig.name, k], True))
      else:
        parts.append(_run_panel(params, settings, fig, k, store, progress))
    panels = [_panel_parts(fig, k, hw, *parts[k]) for k in range(len(fig.panels))]
    unit = f"figures/{fig.name}/numbers"
    # Keyed on the images themselves too: a panel redone elsewhere (another backend) gets new numbers.
    nkey = dict(panels=[_panel_key(settings, fig, p) for p in fig.panels], n_boot=settings.n_boot,
                images=[hashlib.sha256(np.ascontiguousarray(p["images"]).tobytes()).hexdigest() for p in panels],
                n_perm=settings.n_perm, analysis_seed=settings.analysis_seed, version=NUMBERS_VERSION,
                judge=metrics.JUDGE_TAP, min_window_share=metrics.MIN_WINDOW_SHARE)
    hit = store.load(unit, nkey)
    if hit is not None:
      numbers, psi_why, auc_why = _numbers_from(hit[1]["numbers"])
      n_seconds = float(hit[1]["seconds"])
    else:
      t1 = time.perf_counter()
      numbers, psi_why, auc_why = figure_numbers(
          params, [p["tap"] for p in panels], [p["channel"] for p in panels], [p["images"] for p in panels],
          [p["boxes"] for p in panels], fig.seeds, hw, _figure_key(settings, fig), n_boot=settings.n_boot,
          n_perm=settings.n_perm)
      n_seconds = time.perf_counter() - t1
      store.save(unit, nkey, dict(seeds=np.asarray(fig.seeds)), dict(numbers=_numbers_json(numbers, psi_why, auc_why),
                                                                   seconds=n_seconds))
    results = tuple(PanelResult(**p, psi_auc=pairs, auc_id=auc) for p, (pairs, auc) in zip(panels, numbers))
    resumed = all(r for _, _, r in parts) and hit is not None
    seconds = sum(float(m["seconds"]) for _, m, _ in parts) + n_seconds
    figures.append(FigureResult(fig.name, fig.title, fig.claim, fig.tiled, results, psi_why, auc_why, seconds, resumed))
    progress.note(f"[{fig.name}] {'restored from the store' if resumed else 'done'} "
                  f"({time.perf_counter() - t0:.0f}s here, {seconds:.0f}s to make)")
  return FiguresResult(settings.to_dict(), tuple(figures), time.perf_counter() - t_run)


def _panel_parts(fig: FigureSpec, k: int, hw, arrays: dict, meta: dict, resumed: bool) -> dict:
  """The `PanelResult` fields of panel k except its numbers."""
  panel = fig.panels[k]
  rf = geometry.receptive_field(panel.tap, hw)
  coords = _coords(fig, panel.tap, hw)
  return dict(
      tap=panel.tap, channel=int(meta["channel"]), rank=panel.rank, rule=meta["rule"], rf_size=int(rf.size),
      rf_stride=int(rf.stride), grid=tuple(int(v) for v in rf.grid), position_names=tuple(fig.positions),
      positions=np.asarray(coords, np.int64).reshape(-1, 2),
      boxes=np.asarray([rf.box(*c) for c in coords], np.int64).reshape(-1, 4),
      inside=np.asarray([rf.inside_fraction(*c) for c in coords], np.float64),
      seeds=np.asarray(fig.seeds, np.int64), images=np.asarray(arrays["images"], np.float32),
      final_activation=np.asarray(arrays["final_activation"], np.float32), vis_config=dict(meta["vis_config"]),
      seconds=float(meta["seconds"]), resumed=bool(resumed))


# ----------------------------------------------------------------------------- plain numbers


def figure_dict(fig: FigureResult, *, weights: str = "", weights_sha256: str = "") -> dict:
  """One figure as plain JSON-able numbers and text: what its PNG shows, its numbers, and how to
  regenerate any of its images (no images)."""
  def panel(p: PanelResult) -> dict:
    return dict(
        tap=p.tap, channel=p.channel, rank=p.rank, rule=p.rule,
        rf=dict(size=p.rf_size, stride=p.rf_stride, grid=list(p.grid)),
        positions=[dict(name=n, ij=[int(v) for v in ij], box=[int(v) for v in b], inside=float(f))
                   for n, ij, b, f in zip(p.position_names, p.positions, p.boxes, p.inside)],
        seeds=[int(s) for s in p.seeds], final_activation=p.final_activation.tolist(),
        psi_auc=[dict(p=e.p, q=e.q, window_share=e.window_share, psi_auc=_estimate_json(e.psi_auc)) for e in p.psi_auc],
        auc_id=[_estimate_json(e) for e in p.auc_id], vis_config=p.vis_config, seconds=p.seconds, resumed=p.resumed)

  return dict(figure=fig.name, title=fig.title, claim=fig.claim, tiled=fig.tiled, panels=[panel(p) for p in fig.panels],
              psi_why=fig.psi_why, auc_id_why=fig.auc_id_why, seconds=fig.seconds, resumed=fig.resumed,
              weights=weights, weights_sha256=weights_sha256, judge=metrics.JUDGE_TAP,
              min_window_share=metrics.MIN_WINDOW_SHARE, ci_level=metrics.CI_LEVEL, regenerate=REGENERATE)

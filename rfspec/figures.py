"""Paper-style figures: node types x RF positions x seeds, each one `visualize_grid` call per panel.

A figure is a list of panels (node types: tap + channel), a list of named RF positions (or none:
"tiled", every position of the channel at once) and a list of seeds. Layout: rows are positions
(one row when tiled); columns are panels x seeds. `make_figure` runs it and returns everything a
report needs, including, per image, what it takes to regenerate that image exactly.
"""

from __future__ import annotations

import dataclasses
import time
from typing import Callable, NamedTuple, Sequence

import jax.numpy as jnp
import numpy as np

from rfspec import masks as masks_lib
from rfspec import objectives as objectives_lib
from rfspec import selection
from rfspec.errors import UserError
from rfspec.models import googlenet, preprocess
from rfspec.geometry import receptive_field
from rfspec.engine import Progress, VisConfig, visualize_grid


class Panel(NamedTuple):
  """A node type. channel < 0 means "the rank-th channel by `rfspec.selection`'s rule"."""

  tap: str
  channel: int = -1
  rank: int = 0


class Figure(NamedTuple):
  """A rendered-ready figure.

  Attributes:
    images: float32 [R, C, H, W, 3] RGB in [0, 1]; R = positions (1 if tiled), C = panels x seeds.
    boxes: int [R, C, 4] RF boxes (top, left, bottom, right), or None when tiled.
    objectives: float32 [R, C], Σ mask · act(tap) of the final image (no jitter).
    row_labels: R position names ("top", ...; "tiled"); a row's (i, j) differs between panels
      whose taps have different grids, so it is in each cell's caption, not here.
    col_labels: C strings "tap chN\nseed S".
    captions: [R][C] strings under each image: its own (i, j) = (row, col) on its tap's grid and
      the share of its RF inside the image (or "all h x w" when tiled), and its final objective.
    records: [R][C] dicts: tap, channel, position (i, j), seed, RF geometry, objective, and the
      VisConfig fields -- enough to regenerate the image bit for bit with the same
      `visualize_grid` call (this panel's positions and seeds); a lone `rfspec.visualize` agrees
      only up to float rounding, which a recipe like zipser2015 amplifies over its steps.
    panels: the resolved panels (channels filled in).
  """

  images: np.ndarray
  boxes: np.ndarray | None
  objectives: np.ndarray
  row_labels: list[str]
  col_labels: list[str]
  records: list[list[dict]]
  panels: list[Panel]
  captions: list[list[str]]


# Where and for which seeds the channel rule asks a node to be active: the paper's column and
# the seeds of Figures 2 and 3.
CHANNEL_RULE_POSITIONS = ("top", "middle", "bottom")
CHANNEL_RULE_SEEDS = (0, 1, 2)


def final_objective(params, images, masks, tap: str, mean_bgr=preprocess.MEAN_BGR) -> np.ndarray:
  """Σ mask · act(tap) for images [B, H, W, 3] and masks [B, h, w, C] -> [B] (no transforms).

  `mean_bgr` is the run's `VisConfig.caffe_mean`, so the net sees what the run optimised for.
  """
  act = np.asarray(objectives_lib.tap_activation(params, jnp.asarray(images), tap, mean_bgr=mean_bgr), np.float64)
  return (act * np.asarray(masks, np.float64)).sum(axis=(1, 2, 3)).astype(np.float32)


def make_figure(params, panels: Sequence[Panel], positions: Sequence[str], seeds: Sequence[int],
                cfg_fields: dict, *, recipe: str = "deepdream",
                progress: Callable[[str, Progress], None] | None = None) -> Figure:
  """Runs every panel of a figure (one compiled grid call each) and lays the results out.

  Args:
    params: GoogLeNet params.
    panels: node types; a panel's channel < 0 is resolved by `rfspec.selection.resolve_channel`.
    positions: names from `rfspec.masks.named_positions` (e.g. "top", "middle", "bottom"); empty
      for tiled (every position of the channel at once).
    seeds: int seeds, one column per seed in each panel.
    cfg_fields: `VisConfig` fields other than tap (image_hw, steps, ...); a "recipe" among them
      wins over `recipe`.
    recipe: a name in `rfspec.recipes.RECIPES` (the other fields default from it).
    progress: called with (panel description, `Progress`) after each compiled chunk.

  Returns:
    A `Figure`.
  """
  tiled = not positions
  n_rows, seeds = (1 if tiled else len(positions)), [int(s) for s in seeds]
  images, boxes, objectives, records, resolved, col_labels = [], [], [], [], [], []
  cfg_fields = dict(cfg_fields)
  recipe = cfg_fields.pop("recipe", recipe)
  for panel in panels:
    cfg = VisConfig.from_recipe(recipe, tap=panel.tap, **cfg_fields)
    # The rule ranks channels over the paper's column and seeds 0-2 (plus any position or seed
    # shown), so a node type is the same channel in every figure that shows it (Fig 1 left and
    # Fig 4; Fig 1 right, Fig 2 and Fig 5; Fig 3 and Fig 6).
    named = masks_lib.named_positions(cfg.tap, cfg.image_hw)
    shown = [named[p] for p in dict.fromkeys([*CHANNEL_RULE_POSITIONS, *positions]) if p in named]
    rule_seeds = sorted(set(CHANNEL_RULE_SEEDS) | set(seeds))
    channel = selection.resolve_channel(params, cfg, panel.channel, panel.rank, positions=shown, seeds=rule_seeds)
    resolved.append(Panel(panel.tap, channel, panel.rank))
    rf = receptive_field(cfg.tap, cfg.image_hw)
    if tiled:
      coords = [None]
      masks = masks_lib.node_mask(cfg.tap, channel, cfg.image_hw, None)[None]
    else:
      named = masks_lib.named_positions(cfg.tap, cfg.image_hw)
      unknown = [p for p in positions if p not in named]
      if unknown:
        raise UserError(f"Unknown position name(s) {unknown}; choose from {sorted(named)} "
                        "(see rfspec.masks.named_positions).")
      coords = [named[p] for p in positions]
      masks = masks_lib.node_masks(cfg.tap, channel, cfg.image_hw, coords)
    desc = f"{cfg.tap} channel {channel}"
    report = None if progress is None else (lambda info, d=desc: progress(d, info))
    grid = visualize_grid(params, seeds, masks, cfg, return_trace=True, progress=report)
    flat = grid.images.reshape(-1, *grid.images.shape[2:])
    objs = final_objective(params, flat, np.repeat(masks, len(seeds), axis=0), cfg.tap,
                           cfg.caffe_mean).reshape(len(coords), len(seeds))
    images.append(grid.images)
    objectives.append(objs)
    geometry = dict(size=rf.size, stride=rf.stride, offset=rf.offset, grid=list(rf.grid))
    panel_boxes, panel_records = [], []
    for r, pos in enumerate(coords):
      box = None if pos is None else [int(v) for v in rf.box(*pos)]
      panel_boxes.append([box] * len(seeds))
      panel_records.append([dict(
          tap=cfg.tap, channel=channel, position=None if pos is None else list(pos),
          position_name="tiled" if pos is None else positions[r], seed=s,
          rf=dict(geometry, box=box, inside_fraction=None if pos is None else float(rf.inside_fraction(*pos))),
          objective=float(objs[r, k]), recipe=recipe, vis_config=_cfg_dict(cfg),
      ) for k, s in enumerate(seeds)])
    boxes.append(panel_boxes)
    records.append(panel_records)
    col_labels += [f"{_short(cfg.tap)} ch{channel}\nseed {s}" for s in seeds]
  # Panels side by side: [panel][row][seed] -> [row][panel * seed].
  images = np.concatenate(images, axis=1)
  objectives = np.concatenate(objectives, axis=1)
  recs = [[rec for pr in records for rec in pr[r]] for r in range(n_rows)]
  box_arr = None if tiled else np.array([[b for pb in boxes for b in pb[r]] for r in range(n_rows)], np.int64)
  row_labels = ["tiled"] if tiled else list(positions)
  captions = [[cell_caption(rec) for rec in row] for row in recs]
  return Figure(images, box_arr, objectives, row_labels, col_labels, recs, resolved, captions)


def cell_caption(record: dict) -> str:
  """Two lines under one image: where its node is, and the final objective.

  "(i, j) = (0, 6), RF 54% inside" -- position (row, col) on the tap's grid -- or
  "(i, j): all 14 x 14" when tiled; then "objective 716".
  """
  if record["position"] is None:
    h, w = record["rf"]["grid"]
    where = f"(i, j): all {h} x {w}"
  else:
    i, j = record["position"]
    where = f"(i, j) = ({i}, {j}), RF {record['rf']['inside_fraction']:.0%} inside"
  return f"{where}\nobjective {record['objective']:.3g}"


def _short(tap: str) -> str:
  return tap.replace("/output", "")


def _cfg_dict(cfg: VisConfig) -> dict:
  return {k: (list(v) if isinstance(v, tuple) else v) for k, v in dataclasses.asdict(cfg).items()}


# ----------------------------------------------------------------------------- whole-run progress


def figure_grids(panels: Sequence[Panel], positions: Sequence[str], seeds: Sequence[int],
                 steps: int) -> list[tuple[str, int]]:
  """The grid calls `make_figure` makes, in order: one (tap, image-steps) per panel.

  Image-steps = images in the grid (positions, or 1 when tiled, x seeds) x steps.
  """
  n_images = max(len(positions), 1) * len(seeds)
  return [(panel.tap, n_images * int(steps)) for panel in panels]


class RunProgress:
  """Progress and ETA of a whole run made of several grid calls (e.g. every figure's panels).

  Work is counted in image-steps. A grid's time runs from the end of the previous grid (or from
  the start) to its latest update, so compilation, channel selection and writing outputs are
  priced in. The ETA prices each grid's remaining work at its tap's measured seconds per
  image-step once that tap has run; a tap not yet run is priced at the run's seconds per unit of
  `cost` so far times its own cost (with `tap_macs`, a deep tap is not priced like conv2). Before
  the first update the ETA is None.

  Args:
    grids: (tap, image-steps) per grid call, in the order they run (see `figure_grids`).
    cost: relative cost of one image-step per tap (e.g. `tap_macs` at the run's size); default 1.
    clock: seconds, monotonic; injectable for tests.
  """

  def __init__(self, grids: Sequence[tuple[str, int]], cost: Callable[[str], float] | None = None,
               clock: Callable[[], float] = time.perf_counter):
    self.grids = [(str(tap), int(work)) for tap, work in grids]
    self._cost = {tap: float(cost(tap)) if cost else 1.0 for tap, _ in self.grids}
    self._clock = clock
    self._done = [0] * len(self.grids)
    self._seconds = [0.0] * len(self.grids)
    self._current = 0
    self._since = clock()

  @property
  def total(self) -> int:
    return sum(work for _, work in self.grids)

  @property
  def done(self) -> int:
    return sum(self._done)

  def update(self, done_in_grid: int) -> None:
    """Records that the current grid has done `done_in_grid` image-steps; a grid that reaches its
    total is finished and the next update belongs to the next grid."""
    k = self._current
    if k >= len(self.grids):
      raise ValueError(f"All {len(self.grids)} grids of this run are already finished.")
    now = self._clock()
    self._done[k] = min(int(done_in_grid), self.grids[k][1])
    self._seconds[k] = now - self._since
    if self._done[k] >= self.grids[k][1]:
      self._current, self._since = k + 1, now

  def eta_s(self) -> float | None:
    """Estimated seconds until every grid is done; None before any work is measured."""
    if self.done == 0:
      return None
    by_tap: dict[str, list[float]] = {}
    for (tap, _), done, secs in zip(self.grids, self._done, self._seconds):
      if done:
        acc = by_tap.setdefault(tap, [0.0, 0.0])
        acc[0] += secs
        acc[1] += done
    per_cost = sum(self._seconds) / sum(d * self._cost[tap] for (tap, _), d in zip(self.grids, self._done))
    left = 0.0
    for (tap, work), done in zip(self.grids, self._done):
      secs, n = by_tap.get(tap, (per_cost * self._cost[tap], 1.0))
      left += (work - done) * secs / n
    return left

  def summary(self) -> str:
    """"whole run 34% of 1234 image-steps, ETA 2m05s" (ETA "?" before any work is measured)."""
    eta = self.eta_s()
    frac = self.done / self.total if self.total else 1.0
    return f"whole run {frac:.0%} of {self.total} image-steps, ETA {'?' if eta is None else format_seconds(eta)}"


def tap_macs(tap: str, image_hw: tuple[int, int]) -> int:
  """Multiply-adds of the convolutions (and the classifier) a forward pass to `tap` needs: its
  ancestors in `googlenet.LAYERS`. A prior for how an image-step's cost grows with depth."""
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


def format_seconds(seconds: float) -> str:
  """45 -> "45s", 125 -> "2m05s", 3725 -> "1h02m"."""
  s = int(round(seconds))
  if s < 60:
    return f"{s}s"
  if s < 3600:
    return f"{s // 60}m{s % 60:02d}s"
  return f"{s // 3600}h{s % 3600 // 60:02d}m"

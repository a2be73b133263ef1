"""The specificity sweep: Zipser's claim, measured tap by tap, with and without a padding canvas.

The claim (Zipser 2015): nodes whose RF falls partly off the image prefer different,
seed-consistent patterns at different positions, and the effect grows with RF size. For one tap
`sweep_tap` visualises K channels x P named positions x S seeds (plus, optionally, the first
channel tiled over every position) as ONE `visualize_grid` call, then measures per channel with
`rfspec.metrics`:

  * S / PSI matrices [P, P] in pixel space (always) and in GoogLeNet feature space
    (`metrics.FEATURE_TAP`, when the node's RF is at least `FEATURE_MIN_RF` px; smaller RFs do
    not hold enough whole feature RFs, so they are measured in pixels). The primary space, used
    for the headline numbers, follows from the RF size alone and is recorded as `space`, with the
    reason; pairs whose aligned overlap holds no whole feature RF are undefined (None);
  * PSI of each position against the reference position (the first name, default "centre"):
    PSI_p = (PSI[p, ref] + PSI[ref, p]) / 2, which equals PSI[p, ref] in pixel space; None where
    the pair's seed ceiling is below `MIN_CEILING` (seeds do not agree enough for the ratio to
    mean anything);
  * the share of each position's RF inside the image (and inside the canvas, if any);
  * the transfer matrix T_pq (only without a canvas: T is measured on the bare image). It needs
    no seed agreement, but a moved pattern keeps only what stays on the image, so T also falls
    with the share of p's pattern that the move drops (large patterns, distant positions).

Comparison regions. Each position's region is its RF box grown by `cfg.jitter` px (the pixels
that any step's gradient can reach: jitter rolls the image by up to that much), clipped to the
image. Outside it a single-node visualisation keeps its random start, which differs between
seeds and would only dilute S; the metrics compare x_p and x_q on the overlap of both regions
after aligning the RF centres.

Padding ablation (`Canvas`). The optimised image stays `image_hw`; the net sees it embedded in
a canvas `pad` px wider on every side, filled with the net's zero input ("zero"), mid-grey
("grey") or a mirror of the image ("reflect"). `canvas_pad` picks pad as the smallest multiple
of the tap's stride that puts every chosen position's RF box inside the canvas, capped at
`Canvas.max_pad` (rounded down to a multiple of the stride; for "reflect" also below the image
side, which the mirror needs). A multiple of the stride keeps node (i, j) of the image grid at
node (i + pad/stride, j + pad/stride) of the canvas grid, so the same RF boxes, centres and
alignment hold and the metrics compare the same H x W images. What the ablation separates: with
the canvas no layer zero-pads inside the chosen nodes' RFs, and the off-image part of the RF sees
a plain, image-like surround instead of the net's border handling; the off-image part is still
not optimised. If PSI stays high with the canvas, position specificity comes from which part of
the RF holds the optimisable image (truncation of the content), not from the net's padding; if
it drops, the padding was doing it. Depth alone (RF size with the RF fully on the image) is
the "centre" row of deep taps and the small-RF taps.

Tiled realism (`tiled_realism`). The paper says tiled visualisations look more realistic than
single-position ones. We compare, for the same channel and seeds, the tiled image (every
position of the channel at once) with the centre single-position one, by the two scores of
`metrics.realism` (see its docstring for the justification and calibration):
`stats_distance`, the relative Frechet distance of the image's inception_3a channel statistics
to those of natural photographs (primary; lower = more natural; needs reference images), and
the net's top-1 `confidence` (secondary; higher = more natural, but adversarial patterns and
smooth blobs also score well). Both see the whole image, and both runs share size, steps and
start noise, so the difference is the objective alone.

Conventions: positions (i, j) = (row, col) on the tap's grid; pixels (y, x) = (row, col); images
RGB in [0, 1]. Matrices [P, P]: row p = the moved position (or the pattern source for T),
column q = the reference frame (the node driven).
"""

from __future__ import annotations

import dataclasses
import math
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax.numpy as jnp
import numpy as np

from rfspec import masks as masks_lib
from rfspec import metrics
from rfspec.models import googlenet
from rfspec.geometry import box_masks, branch_tap, receptive_field
from rfspec.engine import CANVAS_FILLS, Progress, VisConfig, visualize_grid

__all__ = ["Canvas", "DEFAULT_POSITIONS", "FEATURE_MIN_RF", "MIN_CEILING", "NO_CANVAS", "canvas_inside_fraction",
           "canvas_pad", "pair_summary", "plot_psi_vs_inside_fraction", "plot_psi_vs_rf_size", "plot_transfer",
           "rf_regions", "spearman", "sweep_tap", "tiled_realism"]

# Centre -> edge -> corner.
DEFAULT_POSITIONS: tuple[str, ...] = ("centre", "top", "left", "top_left", "bottom_right")
NO_CANVAS = "none"  # the variant name of the plain sweep
# The shared policy (see rfspec.metrics): feature space from this RF size up; PSI needs this ceiling.
FEATURE_MIN_RF = metrics.FEATURE_MIN_RF
MIN_CEILING = metrics.MIN_CEILING


class Canvas(NamedTuple):
  """A padding-ablation variant.

  Attributes:
    fill: "zero" (the net's zero input, the ImageNet mean colour), "grey" (0.5) or "reflect".
    max_pad: the largest canvas border in px (the cap; see `canvas_pad`).
  """

  fill: str
  max_pad: int


# ----------------------------------------------------------------------------- geometry


def _positions(tap: str, image_hw, position_names: Sequence[str]) -> list[tuple[int, int]]:
  named = masks_lib.named_positions(tap, image_hw)
  unknown = [p for p in position_names if p not in named]
  if unknown:
    raise ValueError(f"Unknown position name(s) {unknown}; choose from {sorted(named)}.")
  return [named[p] for p in position_names]


def canvas_pad(tap: str, image_hw: tuple[int, int], positions: Sequence[tuple[int, int]], max_pad: int,
               *, fill: str = "zero") -> int:
  """The canvas border (px) for `tap`: the smallest multiple of its stride that puts the RF box
  of every position (i, j) = (row, col) inside the canvas, capped.

  The cap is `max_pad` rounded down to a multiple of the stride (it bounds the compute: the net
  sees (H + 2 pad) x (W + 2 pad) px); for fill "reflect" the pad must also stay below the image
  side, since the mirror can only copy what is there. A capped pad leaves part of the RF off the
  canvas: see `canvas_inside_fraction`.

  Returns:
    pad in px, a multiple of the tap's stride, >= 0.
  """
  rf = receptive_field(tap, image_hw)
  h, w = rf.image_hw
  need = 0
  for i, j in positions:
    top, left, bottom, right = rf.box(i, j)
    need = max(need, -top, -left, bottom - h, right - w)
  pad = -(-need // rf.stride) * rf.stride
  cap = int(max_pad)
  if fill == "reflect":
    cap = min(cap, min(h, w) - 1)
  cap = max(cap, 0) // rf.stride * rf.stride
  return int(min(pad, cap))


def canvas_inside_fraction(tap: str, image_hw: tuple[int, int], pad: int, position: tuple[int, int]) -> float:
  """Share of node (i, j) = (row, col)'s RF (image grid) that lies inside the `pad` px canvas."""
  rf = receptive_field(tap, image_hw)
  if pad % rf.stride:
    raise ValueError(f"pad {pad} px is not a multiple of {tap!r}'s stride {rf.stride} px.")
  k = pad // rf.stride
  net_hw = (rf.image_hw[0] + 2 * pad, rf.image_hw[1] + 2 * pad)
  return float(receptive_field(tap, net_hw).inside_fraction(position[0] + k, position[1] + k))


rf_regions = box_masks  # each position's RF box (grown by the jitter in `sweep_tap`)


# ----------------------------------------------------------------------------- metrics


def _clean(x) -> Any:
  """numpy / jax values -> JSON-friendly Python, with NaN and inf as None."""
  arr = np.asarray(x, np.float64)
  if arr.ndim == 0:
    v = float(arr)
    return v if math.isfinite(v) else None
  return [_clean(v) for v in arr]


def _nanmean(values) -> float | None:
  arr = np.asarray([np.nan if v is None else v for v in np.ravel(np.asarray(values, object))], np.float64)
  arr = arr[np.isfinite(arr)]
  return float(arr.mean()) if arr.size else None


def _space_block(spec: metrics.Specificity, ref: int) -> dict:
  """One space's matrices and per-position summaries, JSON-friendly.

  psi_vs_reference[p] is None where the pair's ceiling (S_pp + S_qq) / 2 < `MIN_CEILING`.
  """
  psi = np.asarray(spec.psi, np.float64)
  s = np.asarray(spec.s_pq, np.float64)
  ceiling = 0.5 * (np.asarray(spec.s_pp, np.float64) + np.asarray(spec.s_qq, np.float64))
  psi_ok = np.where(ceiling >= MIN_CEILING, psi, np.nan)
  vs_ref = 0.5 * (psi_ok[:, ref] + psi_ok[ref, :])
  return dict(s_pq=_clean(s), s_pp=_clean(spec.s_pp), s_qq=_clean(spec.s_qq), psi=_clean(psi),
              seed_ceiling=_clean(np.diag(s)), s_vs_reference=_clean(0.5 * (s[:, ref] + s[ref, :])),
              psi_vs_reference=_clean(vs_ref))


def _channel_metrics(params, images: np.ndarray, tap: str, channel: int, coords, centres: np.ndarray,
                     regions: np.ndarray, ref: int, *, use_feature: bool, transfer: bool) -> dict:
  """Metrics of one channel's [P, S, H, W, 3] stack."""
  x = jnp.asarray(images)
  c, reg = jnp.asarray(centres, jnp.float32), jnp.asarray(regions)
  out = dict(channel=int(channel), branch_rf_size=receptive_field(branch_tap(tap, channel), images.shape[2:4]).size)
  out["pixel"] = _space_block(metrics.specificity_matrix(x, c, reg, params=params, space=metrics.PIXEL), ref)
  out["feature"] = (_space_block(metrics.specificity_matrix(x, c, reg, params=params, space=metrics.FEATURE_TAP), ref)
                    if use_feature else None)
  out["transfer"] = (_clean(metrics.transfer_matrix(params, x, c, jnp.asarray(coords, jnp.int32), channel, tap=tap))
                     if transfer else None)
  return out


def tiled_realism(params, single: np.ndarray, tiled: np.ndarray, reference: metrics.ActStats | None = None) -> dict:
  """Realism of tiled vs single-position visualisations of one channel, same seeds.

  The measure (justified in `rfspec.metrics.realism`): `stats_distance` to natural-image
  inception_3a statistics (primary, lower = more natural) and the net's top-1 `confidence`
  (secondary, higher = more natural). Both runs share size, steps and start noise, so their
  difference is due to the objective (one node vs every node of the channel).

  Args:
    params: GoogLeNet params.
    single: [S, H, W, 3] single-position (e.g. centre) visualisations, RGB in [0, 1].
    tiled: [S, H, W, 3] tiled visualisations with the same seeds.
    reference: `metrics.activation_stats` of natural images, or None (stats_distance is then
      None and `stats_distance_note` says why).

  Returns:
    {"confidence": {...}, "stats_distance": {...} or None, "stats_distance_note": str}; each
    score block has "single", "tiled" (seed means), "tiled_minus_single", and per-seed lists.
  """
  both = jnp.asarray(np.concatenate([single, tiled]), jnp.float32)
  n = len(single)
  if reference is not None:
    r = metrics.realism(params, both, reference)
    conf, dist = np.asarray(r.confidence, np.float64), np.asarray(r.stats_distance, np.float64)
  else:
    conf, dist = np.asarray(metrics.confidence(params, both), np.float64), None

  def block(v):
    a, b = v[:n], v[n:]
    return dict(single=_clean(a.mean()), tiled=_clean(b.mean()), tiled_minus_single=_clean(b.mean() - a.mean()),
                single_per_seed=_clean(a), tiled_per_seed=_clean(b))

  return dict(confidence=block(conf), stats_distance=None if dist is None else block(dist),
              stats_distance_note=("relative Frechet distance of inception_3a channel statistics to the "
                                   "reference natural images; lower = more natural") if dist is not None else
              "no reference natural images were found, so stats_distance was not computed")


# ----------------------------------------------------------------------------- the sweep


def sweep_tap(params, tap: str, channels: Sequence[int], position_names: Sequence[str], seeds: Sequence[int],
              cfg_fields: dict, *, canvas: Canvas | None = None, tiled: bool = True,
              reference: metrics.ActStats | None = None,
              progress: Callable[[Progress], None] | None = None) -> dict:
  """Visualises K channels x P positions x S seeds of one tap in ONE grid call and measures them.

  Args:
    params: GoogLeNet params.
    tap: a spatial tap, e.g. "inception_4c/output".
    channels: K channel indices (e.g. from `rfspec.selection.rank_channels`).
    position_names: P names from `rfspec.masks.named_positions`; the first is the reference
      that PSI_p is measured against (default order `DEFAULT_POSITIONS`, "centre" first).
    seeds: S >= 2 int seeds (PSI compares pairs of different seeds).
    cfg_fields: `VisConfig` fields other than tap and the canvas, plus an optional "recipe"
      ("deepdream" default, or "lucid").
    canvas: None for the plain sweep, or a `Canvas` for the padding ablation.
    tiled: also run the first channel tiled (every position at once) in the same grid call and
      score its realism against the reference-position run (`tiled_realism`); only without a
      canvas, where the tiled mask covers the image's grid.
    reference: natural-image `metrics.ActStats` for the realism score, or None.
    progress: called with a `rfspec.engine.Progress` after each compiled chunk.

  Returns:
    A dict (JSON-friendly apart from "images" and "tiled_images"):
      tap, variant ("none" or the canvas fill), channels, position_names, reference_position,
      seeds, rf {size, stride, offset, grid}, canvas {fill, pad, max_pad, net_hw, capped} or
      None, positions [P] {name, ij, canvas_ij, centre, box, inside_fraction,
      canvas_inside_fraction}, space (the primary space) and space_reason, per_channel [K]
      {channel, branch_rf_size, pixel, feature (or None), transfer (or None), final_objective
      [P][S] (the objective on the last step), psi_vs_reference [P] (primary space)}; pixel and
      feature blocks hold s_pq, s_pp, s_qq, psi [P][P], seed_ceiling [P], s_vs_reference [P],
      psi_vs_reference [P]; summary {psi_vs_reference_mean, psi_pixel_mean, psi_feature_mean,
      seed_ceiling_mean, s_vs_reference_mean (primary space), transfer_offdiag_mean,
      psi_by_position}, realism (or None), seconds {grid, metrics}; images float32
      [K, P, S, H, W, 3]; tiled_images [S, H, W, 3] or None.

  Raises:
    ValueError: unknown tap / position / fill, fewer than 2 seeds, a bad VisConfig field.
  """
  layer = googlenet.check_tap(tap)
  if layer.kind in ("fc", "softmax"):
    raise ValueError(f"Tap {tap!r} has no spatial grid; the sweep needs a spatial tap "
                     "(conv2/3x3 ... inception_5b/output).")
  seeds = [int(s) for s in seeds]
  if len(seeds) < 2 or len(set(seeds)) != len(seeds):
    raise ValueError(f"The sweep needs at least 2 distinct seeds (PSI compares different seeds); got {seeds}.")
  channels = [int(c) for c in channels]
  if not channels:
    raise ValueError("Give at least one channel.")
  position_names = list(position_names)
  if len(position_names) < 2:
    raise ValueError(f"Give at least 2 positions (the first is the reference); got {position_names}.")
  fields = dict(cfg_fields)
  recipe = fields.pop("recipe", "deepdream")
  fields["image_hw"] = tuple(fields.get("image_hw", (224, 224)))
  base = VisConfig.from_recipe(recipe, tap=tap, **fields)
  image_hw = base.image_hw
  coords = _positions(tap, image_hw, position_names)
  rf = receptive_field(tap, image_hw)

  if canvas is None:
    pad, variant, cfg = 0, NO_CANVAS, base
  else:
    if canvas.fill not in CANVAS_FILLS:
      raise ValueError(f"Canvas fill must be one of {CANVAS_FILLS}; got {canvas.fill!r}.")
    pad = canvas_pad(tap, image_hw, coords, canvas.max_pad, fill=canvas.fill)
    variant = canvas.fill
    cfg = dataclasses.replace(base, canvas_pad=pad, canvas_fill=canvas.fill)
  k = pad // rf.stride
  net_rf = receptive_field(tap, cfg.net_hw)
  for i, j in coords:  # the canvas grid carries the image grid's boxes, shifted by pad
    box, net_box = rf.box(i, j), net_rf.box(i + k, j + k)
    assert tuple(b + pad for b in box) == tuple(net_box), (tap, pad, box, net_box)

  with_tiled = tiled and canvas is None
  masks = [masks_lib.node_mask(tap, c, cfg.net_hw, (i + k, j + k)) for c in channels for i, j in coords]
  if with_tiled:
    masks.append(masks_lib.node_mask(tap, channels[0], image_hw, None))
  t0 = time.perf_counter()
  grid = visualize_grid(params, seeds, np.stack(masks), cfg, return_trace=True, progress=progress)
  t_grid = time.perf_counter() - t0
  n_k, n_p, n_s = len(channels), len(coords), len(seeds)
  images = grid.images[:n_k * n_p].reshape(n_k, n_p, n_s, *grid.images.shape[2:])
  final = grid.traces[:n_k * n_p, :, -1].reshape(n_k, n_p, n_s)
  tiled_images = grid.images[-1] if with_tiled else None

  centres = np.array([rf.centre(i, j) for i, j in coords], np.float64)
  regions = rf_regions(tap, image_hw, coords, grow=cfg.jitter)
  ref = 0
  use_feature = rf.size >= FEATURE_MIN_RF
  per_channel = []
  for n, c in enumerate(channels):
    m = _channel_metrics(params, images[n], tap, c, coords, centres, regions, ref,
                         use_feature=use_feature, transfer=canvas is None)
    m["final_objective"] = _clean(final[n])
    per_channel.append(m)

  if use_feature:
    space, reason = metrics.FEATURE_TAP, (f"RF {rf.size} px >= {FEATURE_MIN_RF} px: {metrics.FEATURE_TAP} "
                                          "feature space (pairs whose aligned overlap holds no whole feature RF "
                                          "are n/a)")
  else:
    space, reason = metrics.PIXEL, (f"RF {rf.size} px < {FEATURE_MIN_RF} px: too few whole {metrics.FEATURE_TAP} "
                                    "feature RFs fit in the node's region, so pixel space")
  key = "feature" if space != metrics.PIXEL else "pixel"
  for m in per_channel:
    m["psi_vs_reference"] = m[key]["psi_vs_reference"]

  others = [p for p in range(n_p) if p != ref]
  summary = dict(
      psi_vs_reference_mean=_nanmean([m["psi_vs_reference"][p] for m in per_channel for p in others]),
      psi_pixel_mean=_nanmean([m["pixel"]["psi_vs_reference"][p] for m in per_channel for p in others]),
      psi_feature_mean=(_nanmean([m["feature"]["psi_vs_reference"][p] for m in per_channel for p in others])
                        if use_feature else None),
      seed_ceiling_mean=_nanmean([m[key]["seed_ceiling"] for m in per_channel]),
      s_vs_reference_mean=_nanmean([m[key]["s_vs_reference"][p] for m in per_channel for p in others]),
      transfer_offdiag_mean=(_nanmean([m["transfer"][p][q] for m in per_channel for p in range(n_p)
                                       for q in range(n_p) if p != q]) if canvas is None else None),
      psi_by_position={name: _nanmean([m["psi_vs_reference"][p] for m in per_channel])
                       for p, name in enumerate(position_names)},
  )
  realism = None
  if with_tiled:
    realism = dict(channel=channels[0], single_position=position_names[ref],
                   **tiled_realism(params, images[0, ref], tiled_images, reference))
  t_metrics = time.perf_counter() - t0 - t_grid

  positions = []
  for name, (i, j), ctr in zip(position_names, coords, centres):
    positions.append(dict(name=name, ij=[i, j], canvas_ij=[i + k, j + k], centre=[float(v) for v in ctr],
                          box=[int(v) for v in rf.box(i, j)], inside_fraction=float(rf.inside_fraction(i, j)),
                          canvas_inside_fraction=canvas_inside_fraction(tap, image_hw, pad, (i, j))))
  canvas_info = None
  if canvas is not None:
    canvas_info = dict(fill=canvas.fill, pad=pad, max_pad=int(canvas.max_pad), net_hw=list(cfg.net_hw),
                       capped=min(p["canvas_inside_fraction"] for p in positions) < 1.0)
  return dict(
      tap=tap, variant=variant, channels=channels, position_names=position_names,
      reference_position=position_names[ref], seeds=seeds, image_hw=list(image_hw), recipe=recipe,
      rf=dict(size=rf.size, stride=rf.stride, offset=rf.offset, grid=list(rf.grid)),
      canvas=canvas_info, positions=positions, space=space, space_reason=reason,
      per_channel=per_channel, summary=summary, realism=realism,
      seconds=dict(grid=t_grid, metrics=t_metrics),
      images=images.astype(np.float32), tiled_images=None if tiled_images is None else tiled_images.astype(np.float32))


# ----------------------------------------------------------------------------- summaries and plots


def pair_summary(result: dict) -> dict:
  """Summaries of a `sweep_tap` result beyond PSI vs the reference, in its primary space.

  PSI vs the reference needs seeds to agree at the reference; where they agree elsewhere but not
  there, the pairs among the other positions still measure specificity.

  Returns:
    {"psi_all_pairs_mean": mean PSI over every pair p != q (and channel) whose ceiling is at least
    `MIN_CEILING` (None if none is), "psi_pairs_defined": [defined, total],
    "ceiling_by_position": {name: seed ceiling, mean over channels}}.
  """
  key = "pixel" if result["space"] == metrics.PIXEL else "feature"
  names = result["position_names"]
  vals, total = [], 0
  for ch in result["per_channel"]:
    b = ch[key]
    for p in range(len(names)):
      for q in range(len(names)):
        if p == q:
          continue
        total += 1
        psi, spp, sqq = b["psi"][p][q], b["s_pp"][p][q], b["s_qq"][p][q]
        if None not in (psi, spp, sqq) and 0.5 * (spp + sqq) >= MIN_CEILING:
          vals.append(psi)
  return dict(psi_all_pairs_mean=_nanmean(vals) if vals else None, psi_pairs_defined=[len(vals), total],
              ceiling_by_position={n: _nanmean([ch[key]["seed_ceiling"][p] for ch in result["per_channel"]])
                                   for p, n in enumerate(names)})



def spearman(x: Sequence[float], y: Sequence[float]) -> float | None:
  """Spearman rank correlation of paired values (average ranks for ties); None if < 3 finite pairs."""
  x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
  ok = np.isfinite(x) & np.isfinite(y)
  x, y = x[ok], y[ok]
  if x.size < 3:
    return None

  def ranks(v):
    order = np.argsort(v, kind="stable")
    r = np.empty(v.size)
    r[order] = np.arange(v.size, dtype=np.float64)
    for u in np.unique(v):  # ties share their mean rank
      r[v == u] = r[v == u].mean()
    return r

  rx, ry = ranks(x) - ranks(x).mean(), ranks(y) - ranks(y).mean()
  denom = math.sqrt(float(np.sum(rx * rx) * np.sum(ry * ry)))
  return float(np.sum(rx * ry) / denom) if denom > 0 else None


def _short(tap: str) -> str:
  return tap.replace("/output", "").replace("inception_", "")


def _variants(results: Sequence[dict]) -> list[str]:
  return list(dict.fromkeys(r["variant"] for r in results))


_MARKERS = {"none": "o", "zero": "s", "grey": "^", "reflect": "D"}


def plot_psi_vs_rf_size(results: Sequence[dict]):
  """Figure: position specificity per tap against its RF size, one line per variant.

  Panels: (a) mean PSI vs the reference position in pixel space, every tap; (b) the same in the
  primary space (inception_3a features where the RF is >= `FEATURE_MIN_RF` px, hollow markers
  where pixels), solid, and the mean PSI over every defined pair of positions (`pair_summary`),
  dashed with crosses; (c) the mean off-diagonal transfer T_pq (no canvas only), which needs no seed agreement.
  Taps whose PSI is undefined (seed ceiling below `MIN_CEILING`) have no point.

  Args:
    results: `sweep_tap` outputs (any taps and variants).

  Returns:
    A matplotlib `Figure` (no pyplot state).
  """
  from matplotlib.figure import Figure

  fig = Figure(figsize=(15, 4.6), layout="constrained")
  axes = fig.subplots(1, 3)
  axes[1].sharey(axes[0])
  ref = results[0]["reference_position"] if results else "centre"
  sizes = sorted({r["rf"]["size"] for r in results})

  def series(ax, rows, values, variant, **kw):
    x = [r["rf"]["size"] for r in rows]
    y = [np.nan if v is None else v for v in values]
    line, = ax.plot(x, y, **{"marker": _MARKERS.get(variant, "o"), **kw})
    return x, y, line

  for variant in _variants(results):
    rows = sorted((r for r in results if r["variant"] == variant), key=lambda r: r["rf"]["size"])
    label = variant if variant != NO_CANVAS else "none (no canvas)"
    x, y, _ = series(axes[0], rows, [r["summary"]["psi_pixel_mean"] for r in rows], variant, label=label)
    if variant == NO_CANVAS:
      for xi, yi, r in zip(x, y, rows):
        if np.isfinite(yi):
          axes[0].annotate(_short(r["tap"]), (xi, yi), textcoords="offset points", xytext=(3, 4), fontsize=7)
    x, y, line = series(axes[1], rows, [r["summary"]["psi_vs_reference_mean"] for r in rows], variant,
                        label=f"{label}: vs {ref}")
    hollow = [n for n, r in enumerate(rows) if r["space"] == metrics.PIXEL]
    axes[1].plot([x[n] for n in hollow], [y[n] for n in hollow], linestyle="none", marker=_MARKERS.get(variant, "o"),
                 color=line.get_color(), markerfacecolor="white")
    series(axes[1], rows, [pair_summary(r)["psi_all_pairs_mean"] for r in rows], variant, linestyle="--",
           marker="x", color=line.get_color(), label=f"{label}: all pairs")
    if variant == NO_CANVAS:
      series(axes[2], rows, [r["summary"]["transfer_offdiag_mean"] for r in rows], variant, color=line.get_color(),
             label="mean off-diagonal T")
  titles = ("(a) PSI vs " + ref + ", pixel space",
            f"(b) PSI, primary space ({_short(metrics.FEATURE_TAP)} features for RF >= {FEATURE_MIN_RF} px; "
            "hollow = pixels)", "(c) transfer T_pq, no canvas (1 = position-invariant)")
  for ax, title in zip(axes, titles):
    ax.set_xscale("log")
    ax.set_xticks(sizes, [str(v) for v in sizes], fontsize=8)
    ax.minorticks_off()
    ax.set_xlabel("RF size (px, log scale)")
    ax.axhline(0, color="grey", lw=0.7)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
  axes[2].axhline(1, color="grey", lw=0.7, linestyle=":")
  axes[0].set_ylabel("mean PSI (0 = same pattern everywhere, 1 = unrelated)")
  axes[2].set_ylabel("mean T_pq, p != q")
  for ax in axes:
    if ax.get_legend_handles_labels()[0]:
      ax.legend(fontsize=7)
  hw = results[0]["image_hw"] if results else ["?", "?"]
  fig.suptitle(f"Position specificity vs RF size ({hw[0]}x{hw[1]} px image). No point: PSI undefined (seed "
               f"ceiling < {MIN_CEILING} or no aligned overlap).", fontsize=10)
  return fig


def plot_psi_vs_inside_fraction(results: Sequence[dict]):
  """Figure: per position, against the share of its RF inside the image, (a) its PSI vs the
  reference (primary space, mean over channels; the reference itself left out) and (b) its seed
  ceiling (the tap's primary space); colour = tap, marker = variant.

  The x value is always the image inside fraction, so a canvas variant sits straight above or
  below the plain run of the same node: the vertical gap is the canvas's effect. Panel (b) shows
  where seeds agree at all, which PSI needs (undefined PSIs have no point in (a)).

  Returns:
    A matplotlib `Figure`.
  """
  from matplotlib import colormaps
  from matplotlib.figure import Figure
  from matplotlib.lines import Line2D

  fig = Figure(figsize=(13, 5), layout="constrained")
  axes = fig.subplots(1, 2)
  taps = list(dict.fromkeys(r["tap"] for r in sorted(results, key=lambda r: r["rf"]["size"])))
  cmap = colormaps["viridis"]
  colour = {t: cmap(n / max(len(taps) - 1, 1)) for n, t in enumerate(taps)}
  ref = results[0]["reference_position"] if results else "centre"
  for r in results:
    ceilings = pair_summary(r)["ceiling_by_position"]
    style = dict(color=colour[r["tap"]], marker=_MARKERS.get(r["variant"], "o"), s=36, alpha=0.85,
                 edgecolors="black" if r["variant"] != NO_CANVAS else "none", linewidths=0.5)
    for p in r["positions"]:
      y = r["summary"]["psi_by_position"][p["name"]]
      if y is not None and p["name"] != r["reference_position"]:
        axes[0].scatter(p["inside_fraction"], y, **style)
      if ceilings[p["name"]] is not None:
        axes[1].scatter(p["inside_fraction"], ceilings[p["name"]], **style)
  axes[0].set_ylabel(f"PSI vs {ref} (primary space)")
  axes[1].set_ylabel("seed ceiling S_pp (primary space)")
  axes[1].axhline(MIN_CEILING, color="red", lw=0.8, linestyle=":")
  for ax, title in zip(axes, (f"(a) PSI vs {ref}", "(b) seed agreement")):
    ax.set_xlabel("share of the node's RF inside the image")
    ax.axhline(0, color="grey", lw=0.7)
    ax.grid(alpha=0.3)
    ax.set_title(title, fontsize=9)
  handles = [Line2D([], [], linestyle="none", marker="o", color=colour[t], label=f"{_short(t)} (RF {rf_size} px)")
             for t, rf_size in ((t, next(r["rf"]["size"] for r in results if r["tap"] == t)) for t in taps)]
  handles += [Line2D([], [], linestyle="none", marker=_MARKERS.get(v, "o"), color="grey",
                     label=f"variant: {v}") for v in _variants(results)]
  handles += [Line2D([], [], color="red", lw=0.8, linestyle=":", label=f"PSI needs ceiling >= {MIN_CEILING}")]
  axes[1].legend(handles=handles, fontsize=7, loc="best")
  fig.suptitle("Position specificity and seed agreement vs the share of the RF on the image", fontsize=10)
  return fig


def plot_transfer(result: dict, channel_index: int = 0):
  """Figure: the transfer matrix T_pq of one channel (row p = pattern source, column q = node driven).

  Args:
    result: a `sweep_tap` output without a canvas (transfer is measured on the bare image).
    channel_index: which of its channels.

  Returns:
    A matplotlib `Figure`.
  """
  from matplotlib.figure import Figure

  ch = result["per_channel"][channel_index]
  if ch["transfer"] is None:
    raise ValueError("This result has no transfer matrix (canvas variants do not measure T).")
  t = np.array([[np.nan if v is None else v for v in row] for row in ch["transfer"]], np.float64)
  names = result["position_names"]
  fig = Figure(figsize=(1.1 * len(names) + 2.4, 1.0 * len(names) + 1.4), layout="constrained")
  ax = fig.add_subplot()
  finite = t[np.isfinite(t)]
  vmax = max(1.0, float(finite.max())) if finite.size else 1.0
  im = ax.imshow(np.where(np.isfinite(t), t, np.nan), cmap="magma", vmin=min(0.0, float(finite.min()) if finite.size
                                                                                   else 0.0), vmax=vmax)
  for p in range(len(names)):
    for q in range(len(names)):
      txt = "n/a" if not np.isfinite(t[p, q]) else f"{t[p, q]:.2f}"
      ax.text(q, p, txt, ha="center", va="center", fontsize=8,
              color="white" if not np.isfinite(t[p, q]) or t[p, q] < 0.6 * vmax else "black")
  ax.set_xticks(range(len(names)), names, rotation=40, ha="right", fontsize=8)
  ax.set_yticks(range(len(names)), names, fontsize=8)
  ax.set_xlabel("node driven (q)")
  ax.set_ylabel("pattern source (p)")
  fig.colorbar(im, ax=ax, shrink=0.8, label="T_pq (1 = as good as q's own)")
  ax.set_title(f"{result['tap']} ch {ch['channel']}: transfer T_pq (RF {result['rf']['size']} px)", fontsize=9)
  return fig

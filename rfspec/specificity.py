"""The specificity sweep: the paper's claims as numbers with intervals, tap by tap (numbers only).

For one tap, `sweep_tap` visualises K channels x P positions x S seeds (plus the first channel
tiled over every position) in ONE `visualize_grid` call and measures each channel with
`rfspec.metrics.specificity_from_descriptors` (judge: GoogLeNet's own inception_3a features
pooled over each image's RF box ∩ image; floor: the tap's other K - 1 channels at the same
positions). Positions run along the diagonal from the centre node (RF inside the image, or as
much inside as the tap allows) to the corner node (the least inside), followed by the mirror
(h-1-i, w-1-j) of every off-centre one for the mirror ablation.

Per tap it returns a `TapResult` (NamedTuple of arrays): the indices and their bootstrap draws
per channel, each position's theoretical-RF and effective-RF (ERF) off-image share, the mirror
ablation, and the realism scores. `summarize_tap` reduces the draws to tap-level numbers with
95 % intervals (every draw averages the K channels, so intervals cover seeds and channels), and
`claims` turns the summaries of all taps into one verdict per claim of the paper.

Ablations that separate RF truncation from depth:
  * mirror positions: the net pads unevenly (conv1 pads 3 px, ceil-mode pools overhang the
    right and bottom), so p and its mirror need not be equivalent. `TapResult.mirror_psi` is
    psi_auc(mirror(p), centre) - psi_auc(p, centre): 0 when the mirror position is as specific as
    p (a flipped comparison of the patterns would not do: the filters are not mirror-symmetric);
  * input size (`input_size_ablation`): the same channels' centre node at 2x the image side,
    where more of the RF lies inside, against the centre at 1x: psi_auc between the two;
  * padding mode (`sweep_tap` with `VisConfig(pad_mode="reflect")`, `padding_difference`): the same weights with
    every conv and pool mirror-padded while visualising; if position specificity comes from the
    zero border rather than from the RF's missing content, psi_auc falls. `padding_control` says
    how much the change alters the net's reading of natural photos.
The canvas ablation of the first sweep is gone: a zero canvas shows the off-image part of the RF
the same zero input the net's own padding gives, so it separated only the deep layers' feature
padding from content truncation, and the input-size ablation does that with the RF's content
really present.

Conventions: positions (i, j) = (row, col) on the tap's grid; pixels (y, x) = (row, col); images
RGB in [0, 1]; boxes (top, left, bottom, right) px, half-open.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rfspec import masks as masks_lib
from rfspec import _metrics_old as metrics, selection
from rfspec.engine import Progress, VisConfig, initial_image, visualize_grid
from rfspec.errors import UserError
from rfspec.geometry import effective_rf, nearest_node, receptive_field
from rfspec.models import googlenet

__all__ = ["ChannelChoice", "EQUIVALENCE_MARGIN", "TapResult", "TapSummary", "Verdict", "choose_channels", "claims",
           "diagonal_positions", "erf_off_share", "input_size_ablation", "padding_control", "padding_difference",
           "realism_scores", "summarize_tap", "sweep_tap"]

# Claim 1 ("no difference") is an equivalence claim: |psi_auc| below this margin, tested with the
# 90 % interval (two one-sided 5 % tests, TOST). 0.2 is about the point spread of psi_auc at
# S = 6 seeds for identical content in the calibration (tests/metrics_test.py); 0.1
# (reference/MEASURING.md) would need ~4x the seeds.
EQUIVALENCE_MARGIN = 0.2
SMALL_RF_SHARE = 0.5  # "small RF": RF side <= this share of the image side
LARGE_RF_SHARE = 1.0  # "large RF": RF side > the image side


# ----------------------------------------------------------------------------- positions and channels


def diagonal_positions(tap: str, image_hw: tuple[int, int], n: int) -> list[tuple[int, int]]:
  """n distinct positions (i, j) = (row, col) from the centre node to the corner (0, 0), evenly spaced.

  The centre is the node whose RF centre is nearest the image centre; moving to the corner takes
  the RF's inside fraction from its maximum down to its minimum.
  """
  ci, cj = nearest_node(tap, image_hw, ((image_hw[0] - 1) / 2, (image_hw[1] - 1) / 2))
  out = []
  for t in np.linspace(0.0, 1.0, max(int(n), 1)):
    p = (int(round(ci * (1 - t))), int(round(cj * (1 - t))))
    if p not in out:
      out.append(p)
  return out


def mirror_position(tap: str, image_hw: tuple[int, int], position: tuple[int, int]) -> tuple[int, int]:
  """(h-1-i, w-1-j): the node mirrored through the grid's centre."""
  h, w = googlenet.blob_hw(tap, image_hw)
  return (h - 1 - position[0], w - 1 - position[1])


class ChannelChoice(NamedTuple):
  """The channels studied for a tap, and why.

  Attributes:
    channels: the chosen channel indices, best first.
    eligible: how many channels passed the rule.
    rule: the rule in words.
  """

  channels: list[int]
  eligible: int
  rule: str


def choose_channels(params, cfg: VisConfig, positions: Sequence[tuple[int, int]], seeds: Sequence[int],
                    k: int) -> ChannelChoice:
  """K channels of `cfg.tap` that the recipe can move at every position, ranked by start activity.

  The rule fits the objective: with a post-ReLU objective ("post_relu", or zipser2015's
  "l2_feedback" whose gradient is the activation itself) a node that is 0 on its start image
  gets no gradient and never moves, so a channel must be non-zero at every position used on
  every seed's start image; channels are ranked by that minimum. With "pre_relu" every channel
  can move; they are ranked by the mean start activation over positions and seeds. Ties go to
  the lower index.

  Returns:
    `ChannelChoice`; fewer than k channels if fewer pass.
  """
  # The net as the run sees it (the recipe's caffe_mean and padding): `rfspec.selection`'s view.
  at = np.asarray(selection.start_activations(params, cfg, [tuple(map(int, p)) for p in positions], seeds),
                  np.float64)  # [S, P, C]
  if cfg.objective == "pre_relu":
    score, ok = at.mean(axis=(0, 1)), np.ones(at.shape[-1], bool)
    rule = "top-K channels by the mean pre-ReLU-objective start activation over the positions and seeds"
  else:
    score = at.min(axis=(0, 1))
    ok = score > 0
    rule = (f"channels non-zero on every seed's start image at every position used (the {cfg.objective!r} "
            "objective never moves a node that starts at 0), top-K by that minimum")
  order = [int(c) for c in np.lexsort((np.arange(score.size), -score)) if ok[c]]
  return ChannelChoice(order[:k], len(order), rule)


def erf_off_share(params, tap: str, image_hw: tuple[int, int], centres: np.ndarray, *, key: jax.Array,
                  num_samples: int = 4) -> np.ndarray:
  """Share of each node's effective-RF mass (Luo et al. 2016) that falls off the image.

  The ERF of the tap's centre node is measured on noise images of a larger canvas (the image plus
  a border of min(RF/2, image side), rounded to the stride), where it is not truncated; for a node
  whose RF centre sits at `centres[p]` (y, x) in the image, the share is that map's mass outside
  the image window placed around the same centre. Summed over channels (the whole position).

  Returns:
    float [P] in [0, 1].
  """
  rf = receptive_field(tap, image_hw)
  border = int(math.ceil(min(rf.size / 2, max(image_hw)) / rf.stride) * rf.stride)
  big = (image_hw[0] + 2 * border, image_hw[1] + 2 * border)
  node = nearest_node(tap, big, ((big[0] - 1) / 2, (big[1] - 1) / 2))
  erf = effective_rf(params, tap, None, [node], big, key=key, num_samples=num_samples, batch_size=num_samples)
  m = np.asarray(erf.maps[0], np.float64)
  cy, cx = (float(v) for v in np.asarray(erf.centre[0]))
  total = m.sum()
  out = []
  for y, x in np.asarray(centres, np.float64):
    top, left = int(round(cy - y)), int(round(cx - x))
    inside = m[max(top, 0):max(top + image_hw[0], 0), max(left, 0):max(left + image_hw[1], 0)].sum()
    out.append(1.0 - inside / total if total > 0 else float("nan"))
  return np.asarray(out)


# ----------------------------------------------------------------------------- realism


def spectrum_slope(images) -> np.ndarray:
  """Slope of the radially averaged power spectrum in log-log (natural images ~ -2).

  images [N, H, W, 3] RGB in [0, 1]; luminance, minus its mean, Hann-windowed; fit over radii 2 ..
  min(H, W)/2 (cycles per image). Returns float [N].
  """
  x = np.asarray(images, np.float64) @ np.array([0.299, 0.587, 0.114])
  n, h, w = x.shape
  x = (x - x.mean(axis=(1, 2), keepdims=True)) * np.outer(np.hanning(h), np.hanning(w))
  power = np.abs(np.fft.fftshift(np.fft.fft2(x), axes=(1, 2))) ** 2
  yy, xx = np.indices((h, w))
  r = np.hypot(yy - h // 2, xx - w // 2).astype(int)
  radii = np.arange(2, min(h, w) // 2)
  out = []
  for p in power:
    prof = np.bincount(r.ravel(), p.ravel())[radii] / np.bincount(r.ravel())[radii]
    out.append(np.polyfit(np.log(radii), np.log(prof + 1e-30), 1)[0])
  return np.asarray(out)


def realism_scores(params, images, reference: metrics.ActStats) -> dict[str, np.ndarray]:
  """Three realism scores per image, all circular (GoogLeNet judging images made on GoogLeNet)
  except `spectrum_slope`; report them against natural photos and noise, never alone.

  Returns {"confidence": top-1 softmax [N], "entropy": softmax entropy in nats [N],
  "stats_distance": `metrics.stats_distance` to natural inception_3a statistics [N],
  "spectrum_slope": [N]} for images [N, H, W, 3] (resized to 224 px for the net).
  """
  x = metrics._at_size(jnp.asarray(images, jnp.float32), metrics.REALISM_SIZE)
  out = googlenet.forward(params, x, (metrics.REALISM_TAP, "prob"))
  prob = np.asarray(out["prob"], np.float64)
  return dict(confidence=prob.max(axis=-1), entropy=-(prob * np.log(np.maximum(prob, 1e-30))).sum(axis=-1),
              stats_distance=np.asarray(metrics.stats_distance(metrics._stats(out[metrics.REALISM_TAP]), reference),
                                        np.float64),
              spectrum_slope=spectrum_slope(images))


# ----------------------------------------------------------------------------- the sweep


class TapResult(NamedTuple):
  """One tap's sweep. K channels, P = P_main + P_mirror positions, S seeds.

  Attributes:
    tap: the tap's name.
    rf_size, stride: its RF side and node spacing in px.
    channels: int [K].
    positions: int [P, 2] (i, j): the centre first, then towards the corner (P_main in all), then
      the mirror of each off-centre one.
    n_main: P_main.
    boxes: int [P, 4] RF boxes (top, left, bottom, right) px.
    rf_off: [P] share of the theoretical RF off the image (1 - inside fraction).
    erf_off: [P] share of the ERF mass off the image (`erf_off_share`).
    auc_id, auc_id_ci, psi_auc, psi_auc_ci, psi_floor, auc_id_boot, psi_auc_boot: the
      `metrics.PositionSpecificity` fields over the P_main positions, with a leading K axis.
    mirror_psi: [K, P_main - 1] psi_auc(mirror(p), centre) - psi_auc(p, centre) (`_mirror`).
    mirror_psi_boot: [K, n_boot, P_main - 1].
    objective: [K, P, S] the objective on the last step.
    images: float32 [K, P, S, H, W, 3].
    tiled: float32 [S, H, W, 3] channel 0 tiled (every position at once), or an empty array.
  """

  tap: str
  rf_size: int
  stride: int
  channels: np.ndarray
  positions: np.ndarray
  n_main: int
  boxes: np.ndarray
  rf_off: np.ndarray
  erf_off: np.ndarray
  auc_id: np.ndarray
  auc_id_ci: np.ndarray
  psi_auc: np.ndarray
  psi_auc_ci: np.ndarray
  psi_floor: np.ndarray
  auc_id_boot: np.ndarray
  psi_auc_boot: np.ndarray
  mirror_psi: np.ndarray
  mirror_psi_boot: np.ndarray
  objective: np.ndarray
  images: np.ndarray
  tiled: np.ndarray


def _per_channel(desc: jax.Array, seeds: int, key: jax.Array, n_boot: int) -> list[metrics.PositionSpecificity]:
  """desc [K, P, S, C] -> each channel's indices, floor = the other channels (shared starts left out)."""
  n_k = desc.shape[0]
  out = []
  for k in range(n_k):
    others = [c for c in range(n_k) if c != k]
    floor = desc[jnp.asarray(others, jnp.int32)] if others else desc[:0]
    floor = jnp.moveaxis(floor, 0, 1).reshape(desc.shape[1], len(others) * seeds, desc.shape[-1])
    out.append(metrics.specificity_from_descriptors(desc[k], floor, jax.random.fold_in(key, k), n_boot,
                                                    jnp.tile(jnp.arange(seeds), len(others))))
  return out


def _mirror(params, images: np.ndarray, boxes: np.ndarray, n_main: int, key: jax.Array,
            n_boot: int) -> tuple[np.ndarray, np.ndarray]:
  """Mirror ablation: psi_auc(mirror(p), centre) - psi_auc(p, centre) per channel and off-centre p.

  images [K, P, S, H, W, 3] with positions = n_main main ones (centre first) then the mirrors of
  main[1:], in order; boxes [P, 4]. A net that pads evenly treats p and its mirror alike, so the
  two are equally specific (difference 0); the mirror pattern itself is not compared with a
  flipped one, since the filters are not mirror-symmetric.

  Returns:
    (difference [K, M], bootstrap draws [K, n_boot, M]), M = n_main - 1.
  """
  n_k, n_p, n_s = images.shape[:3]
  n_mir = n_p - n_main
  if n_mir == 0:
    return np.zeros((n_k, 0)), np.zeros((n_k, n_boot, 0))
  order = [0] + list(range(n_main, n_p))  # the centre, then the mirrors
  box = jnp.broadcast_to(jnp.asarray(boxes[order], jnp.float32)[:, None], (len(order), n_s, 4))
  desc = jnp.stack([metrics.describe(params, jnp.asarray(images[k, order]), box) for k in range(n_k)])
  mir = _per_channel(desc, n_s, key, n_boot)  # [.., 1 + M, 1 + M]
  main_key = key  # the main positions' indices are recomputed with the same key for paired draws
  box_m = jnp.broadcast_to(jnp.asarray(boxes[:n_main], jnp.float32)[:, None], (n_main, n_s, 4))
  desc_m = jnp.stack([metrics.describe(params, jnp.asarray(images[k, :n_main]), box_m) for k in range(n_k)])
  base = _per_channel(desc_m, n_s, main_key, n_boot)
  diff = np.stack([np.asarray(m.psi_auc)[1:, 0] - np.asarray(b.psi_auc)[1:, 0] for m, b in zip(mir, base)])
  boot = np.stack([np.asarray(m.psi_auc_boot)[:, 1:, 0] - np.asarray(b.psi_auc_boot)[:, 1:, 0]
                   for m, b in zip(mir, base)])
  return diff, boot


def mirror_fields(params, r: "TapResult", key: jax.Array, n_boot: int) -> dict:
  """`TapResult` fields mirror_psi / mirror_psi_boot recomputed from its images (see `_mirror`)."""
  diff, boot = _mirror(params, np.asarray(r.images), np.asarray(r.boxes), r.n_main, key, n_boot)
  return dict(mirror_psi=diff, mirror_psi_boot=boot)


def sweep_tap(params, cfg: VisConfig, channels: Sequence[int], seeds: Sequence[int], *, n_positions: int,
              key: jax.Array, n_boot: int = 200, tiled: bool = True,
              progress: Callable[[Progress], None] | None = None) -> TapResult:
  """Visualises K channels x P positions x S seeds of `cfg.tap` in ONE grid call and measures them.

  Args:
    params: GoogLeNet params.
    cfg: the visualisation (tap, image size, recipe, steps).
    channels: K >= 1 channels (`choose_channels`); with K = 1 there is no floor and auc_id /
      psi_floor are NaN (`metrics.undefined_reasons`).
    seeds: S >= `metrics.MIN_SEEDS` int seeds.
    n_positions: P_main, positions from the centre to the corner (`diagonal_positions`).
    key: `jax.random.key` for the bootstrap and the ERF noise.
    n_boot: bootstrap draws.
    tiled: also visualise channel 0 tiled in the same grid call (for the realism claim).
    (`cfg.pad_mode` is the net's padding while visualising: "zero", Caffe's, or "reflect" for the
    padding ablation; the judge, the ERF and the geometry always use Caffe's.)
    progress: called with a `rfspec.engine.Progress` after each compiled chunk.
  """
  tap, hw = cfg.tap, tuple(cfg.image_hw)
  if len(seeds) < metrics.MIN_SEEDS:
    raise UserError(f"The sweep needs >= {metrics.MIN_SEEDS} seeds (got {len(seeds)}); add seeds.")
  rf = receptive_field(tap, hw)
  main = diagonal_positions(tap, hw, n_positions)
  mirrors = [mirror_position(tap, hw, p) for p in main[1:]]
  coords = main + mirrors
  masks = [masks_lib.node_mask(tap, c, hw, p) for c in channels for p in coords]
  if tiled:
    masks.append(masks_lib.node_mask(tap, channels[0], hw, None))
  grid = visualize_grid(params, [int(s) for s in seeds], np.stack(masks), cfg, return_trace=True,
                        progress=progress)
  n_k, n_p, n_s = len(channels), len(coords), len(seeds)
  images = np.asarray(grid.images[:n_k * n_p]).reshape(n_k, n_p, n_s, *hw, 3)
  objective = np.asarray(grid.traces[:n_k * n_p, :, -1]).reshape(n_k, n_p, n_s)
  boxes = np.array([rf.box(*p) for p in coords], np.int64)

  # Judge descriptors, one channel at a time (same shapes: one compile).
  n_main = len(main)
  box_main = jnp.broadcast_to(jnp.asarray(boxes[:n_main], jnp.float32)[:, None], (n_main, n_s, 4))
  desc = [metrics.describe(params, jnp.asarray(images[k, :n_main]), box_main) for k in range(n_k)]
  spec = _per_channel(jnp.stack(desc), n_s, key, n_boot)
  mirror_psi, mirror_boot = _mirror(params, images, boxes, n_main, jax.random.fold_in(key, 1000), n_boot)
  centres = np.array([rf.centre(*p) for p in coords])
  stack = lambda name: np.stack([np.asarray(getattr(s, name)) for s in spec])  # noqa: E731
  return TapResult(
      tap=tap, rf_size=int(rf.size), stride=int(rf.stride), channels=np.asarray(channels, np.int64),
      positions=np.asarray(coords, np.int64), n_main=n_main, boxes=boxes,
      rf_off=np.array([1.0 - rf.inside_fraction(*p) for p in coords]),
      erf_off=erf_off_share(params, tap, hw, centres, key=jax.random.fold_in(key, 2000)),
      auc_id=stack("auc_id"), auc_id_ci=stack("auc_id_ci"), psi_auc=stack("psi_auc"), psi_auc_ci=stack("psi_auc_ci"),
      psi_floor=stack("psi_floor"), auc_id_boot=stack("auc_id_boot"), psi_auc_boot=stack("psi_auc_boot"),
      mirror_psi=mirror_psi, mirror_psi_boot=mirror_boot, objective=objective, images=images.astype(np.float32),
      tiled=(np.asarray(grid.images[-1], np.float32) if tiled else np.zeros((0,), np.float32)))


def input_size_ablation(params, cfg: VisConfig, channels: Sequence[int], seeds: Sequence[int], centre_images,
                        *, key: jax.Array, n_boot: int = 200, factor: int = 2,
                        progress: Callable[[Progress], None] | None = None) -> dict:
  """The same channels' centre node at `factor` x the image side vs at 1x: does the preferred
  pattern change when more of the RF lies inside the image? One grid call.

  Args:
    centre_images: [K, S, H, W, 3] the 1x centre visualisations (`TapResult.images[:, 0]`).

  Returns:
    {"image_hw": [2][2], "rf_off": [2] (centre node at 1x, at factor x), "psi_auc": [K],
     "psi_auc_boot": [K, n_boot], "images": [K, S, 2H, 2W, 3]}: psi_auc between the two sizes per channel.
  """
  hw = tuple(cfg.image_hw)
  big = dataclasses.replace(cfg, image_hw=(hw[0] * factor, hw[1] * factor))
  centre_big = diagonal_positions(cfg.tap, big.image_hw, 1)[0]
  masks = np.stack([masks_lib.node_mask(cfg.tap, c, big.image_hw, centre_big) for c in channels])
  images = np.asarray(visualize_grid(params, [int(s) for s in seeds], masks, big, progress=progress))
  rf1, rf2 = receptive_field(cfg.tap, hw), receptive_field(cfg.tap, big.image_hw)
  centre = diagonal_positions(cfg.tap, hw, 1)[0]
  n_s = len(seeds)
  d1 = metrics.describe(params, jnp.asarray(centre_images),
                        jnp.broadcast_to(jnp.asarray(rf1.box(*centre), jnp.float32), (len(channels), n_s, 4)))
  d2 = metrics.describe(params, jnp.asarray(images),
                        jnp.broadcast_to(jnp.asarray(rf2.box(*centre_big), jnp.float32), (len(channels), n_s, 4)))
  spec = _per_channel(jnp.stack([d1, d2], axis=1), n_s, key, n_boot)
  return dict(image_hw=[list(hw), list(big.image_hw)],
              rf_off=[1.0 - rf1.inside_fraction(*centre), 1.0 - rf2.inside_fraction(*centre_big)],
              psi_auc=np.array([float(s.psi_auc[0, 1]) for s in spec]),
              psi_auc_boot=np.stack([np.asarray(s.psi_auc_boot)[:, 0, 1] for s in spec]), images=images)


def padding_control(params, images) -> dict:
  """The padding ablation's control: does reflect padding change what the net sees in photos?

  images [N, 224, 224, 3] natural photos (RGB [0, 1]). Returns top-1 class and confidence per image
  with Caffe's padding and with reflect padding, and the share of images whose top-1 is unchanged.
  """
  x = jnp.asarray(images, jnp.float32)
  zero = np.asarray(googlenet.forward(params, x, ("prob",))["prob"], np.float64)
  refl = np.asarray(googlenet.forward(params, x, ("prob",), pad_mode="reflect")["prob"], np.float64)
  return dict(top1_zero=zero.argmax(1).tolist(), top1_reflect=refl.argmax(1).tolist(),
              confidence_zero=zero.max(1).tolist(), confidence_reflect=refl.max(1).tolist(),
              prob_of_zero_top1_under_reflect=refl[np.arange(len(zero)), zero.argmax(1)].tolist(),
              top1_unchanged=float(np.mean(zero.argmax(1) == refl.argmax(1))))


def padding_difference(zero: TapResult, reflect: TapResult) -> dict:
  """Tap-level psi_auc(p, centre) and auc_id with Caffe's vs reflect padding, and the differences
  (draw by draw; the two runs share seeds, channels and positions)."""
  a, b = summarize_tap(zero), summarize_tap(reflect)
  d_psi = np.asarray(b.psi_mean_boot) - np.asarray(a.psi_mean_boot)
  d_auc = np.asarray(b.auc_id_boot).mean(1) - np.asarray(a.auc_id_boot).mean(1)
  return dict(psi_zero=a.psi_mean, psi_zero_ci=a.psi_mean_ci, psi_reflect=b.psi_mean, psi_reflect_ci=b.psi_mean_ci,
              psi_reflect_minus_zero=b.psi_mean - a.psi_mean, psi_reflect_minus_zero_ci=_interval(d_psi),
              auc_id_zero=a.auc_id_mean, auc_id_reflect=b.auc_id_mean,
              auc_id_reflect_minus_zero=b.auc_id_mean - a.auc_id_mean, auc_id_reflect_minus_zero_ci=_interval(d_auc),
              psi_vs_centre_zero=a.psi_vs_centre.tolist(), psi_vs_centre_reflect=b.psi_vs_centre.tolist())


# ----------------------------------------------------------------------------- summaries


def _interval(draws: np.ndarray, level: float = metrics.CI_LEVEL) -> list[float]:
  draws = np.asarray(draws, np.float64)
  draws = draws[np.isfinite(draws)]
  return [float(np.percentile(draws, 50 * (1 - level))), float(np.percentile(draws, 50 * (1 + level)))]


class TapSummary(NamedTuple):
  """Tap-level numbers; every draw averages the K channels, so intervals cover seeds and channels.

  Attributes:
    psi_vs_centre: [P_main] mean over channels of psi_auc(p, centre) (0 at the centre itself).
    psi_vs_centre_ci: [P_main, 2].
    psi_vs_centre_boot: [n_boot, P_main].
    psi_mean, psi_mean_ci: mean over the off-centre positions; its 95 % interval.
    psi_mean_boot: [n_boot].
    auc_id: [P_main] mean over channels; auc_id_ci [P_main, 2]; auc_id_boot [n_boot, P_main].
    auc_id_mean, auc_id_mean_ci: over positions.
    mirror_psi, mirror_psi_ci: mean psi_auc(mirror(p), centre) - psi_auc(p, centre) over channels
      and off-centre positions.
  """

  psi_vs_centre: np.ndarray
  psi_vs_centre_ci: np.ndarray
  psi_vs_centre_boot: np.ndarray
  psi_mean: float
  psi_mean_ci: list
  psi_mean_boot: np.ndarray
  auc_id: np.ndarray
  auc_id_ci: np.ndarray
  auc_id_boot: np.ndarray
  auc_id_mean: float
  auc_id_mean_ci: list
  mirror_psi: float
  mirror_psi_ci: list


def summarize_tap(r: TapResult) -> TapSummary:
  """Reduces a `TapResult` to tap-level numbers with intervals (see `TapSummary`)."""
  psi_c = np.asarray(r.psi_auc)[:, :, 0].mean(axis=0)  # [P_main]
  boot_c = np.asarray(r.psi_auc_boot)[:, :, :, 0].mean(axis=0)  # [B, P_main]
  auc = np.asarray(r.auc_id).mean(axis=0)
  auc_boot = np.asarray(r.auc_id_boot).mean(axis=0)  # [B, P_main]
  off = slice(1, None)
  psi_mean_boot = boot_c[:, off].mean(axis=1) if r.n_main > 1 else np.zeros(boot_c.shape[0])
  mir_boot = np.asarray(r.mirror_psi_boot).mean(axis=(0, 2)) if r.mirror_psi.size else np.full(boot_c.shape[0],
                                                                                                np.nan)
  return TapSummary(
      psi_vs_centre=psi_c, psi_vs_centre_ci=np.array([_interval(boot_c[:, p]) for p in range(r.n_main)]),
      psi_vs_centre_boot=boot_c, psi_mean=float(psi_c[off].mean()) if r.n_main > 1 else 0.0,
      psi_mean_ci=_interval(psi_mean_boot), psi_mean_boot=psi_mean_boot,
      auc_id=auc, auc_id_ci=np.array([_interval(auc_boot[:, p]) for p in range(r.n_main)]), auc_id_boot=auc_boot,
      auc_id_mean=float(auc.mean()), auc_id_mean_ci=_interval(auc_boot.mean(axis=1)),
      mirror_psi=float(np.asarray(r.mirror_psi).mean()) if r.mirror_psi.size else float("nan"),
      mirror_psi_ci=_interval(mir_boot) if r.mirror_psi.size else [float("nan")] * 2)


# ----------------------------------------------------------------------------- verdicts


class Verdict(NamedTuple):
  """One claim of the paper, decided by numbers.

  Attributes:
    claim: the claim in words.
    measure: what the number is.
    estimate: the point estimate.
    ci: its 95 % interval [lo, hi] (for an equivalence claim also `ci90`).
    verdict: "supported", "not supported" or "inconclusive".
    why: the rule that decided, with the numbers.
    settle: what would settle it when inconclusive ("" otherwise).
    n: how many (tap, position, channel) units the number pools.
  """

  claim: str
  measure: str
  estimate: float
  ci: list
  verdict: str
  why: str
  settle: str
  n: int


CLAIMS = (
    "1. Small-RF nodes prefer the same pattern at every position whose RF is inside the image.",
    "2. Large-RF nodes (RF wider than the image) prefer different patterns at different positions.",
    "3. At each position a large-RF node's preferred pattern is consistent across seeds (Figure 2).",
    "4. Position specificity grows as more of the RF falls off the image.",
    "5. Tiled visualisations (every position at once) look more realistic than single-node ones.",
)


def _needs(n_now: int, half_width: float, distance: float) -> str:
  """Seeds needed for an interval of half-width h at n to shrink to `distance` (h ~ 1/sqrt(n))."""
  if not (math.isfinite(half_width) and distance > 1e-9):
    return "the estimate sits on the decision boundary; more seeds alone may not settle it"
  return f"needs about {max(n_now + 1, int(math.ceil(n_now * (half_width / distance) ** 2)))} seeds"


def _greater(claim, measure, est, boot, threshold, n_seeds, n, *, higher_means="supported") -> Verdict:
  """Supported if the 95 % interval lies above `threshold`, not supported if below, else inconclusive."""
  ci = _interval(boot)
  if not np.isfinite(est) or not np.all(np.isfinite(ci)):
    return Verdict(claim, measure, float(est), ci, "inconclusive", "no defined number", "run the taps it needs", n)
  if ci[0] > threshold:
    v, why = "supported", f"95 % interval [{ci[0]:.2f}, {ci[1]:.2f}] lies above {threshold:g}"
  elif ci[1] < threshold:
    v, why = "not supported", f"95 % interval [{ci[0]:.2f}, {ci[1]:.2f}] lies below {threshold:g}"
  else:
    v, why = "inconclusive", f"95 % interval [{ci[0]:.2f}, {ci[1]:.2f}] contains {threshold:g}"
  settle = _needs(n_seeds, (ci[1] - ci[0]) / 2, abs(est - threshold)) if v == "inconclusive" else ""
  return Verdict(claim, measure, float(est), ci, v, why, settle, n)


def _slope_draws(x: np.ndarray, y_boot: np.ndarray) -> np.ndarray:
  """OLS slope of each draw's y [B, N] on x [N]."""
  xc = x - x.mean()
  return (y_boot - y_boot.mean(axis=1, keepdims=True)) @ xc / (xc @ xc)


def claims(results: Sequence[TapResult], image_hw: tuple[int, int], n_seeds: int,
           realism: dict | None = None) -> dict:
  """One verdict per claim (`CLAIMS`) from the taps' results, plus the fitted trends.

  Args:
    results: `TapResult`s of the swept taps (any order).
    image_hw: the sweep's image size.
    n_seeds: S, for "needs N seeds".
    realism: {"single_minus_tiled_boot": [B] draws of the mean stats_distance difference,
      "single_minus_tiled": float, "n": int}, or None.

  Returns:
    {"verdicts": [5 `Verdict`s], "trend": {"rf": slope, "rf_ci", "erf": slope, "erf_ci", "points"}}.
  """
  side = min(image_hw)
  sums = {r.tap: summarize_tap(r) for r in results}
  small = [r for r in results if r.rf_size <= SMALL_RF_SHARE * side and r.n_main > 1]
  large = [r for r in results if r.rf_size > LARGE_RF_SHARE * side and r.n_main > 1]
  out = []

  # 1: equivalence (TOST) on psi_auc(p, centre) at inside positions of small-RF taps.
  draws, est, n = [], [], 0
  for r in small:
    inside = [p for p in range(1, r.n_main) if r.rf_off[p] == 0]
    if inside:
      s = sums[r.tap]
      draws.append(s.psi_vs_centre_boot[:, inside].mean(axis=1))
      est.append(float(s.psi_vs_centre[inside].mean()))
      n += len(inside) * len(r.channels)
  claim = CLAIMS[0]
  measure = (f"mean psi_auc(p, centre) over RF-inside positions of taps with RF <= {SMALL_RF_SHARE:g} x the image "
             f"side; equivalence margin +-{EQUIVALENCE_MARGIN}")
  if draws:
    boot, e = np.mean(draws, axis=0), float(np.mean(est))
    ci95, ci90 = _interval(boot), _interval(boot, 0.90)
    if -EQUIVALENCE_MARGIN < ci90[0] and ci90[1] < EQUIVALENCE_MARGIN:
      v, why, settle = "supported", f"90 % interval [{ci90[0]:.2f}, {ci90[1]:.2f}] inside +-{EQUIVALENCE_MARGIN} " \
                                    "(TOST at 5 %)", ""
    elif ci95[0] > EQUIVALENCE_MARGIN or ci95[1] < -EQUIVALENCE_MARGIN:
      v, why, settle = "not supported", f"95 % interval [{ci95[0]:.2f}, {ci95[1]:.2f}] outside the margin", ""
    else:
      v, why = "inconclusive", f"90 % interval [{ci90[0]:.2f}, {ci90[1]:.2f}] not inside +-{EQUIVALENCE_MARGIN}"
      if abs(e) < EQUIVALENCE_MARGIN:  # more seeds could show equivalence
        settle = _needs(n_seeds, (ci90[1] - ci90[0]) / 2, EQUIVALENCE_MARGIN - abs(e)) + " to show equivalence"
      else:  # the estimate is outside the margin: more seeds could show a difference
        settle = _needs(n_seeds, (ci95[1] - ci95[0]) / 2, abs(e) - EQUIVALENCE_MARGIN) + " to show a difference"
    out.append(Verdict(claim, measure, e, ci95, v, why, settle, n))
  else:
    out.append(Verdict(claim, measure, float("nan"), [float("nan")] * 2, "inconclusive",
                       "no small-RF tap with an off-centre position inside the image was swept",
                       "sweep conv2/3x3 (or another tap with RF <= half the image) with >= 2 positions", 0))

  # 2: psi_auc(p, centre) > 0 at large-RF taps.
  if large:
    boot = np.mean([sums[r.tap].psi_mean_boot for r in large], axis=0)
    e = float(np.mean([sums[r.tap].psi_mean for r in large]))
    n = sum((r.n_main - 1) * len(r.channels) for r in large)
    out.append(_greater(CLAIMS[1], f"mean psi_auc(p, centre) over off-centre positions of taps with RF > the image "
                        f"side ({', '.join(r.tap for r in large)})", e, boot, 0.0, n_seeds, n))
    boot = np.mean([sums[r.tap].auc_id_boot.mean(axis=1) for r in large], axis=0)
    e = float(np.mean([sums[r.tap].auc_id_mean for r in large]))
    out.append(_greater(CLAIMS[2], "mean auc_id (seeds vs other channels) over positions of the large-RF taps",
                        e, boot, 0.5, n_seeds, sum(r.n_main * len(r.channels) for r in large)))
  else:
    for c in CLAIMS[1:3]:
      out.append(Verdict(c, "", float("nan"), [float("nan")] * 2, "inconclusive", "no tap with RF > the image side",
                         "sweep inception_4c/output or deeper", 0))

  # 4: slope of psi_auc(p, centre) on the off-image share, over every tap's off-centre positions.
  xs_rf, xs_erf, ys, yb = [], [], [], []
  for r in results:
    s = sums[r.tap]
    for p in range(1, r.n_main):
      xs_rf.append(r.rf_off[p] - r.rf_off[0])
      xs_erf.append(r.erf_off[p] - r.erf_off[0])
      ys.append(s.psi_vs_centre[p])
      yb.append(s.psi_vs_centre_boot[:, p])
  trend = dict(points=len(ys))
  if len(ys) >= 3 and np.ptp(xs_rf) > 0:
    yb = np.stack(yb, axis=1)
    for name, xs in (("rf", np.asarray(xs_rf)), ("erf", np.asarray(xs_erf))):
      if np.ptp(xs) > 0 and np.all(np.isfinite(xs)):
        slope = float(_slope_draws(xs, np.asarray(ys)[None])[0])
        trend[name], trend[f"{name}_ci"] = slope, _interval(_slope_draws(xs, yb))
        trend[f"{name}_boot"] = _slope_draws(xs, yb)
    out.append(_greater(CLAIMS[3], "OLS slope of psi_auc(p, centre) on the extra off-image share of the "
                        "theoretical RF (p vs the centre), over all taps' positions", trend["rf"], trend["rf_boot"],
                        0.0, n_seeds, len(ys)))
  else:
    out.append(Verdict(CLAIMS[3], "", float("nan"), [float("nan")] * 2, "inconclusive",
                       "fewer than 3 off-centre positions with different off-image shares", "sweep more taps", 0))

  # 5: realism, stats_distance(single) - stats_distance(tiled) > 0.
  if realism is not None and np.isfinite(realism["single_minus_tiled"]):
    out.append(_greater(CLAIMS[4], "mean over taps and seeds of stats_distance(single centre node) - "
                        "stats_distance(tiled), distance of inception_3a statistics to natural photos (circular: "
                        "the net judging its own images)", realism["single_minus_tiled"],
                        realism["single_minus_tiled_boot"], 0.0, n_seeds, realism["n"]))
  else:
    out.append(Verdict(CLAIMS[4], "", float("nan"), [float("nan")] * 2, "inconclusive", "no tiled run",
                       "set tiled_realism", 0))
  trend = {k: v for k, v in trend.items() if not k.endswith("_boot")}
  return dict(verdicts=out, trend=trend)


def realism_difference(per_tap: Sequence[dict], key: jax.Array, n_boot: int = 200) -> dict:
  """Pools each tap's per-seed stats_distance(single) - stats_distance(tiled) into a mean with
  bootstrap draws over seeds (resampled within each tap, with the explicit key).

  per_tap: [{"single": [S], "tiled": [S]}] of stats_distance values.
  """
  diffs = [np.asarray(d["single"], np.float64) - np.asarray(d["tiled"], np.float64) for d in per_tap]
  if not diffs:
    return dict(single_minus_tiled=float("nan"), single_minus_tiled_boot=np.full(n_boot, np.nan), n=0)
  draws = []
  for t, d in enumerate(diffs):
    idx = np.asarray(jax.random.randint(jax.random.fold_in(key, t), (n_boot, d.size), 0, d.size))
    draws.append(d[idx].mean(axis=1))
  return dict(single_minus_tiled=float(np.mean([d.mean() for d in diffs])),
              single_minus_tiled_boot=np.mean(draws, axis=0), n=int(sum(d.size for d in diffs)))

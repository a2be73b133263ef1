"""The paper's five claims as numbers: estimate, interval, the run's own null, verdict (numbers only).

Input: one `TapMeasures` per swept tap (what `rfspec.runs.sweep` measures: judge descriptors of
every image on every common RF-frame window, node activations for the transfer measure, and the
same for the truncation null), plus the realism numbers. Everything below is computed from those
compact arrays, so a run's verdicts can be recomputed without its images.

Units and resampling. A tap has K channels (node types), P positions and S starts per (channel,
position). The hierarchical bootstrap draws K channels with replacement, then, for each drawn
channel, the start seeds (a start image is one unit, shared by every position that used it) with
replacement; every index is recomputed from the fixed similarity matrices with those weights.
Intervals are percentile intervals of the draws (`rfspec.metrics.interval`, which flags and widens
a zero-width one).

Nulls, from the run's own images:
  * truncation null: the centre's patterns moved into each position's RF frame and cut to the
    common window (`metrics.null_images`), measured exactly like the real images. In the RF frame
    this is the same pattern by construction, so the null is ~0 (psi_auc) and ~1 (transfer): a
    measure that calls truncation a difference would show it here.
  * permutation: position labels swapped between the two positions of a pair, independently per
    start slot and channel (claims 1, 2, 4); channel labels permuted within a position and start
    slot (claim 3); single and tiled swapped within a seed (claim 5). The p-value is the share of
    permutations whose statistic reaches the estimate.
A claim is `supported` only if its estimate clears its null.

Conventions: positions (i, j) = (row, col) on a tap's grid; psi_auc in [-1, 1] (0 = positions
indistinguishable); transfer T > 0 (1 = the node treats the other position's pattern as its own).
"""

from __future__ import annotations

import functools
import math
from typing import NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rfspec import metrics

__all__ = ["CLAIMS", "Claim", "EQUIVALENCE_MARGIN", "TapMeasures", "TapSummary", "decide", "summarize_tap"]

CLAIMS = (
    "1. In GoogLeNet, a small-RF node prefers the same pattern wherever it sits.",
    "2. A node whose RF falls partly off the image prefers a different pattern at each position.",
    "3. Those per-position patterns are consistent across random seeds.",
    "4. Higher nodes give more complex, more variable patterns.",
    "5. Tiling a node across every position gives large-scale, more realistic scenes.",
)
VERDICTS = ("supported", "not supported", "inconclusive", "not measured")

# Claim 1 is an equivalence claim ("the same pattern"): |psi_auc| below this margin, tested with
# the 90 % interval (two one-sided 5 % tests). Fixed BEFORE the run from the calibration
# (tests/metrics_test.py, `IdentityCalibrationTest`): natural photos placed in the RF frame of
# inception_4a/output at truncated positions, S = 6 starts with +-3 px jitter and noise, give
# |psi_auc| <= 0.15 for identical content; 0.2 leaves room for the seed noise of real runs.
EQUIVALENCE_MARGIN = 0.2
# Transfer's equivalence margin on the ratio (T within 1 +- 0.2: the node responds to the other
# position's pattern within 20 % of its own).
TRANSFER_MARGIN = 0.2
SMALL_RF_SHARE = 0.5  # "small RF": RF side <= this share of the image side (claim 1)
DEAD_SHARE = 0.1  # a run below this share of its channel's median final activation is dead
MATCH_TOLERANCE = 0.1  # off-image shares within this count as matched (claim 4's depth contrast)
MIN_NATURAL_PHOTOS = 20
MAX_START_SHARE = 0.05  # claim 5 needs the start noise gone: its decayed copy < 5 % of the image's variance
ALPHA = 0.05


class TapMeasures(NamedTuple):
  """One tap's compact measurements (the sweep saves them; claims need nothing else).

  K channels, P positions (index 0 = the centre; `roles` names each), S starts per (channel,
  position), C judge channels.

  Attributes:
    tap, image_hw, rf_size: the tap, the image size (H, W) px, the RF side px.
    positions: int [P, 2] (i, j) = (row, col).
    roles: [P] "centre", "diagonal", "corner" or "mirror" (the corner's mirror about the image).
    boxes: int [P, 4] full RF boxes; inside: [P] RF share inside the image; erf_off: [P] share of
      the effective RF's mass off the image (NaN if not measured).
    window, share, defined: `metrics.FrameWindows` fields, [P, P, 4], [P, P], [P, P].
    channels: int [K]; eligible: how many channels passed the rule.
    seeds: int [K, P, S] start seed of each image; final_act: [K, P, S] the node's value on its
      final image; alive: bool [K, P, S] not a dead run (`dead_runs`).
    desc: [K, P, S, P, C] judge descriptors: desc[k, p, s, q] on window[p, q] at p.
    null_desc: [K, P, S, C] the truncation null at p (the centre's images moved into p's frame),
      on window[p, centre].
    transfer: [K, P, P, 2, S] `metrics.transfer_activations`; null_transfer: the same for the null
      images (only [:, p, 0] and [:, 0, p] are used).
    mirror_desc: [K, 4, S, C] the mirror ablation: corner and centre images on the corner's window
      W*, mirror and centre images on the mirrored window (empty K x 0 without a mirror).
    single_slope, tiled_slope: [S] spectrum slopes of channels[0] at the centre and tiled (empty if
      not run); single_start_share, tiled_start_share: [S] the share of each image's variance that is
      left-over start noise (`metrics.start_remnant_share`); single_final, tiled_final: [S] the node's
      value on each final image (the tiled one: the channel's mean over the map), for `dead_runs`
      (empty: not recorded, e.g. a unit stored before the realism arm kept them).
  """

  tap: str
  image_hw: tuple
  rf_size: int
  positions: np.ndarray
  roles: tuple
  boxes: np.ndarray
  inside: np.ndarray
  erf_off: np.ndarray
  window: np.ndarray
  share: np.ndarray
  defined: np.ndarray
  channels: np.ndarray
  eligible: int
  seeds: np.ndarray
  final_act: np.ndarray
  alive: np.ndarray
  desc: np.ndarray
  null_desc: np.ndarray
  transfer: np.ndarray
  null_transfer: np.ndarray
  mirror_desc: np.ndarray
  single_slope: np.ndarray
  tiled_slope: np.ndarray
  single_start_share: np.ndarray
  tiled_start_share: np.ndarray
  single_final: np.ndarray = np.zeros(0)
  tiled_final: np.ndarray = np.zeros(0)


def dead_runs(final_act) -> np.ndarray:
  """bool [K, ...]: runs whose final node activation is <= 0 or below `DEAD_SHARE` of its channel's
  median (over the channel's runs). A dead node never moved (zipser2015) or barely did: its image is
  mostly start noise and must not enter any index. final_act [K, ...]."""
  a = np.asarray(final_act, np.float64)
  med = np.median(a.reshape(len(a), -1), axis=1).reshape((-1,) + (1,) * (a.ndim - 1))
  return (a <= 0) | (a < DEAD_SHARE * med)


# ----------------------------------------------------------------------------- the indices, vectorised


class _Static(NamedTuple):
  """The hashable shape of one tap's resampling problem (a static argument of the jitted draws)."""

  k: int
  p: int
  s: int
  n_unique: int
  pairs: tuple  # ((p, q), ...) defined pairs p < q
  centre_defined: tuple  # [P] bool: window[centre, p] defined


def _prepare(m: TapMeasures) -> tuple[dict, _Static]:
  """Similarity comparisons of one tap, once (the draws only change weights and labels)."""
  k_n, p_n, s_n = m.seeds.shape
  pairs = tuple((p, q) for p in range(p_n) for q in range(p + 1, p_n) if m.defined[p, q])
  gt_pair, gt_null, gt_pos = _comparisons(jnp.asarray(m.desc, jnp.float32), jnp.asarray(m.null_desc, jnp.float32),
                                          pairs=pairs)
  uniq, inv = np.unique(m.seeds, return_inverse=True)
  arrays = dict(gt_pair=gt_pair, gt_null=gt_null, gt_pos=gt_pos, uid=jnp.asarray(inv.reshape(m.seeds.shape)),
                seeds=jnp.asarray(m.seeds), alive=jnp.asarray(m.alive, jnp.float32),
                transfer=jnp.asarray(m.transfer, jnp.float32), null_transfer=jnp.asarray(m.null_transfer, jnp.float32))
  static = _Static(k_n, p_n, s_n, int(len(uniq)), pairs, tuple(bool(v) for v in m.defined[0]))
  return arrays, static


@functools.partial(jax.jit, static_argnames=("pairs",))  # one program, not dozens of eager ops each compiled
def _comparisons(desc, null_desc, *, pairs: tuple):
  """(gt_pair [K, n_pairs, n2, n2], gt_null [K, P, n2, n2], gt_pos [P, nk, nk]) of `_prepare` from
  desc [K, P, S, P, C] and null_desc [K, P, S, C] (n2, nk: the unordered pairs of 2S and K*S images)."""
  k_n, p_n, s_n = desc.shape[:3]
  i2, j2 = metrics.upper_pairs(2 * s_n)
  if pairs:
    pp = np.array([p for p, _ in pairs])
    qq = np.array([q for _, q in pairs])
    # desc[:, pp, :, qq] puts the pair axis first: [n_pairs, K, S, C].
    x = jnp.concatenate([desc[:, pp, :, qq], desc[:, qq, :, pp]], axis=2).transpose(1, 0, 2, 3)
    gt_pair = metrics.compare(metrics.cosine(x, x)[..., i2, j2])  # [K, n_pairs, n2, n2]
  else:
    gt_pair = jnp.zeros((k_n, 0, len(i2), len(i2)), jnp.float32)
  centre_on_window = desc[:, 0].transpose(0, 2, 1, 3)  # [K, P, S, C]: the centre's images on window[centre, p]
  xn = jnp.concatenate([null_desc, centre_on_window], axis=2)
  gt_null = metrics.compare(metrics.cosine(xn, xn)[..., i2, j2])  # [K, P, n2, n2]
  ik, jk = metrics.upper_pairs(k_n * s_n)
  own = desc[:, np.arange(p_n), :, np.arange(p_n)].reshape(p_n, k_n * s_n, -1)  # [P, K*S, C] on own windows
  gt_pos = metrics.compare(metrics.cosine(own, own)[..., ik, jk])  # [P, nk, nk]
  return gt_pair, gt_null, gt_pos


def _labels(swap):
  """[S] swaps -> [2S] labels: the first S images are position p (0), the next S position q (1);
  slot s of both trades labels where swap[s] = 1."""
  flip = jnp.concatenate([swap, swap]).astype(jnp.int32)
  base = jnp.concatenate([jnp.zeros_like(flip[: swap.shape[0]]), jnp.ones_like(flip[: swap.shape[0]])])
  return jnp.abs(base - flip)


def _channel_numbers(ar: dict, st: _Static, k, w, swap, chan_labels):
  """Every index of channel k for image weights w [K, P, S] (all channels: the floor uses the
  others), swaps [n_pairs + P, S] (pairs, then (p, centre) for the null and transfer) and channel
  labels [P, K, S]. Returns psi(p, centre) [P], psi of every pair [n_pairs], the truncation null
  [P], auc_id [P], transfer [P] and its null [P]."""
  seeds, n_pairs, p_n = ar["seeds"], len(st.pairs), st.p
  if n_pairs:
    pp = jnp.asarray([p for p, _ in st.pairs])
    qq = jnp.asarray([q for _, q in st.pairs])
    ids = jnp.concatenate([seeds[k, pp], seeds[k, qq]], axis=-1)  # [n_pairs, 2S]
    wts = jnp.concatenate([w[k, pp], w[k, qq]], axis=-1)
    psi_pairs = jax.vmap(metrics.psi_from)(ar["gt_pair"][k], ids, jax.vmap(_labels)(swap[:n_pairs]), wts)
  else:
    psi_pairs = jnp.zeros((0,))
  psi_centre = jnp.full((p_n,), jnp.nan)
  for n, (p, q) in enumerate(st.pairs):
    if p == 0:
      psi_centre = psi_centre.at[q].set(psi_pairs[n])
  centre_ok = jnp.asarray(st.centre_defined) & (jnp.arange(p_n) > 0)
  # The truncation null: the centre's images moved to p, against the centre's own on the same window.
  ids_c = jnp.concatenate([seeds[k, 0], seeds[k, 0]])
  w_c = jnp.concatenate([w[k, 0], w[k, 0]])
  psi_null = jax.vmap(lambda g, sw: metrics.psi_from(g, ids_c, _labels(sw), w_c))(ar["gt_null"][k], swap[n_pairs:])
  psi_null = jnp.where(centre_ok, psi_null, jnp.nan)
  # auc_id at every position: pairs of channel k's own starts vs pairs with one other channel's image.
  ids_p = seeds.transpose(1, 0, 2).reshape(p_n, -1)  # [P, K*S]
  w_p = w.transpose(1, 0, 2).reshape(p_n, -1)
  lab = chan_labels.reshape(p_n, -1)
  auc_id = jax.vmap(lambda g, i, l, wt: metrics.auc_id_from(g, i, l, wt, k))(ar["gt_pos"], ids_p, lab, w_p)

  # Transfer with the centre, both ways: p's pattern shown to the centre node, the centre's to node p.
  def both(t, w_at_p, p):
    def ratio(vals, w0, w1):
      return metrics.pair_transfer(jnp.concatenate([vals[0], vals[1]]), _labels(swap[n_pairs + p]),
                                   jnp.concatenate([w0, w1]))

    return 0.5 * (ratio(t[p, 0], w_at_p, w[k, 0]) + ratio(t[0, p], w[k, 0], w_at_p))

  ps = jnp.arange(p_n)
  transfer = jax.vmap(lambda p: both(ar["transfer"][k], w[k, p], p))(ps)
  # The null images at p come from the centre's starts, so they carry the centre's weights.
  transfer_null = jax.vmap(lambda p: both(ar["null_transfer"][k], w[k, 0], p))(ps)
  return (psi_centre, psi_pairs, psi_null, auc_id, jnp.where(centre_ok, transfer, jnp.nan),
          jnp.where(centre_ok, transfer_null, jnp.nan))


class _Draws(NamedTuple):
  """[1 + n, K, ...]: row 0 is the estimate (every channel once, unit weights), then n draws."""

  psi_centre: jax.Array  # [.., P]
  psi_pairs: jax.Array  # [.., n_pairs]
  psi_null: jax.Array  # [.., P]
  auc_id: jax.Array  # [.., P]
  transfer: jax.Array  # [.., P]
  transfer_null: jax.Array  # [.., P]


def _seed_counts(key, st: _Static):
  return jnp.bincount(jax.random.randint(key, (st.n_unique,), 0, st.n_unique), length=st.n_unique).astype(jnp.float32)


def _draws(ar: dict, key, st: _Static, n: int, mode: str) -> _Draws:
  """mode "boot": the hierarchical bootstrap (channels with replacement, then start seeds within each
  drawn channel). mode "perm": the permutation null (position labels swapped within start slots,
  channel labels permuted within (position, slot); every channel once, unit weights)."""
  return _numbers_of_draws(ar, _draw_inputs(key, st, n, mode), st)


@functools.partial(jax.jit, static_argnames=("st", "n", "mode"))
def _draw_inputs(key, st: _Static, n: int, mode: str) -> tuple:
  """What each of `_draws`' rows resamples: (picks [1 + n, K], counts [1 + n, K, n_unique], swaps
  [1 + n, n_pairs + P, S], channel labels [1 + n, P, K, S]); row 0 is the estimate's (every channel
  once, unit weights, nothing swapped)."""
  n_swap = len(st.pairs) + st.p
  ks = jnp.arange(st.k)
  ones = jnp.ones((st.k, st.n_unique))
  no_swap = jnp.zeros((n_swap, st.s), jnp.int32)
  chan = jnp.broadcast_to(jnp.arange(st.k)[None, :, None], (st.p, st.k, st.s))

  def draw(key):
    k1, k2, _ = jax.random.split(key, 3)  # three, as ever: the recorded runs' draws stay what they were
    if mode == "boot":
      picks = jax.random.randint(k1, (st.k,), 0, st.k)
      counts = jax.vmap(lambda kk: _seed_counts(kk, st))(jax.random.split(k2, st.k))
      return picks, counts, no_swap, chan
    swap = jax.random.bernoulli(k1, 0.5, (n_swap, st.s)).astype(jnp.int32)
    perm = jax.vmap(jax.vmap(lambda kk: jax.random.permutation(kk, st.k)))(
        jax.random.split(k2, (st.p, st.s)))  # [P, S, K]
    return ks, ones, swap, perm.transpose(0, 2, 1)

  rest = jax.vmap(draw)(jax.random.split(key, n))
  return tuple(jnp.concatenate([e[None], r]) for e, r in zip((ks, ones, no_swap, chan), rest))


# The same program for the bootstrap and the permutations (only their inputs differ), with the
# per-channel numbers traced once.
@functools.partial(jax.jit, static_argnames=("st",))
def _numbers_of_draws(ar: dict, inputs: tuple, st: _Static) -> _Draws:
  def numbers(row):
    picks, counts, swap, chan_labels = row
    return jax.vmap(lambda k, c: _channel_numbers(ar, st, k, ar["alive"] * c[ar["uid"]], swap, chan_labels))(
        picks, counts)

  return _Draws(*jax.lax.map(numbers, inputs))


# ----------------------------------------------------------------------------- tap summaries


class TapSummary(NamedTuple):
  """Tap-level numbers (channel means) with their draws.

  Attributes:
    psi_centre: [P] psi_auc(p, centre), mean over channels (NaN at the centre / undefined pairs).
    psi_centre_boot: [B, P]; psi_centre_perm: [N, P] under the permutation null.
    psi_null: [P] the same on the truncation null.
    auc_id: [P]; auc_id_boot [B, P]; auc_id_perm [N, P].
    transfer: [P] mean of T(p -> centre) and T(centre -> p); transfer_boot [B, P];
      transfer_perm [N, P]; transfer_null [P].
    psi_pairs: [n_pairs] every defined pair (pair_p, pair_q); psi_pairs_boot [B, n_pairs].
    pair_p, pair_q: int [n_pairs].
    mirror: psi(mirror, centre) - psi(corner, centre) on mirrored windows, mean over channels;
      mirror_boot [B] (NaN without a mirror position).
    dead: dead runs (count); runs: all runs.
    units: channels x starts behind the tap's intervals.
  """

  psi_centre: np.ndarray
  psi_centre_boot: np.ndarray
  psi_centre_perm: np.ndarray
  psi_null: np.ndarray
  auc_id: np.ndarray
  auc_id_boot: np.ndarray
  auc_id_perm: np.ndarray
  transfer: np.ndarray
  transfer_boot: np.ndarray
  transfer_perm: np.ndarray
  transfer_null: np.ndarray
  psi_pairs: np.ndarray
  psi_pairs_boot: np.ndarray
  pair_p: np.ndarray
  pair_q: np.ndarray
  mirror: float
  mirror_boot: np.ndarray
  dead: int
  runs: int
  units: int


def _nanmean(x, axis):
  x = np.asarray(x, np.float64)
  with np.errstate(invalid="ignore"):
    n = np.sum(np.isfinite(x), axis=axis)
    s = np.nansum(x, axis=axis)
    return np.where(n > 0, s / np.maximum(n, 1), np.nan)


def _mirror_numbers(m: TapMeasures, key: jax.Array, n_boot: int) -> tuple[float, np.ndarray]:
  """psi(mirror, centre) - psi(corner, centre), both on mirror-image windows; per channel, then the
  mean; bootstrap over starts within channel and over channels."""
  if m.mirror_desc.size == 0:
    return float("nan"), np.full(n_boot, np.nan)
  uniq, inv = np.unique(m.seeds, return_inverse=True)
  est, boot = _mirror_draws(jnp.asarray(m.mirror_desc, jnp.float32), jnp.asarray(m.seeds),
                            jnp.asarray(m.alive, jnp.float32), jnp.asarray(inv.reshape(m.seeds.shape)), key,
                            corner=m.roles.index("corner"), mirror=m.roles.index("mirror"), n_unique=len(uniq),
                            n_boot=n_boot)
  return float(_nanmean(np.asarray(est), 0)), _nanmean(np.asarray(boot), 1)


# One compiled program (eager, its dozens of small ops each compiled on their own).
@functools.partial(jax.jit, static_argnames=("corner", "mirror", "n_unique", "n_boot"))
def _mirror_draws(d, seeds, alive, uid, key, *, corner: int, mirror: int, n_unique: int, n_boot: int):
  """(est [K], boot [n_boot, K]) of `_mirror_numbers`; d = mirror_desc [K, 4, S, C]."""
  k_n, _, s_n, _ = d.shape
  x_c = jnp.concatenate([d[:, 0], d[:, 1]], axis=1)  # corner vs centre on W*
  x_m = jnp.concatenate([d[:, 2], d[:, 3]], axis=1)  # mirror vs centre on mirror(W*)
  i, j = metrics.upper_pairs(2 * s_n)
  gt_c = metrics.compare(metrics.cosine(x_c, x_c)[..., i, j])
  gt_m = metrics.compare(metrics.cosine(x_m, x_m)[..., i, j])
  labels = jnp.concatenate([jnp.zeros(s_n, jnp.int32), jnp.ones(s_n, jnp.int32)])

  def diff(k, c):
    w = alive[k] * c[uid[k]]  # [P, S]
    a = metrics.psi_from(gt_c[k], jnp.concatenate([seeds[k, corner], seeds[k, 0]]), labels,
                         jnp.concatenate([w[corner], w[0]]))
    b = metrics.psi_from(gt_m[k], jnp.concatenate([seeds[k, mirror], seeds[k, 0]]), labels,
                         jnp.concatenate([w[mirror], w[0]]))
    return b - a

  est = jax.vmap(diff)(jnp.arange(k_n), jnp.ones((k_n, n_unique)))

  def draw(kk):
    k1, k2 = jax.random.split(kk)
    picks = jax.random.randint(k1, (k_n,), 0, k_n)
    counts = jax.vmap(lambda q: jnp.bincount(jax.random.randint(q, (n_unique,), 0, n_unique), length=n_unique)
                      .astype(jnp.float32))(jax.random.split(k2, k_n))
    return jax.vmap(diff)(picks, counts)

  return est, jax.lax.map(draw, jax.random.split(key, n_boot))


def summarize_tap(m: TapMeasures, key: jax.Array, *, n_boot: int = 1000, n_perm: int = 1000) -> TapSummary:
  """A tap's indices with hierarchical-bootstrap draws and permutation nulls (see the module doc)."""
  kb, kp, km = jax.random.split(key, 3)
  ar, st = _prepare(m)
  boot = _draws(ar, kb, st, n_boot, "boot")
  perm = _draws(ar, kp, st, n_perm, "perm")

  def est(x):
    return _nanmean(np.asarray(x)[0], 0)

  def draws(x):
    return _nanmean(np.asarray(x)[1:], 1)

  mirror, mirror_boot = _mirror_numbers(m, km, n_boot)
  alive = np.asarray(m.alive)
  return TapSummary(
      psi_centre=est(boot.psi_centre), psi_centre_boot=draws(boot.psi_centre), psi_centre_perm=draws(perm.psi_centre),
      psi_null=est(boot.psi_null), auc_id=est(boot.auc_id), auc_id_boot=draws(boot.auc_id),
      auc_id_perm=draws(perm.auc_id), transfer=est(boot.transfer), transfer_boot=draws(boot.transfer),
      transfer_perm=draws(perm.transfer), transfer_null=est(boot.transfer_null), psi_pairs=est(boot.psi_pairs),
      psi_pairs_boot=draws(boot.psi_pairs), pair_p=np.array([p for p, _ in st.pairs], np.int64),
      pair_q=np.array([q for _, q in st.pairs], np.int64), mirror=mirror, mirror_boot=mirror_boot,
      dead=int((~alive).sum()), runs=int(alive.size), units=int(alive.sum()))


# ----------------------------------------------------------------------------- verdicts


class Claim(NamedTuple):
  """One claim of the paper, decided by numbers.

  Attributes:
    claim: the claim in words (`CLAIMS`).
    measure: what the estimate is.
    estimate: the point estimate (NaN when not measured).
    ci: (lo, hi) 95 % interval; ci_degenerate: every draw gave the same value (the interval was
      widened to the exact bound for `n` units agreeing, see `metrics.interval`).
    null: the same estimate on the run's own null (`null_kind` says which).
    null_kind: e.g. "truncation null (centre pattern cut to each window)", "chance".
    p_value: permutation p-value of the estimate (NaN where no permutation applies).
    verdict: one of `VERDICTS` ("not evaluated" for smoke tests).
    why: the rule that decided, with the numbers.
    settle: what would settle an inconclusive verdict ("" otherwise).
    n: the independent units behind the interval (channels x starts, or images).
    second: the second measure where there is one (claim 2: transfer; claim 4: the within-tap
      slope), as {"name", "estimate", "ci", "null", "p_value", "says"}; {} otherwise.
  """

  claim: str
  measure: str
  estimate: float
  ci: tuple
  ci_degenerate: bool
  null: float
  null_kind: str
  p_value: float
  verdict: str
  why: str
  settle: str
  n: int
  second: dict


class Realism(NamedTuple):
  """Claim 5's inputs: spectrum slopes of the natural references and of each tap's runs.

  Attributes:
    natural_slope: [N] slopes of natural photos (`metrics.spectrum_slope`).
    natural_names: [N] where each came from.
  """

  natural_slope: np.ndarray
  natural_names: tuple


def _p_greater(perm: np.ndarray, est: float) -> float:
  perm = np.asarray(perm, np.float64)
  perm = perm[np.isfinite(perm)]
  if perm.size == 0 or not np.isfinite(est):
    return float("nan")
  return float((1 + np.sum(perm >= est - 1e-12)) / (1 + perm.size))


def _needs(n_now: int, half: float, distance: float) -> str:
  if not (math.isfinite(half) and distance > 1e-9 and n_now > 0):
    return "the estimate sits on the decision boundary; more starts alone may not settle it"
  return f"needs about {max(n_now + 1, int(math.ceil(n_now * (half / distance) ** 2)))} starts per (channel, position)"


def _mean_over(units: list[tuple[np.ndarray, np.ndarray, np.ndarray]]) -> tuple[float, np.ndarray, np.ndarray]:
  """units: (estimate [], boot draws [B], perm draws [N]) -> their mean estimate and draw-wise means."""
  est = float(np.mean([u[0] for u in units]))
  boot = _nanmean(np.stack([u[1] for u in units]), 0)
  perm = _nanmean(np.stack([u[2] for u in units]), 0)
  return est, boot, perm


def _greater(claim, measure, est, boot, perm, null, null_kind, threshold, n_units, n_starts, bounds, *,
             margin=None) -> Claim:
  """Supported: the 95 % interval lies above max(threshold, null) and p < ALPHA. Not supported: it lies
  below the threshold, or (with a margin) the 90 % interval lies within threshold +- margin."""
  ci = metrics.interval(boot, n_units, bounds=bounds)
  p = _p_greater(perm, est)
  if not np.isfinite(est) or not np.isfinite(ci.lo):
    return Claim(claim, measure, float(est), (ci.lo, ci.hi), ci.degenerate, float(null), null_kind, p, "inconclusive",
                 "no defined number", "run the taps and positions it needs", n_units, {})
  bar = max(threshold, null) if np.isfinite(null) else threshold
  ci90 = metrics.interval(boot, n_units, level=0.90, bounds=bounds)
  text = f"95 % interval [{ci.lo:.2f}, {ci.hi:.2f}]"
  if ci.lo > bar and (not np.isfinite(p) or p < ALPHA):
    v, why = "supported", f"{text} lies above {bar:.2f} (threshold {threshold:g}, own null {null:.2f}), permutation p = {p:.3f}"
  elif ci.hi < threshold:
    v, why = "not supported", f"{text} lies below {threshold:g}"
  elif margin is not None and threshold - margin < ci90.lo and ci90.hi < threshold + margin:
    v, why = "not supported", (f"90 % interval [{ci90.lo:.2f}, {ci90.hi:.2f}] lies within {threshold:g} +- {margin:g}: "
                               "no difference beyond the equivalence margin")
  else:
    v = "inconclusive"
    why = f"{text} reaches {bar:.2f}" if ci.lo <= bar else f"{text} clears {bar:.2f} but permutation p = {p:.3f}"
  settle = _needs(n_starts, (ci.hi - ci.lo) / 2, abs(est - bar)) if v == "inconclusive" else ""
  return Claim(claim, measure, float(est), (ci.lo, ci.hi), ci.degenerate, float(null), null_kind, p, v, why, settle,
               n_units, {})


def _off_centre(m: TapMeasures, *, inside: str) -> list[int]:
  """Main-diagonal (not mirror) off-centre positions with a defined window with the centre; inside
  "all" / "full" (RF wholly inside) / "partial" (RF partly off)."""
  out = []
  for p, role in enumerate(m.roles):
    if p == 0 or role == "mirror" or not m.defined[0, p]:
      continue
    full = m.inside[p] >= 1.0 - 1e-9
    if inside == "all" or (inside == "full" and full) or (inside == "partial" and not full):
      out.append(p)
  return out


def decide(taps: Sequence[tuple[TapMeasures, TapSummary]], *, image_hw: tuple[int, int], n_starts: int,
           realism: Realism | None = None, smoke_test: bool = False, key: jax.Array | None = None,
           n_boot: int = 1000) -> list[Claim]:
  """One `Claim` per claim of the paper from the taps' measures and summaries.

  Args:
    taps: (measures, summary) per swept tap; every summary drawn with the same n_boot and n_perm.
    image_hw: the run's image size.
    n_starts: S, starts per (channel, position) (for "needs N starts").
    realism: natural-photo references for claim 5, or None.
    smoke_test: a quick run: every verdict is "not evaluated".
    key: for claim 5's bootstrap.
    n_boot: claim 5's bootstrap draws.
  """
  side = min(image_hw)
  out = []
  small = [(m, s) for m, s in taps if m.rf_size <= SMALL_RF_SHARE * side]
  large = [(m, s) for m, s in taps if m.rf_size > SMALL_RF_SHARE * side]

  # 1: equivalence on psi_auc(p, centre) at RF-inside positions of small-RF taps.
  units = [(s.psi_centre[p], s.psi_centre_boot[:, p], s.psi_centre_perm[:, p], s.psi_null[p], s.units)
           for m, s in small for p in _off_centre(m, inside="full")]
  measure = (f"mean psi_auc(p, centre) on the common RF-frame window, over off-centre positions whose RF lies inside the "
             f"image, taps with RF <= {SMALL_RF_SHARE:g} x the image side "
             f"({', '.join(m.tap for m, _ in small) or 'none swept'}); equivalence margin +-{EQUIVALENCE_MARGIN}")
  if units:
    est, boot, perm = _mean_over([u[:3] for u in units])
    null = float(np.mean([u[3] for u in units]))
    n = int(sum(s.units for _, s in small))
    ci = metrics.interval(boot, n, bounds=(-1, 1))
    ci90 = metrics.interval(boot, n, level=0.90, bounds=(-1, 1))
    p = _p_greater(np.abs(perm), abs(est))
    if -EQUIVALENCE_MARGIN < ci90.lo and ci90.hi < EQUIVALENCE_MARGIN:
      v, why, settle = "supported", (f"90 % interval [{ci90.lo:.2f}, {ci90.hi:.2f}] lies within +-{EQUIVALENCE_MARGIN} "
                                     "(two one-sided tests at 5 %)"), ""
    elif ci.lo > EQUIVALENCE_MARGIN or ci.hi < -EQUIVALENCE_MARGIN:
      v, why, settle = "not supported", f"95 % interval [{ci.lo:.2f}, {ci.hi:.2f}] lies outside +-{EQUIVALENCE_MARGIN}", ""
    else:
      v, why = "inconclusive", f"90 % interval [{ci90.lo:.2f}, {ci90.hi:.2f}] is not within +-{EQUIVALENCE_MARGIN}"
      settle = (_needs(n_starts, (ci90.hi - ci90.lo) / 2, EQUIVALENCE_MARGIN - abs(est)) + " to show equivalence"
                if abs(est) < EQUIVALENCE_MARGIN else
                _needs(n_starts, (ci.hi - ci.lo) / 2, abs(est) - EQUIVALENCE_MARGIN) + " to show a difference")
    out.append(Claim(CLAIMS[0], measure, est, (ci.lo, ci.hi), ci.degenerate, null,
                     "truncation null (the centre's pattern cut to each window)", p, v, why, settle, n, {}))
  else:
    out.append(Claim(CLAIMS[0], measure, float("nan"), (float("nan"),) * 2, False, float("nan"), "", float("nan"),
                     "not measured", "no small-RF tap with an off-centre position whose RF lies inside the image",
                     "sweep conv2/3x3 or inception_3b/output with >= 2 positions", 0, {}))

  # 2: psi_auc(p, centre) > its null at positions whose RF is partly off, with transfer beside it.
  units = [(m, s, p) for m, s in large for p in _off_centre(m, inside="partial")]
  measure = ("mean psi_auc(p, centre) on the common RF-frame window, over off-centre positions whose RF falls partly "
             f"off the image, taps with RF > {SMALL_RF_SHARE:g} x the image side "
             f"({', '.join(m.tap for m, _ in large) or 'none swept'})")
  if units:
    n = int(sum(s.units for _, s in large))
    est, boot, perm = _mean_over([(s.psi_centre[p], s.psi_centre_boot[:, p], s.psi_centre_perm[:, p])
                                  for _, s, p in units])
    null = float(np.mean([s.psi_null[p] for _, s, p in units]))
    c = _greater(CLAIMS[1], measure, est, boot, perm, null, "truncation null (the centre's pattern cut to each window)",
                 0.0, n, n_starts, (-1, 1), margin=EQUIVALENCE_MARGIN)
    t_est, t_boot, t_perm = _mean_over([(s.transfer[p], s.transfer_boot[:, p], s.transfer_perm[:, p]) for _, s, p in units])
    t_null = float(np.mean([s.transfer_null[p] for _, s, p in units]))
    t_ci = metrics.interval(t_boot, n)
    t_ci90 = metrics.interval(t_boot, n, level=0.90)
    t_p = _p_greater(-np.asarray(t_perm), -t_est)
    if np.isfinite(t_ci.hi) and t_ci.hi < min(1.0, t_null) and t_p < ALPHA:
      says = "different"
    elif np.isfinite(t_ci90.lo) and 1 - TRANSFER_MARGIN < t_ci90.lo and t_ci90.hi < 1 + TRANSFER_MARGIN:
      says = "same"
    else:
      says = "undecided"
    second = dict(name="transfer T: node's response to the other position's pattern / to its own, both cut to the "
                  "common window (mean of both directions)", estimate=t_est, ci=(t_ci.lo, t_ci.hi),
                  null=t_null, p_value=t_p, says=says)
    psi_says = {"supported": "different", "not supported": "same"}.get(c.verdict, "undecided")
    verdict, why = c.verdict, c.why
    if c.verdict == "supported" and says != "different":
      verdict = "inconclusive"
      why = (f"the measures disagree: psi_auc separates the positions ({c.why}) but transfer says {says} "
             f"(T = {t_est:.2f} [{t_ci.lo:.2f}, {t_ci.hi:.2f}], null {t_null:.2f}, p = {t_p:.3f})")
    elif c.verdict == "not supported" and says == "different":
      verdict = "inconclusive"
      why = (f"the measures disagree: psi_auc finds no difference ({c.why}) but transfer says different "
             f"(T = {t_est:.2f} [{t_ci.lo:.2f}, {t_ci.hi:.2f}], p = {t_p:.3f})")
    elif c.verdict == "inconclusive":
      why = f"psi_auc is undecided ({c.why}); transfer says {says} (T = {t_est:.2f} [{t_ci.lo:.2f}, {t_ci.hi:.2f}], p = {t_p:.3f})"
    elif psi_says == says:
      why = f"{c.why}; transfer agrees ({says}: T = {t_est:.2f} [{t_ci.lo:.2f}, {t_ci.hi:.2f}])"
    out.append(c._replace(verdict=verdict, why=why, second=second))
  else:
    out.append(Claim(CLAIMS[1], measure, float("nan"), (float("nan"),) * 2, False, float("nan"), "", float("nan"),
                     "not measured", "no large-RF tap with an off-centre position whose RF falls partly off the image",
                     "sweep inception_4a/output or inception_4c/5x5 with >= 2 positions", 0, {}))

  # 3: seed consistency at those taps' positions: auc_id > 0.5 against other channels.
  units = [(s.auc_id[p], s.auc_id_boot[:, p], s.auc_id_perm[:, p]) for m, s in large
           for p in [0] + _off_centre(m, inside="all")]
  measure = ("mean auc_id = P(two starts of a node agree more than the node and another channel), on each "
             "position's own window, over the large-RF taps' positions")
  if units:
    est, boot, perm = _mean_over(units)
    null = float(np.nanmean(perm))
    n = int(sum(s.units for _, s in large))
    out.append(_greater(CLAIMS[2], measure, est, boot, perm, null,
                        "channel labels permuted within position and start slot (mean of the permutations)", 0.5, n,
                        n_starts, (0, 1)))
  else:
    out.append(Claim(CLAIMS[2], measure, float("nan"), (float("nan"),) * 2, False, float("nan"), "", float("nan"),
                     "not measured", "no large-RF tap swept", "sweep inception_4a/output or inception_4c/5x5", 0, {}))

  out.append(_claim4(taps, n_starts))
  out.append(_claim5(taps, realism, key if key is not None else jax.random.key(5), n_boot))
  if smoke_test:
    out = [c._replace(verdict="not evaluated",
                      why="smoke test (tiny size and steps): checks the pipeline, not the science", settle="")
           for c in out]
  return out


def _claim4(taps, n_starts: int) -> Claim:
  """Depth vs truncation: across-tap contrasts of psi(p, centre) at matched off-image share (depth),
  and the within-tap slope on the off-image share with tap fixed effects (truncation)."""
  measure = ("mean psi_auc(q, centre) of the deeper tap minus psi_auc(p, centre) of the shallower one, over "
             f"position pairs whose RF off-image shares match within {MATCH_TOLERANCE:g} (depth at matched truncation); "
             "beside it the within-tap slope of psi_auc(p, centre) on the off-image share (truncation). Complexity "
             "is not measured")
  pts = []  # (tap index, rf_size, off share, est, boot, perm)
  for t, (m, s) in enumerate(taps):
    for p in _off_centre(m, inside="all"):
      pts.append((t, m.rf_size, 1.0 - m.inside[p], s.psi_centre[p], s.psi_centre_boot[:, p], s.psi_centre_perm[:, p],
                  s.units))
  matched = [(a, b) for a in pts for b in pts if b[1] > a[1] and abs(a[2] - b[2]) <= MATCH_TOLERANCE]
  n = int(sum(s.units for _, s in taps))
  if not matched:
    return Claim(CLAIMS[3], measure, float("nan"), (float("nan"),) * 2, False, float("nan"), "", float("nan"),
                 "not measured", "no two taps of different RF size have positions with matching off-image shares",
                 "sweep taps from conv2/3x3 to inception_4c with positions to the corner", n, {})
  est = float(np.mean([b[3] - a[3] for a, b in matched]))
  boot = _nanmean(np.stack([b[4] - a[4] for a, b in matched]), 0)
  perm = _nanmean(np.stack([b[5] - a[5] for a, b in matched]), 0)
  c = _greater(CLAIMS[3], measure, est, boot, perm, 0.0, "position labels permuted (depth contrast null 0)", 0.0, n,
               n_starts, (-2, 2), margin=EQUIVALENCE_MARGIN)
  # Within-tap slope with tap fixed effects.
  taps_i = np.array([q[0] for q in pts])
  x = np.array([q[2] for q in pts], np.float64)
  xc = x - np.array([x[taps_i == t].mean() for t in taps_i])

  def slope(y):
    y = np.asarray(y, np.float64)
    yc = y - np.stack([y[..., taps_i == t].mean(-1) for t in taps_i], -1)
    den = float(xc @ xc)
    return yc @ xc / den if den > 0 else np.full(y.shape[:-1], np.nan)

  s_est = float(slope(np.array([q[3] for q in pts])))
  s_boot = slope(np.stack([q[4] for q in pts], -1))
  s_perm = slope(np.stack([q[5] for q in pts], -1))
  s_ci = metrics.interval(s_boot, n)
  s_p = _p_greater(s_perm, s_est)
  truncation = bool(np.isfinite(s_ci.lo) and s_ci.lo > 0 and s_p < ALPHA)
  depth = c.verdict == "supported"
  carries = {(True, True): "both depth and truncation", (True, False): "depth, not truncation",
             (False, True): "truncation, not depth", (False, False): "neither depth nor truncation"}[(depth, truncation)]
  second = dict(name="within-tap slope of psi_auc(p, centre) on the RF's off-image share (tap fixed effects)",
                estimate=s_est, ci=(s_ci.lo, s_ci.hi), null=0.0, p_value=s_p,
                says="truncation raises specificity" if truncation else "no clear truncation effect")
  return c._replace(why=f"{c.why}; what carries the variation: {carries} (within-tap slope {s_est:.2f} "
                    f"[{s_ci.lo:.2f}, {s_ci.hi:.2f}], p = {s_p:.3f})", second=second)


def _claim5(taps, realism: Realism | None, key: jax.Array, n_boot: int) -> Claim:
  """Tiled vs single: is the tiled image's spectrum slope closer to natural photos'?"""
  measure = ("mean over taps and starts of |slope(single centre node) - median natural slope| - |slope(tiled) - "
             "median natural slope|, radially averaged power spectrum in log-log (> 0: tiled is closer to natural "
             "photos); a measure that is not GoogLeNet judging itself")
  runs = [m for m, _ in taps if m.tiled_slope.size and m.single_slope.size]
  nan2 = (float("nan"),) * 2
  if not runs:
    return Claim(CLAIMS[4], measure, float("nan"), nan2, False, float("nan"), "", float("nan"), "not measured",
                 "no tiled run", "set tiled=True", 0, {})
  if realism is None or len(realism.natural_slope) < MIN_NATURAL_PHOTOS:
    have = 0 if realism is None else len(realism.natural_slope)
    return Claim(CLAIMS[4], measure, float("nan"), nan2, False, float("nan"), "", float("nan"), "not measured",
                 f"{have} natural reference photos; the comparison needs >= {MIN_NATURAL_PHOTOS}",
                 "install scikit-image (pip install -e .[test]) for its bundled photos, or pass reference images", 0, {})
  if any(m.single_final.size != m.single_slope.size or m.tiled_final.size != m.tiled_slope.size for m in runs):
    return Claim(CLAIMS[4], measure, float("nan"), nan2, False, float("nan"), "", float("nan"), "not measured",
                 "the realism arm recorded no final node activations, so its dead runs cannot be excluded",
                 "rerun the sweep: the realism arm is its own stored unit and reruns alone", 0, {})
  # A start is used only if both its single and its tiled run are alive (the pair is the unit).
  alive = [~(dead_runs(m.single_final[None])[0] | dead_runs(m.tiled_final[None])[0]) for m in runs]
  dead = {m.tap: int((~a).sum()) for m, a in zip(runs, alive)}
  if any(not a.any() for a in alive):
    return Claim(CLAIMS[4], measure, float("nan"), nan2, False, float("nan"), "", float("nan"), "not measured",
                 f"every realism start of a tap is a dead run (dead per tap: {dead})", "run more starts", 0, {})
  worst = max(float(np.max(np.concatenate([m.single_start_share[a], m.tiled_start_share[a]])))
              for m, a in zip(runs, alive))
  if worst > MAX_START_SHARE:
    return Claim(CLAIMS[4], measure, float("nan"), nan2, False, float("nan"), "", float("nan"), "not measured",
                 f"start noise remains: up to {worst:.0%} of a live image's variance is the decayed start (needs < "
                 f"{MAX_START_SHARE:.0%}), so the spectrum would measure the noise",
                 "run more steps (the decay removes 0.5 % of the start per step under zipser2015)", 0, {})
  nat = float(np.median(realism.natural_slope))
  single = [np.abs(np.asarray(m.single_slope)[a] - nat) for m, a in zip(runs, alive)]
  tiled = [np.abs(np.asarray(m.tiled_slope)[a] - nat) for m, a in zip(runs, alive)]
  diffs = [a - b for a, b in zip(single, tiled)]
  est = float(np.mean([d.mean() for d in diffs]))
  boot, perm = [], []
  for t, d in enumerate(diffs):
    k1, k2 = jax.random.split(jax.random.fold_in(key, t))
    idx = np.asarray(jax.random.randint(k1, (n_boot, d.size), 0, d.size))
    boot.append(d[idx].mean(axis=1))
    sign = np.where(np.asarray(jax.random.bernoulli(k2, 0.5, (n_boot, d.size))), -1.0, 1.0)
    perm.append((d[None] * sign).mean(axis=1))
  n = int(sum(d.size for d in diffs))
  c = _greater(CLAIMS[4], measure, est, np.mean(boot, 0), np.mean(perm, 0), 0.0,
               "single and tiled labels swapped within each start (null 0)", 0.0, n, max(d.size for d in diffs), None)
  n_dead = sum(dead.values())
  return c._replace(why=f"{c.why}; {n_dead} dead realism start(s) left out ({', '.join(f'{t}: {d}' for t, d in dead.items())})",
                    second=dict(name="median spectrum slope of the natural photos", estimate=nat,
                                ci=tuple(float(v) for v in np.percentile(realism.natural_slope, [2.5, 97.5])),
                                null=float("nan"), p_value=float("nan"),
                                says=f"{len(realism.natural_slope)} photos ({', '.join(realism.natural_names[:4])}, ...)"))


@functools.partial(jax.jit, static_argnames=("s_a", "u", "n_boot", "n_perm"))
def _condition_draws(x, ids, uid, key, s_a: int, u: int, n_boot: int, n_perm: int):
  """Per-channel psi_auc of `condition_psi`: the estimate [K], bootstrap [n_boot, K], permutations [n_perm, K]."""
  k_n, n = x.shape[:2]
  i, j = metrics.upper_pairs(n)
  gt = metrics.compare(metrics.cosine(x, x)[..., i, j])
  labels = jnp.concatenate([jnp.zeros(s_a, jnp.int32), jnp.ones(n - s_a, jnp.int32)])

  def psi(k, counts, lab):
    return metrics.psi_from(gt[k], ids[k], lab, counts[uid[k]])

  est = jax.vmap(lambda k: psi(k, jnp.ones(u), labels))(jnp.arange(k_n))
  kb, kp = jax.random.split(key)

  def boot_draw(kk):
    k1, k2 = jax.random.split(kk)
    picks = jax.random.randint(k1, (k_n,), 0, k_n)
    counts = jax.vmap(lambda q: jnp.bincount(jax.random.randint(q, (u,), 0, u), length=u).astype(jnp.float32))(
        jax.random.split(k2, k_n))
    return jax.vmap(lambda k, c: psi(k, c, labels))(picks, counts)

  def perm_draw(kk):
    return jax.vmap(lambda k, q: psi(k, jnp.ones(u), jax.random.permutation(q, labels)))(
        jnp.arange(k_n), jax.random.split(kk, k_n))

  return est, jax.lax.map(boot_draw, jax.random.split(kb, n_boot)), jax.lax.map(perm_draw, jax.random.split(kp, n_perm))


def condition_psi(desc_a, desc_b, seeds_a, seeds_b, key: jax.Array, *, n_boot: int = 1000,
                  n_perm: int = 1000) -> dict:
  """psi_auc between two conditions of the same node types (an ablation): condition a's images vs
  condition b's, each channel separately on descriptors of the same RF-frame window, then the mean.

  Args:
    desc_a, desc_b: [K, S, C] judge descriptors (channel k, start s) of conditions a and b.
    seeds_a, seeds_b: int [K, S] their start seeds (pairs with the same start are left out).
    key: the bootstrap / permutation key. The same key and seeds give paired draws, so differences
      of two calls' draws are valid paired bootstrap draws.

  Returns:
    {"estimate", "ci", "degenerate", "p_value", "n", "boot" [n_boot]}.
  """
  da, db = jnp.asarray(desc_a, jnp.float32), jnp.asarray(desc_b, jnp.float32)
  k_n, s_a = da.shape[:2]
  ids = np.concatenate([np.asarray(seeds_a), np.asarray(seeds_b)], axis=1)  # [K, Sa + Sb]
  n = ids.shape[1]
  uniq, inv = np.unique(ids, return_inverse=True)
  est, boot, perm = _condition_draws(jnp.concatenate([da, db], axis=1), jnp.asarray(ids),
                                     jnp.asarray(inv.reshape(ids.shape)), key, s_a, len(uniq), n_boot, n_perm)
  est, boot, perm = float(_nanmean(np.asarray(est), 0)), _nanmean(np.asarray(boot), 1), _nanmean(np.asarray(perm), 1)
  units = int(k_n * min(s_a, n - s_a))
  ci = metrics.interval(boot, units, bounds=(-1, 1))
  return dict(estimate=est, ci=[ci.lo, ci.hi], degenerate=ci.degenerate, p_value=_p_greater(perm, est), n=units,
              boot=boot)

"""Position specificity in the RF frame: is a node's preferred pattern the same at p and at q?

A node's preferred pattern lives in its RF frame: pixel offsets (u, v) = (row, col) from the
top-left corner of its RF box. Where the box runs off the image, part of the frame is never seen.
Two positions p and q can only be compared on their COMMON WINDOW: the offsets that lie inside
the image at both (`frame_windows`). Everything here compares patterns on that window and
nowhere else, so a truncated copy of the same pattern reads as the same pattern
(reference/MEASURING.md, "Compare in the RF frame").

Two measures, one question:

  * psi_auc (appearance). Each image is cut to the window (the rest set to the neutral colour,
    which the net's input maps to 0) and described by the mean of ONE fixed judge layer's
    features (`JUDGE_TAP`, GoogLeNet's inception_3a/output) over the window (`describe`).
    W = cosine similarities between seeds at the same position, on the window; B = between p and
    q, on the same window. psi_auc = 2 P(W > B) - 1: 0 = positions indistinguishable, 1 = every
    within pair beats every between pair. W at p and q is taken on the window of the pair, so
    within and between pairs see the same truncation.
    Translation: the descriptor is a mean over the window, so the same pattern moved within the
    window reads as (nearly) the same pattern; content that moves out of the window, or into the
    part of the RF that the window lacks, changes it (calibrated in tests/metrics_test.py).
  * transfer (function). Node q is shown p's pattern moved into q's RF frame (the common window,
    the rest neutral) and q's own patterns cut to the same window. T = mean act_q(p's) /
    mean act_q(q's own): ~1 = the node treats them as the same stimulus, < 1 = it prefers its own.

A pair whose window is smaller than `MIN_WINDOW_SHARE` of the RF's area is undefined, with that
reason, not a number.

Indices are computed from similarity matrices and labels (`pair_psi`, `auc_id_from`,
`pair_transfer`), so the same code gives the estimate, the hierarchical bootstrap (weights on
channels and seeds) and the permutation null (labels swapped within seeds). The claims layer
(`rfspec.claims`) pools them. Numbers only; images are RGB in [0, 1], [..., H, W, 3], pixels
(y, x) = (row, col); positions (i, j) = (row, col) on a tap's grid; boxes (top, left, bottom,
right) in px, half-open, may extend past the image.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from rfspec.errors import UserError
from rfspec.geometry import geometry
from rfspec.models import googlenet, preprocess

Array = jax.Array

JUDGE_TAP = "inception_3a/output"  # the one judge layer for every tap; see `describe`
MIN_SEEDS = 3  # fewer: the within-position pairs cannot be resampled
CI_LEVEL = 0.95
# A pair is compared only if its common window covers >= 10 % of the RF's area, i.e. about a third
# of its side. Below that the comparison concerns a sliver of the pattern, not the pattern: "the same
# on 5 % of the RF" says little about the node's preference. It keeps the headline comparison of the
# paper's tap (inception_4c/5x5 at 224 px: corner vs centre shares 18 % of the RF) and drops pairs of
# opposite corners (1 %). The calibration (tests/metrics_test.py) checks that different content still
# separates (psi_auc >= 0.8) at the smallest windows this allows.
MIN_WINDOW_SHARE = 0.10


# ----------------------------------------------------------------------------- the RF frame


class FrameWindows(NamedTuple):
  """The common RF-frame window of every pair of positions of one tap.

  Attributes:
    window: int [P, P, 4] (u0, v0, u1, v1): RF-frame offsets (row, col) from the box's top-left,
      half-open, that lie inside the image at both p and q; empty when u1 <= u0 or v1 <= v0.
      window[p, p] is p's own inside part.
    share: float [P, P] window area / RF area.
    defined: bool [P, P] share >= the minimum share.
    reason: [P][P] str: "" where defined, else why not.
  """

  window: np.ndarray
  share: np.ndarray
  defined: np.ndarray
  reason: list


def _check_boxes(boxes, image_hw) -> np.ndarray:
  b = np.asarray(boxes)
  if b.ndim != 2 or b.shape[-1] != 4 or not np.all(np.isfinite(b)) or np.any(b != np.round(b)):
    raise UserError(f"boxes must be [P, 4] whole-pixel RF boxes (top, left, bottom, right), e.g. from "
                    f"rfspec.receptive_field(tap, image_hw).box(i, j); got {np.asarray(boxes).tolist()!r}.")
  b = b.astype(np.int64)
  sides = np.concatenate([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]])
  if np.any(sides <= 0) or np.any(sides != sides[0]):
    raise UserError(f"boxes must be one tap's square RF boxes of one size (bottom - top = right - left > 0); "
                    f"got sides {sorted(set(sides.tolist()))}.")
  H, W = image_hw
  off = (b[:, 2] <= 0) | (b[:, 0] >= H) | (b[:, 3] <= 0) | (b[:, 1] >= W)
  if off.any():
    raise UserError(f"RF boxes {b[off].tolist()} lie wholly off the {H}x{W} image, so their nodes see nothing of "
                    "it. Pass the full RF boxes of positions on the tap's grid at this image size "
                    "(rfspec.receptive_field(tap, image_hw).box(i, j)).")
  return b


def _check_positions(boxes, images: np.ndarray, windows: "FrameWindows", *, per_position: bool = True) -> np.ndarray:
  """The boxes of images [P, S, H, W, 3] (per_position=False: [S, H, W, 3] of one position) checked
  against the images and their windows (UserError)."""
  b = _check_boxes(boxes, images.shape[-3:-1])
  n_img = images.shape[0] if per_position else b.shape[0]
  if b.shape[0] != n_img or np.shape(windows.window)[:2] != (b.shape[0], b.shape[0]):
    raise UserError(f"boxes [P, 4], images [P, S, H, W, 3] and windows must agree on P; got {b.shape[0]} boxes, "
                    f"{n_img} positions of images and windows for {np.shape(windows.window)[0]}. Make the "
                    "windows with frame_windows(boxes, image_hw) from the same boxes.")
  return b


def frame_windows(boxes, image_hw: tuple[int, int], *, min_share: float = MIN_WINDOW_SHARE) -> FrameWindows:
  """Common RF-frame windows of all pairs of P positions of one tap (see `FrameWindows`).

  Args:
    boxes: [P, 4] FULL RF boxes (top, left, bottom, right) px, half-open, one size R; they may
      extend past the image.
    image_hw: (H, W) px.
    min_share: the smallest window, as a share of the RF area, that counts.
  """
  H, W = (int(v) for v in image_hw)
  b = _check_boxes(boxes, (H, W))
  r = int(b[0, 2] - b[0, 0])
  # Inside part of each frame: offsets u with 0 <= top + u < H.
  lo = np.stack([np.maximum(0, -b[:, 0]), np.maximum(0, -b[:, 1])], -1)  # [P, 2]
  hi = np.stack([np.minimum(r, H - b[:, 0]), np.minimum(r, W - b[:, 1])], -1)
  w_lo = np.maximum(lo[:, None], lo[None, :])  # [P, P, 2]
  w_hi = np.minimum(hi[:, None], hi[None, :])
  window = np.concatenate([w_lo, w_hi], -1).astype(np.int64)
  area = np.prod(np.clip(w_hi - w_lo, 0, None), -1)
  share = area / float(r * r)
  defined = share >= min_share
  reason = [["" if defined[p, q] else
             ("the common window is empty" if area[p, q] == 0 else
              f"the common window is {share[p, q]:.0%} of the RF, below the minimum {min_share:.0%}")
             for q in range(len(b))] for p in range(len(b))]
  return FrameWindows(window, share, defined, reason)


def window_rects(boxes, windows: FrameWindows) -> np.ndarray:
  """int [P, P, 4]: image px (top, left, bottom, right) of window[p, q] placed at position p."""
  b = np.asarray(boxes, np.int64)
  w = windows.window
  return np.concatenate([b[:, None, :2] + w[..., :2], b[:, None, :2] + w[..., 2:]], -1)


def neutral_fill(mean_bgr=preprocess.MEAN_BGR) -> Array:
  """RGB [3] in [0, 1] that the net's preprocessing maps to zero: the mean colour.

  Zero input is what the first conv sees beyond the image border (zero padding), so filling the
  part of an image outside a window with it shows a node nothing new.
  """
  return preprocess.from_caffe(jnp.zeros((3,), jnp.float32), mean_bgr)


def shift_image(x: Array, shift: Array, fill: float | Array = 0.0) -> tuple[Array, Array]:
  """Translates an image by an integer pixel offset, without wrap-around.

  out[y, x] = x[y - dy, x - dx] where that source pixel exists, else `fill`.

  Args:
    x: [H, W, ...] image (or mask); pixels are (y, x) = (row, col).
    shift: (dy, dx) offset in pixels (rounded to ints); may be traced.
    fill: value for pixels that no source pixel maps to.

  Returns:
    (shifted [H, W, ...] like x, valid bool [H, W]: True where the pixel came from inside x).
  """
  x = jnp.asarray(x)
  h, w = x.shape[:2]
  d = jnp.round(jnp.asarray(shift, jnp.float32)).astype(jnp.int32)
  ys, xs = jnp.arange(h) - d[0], jnp.arange(w) - d[1]
  valid = ((ys >= 0) & (ys < h))[:, None] & ((xs >= 0) & (xs < w))[None, :]
  # Clipped indices keep the shape static for traced shifts; `valid` hides the repeated edge.
  moved = x[jnp.clip(ys, 0, h - 1)][:, jnp.clip(xs, 0, w - 1)]
  valid_b = valid.reshape(valid.shape + (1,) * (x.ndim - 2))
  return jnp.where(valid_b, moved, jnp.asarray(fill, x.dtype)), valid


def _in_rect(hw, rect: Array) -> Array:
  """bool [H, W]: pixels (y, x) inside the half-open rect (top, left, bottom, right)."""
  ys = jnp.arange(hw[0])[:, None]
  xs = jnp.arange(hw[1])[None, :]
  return (ys >= rect[0]) & (ys < rect[2]) & (xs >= rect[1]) & (xs < rect[3])


def cut_and_move(image: Array, rect: Array, shift: Array, fill: Array) -> Array:
  """image [H, W, 3] cut to `rect` (the rest = fill), then moved by `shift` (dy, dx)."""
  cut = jnp.where(_in_rect(image.shape[:2], rect)[..., None], image, fill)
  return shift_image(cut - fill, shift)[0] + fill


# ----------------------------------------------------------------------------- the judge


def judge_margin(tap: str = JUDGE_TAP) -> int:
  """Neutral border (px) around the image for the judge: half its RF, rounded up to its stride, so no
  judge node over the image reaches the judge's own zero padding."""
  g = geometry(tap)
  return -(-(g.size // 2) // g.jump) * g.jump


def region_weights(rects: Array, canvas_hw: tuple[int, int], *, tap: str = JUDGE_TAP) -> Array:
  """How much each judge node stands for a rect: [N, h, w] weights.

  Judge node a stands for its stride cell around its RF centre, [c_a - jump/2, c_a + jump/2) (the
  first and last cells extended to the border); its weight is the share of that cell inside the
  rect, per axis, multiplied.
  """
  g = geometry(tap)
  (h, w), (H, W) = googlenet.blob_hw(tap, canvas_hw), canvas_hw
  rects = jnp.asarray(rects, jnp.float32)

  def axis(n, N, lo, hi):
    c = g.start + g.jump * jnp.arange(n, dtype=jnp.float32) + (g.size - 1) / 2
    a = jnp.where(jnp.arange(n) == 0, -1e9, c - g.jump / 2)
    b = jnp.where(jnp.arange(n) == n - 1, 1e9, c + g.jump / 2)
    lo, hi = jnp.clip(lo, 0, N), jnp.clip(hi, 0, N)
    return jnp.clip(jnp.minimum(b, hi[:, None]) - jnp.maximum(a, lo[:, None]), 0, None)  # [N, n]

  wy = axis(h, H, rects[:, 0], rects[:, 2])
  wx = axis(w, W, rects[:, 1], rects[:, 3])
  return wy[:, :, None] * wx[:, None, :]


def describe(params, images: Array, rects: Array, *, tap: str = JUDGE_TAP) -> Array:
  """Judge descriptors: the mean of `tap`'s features over each image's rect, on a neutral ground.

  The image outside the rect is set to the neutral colour and the image is moved so that the
  rect's top-left corner sits at a fixed phase of the judge's grid, inside a neutral border: the
  same content in the same rect shape gives the same descriptor wherever the rect lies (exactly,
  up to float rounding).

  Why pooled features of one fixed judge layer (reference/MEASURING.md):
    * Shift tolerance: seeds put the same pattern a few px apart; a mean over the window does
      not care where inside it a feature fires.
    * One judge for every tap keeps numbers comparable across taps. inception_3a/output (RF 59
      px, stride 8, 256 channels) responds to edges, colours, textures and simple parts.
    * Circularity: this is the net judging images made on the net; the calibration on natural
      photos (tests/metrics_test.py) shows the scale.

  Args:
    params: GoogLeNet params.
    images: [..., H, W, 3] float RGB in [0, 1] (else a UserError: integers, NaN, out of range).
    rects: [..., 4] (top, left, bottom, right) px, inside the image (same leading shape).
    tap: the judge layer.

  Returns:
    float32 [..., C]; all zeros for an empty rect.
  """
  return _describe(params, check_images(images, ndim=None), rects, tap=tap)


@functools.partial(jax.jit, static_argnames=("tap",))
def _describe(params, images: Array, rects: Array, *, tap: str = JUDGE_TAP) -> Array:
  """`describe` without the input check (jitted; images already checked)."""
  lead, hw = images.shape[:-3], images.shape[-3:-1]
  x = jnp.reshape(images, (-1, *hw, 3)).astype(jnp.float32)
  r = jnp.reshape(jnp.asarray(rects, jnp.float32), (-1, 4))
  r = jnp.clip(r, 0, jnp.array([hw[0], hw[1], hw[0], hw[1]], jnp.float32))
  g, margin = geometry(tap), judge_margin(tap)
  fill = neutral_fill()
  x = jax.vmap(lambda im, rc: jnp.where(_in_rect(hw, rc)[..., None], im, fill))(x, r)
  x = jnp.pad(x - fill, ((0, 0), (margin, margin + g.jump), (margin, margin + g.jump), (0, 0))) + fill
  phase = jnp.mod(-jnp.round(r[:, :2]), g.jump)  # [N, 2] (dy, dx) in 0..jump-1
  x = jax.vmap(lambda im, d: shift_image(im - fill, d)[0] + fill)(x, phase)
  feats = googlenet.forward(params, x, (tap,))[tap].astype(jnp.float32)  # [N, h, w, C]
  canvas_hw = (hw[0] + 2 * margin + g.jump, hw[1] + 2 * margin + g.jump)
  wts = region_weights(r + margin + jnp.concatenate([phase, phase], axis=1), canvas_hw, tap=tap)
  total = jnp.sum(wts, axis=(1, 2))
  desc = jnp.einsum("nhwc,nhw->nc", feats, wts) / jnp.maximum(total, 1e-12)[:, None]
  desc = jnp.where(total[:, None] > 0, desc, 0.0)
  return desc.reshape(*lead, desc.shape[-1])


def window_descriptors(params, images, boxes, windows: FrameWindows, *, tap: str = JUDGE_TAP) -> np.ndarray:
  """Every image described on every common window of its position: float32 [P, S, P, C].

  D[p, s, q] = `describe`(images[p, s], window[p, q] placed at p). Undefined windows give zeros
  (mask them with `windows.defined`). One compiled call per position.

  Args:
    images: [P, S, H, W, 3] one node type at P positions, S seeds.
    boxes: [P, 4] full RF boxes.
    windows: `frame_windows(boxes, image_hw)`.
  """
  images = check_images(images)
  n_p, n_s = images.shape[:2]
  rects = window_rects(_check_positions(boxes, images, windows), windows)  # [P, P, 4]
  out = []
  for p in range(n_p):
    x = np.broadcast_to(images[p][:, None], (n_s, n_p, *images.shape[2:]))
    r = np.broadcast_to(rects[p][None], (n_s, n_p, 4))
    out.append(np.asarray(_describe(params, jnp.asarray(x), jnp.asarray(r), tap=tap)))
  return np.stack(out)


def null_images(images_centre, boxes, centre: int, windows: FrameWindows) -> np.ndarray:
  """The truncation null: the centre's patterns moved into each position's RF frame and cut to the
  part the centre and that position share. float32 [P, S, H, W, 3] (position `centre` = its own
  images, cut to its own inside part). What truncation alone gives: by construction the same
  pattern on every common window with the centre."""
  x = check_images(images_centre, "images_centre", ndim=4)  # [S, H, W, 3]
  b = _check_positions(boxes, x, windows, per_position=False)
  if not (isinstance(centre, (int, np.integer)) and not isinstance(centre, bool) and 0 <= centre < len(b)):
    raise UserError(f"centre must be the index of a position in 0..{len(b) - 1}; got {centre!r}.")
  x = jnp.asarray(x)
  rects = window_rects(b, windows)[centre]  # window[c, p] placed at c: the shared part, in c's image
  shifts = b[:, :2] - b[centre, :2]  # c's frame -> p's frame
  fill = neutral_fill()
  return np.asarray(_move_to_positions(x, jnp.asarray(rects), jnp.asarray(shifts), fill))


# Module level: one trace per shape, not one per call.
_move_to_positions = jax.jit(jax.vmap(jax.vmap(cut_and_move, (0, None, None, None)), (None, 0, 0, None)))


# ----------------------------------------------------------------------------- transfer


def transfer_activations(params, images, boxes, windows: FrameWindows, positions, channel: int, *, tap: str,
                         mean_bgr=preprocess.MEAN_BGR, pad_mode: str = "zero") -> np.ndarray:
  """Node q's activation to every image cut to the common window of (p, q): float32 [P, P, 2, S].

  out[p, q, 0, s] = act_q(images[p, s] cut to window[p, q], moved into q's RF frame, the rest neutral);
  out[p, q, 1, t] = act_q(images[q, t] cut to the same window, in place). `pair_transfer` turns them
  into T(p -> q) = mean out[p, q, 0] / mean out[p, q, 1]. act_q is `tap`'s blob (post-ReLU, as Caffe
  stores it) at node q = positions[q], `channel`, as the run's net sees it (`mean_bgr`, `pad_mode`).
  """
  images = check_images(images)
  b = _check_positions(boxes, images, windows)
  images = jnp.asarray(images)
  n_p, n_s = images.shape[:2]
  pos = np.asarray(positions)
  if pos.shape != (n_p, 2) or not np.issubdtype(pos.dtype, np.integer):
    raise UserError(f"positions must be [P, 2] whole (i, j) = (row, col) grid positions, one per box (P = {n_p}); "
                    f"got {np.asarray(positions).tolist()!r}.")
  rects = window_rects(b, windows)  # [P(p), P(q), 4] window[p, q] at p
  fill = neutral_fill(mean_bgr)
  pos = np.asarray(positions, np.int64)

  out = np.zeros((n_p, n_p, 2, n_s), np.float32)
  for q in range(n_p):
    rect_q = rects[q]  # window[q, p] at q == window[p, q] at q (the window is symmetric)
    a = _transfer_node(params, images, jnp.asarray(rects[:, q]), jnp.asarray(b[q, :2] - b[:, :2]),
                       jnp.asarray(rect_q), images[q], jnp.asarray(pos[q]), fill, channel, tap=tap,
                       mean_bgr=tuple(float(v) for v in np.asarray(mean_bgr).reshape(-1)), pad_mode=pad_mode)
    out[:, q, 0] = np.asarray(a[0])
    out[:, q, 1] = np.asarray(a[1])
  return out


# Module level, with the params an argument: one compile per (tap, shapes), shared by every node q,
# channel and call (a closure over the params would compile again at each call).
@functools.partial(jax.jit, static_argnames=("tap", "mean_bgr", "pad_mode"))
def _transfer_node(params, x_all, rect_p, shift_p, rect_q, x_q, ij, fill, channel, *, tap: str, mean_bgr: tuple,
                   pad_mode: str):
  """[2, P, S] node-q activations of `transfer_activations`; x_all [P, S, H, W, 3]: each p's images cut
  to window[p, q] and moved by shift_p[p] into q's frame; row 1: q's own images on the same window."""
  from rfspec import objectives

  n_p, n_s = x_all.shape[:2]
  moved = jax.vmap(jax.vmap(cut_and_move, (0, None, None, None)), (0, 0, 0, None))(x_all, rect_p, shift_p, fill)
  own = jax.vmap(jax.vmap(cut_and_move, (0, None, None, None)), (None, 0, None, None))(
      x_q, rect_q, jnp.zeros(2), fill)
  batch = jnp.concatenate([moved, own]).reshape(-1, *x_all.shape[2:])
  act = objectives.tap_activation(params, batch, tap, mean_bgr=mean_bgr, pad_mode=pad_mode)
  return act[:, ij[0], ij[1], channel].astype(jnp.float32).reshape(2, n_p, n_s)


# ----------------------------------------------------------------------------- indices from similarities


def cosine(a: Array, b: Array) -> Array:
  """[..., M, C] x [..., N, C] -> [..., M, N] cosine similarities (0 for an all-zero vector)."""
  na = a / jnp.maximum(jnp.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
  nb = b / jnp.maximum(jnp.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
  return jnp.einsum("...mc,...nc->...mn", na, nb)


def upper_pairs(n: int) -> tuple[Array, Array]:
  """Indices (i, j), i < j, of the unordered pairs of n images."""
  i, j = np.triu_indices(n, 1)
  return jnp.asarray(i), jnp.asarray(j)


def compare(v: Array) -> Array:
  """[..., N] -> [..., N, N]: 1 where v_a > v_b, 1/2 where equal. Similarities are rounded to 1e-6 first,
  so float noise between two copies of the same pattern counts as a tie."""
  v = jnp.round(v * 1e6)
  return (v[..., :, None] > v[..., None, :]).astype(jnp.float32) + 0.5 * (v[..., :, None] == v[..., None, :])


def weighted_auc(cmp: Array, w_x: Array, w_y: Array) -> Array:
  """P(X > Y) + P(X = Y) / 2 from `compare(values)` [..., N, N], X = values under weights w_x [..., N],
  Y under w_y; NaN where either side has no weight."""
  num = jnp.einsum("...a,...ab,...b->...", w_x, cmp, w_y)
  den = jnp.sum(w_x, -1) * jnp.sum(w_y, -1)
  return jnp.where(den > 0, num / jnp.where(den > 0, den, 1.0), jnp.nan)


def psi_from(cmp: Array, ids: Array, labels: Array, weights: Array) -> Array:
  """psi_auc = 2 P(W > B) - 1 from `compare` of the images' upper-pair similarities.

  Args:
    cmp: [n2, n2] `compare(sims[i, j])` over the upper pairs (i, j) of N images.
    ids: int [N] start seed of each image (pairs with the same start are left out).
    labels: int [N] 0 / 1: which position each image belongs to (permute them for the null).
    weights: float [N] >= 0 per image (0 = excluded, e.g. a dead run; bootstrap counts).
  """
  i, j = upper_pairs(ids.shape[-1])
  pw = jnp.where(ids[i] != ids[j], weights[i] * weights[j], 0.0)
  same = labels[i] == labels[j]
  return 2.0 * weighted_auc(cmp, jnp.where(same, pw, 0.0), jnp.where(same, 0.0, pw)) - 1.0


def pair_psi(sims: Array, labels: Array, ids: Array, weights: Array) -> Array:
  """psi_auc of one pair of positions: 2 P(W > B) - 1.

  Args:
    sims: [N, N] judge similarities of the images of both positions on their common window.
    labels: int [N] 0 = position p, 1 = position q.
    ids: int [N] start seed of each image (pairs with the same start are left out).
    weights: float [N] >= 0 per image.

  Returns:
    Scalar in [-1, 1]; NaN where there is no within or no between pair.
  """
  i, j = upper_pairs(sims.shape[-1])
  return psi_from(compare(sims[i, j]), ids, labels, weights)


def auc_id_from(cmp: Array, ids: Array, labels: Array, weights: Array, channel) -> Array:
  """auc_id of one channel at one position: P(W > F), W = pairs of the channel's own starts, F = pairs of
  one of its images with another channel's image at the same position (the floor: how alike two
  unrelated node types look); 0.5 = no more alike than other channels.

  Args:
    cmp: `compare` of the upper-pair similarities of every channel's images at the position, on the
      position's own window.
    ids, weights: [N] as in `psi_from`; labels: int [N] the channel of each image (permute them for
      the null); channel: the channel scored.
  """
  i, j = upper_pairs(ids.shape[-1])
  pw = jnp.where(ids[i] != ids[j], weights[i] * weights[j], 0.0)
  a, b = labels[i] == channel, labels[j] == channel
  return weighted_auc(cmp, jnp.where(a & b, pw, 0.0), jnp.where(a ^ b, pw, 0.0))


def pair_transfer(values: Array, labels: Array, weights: Array) -> Array:
  """T = weighted mean of values labelled 0 / weighted mean of values labelled 1 (see
  `transfer_activations`); NaN where either side is empty or the denominator is not positive."""
  w0, w1 = weights * (labels == 0), weights * (labels == 1)
  m0 = jnp.sum(w0 * values) / jnp.maximum(jnp.sum(w0), 1e-30)
  m1 = jnp.sum(w1 * values) / jnp.maximum(jnp.sum(w1), 1e-30)
  ok = (jnp.sum(w0) > 0) & (jnp.sum(w1) > 0) & (m1 > 0)
  return jnp.where(ok, m0 / jnp.where(ok, m1, 1.0), jnp.nan)


# ----------------------------------------------------------------------------- intervals


class Interval(NamedTuple):
  """A percentile interval that says when it collapsed.

  Attributes:
    lo, hi: the interval's ends (NaN if nothing was defined).
    degenerate: True when every draw gave the same value (a zero-width interval at this sample
      size says nothing about precision; see `interval`).
    n: the independent units behind it (e.g. channels x seeds).
  """

  lo: float
  hi: float
  degenerate: bool
  n: int


def interval(draws, n_units: int, *, level: float = CI_LEVEL, bounds: tuple[float, float] | None = None) -> Interval:
  """Percentile interval of bootstrap draws; never a silent zero width.

  When the draws collapse (all equal, e.g. an AUC of 1 in every resample of 3 seeds) and the value
  sits at a bound of the statistic, the interval is widened to the exact one-sided bound for n
  independent units all agreeing (Clopper-Pearson: p >= ((1 - level) / 2)^(1/n)), mapped to the
  statistic's scale via `bounds` (lo, hi); it is still flagged `degenerate`.
  """
  d = np.asarray(draws, np.float64)
  d = d[np.isfinite(d)]
  if d.size == 0:
    return Interval(float("nan"), float("nan"), False, int(n_units))
  alpha = 1.0 - level
  lo, hi = np.percentile(d, [100 * alpha / 2, 100 * (1 - alpha / 2)])
  degenerate = bool(hi - lo <= 1e-12)
  if degenerate and bounds is not None and n_units > 0:
    b_lo, b_hi = bounds
    edge = (alpha / 2) ** (1.0 / n_units)  # the proportion's exact lower bound when all n agree
    if abs(lo - b_hi) < 1e-9:
      lo = b_hi - (1 - edge) * (b_hi - b_lo)
    elif abs(hi - b_lo) < 1e-9:
      hi = b_lo + (1 - edge) * (b_hi - b_lo)
  return Interval(float(lo), float(hi), degenerate, int(n_units))


# ----------------------------------------------------------------------------- one node type, end to end


class PositionSpecificity(NamedTuple):
  """Seed consistency and position specificity of one node type at P positions (`position_specificity`).

  Attributes:
    psi_auc: [P, P] psi_auc of every pair on its common RF-frame window (diagonal 0); NaN where
      undefined (see `undefined`).
    psi_auc_ci: [P, P, 2] 95 % bootstrap interval over the starts; psi_auc_degenerate: [P, P] True
      where every draw gave the same value (the interval is then the exact bound for S agreeing
      starts, see `interval`).
    auc_id: [P] P(W > F) on each position's own window against the floor images (NaN without a
      floor); auc_id_ci: [P, 2].
    window_share: [P, P] the common window's share of the RF area.
    undefined: [P][P] "" where psi_auc is defined, else why not.
    psi_auc_boot: [n_boot, P, P]; auc_id_boot: [n_boot, P] the draws.
  """

  psi_auc: np.ndarray
  psi_auc_ci: np.ndarray
  psi_auc_degenerate: np.ndarray
  auc_id: np.ndarray
  auc_id_ci: np.ndarray
  window_share: np.ndarray
  undefined: list
  psi_auc_boot: np.ndarray
  auc_id_boot: np.ndarray


def check_images(images, name: str = "images", ndim: int | None = 5, *, in_range: bool = True) -> np.ndarray:
  """images -> float32, or a UserError: wrong rank, integers (0-255 pixels), NaN/inf, or out of [0, 1].

  ndim: the rank asked for ([P, S, H, W, 3] for 5, [N, H, W, 3] for 4), or None for any
  [..., H, W, 3]. in_range=False skips the [0, 1] check (start images may overshoot it). A traced
  array (inside `jax.jit`) cannot be looked at and is passed through."""
  if isinstance(images, jax.core.Tracer):
    return images
  try:
    x = np.asarray(images)
  except (TypeError, ValueError) as e:  # e.g. a list of images of different sizes
    raise UserError(f"{name} must be one array of RGB images of one size; np.asarray could not stack them "
                    f"({' '.join(str(e).split())}). Resize them to one size first.") from None
  if x.dtype == object:
    raise UserError(f"{name} must be one array of RGB images of one size; got an object array of shape "
                    f"{tuple(x.shape)}. Resize them to one size first.")
  if (x.ndim != ndim if ndim is not None else x.ndim < 3) or x.ndim == 0 or x.shape[-1] != 3:
    want = {5: "[P, S, H, W, 3]", 4: "[N, H, W, 3]"}.get(ndim, "[..., H, W, 3]")
    how = (" Stack one node type's visualizations as positions x seeds." if ndim == 5 else "")
    raise UserError(f"{name} must be {want} RGB images; got shape {tuple(x.shape)}.{how}")
  if x.size == 0:
    raise UserError(f"{name} hold no images (shape {tuple(x.shape)}); pass at least one.")
  if not jnp.issubdtype(x.dtype, jnp.floating):
    raise UserError(f"{name} are {x.dtype}; the measure takes float RGB in [0, 1]. Divide 0-255 pixels by 255 "
                    "(rfspec.files.load_image already returns [0, 1]).")
  x = x.astype(np.float32)
  if not np.all(np.isfinite(x)):
    raise UserError(f"{name} hold {int(np.sum(~np.isfinite(x)))} NaN or infinite values; a run that went non-finite "
                    "has no pattern to compare. Drop those images (or rerun them) first.")
  lo, hi = float(x.min()), float(x.max())
  if in_range and (lo < -1e-3 or hi > 1 + 1e-3):
    raise UserError(f"{name} range over [{lo:.3g}, {hi:.3g}]; the measure takes RGB in [0, 1]. Divide 0-255 pixels "
                    "by 255, or clip.")
  return x


def check_key(key) -> jax.Array:
  """A `jax.random.key(...)` (or a legacy uint32[2] key), else a UserError."""
  if isinstance(key, jax.Array) and ((jnp.issubdtype(key.dtype, jax.dtypes.prng_key) and key.shape == ()) or
                                     (key.dtype == jnp.uint32 and key.shape == (2,))):
    return key
  what = f"an array of {key.shape[0] if key.shape else 0} keys" if isinstance(key, jax.Array) and key.shape else repr(key)
  raise UserError(f"key must be ONE JAX random key, e.g. jax.random.key(0); got {what}. Every random draw in rfspec "
                  "comes from an explicit key so that results repeat bit for bit.")


def check_count(value, name: str, minimum: int, maximum: int = 100_000) -> int:
  """A whole number in [minimum, maximum], else a UserError (a billion bootstrap draws would not fit)."""
  if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or not minimum <= value <= maximum:
    raise UserError(f"{name} must be a whole number in [{minimum}, {maximum}]; got {value!r}.")
  return int(value)


def _check_seeds(seeds, n_pos: int, n_seeds: int) -> np.ndarray:
  """seeds -> int64 [P, S], or a UserError (wrong shape, or not whole numbers: 1.5 is no seed)."""
  a = np.asarray(seeds)
  whole = a.size > 0 and (np.issubdtype(a.dtype, np.integer) or
                          (np.issubdtype(a.dtype, np.floating) and np.all(np.isfinite(a)) and np.all(a == np.round(a))))
  if a.shape != (n_pos, n_seeds) or not whole or a.dtype == bool:
    raise UserError(f"seeds must be [P, S] = [{n_pos}, {n_seeds}] whole numbers, the start seed of each image; got "
                    f"{a.tolist()!r}. Leave seeds=None when seed s is the same start at every position.")
  return a.astype(np.int64)


# One compiled program per (shapes, pairs, n_boot), reused by every later call (and by other processes,
# through the persistent compilation cache): eager, its dozens of small ops and the bootstrap's map
# were traced and compiled again at every call.
@functools.partial(jax.jit, static_argnames=("pairs", "n_unique", "n_boot"))
def _psi_draws(desc, ids, uid, floor_desc, key, *, pairs: tuple, n_unique: int, n_boot: int):
  """(psi [P, P], auc [P], psi_boot [n_boot, P, P], auc_boot [n_boot, P]) of `position_specificity`
  from its window descriptors desc [P, S, P, C], start ids and their unique index uid [P, S], the
  floor's descriptors [P, S2, C] (or None) and the bootstrap key."""
  n_pos, n_seeds = desc.shape[:2]
  labels = jnp.concatenate([jnp.zeros(n_seeds, jnp.int32), jnp.ones(n_seeds, jnp.int32)])
  if pairs:
    i2, j2 = upper_pairs(2 * n_seeds)
    pp, qq = np.array([p for p, _ in pairs]), np.array([q for _, q in pairs])
    xs = jnp.concatenate([desc[pp, :, qq], desc[qq, :, pp]], axis=1)  # [n_pairs, 2S, C]
    cmp = compare(cosine(xs, xs)[:, i2, j2])
    pair_ids = jnp.concatenate([ids[pp], ids[qq]], axis=1)
    pair_uid = jnp.concatenate([uid[pp], uid[qq]], axis=1)
  floor = None
  if floor_desc is not None:
    n_floor = floor_desc.shape[1]
    xo = jnp.concatenate([desc[np.arange(n_pos), :, np.arange(n_pos)], floor_desc], axis=1)  # [P, S + S2, C]
    ia, ja = upper_pairs(xo.shape[1])
    floor = dict(cmp=compare(cosine(xo, xo)[:, ia, ja]),
                 ids=jnp.concatenate([ids, jnp.full((n_pos, n_floor), -1) - jnp.arange(n_floor)], 1),
                 labels=jnp.concatenate([jnp.zeros((n_pos, n_seeds), jnp.int32),
                                         jnp.ones((n_pos, n_floor), jnp.int32)], 1))

  def indices(counts):
    psi = jnp.full((n_pos, n_pos), jnp.nan)
    if pairs:
      vals = jax.vmap(lambda c, i, u: psi_from(c, i, labels, counts[u]))(cmp, pair_ids, pair_uid)
      psi = psi.at[pp, qq].set(vals).at[qq, pp].set(vals)
    psi = jnp.where(jnp.eye(n_pos, dtype=bool), 0.0, psi)
    auc = jnp.full((n_pos,), jnp.nan)
    if floor is not None:
      w = jnp.concatenate([counts[uid], jnp.ones((n_pos, floor["ids"].shape[1] - n_seeds))], 1)
      auc = jax.vmap(lambda c, i, l, wt: auc_id_from(c, i, l, wt, 0))(floor["cmp"], floor["ids"], floor["labels"], w)
    return psi, auc

  u = n_unique
  psi, auc = indices(jnp.ones(u))
  psi_b, auc_b = jax.lax.map(
      lambda k: indices(jnp.bincount(jax.random.randint(k, (u,), 0, u), length=u).astype(jnp.float32)),
      jax.random.split(key, n_boot))
  return psi, auc, psi_b, auc_b


def position_specificity(params, images, boxes, floor_images=None, key=None, n_boot: int = 200, *, seeds=None,
                         judge: str = JUDGE_TAP) -> PositionSpecificity:
  """Position specificity (psi_auc, every pair) and seed consistency (auc_id) of one node type.

  Every pair (p, q) is compared on its common RF-frame window: the part of the RF frame inside the
  image at both positions (`frame_windows`); within-position pairs W are taken on that same window,
  so truncation alone does not read as a difference. The same pattern moved within the window
  reads as the same pattern as long as the move is smaller than the starts' own scatter; a
  systematic move of more than a few pixels is detected as a difference (psi_auc measures
  whether the positions are distinguishable given the starts' variability; calibrated in
  tests/metrics_test.py).

  Args:
    params: GoogLeNet params (the judge is GoogLeNet's own `judge` layer).
    images: [P, S, H, W, 3] float RGB in [0, 1], one node type at P positions, S >= `MIN_SEEDS` starts.
    boxes: [P, 4] FULL RF boxes (top, left, bottom, right) px, half-open; they may extend past the
      image (e.g. `rfspec.receptive_field(tap, image_hw).box(i, j)`).
    floor_images: [P, S2, H, W, 3] OTHER channels of the same tap at the same positions, or None
      (then auc_id is NaN: undefined without a floor).
    key: `jax.random.key` for the bootstrap.
    n_boot: bootstrap draws (>= 20).
    seeds: int [P, S] start seed of each image (default: seed s is the same start at every
      position); pairs with the same start are left out, and starts are resampled as units.
    judge: the judge layer.

  Returns:
    `PositionSpecificity`. A pair is NaN, with its reason, when its window is below
    `MIN_WINDOW_SHARE` of the RF, or when a position's starts are all identical (no seed
    variation, so nothing to compare against).

  Raises:
    UserError: bad shapes, integer / NaN / out-of-range images, boxes off the image, fewer than
      `MIN_SEEDS` starts, a bad key or n_boot.
  """
  x = check_images(images)
  n_pos, n_seeds = x.shape[:2]
  b = _check_boxes(boxes, x.shape[2:4])
  if b.shape[0] != n_pos:
    raise UserError(f"boxes must be [P, 4] with P = {n_pos} (one per position); got {b.shape[0]}.")
  if n_seeds < MIN_SEEDS:
    raise UserError(f"position_specificity needs >= {MIN_SEEDS} starts per position (got {n_seeds}): within-position "
                    "pairs are what the index compares; visualize more seeds.")
  key = check_key(key)
  n_boot = check_count(n_boot, "n_boot", 20)
  ids = np.broadcast_to(np.arange(n_seeds), (n_pos, n_seeds)) if seeds is None else _check_seeds(seeds, n_pos, n_seeds)
  windows = frame_windows(b, x.shape[2:4])
  desc = jnp.asarray(window_descriptors(params, x, b, windows, tap=judge))  # [P, S, P, C]
  uniq, inv = np.unique(ids, return_inverse=True)
  same_images = [bool(np.all(x[p] == x[p, :1])) for p in range(n_pos)]
  undefined = [[("" if p == q else windows.reason[p][q] or
                 (f"the starts at position {p if same_images[p] else q} are identical (no seed variation), so there is "
                  "no within-position spread to compare against" if same_images[p] or same_images[q] else ""))
                for q in range(n_pos)] for p in range(n_pos)]
  pairs = tuple((p, q) for p in range(n_pos) for q in range(p + 1, n_pos) if not undefined[p][q])
  floor_desc = None
  if floor_images is not None:
    f = check_images(floor_images, "floor_images")
    if f.shape[0] != n_pos or f.shape[2:] != x.shape[2:]:
      raise UserError(f"floor_images must be [P, S2, H, W, 3] matching images {tuple(x.shape)}; got {tuple(f.shape)}. "
                      "Pass other channels of the same tap at the same positions.")
    own = np.stack([window_rects(b, windows)[p, p] for p in range(n_pos)])
    floor_desc = describe(params, jnp.asarray(f), jnp.asarray(np.broadcast_to(own[:, None], f.shape[:2] + (4,))),
                          tap=judge)
  psi, auc, psi_b, auc_b = _psi_draws(desc, jnp.asarray(ids), jnp.asarray(inv.reshape(ids.shape)), floor_desc, key,
                                      pairs=pairs, n_unique=len(uniq), n_boot=n_boot)
  psi_b, auc_b = np.asarray(psi_b), np.asarray(auc_b)
  psi_ci = np.full((n_pos, n_pos, 2), np.nan)
  degenerate = np.zeros((n_pos, n_pos), bool)
  for p, q in pairs:
    iv = interval(psi_b[:, p, q], n_seeds, bounds=(-1, 1))
    psi_ci[p, q] = psi_ci[q, p] = (iv.lo, iv.hi)
    degenerate[p, q] = degenerate[q, p] = iv.degenerate
  auc_ci = np.array([[interval(auc_b[:, p], n_seeds, bounds=(0, 1)).lo, interval(auc_b[:, p], n_seeds, bounds=(0, 1)).hi]
                     for p in range(n_pos)])
  return PositionSpecificity(np.asarray(psi), psi_ci, degenerate, np.asarray(auc), auc_ci, windows.share, undefined,
                             psi_b, auc_b)


# ----------------------------------------------------------------------------- realism


def spectrum_slope(images) -> np.ndarray:
  """Slope of the radially averaged power spectrum in log-log (natural photos: about -2).

  images [N, H, W, 3] RGB in [0, 1]; luminance minus its mean, Hann-windowed; the fit runs over
  radii 2 .. min(H, W) / 2 cycles per image. A net-independent realism measure: start noise
  (white) pulls the slope towards 0. Returns float [N]: NaN for an image whose luminance is
  constant (it has no spectrum, so no slope; a uniform grey is not "white noise", slope 0).

  Raises:
    UserError: not [N, H, W, 3] float RGB in [0, 1] (integers, NaN, out of range), or smaller than
      8 x 8 px (the fit needs radii 2 .. min(H, W) / 2).
  """
  x = check_images(images, ndim=4).astype(np.float64) @ np.array([0.299, 0.587, 0.114])
  n, h, w = x.shape
  if min(h, w) < 8:
    raise UserError(f"spectrum_slope needs images of at least 8 x 8 px (the fit runs over radii 2 .. min(H, W) / 2); "
                    f"got {h} x {w}.")
  flat = np.ptp(x.reshape(n, -1), axis=1) <= 1e-6
  x = (x - x.mean(axis=(1, 2), keepdims=True)) * np.outer(np.hanning(h), np.hanning(w))
  power = np.abs(np.fft.fftshift(np.fft.fft2(x), axes=(1, 2))) ** 2
  yy, xx = np.indices((h, w))
  r = np.hypot(yy - h // 2, xx - w // 2).astype(int)
  radii = np.arange(2, min(h, w) // 2)
  counts = np.bincount(r.ravel())[radii]
  out = []
  for p in power:
    prof = np.bincount(r.ravel(), p.ravel())[radii] / counts
    out.append(np.polyfit(np.log(radii), np.log(prof + 1e-30), 1)[0])
  return np.where(flat, np.nan, np.asarray(out))


def start_remnant_share(final, start, remnant: float) -> np.ndarray:
  """How much of each final image is left-over start noise: the variance of the start's decayed copy
  (`remnant` x its luminance deviation, e.g. (1 - decay)^steps under zipser2015, whose decay shrinks
  every pixel's deviation from the mean colour each step, start included) over the variance of the
  final image's luminance. 0 = none left. final, start [N, H, W, 3] float RGB, final in [0, 1]
  (a start image may overshoot it: zipser2015's dots do); else a UserError. Returns float [N]: inf where the final image is flat but the remnant is not, NaN
  where both are flat (0 / 0: nothing to apportion)."""
  final, start = check_images(final, "final", ndim=4), check_images(start, "start", ndim=4, in_range=False)
  if final.shape != start.shape:
    raise UserError(f"final and start must be the same [N, H, W, 3] shape (each final image with its own start); "
                    f"got {final.shape} and {start.shape}.")
  if isinstance(remnant, bool) or not isinstance(remnant, (int, float, np.number)) or not np.isfinite(remnant) \
      or not 0 <= remnant <= 1:
    raise UserError(f"remnant must be a number in [0, 1] (the start's surviving amplitude, e.g. (1 - decay) ** steps); "
                    f"got {remnant!r}.")
  lum = np.array([0.299, 0.587, 0.114])
  f = (final.astype(np.float64) @ lum).reshape(len(final), -1)
  s0 = (start.astype(np.float64) @ lum).reshape(len(start), -1)
  var_f, left = f.var(axis=1), (remnant ** 2) * s0.var(axis=1)
  with np.errstate(divide="ignore", invalid="ignore"):
    return np.where(var_f > 0, left / np.where(var_f > 0, var_f, 1), np.where(left > 0, np.inf, np.nan))

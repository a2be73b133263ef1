"""Position-specificity metrics: turn "this node prefers a different pattern here" into numbers.

Two families live here. The primary one (used by the specificity sweep and the paper report) is
at the end of the module: `position_specificity` and `specificity_from_descriptors`, rank
statistics (auc_id, psi_auc, psi_floor) on one fixed judge layer's pooled features with bootstrap
intervals, and `undefined_reasons`, the one rule for when such a number is defined. The rest,
described below, is the first, aligned-correlation measure (PSI as a ratio to the seed ceiling),
kept as a baseline: it is mostly undefined on real visualizations because seeds barely agree
pixel by pixel.

Inputs are visualizations x*_{p,s}: RGB images [H, W, 3] in [0, 1] of one node type (one tap, one
channel) at node position p, from seed s. Stacks are [P, S, H, W, 3] (positions x seeds).

The quantities (Zipser 2015 shows them only as pictures):

  * seed ceiling S_pp: mean similarity between visualizations of the same node at the same
    position from different seeds. It is the best agreement the procedure can reach at p.
  * cross-position similarity S_pq: mean similarity between visualizations at p and at q from
    different seeds, after moving x*_p by the RF-centre offset c_q - c_p so the two RFs coincide,
    compared only on pixels that are inside the image in both.
  * position-specificity index PSI_pq = 1 - S_pq / (S_pp + S_qq)/2: 0 when p and q prefer the
    same pattern (as far as seeds agree at all), 1 when they are as unrelated as random images.
    `specificity` measures both ceilings on exactly the pixels S_pq compares.
  * cross-position transfer T_pq = act_q(x*_p moved onto q's RF) / act_q(x*_q): how well the
    pattern found at p drives the node at q, relative to q's own pattern.
  * realism of (tiled vs single-position) visualizations: the net's own confidence, and the
    distance of an image's activation statistics to those of natural images.

Similarity is a masked Pearson correlation in one of two spaces, chosen by the static `space`
argument:

  * `space="pixel"`: raw RGB values, the simple baseline. It punishes every pixel-level
    difference, including the fine detail and start noise that differ between seeds, and it
    rewards a shared brightness layout even between unrelated images.
  * `space=<a spatial GoogLeNet tap>` (needs `params`; default choice `FEATURE_TAP` =
    "inception_3a/output", RF 59 px, stride 8): correlation of the net's own features, which
    asks "same pattern?" rather than "same pixels?". Why this space:
      - Convolutional features are translation-equivariant, so moving an image moves its
        features with it and the RF-centre alignment stays exact (a translate gives S = 1).
      - Each inception_3a node pools a 59 px window through learned edge, colour and texture
        detectors, so it responds to local structure, not to the value of single pixels. Measured
        on a 128 px cat crop with two independent noise draws (real BVLC weights): Gaussian
        noise sigma=0.2: pixels 0.52, inception_3a 0.60, inception_3b 0.77; 30% random dots:
        pixels 0.38, inception_3a 0.47, inception_3b 0.65. Earlier layers do NOT help
        (conv1/7x7_s2 0.50 / 0.32, conv2/3x3 0.44 / 0.32): their high-frequency filters respond
        to the noise itself, which is why the default is not conv2.
      - Unrelated images stay unrelated: noisy cat vs fish-bike crops give |S| < 0.05 in
        inception_3a features, while their pixel correlation is about -0.15, driven by the
        brightness layout alone.
      - It is the net's own notion of local appearance: "same pattern" means "same to GoogLeNet".
    The cost is locality: only feature positions whose whole RF lies inside the compared region
    count (`grid_mask`), so the region must be well above the feature's RF. Use FEATURE_TAP for
    inception_4*/5* nodes (RFs of 200+ px); for nodes with RFs under ~120 px use a smaller one,
    e.g. "conv2/3x3" (19 px), or pixels. Features are centred per channel per image before
    correlating: ReLU features have a positive mean that any two images share, which would make
    unrelated images look similar; after centring, independent noise gives S ~ 0. Masking by the
    feature RF also keeps the image border (zero padding) and the fill of a moved image out.

Alignment: RF centres are (y, x) floats in pixels (pixel y's centre is y), e.g. from
`rfspec.receptive_field(tap, hw).centre(i, j)`; positions (i, j) = (row, col) on a tap's grid.
Centres of one tap differ by multiples of its stride, so the offsets are integers and moving an
image is an exact integer translation (`shift_image`, offsets are rounded). What moves off the
image is dropped, never wrapped around.

Everything here is pure jnp: jittable and vmappable. The set-level functions are jitted with the
space / tap as static arguments.
"""

from __future__ import annotations

import functools
from typing import NamedTuple

import jax
import jax.numpy as jnp

from rfspec.models import googlenet, preprocess
from rfspec.geometry import geometry

PIXEL = "pixel"
FEATURE_TAP = "inception_3a/output"  # feature space for `space`: 59 px RF, stride 8, 256 channels
REALISM_TAP = "inception_3a/output"  # mid-level statistics for `stats_distance`
REALISM_SIZE = 224  # the net's training resolution; `confidence` needs 223-254 px
# A node's region must hold a few whole feature RFs (59 px for inception_3a) to be compared in
# feature space; below 2x that (118 px) compare pixels.
FEATURE_MIN_RF = 2 * geometry(FEATURE_TAP).size
# PSI is a ratio to the seed ceiling; where seeds barely agree (ceiling near 0) it explodes and
# means nothing, so reports call PSI undefined below this ceiling (raw matrices keep every value).
MIN_CEILING = 0.1

Array = jax.Array


# ----------------------------------------------------------------------------- alignment


@jax.jit
def shift_image(x: Array, shift: Array, fill: float | Array = 0.0) -> tuple[Array, Array]:
  """Translates an image by an integer pixel offset, without wrap-around.

  out[y, x] = x[y - dy, x - dx] where that source pixel exists, else `fill`. Moving the
  visualization of position p by d = c_q - c_p puts its RF centre on q's.

  Args:
    x: [H, W, ...] image (or mask); pixels are (y, x) = (row, col).
    shift: (dy, dx) offset in pixels, int or float (rounded to the nearest integer); may be traced.
    fill: value for pixels that no source pixel maps to (scalar, or broadcastable to x[0, 0]).

  Returns:
    (shifted [H, W, ...] like x, valid bool [H, W]: True where the pixel came from inside x).
  """
  x = jnp.asarray(x)
  h, w = x.shape[:2]
  d = jnp.round(jnp.asarray(shift, jnp.float32)).astype(jnp.int32)
  ys, xs = jnp.arange(h) - d[0], jnp.arange(w) - d[1]
  valid = ((ys >= 0) & (ys < h))[:, None] & ((xs >= 0) & (xs < w))[None, :]
  # A gather with clipped indices keeps the shape static for traced shifts; `valid` hides the
  # clipped (repeated-edge) content so nothing outside the source is ever used.
  moved = x[jnp.clip(ys, 0, h - 1)][:, jnp.clip(xs, 0, w - 1)]
  valid_b = valid.reshape(valid.shape + (1,) * (x.ndim - 2))
  return jnp.where(valid_b, moved, jnp.asarray(fill, x.dtype)), valid


def neutral_fill() -> Array:
  """RGB [3] in [0, 1] that the net's preprocessing maps to zero: the ImageNet mean colour.

  Zero input is what the first conv sees beyond the image border (zero padding), so filling the
  uncovered part of a moved image with it shows the node nothing new: the honest fill.
  """
  return preprocess.from_caffe(jnp.zeros((3,), jnp.float32))


# ----------------------------------------------------------------------------- correlation


@functools.partial(jax.jit, static_argnames=("per_channel",))
def masked_correlation(a: Array, b: Array, mask: Array, *, per_channel: bool = False) -> Array:
  """Pearson correlation of two equally shaped maps over the masked positions.

  Args:
    a, b: [h, w, C] maps (images or features).
    mask: [h, w] bool or float weights; positions with weight 0 are ignored.
    per_channel: centre each channel separately (for features, whose channels have different
      means); otherwise one mean over all masked values (pixel baseline).

  Returns:
    Scalar correlation in [-1, 1]; 0 if either map is constant on the mask, NaN if the mask is
    empty (nothing to compare).
  """
  wt = jnp.broadcast_to(jnp.asarray(mask, jnp.float32)[..., None], a.shape)
  a, b = a.astype(jnp.float32), b.astype(jnp.float32)
  axes = (0, 1) if per_channel else (0, 1, 2)
  n = jnp.sum(wt, axis=axes, keepdims=True)
  safe_n = jnp.maximum(n, 1.0)
  a = a - jnp.sum(wt * a, axis=axes, keepdims=True) / safe_n
  b = b - jnp.sum(wt * b, axis=axes, keepdims=True) / safe_n
  cov, va, vb = jnp.sum(wt * a * b), jnp.sum(wt * a * a), jnp.sum(wt * b * b)
  denom = va * vb
  r = jnp.where(denom > 0, cov * jax.lax.rsqrt(jnp.where(denom > 0, denom, 1.0)), 0.0)
  return jnp.where(jnp.sum(wt) > 0, jnp.clip(r, -1.0, 1.0), jnp.nan)


# ----------------------------------------------------------------------------- feature spaces


def _feature_box(tap: str) -> tuple[int, int, int]:
  """(size, stride, start) of `tap`'s RF along either axis (from `rfspec.geometry`).

  Node i sees pixels [start + i*stride, start + i*stride + size).
  """
  g = geometry(tap)
  return g.size, g.jump, g.start


def _check_space(space: str, params) -> None:
  if space == PIXEL:
    return
  layer = googlenet.check_tap(space)
  if layer.kind in ("fc", "softmax"):
    raise ValueError(f"space={space!r} has no spatial grid to compare on; use 'pixel' or a spatial "
                     f"tap such as {FEATURE_TAP!r}.")
  if params is None:
    raise ValueError(f"space={space!r} compares GoogLeNet features and needs params; pass params=..., "
                     "or use space='pixel' for the pixel baseline.")


def grid_mask(mask: Array, space: str) -> Array:
  """Carries a pixel mask [H, W] onto `space`'s grid, conservatively.

  A feature position counts only if every pixel of its RF box is in the mask (an erosion by the
  RF, as a strided min-pool); positions whose box leaves the image count as outside, so neither
  zero padding nor the fill of a moved image can reach a compared feature.

  Args:
    mask: [H, W] bool or {0, 1} float, in pixels (y, x).
    space: "pixel" (returned as float) or a spatial GoogLeNet tap.

  Returns:
    float [h, w] in {0, 1}, on the tap's (i, j) = (row, col) grid.
  """
  mask = jnp.asarray(mask, jnp.float32)
  if space == PIXEL:
    return mask
  size, stride, start = _feature_box(space)
  (h, w), (H, W) = googlenet.blob_hw(space, mask.shape), mask.shape
  # Zero-pad (outside = invalid) so that window i covers exactly [start + i*stride, ... + size);
  # negative padding crops.
  pads = [(-start, (n - 1) * stride + size - N + start, 0) for n, N in ((h, H), (w, W))]
  padded = jax.lax.pad(mask, jnp.float32(0), pads)
  return jax.lax.reduce_window(padded, jnp.float32(1), jax.lax.min, (size, size), (stride, stride), "VALID")


# ----------------------------------------------------------------------------- similarity


class Specificity(NamedTuple):
  """Position specificity of a node type between positions p and q (scalars, or [P, P] fields).

  The ceilings are measured on exactly the pixels S_pq compares (the overlap of the two aligned
  images, and of the regions if given), each in its own frame: a ceiling from the whole image
  would mix in parts of the image that S_pq never sees, whose seed agreement can differ.

  Attributes:
    s_pq: cross-position similarity S_pq (pairs of different seeds, RF centres aligned).
    s_pp: seed ceiling at p, on the compared pixels (in p's frame).
    s_qq: seed ceiling at q, on the compared pixels (in q's frame).
    psi: PSI_pq = 1 - s_pq / ((s_pp + s_qq) / 2); see `psi`.
  """

  s_pq: Array
  s_pp: Array
  s_qq: Array
  psi: Array


def _embed(params, images: Array, space: str) -> Array:
  """[N, H, W, 3] images -> [N, h, w, C] maps in `space` (the images themselves for pixels)."""
  if space == PIXEL:
    return images.astype(jnp.float32)
  return googlenet.forward(params, images, (space,))[space].astype(jnp.float32)


def _mean_over_seed_pairs(f_a: Array, f_b: Array, mask: Array, space: str) -> Array:
  """Mean correlation of f_a[s] with f_b[t] over pairs s != t; f_* [S, h, w, C], mask [h, w]."""
  corr = functools.partial(masked_correlation, per_channel=space != PIXEL)
  r = jax.vmap(jax.vmap(corr, (None, 0, None)), (0, None, None))(f_a, f_b, mask)  # [S, S]
  off = 1.0 - jnp.eye(r.shape[0], dtype=r.dtype)
  return jnp.sum(r * off) / jnp.sum(off)


def _check_seeds(*stacks: Array) -> None:
  shapes = {tuple(x.shape) for x in stacks}
  if len(shapes) != 1 or stacks[0].ndim != 4 or stacks[0].shape[0] < 2 or stacks[0].shape[-1] != 3:
    raise ValueError("Need matching [S, H, W, 3] stacks with S >= 2 seeds (pairs of different seeds "
                     f"are compared); got shapes {[tuple(x.shape) for x in stacks]}.")


def _aligned_mask(shift: Array, hw: tuple[int, int], region: Array | None) -> Array:
  """[H, W] bool in q's frame: pixels that x_p, moved by `shift`, covers, and inside `region`."""
  _, valid = shift_image(jnp.zeros(hw, jnp.float32), shift)
  return valid if region is None else valid & (jnp.asarray(region) > 0)


def _specificity(params, images_p: Array, f_p: Array, f_q: Array, shift: Array, mask: Array,
                 space: str) -> Specificity:
  """The core on precomputed unmoved features f_p, f_q [S, h, w, C]; mask [H, W] in q's frame."""
  if space == PIXEL:
    f_moved = jax.vmap(shift_image, (0, None))(images_p, shift)[0]
  else:
    f_moved = _embed(params, jax.vmap(shift_image, (0, None))(images_p, shift)[0], space)
  m_q = grid_mask(mask, space)
  m_p = grid_mask(shift_image(mask, -shift)[0], space)  # the same pixels, in p's frame
  s_pq = _mean_over_seed_pairs(f_moved, f_q, m_q, space)
  s_pp = _mean_over_seed_pairs(f_p, f_p, m_p, space)
  s_qq = _mean_over_seed_pairs(f_q, f_q, m_q, space)
  return Specificity(s_pq, s_pp, s_qq, psi(s_pq, s_pp, s_qq))


@functools.partial(jax.jit, static_argnames=("space",))
def similarity(x_p: Array, x_q: Array, shift: Array, region: Array | None = None, *, params=None,
               space: str = PIXEL) -> Array:
  """Similarity of one image x_p, moved by `shift`, to x_q, on pixels inside the image in both.

  Args:
    x_p, x_q: [H, W, 3] RGB in [0, 1].
    shift: (dy, dx) = c_q - c_p, the RF-centre offset from p to q in pixels (rounded to ints).
    region: optional [H, W] mask in x_q's frame (e.g. q's RF box) that further restricts the
      comparison.
    params: GoogLeNet params; needed unless space == "pixel".
    space: "pixel" (masked pixel correlation, centred per image) or a spatial GoogLeNet tap,
      e.g. `FEATURE_TAP` (feature correlation, centred per channel); see the module docstring.

  Returns:
    Scalar correlation in [-1, 1] (NaN if nothing is left to compare).
  """
  _check_space(space, params)
  if x_p.ndim != 3 or x_p.shape != x_q.shape:
    raise ValueError(f"x_p and x_q must be matching [H, W, 3] images; got {x_p.shape} and {x_q.shape}.")
  moved, _ = shift_image(x_p, shift)
  f = _embed(params, jnp.stack([moved, jnp.asarray(x_q, moved.dtype)]), space)
  mask = grid_mask(_aligned_mask(shift, x_q.shape[:2], region), space)
  return masked_correlation(f[0], f[1], mask, per_channel=space != PIXEL)


def pixel_similarity(x_p: Array, x_q: Array, shift: Array, region: Array | None = None) -> Array:
  """`similarity` in pixel space: the baseline. x_p, x_q [H, W, 3]; shift (dy, dx) = c_q - c_p."""
  return similarity(x_p, x_q, shift, region)


def feature_similarity(params, x_p: Array, x_q: Array, shift: Array, region: Array | None = None, *,
                       tap: str = FEATURE_TAP) -> Array:
  """`similarity` in the space of GoogLeNet's `tap` features (default inception_3a; see module doc).

  x_p, x_q [H, W, 3] RGB in [0, 1]; shift (dy, dx) = c_q - c_p in pixels.
  """
  return similarity(x_p, x_q, shift, region, params=params, space=tap)


@functools.partial(jax.jit, static_argnames=("space",))
def seed_ceiling(images: Array, region: Array | None = None, *, params=None,
                 space: str = PIXEL) -> Array:
  """S_pp: mean similarity between visualizations of one node at one position, over seeds s != t.

  Args:
    images: [S, H, W, 3] visualizations of the same node at the same position, S >= 2.
    region: optional [H, W] mask (e.g. the node's RF box) restricting the comparison.
    params, space: as in `similarity`.

  Returns:
    Scalar mean correlation; 1 when every seed gives the same image.
  """
  _check_space(space, params)
  _check_seeds(images)
  mask = jnp.ones(images.shape[1:3], bool) if region is None else jnp.asarray(region) > 0
  f = _embed(params, images, space)
  return _mean_over_seed_pairs(f, f, grid_mask(mask, space), space)


@functools.partial(jax.jit, static_argnames=("space",))
def cross_position(images_p: Array, images_q: Array, shift: Array, region: Array | None = None, *,
                   params=None, space: str = PIXEL) -> Array:
  """S_pq: mean similarity of visualizations at p and q from different seeds, RF centres aligned.

  Pairs (s, t) with s != t only: a grid of visualizations may reuse seed s at every position, so
  x_{p,s} and x_{q,s} can share their start noise; with s != t both S_pq and the ceiling S_pp
  are means over pairs with independent starts, so the two are directly comparable.

  Args:
    images_p, images_q: [S, H, W, 3] visualizations at p and q, seeds aligned, S >= 2.
    shift: (dy, dx) = c_q - c_p in pixels (RF centres as (y, x) floats; rounded to ints).
    region: optional [H, W] mask in q's frame restricting the comparison (e.g. q's RF box).
    params, space: as in `similarity`.

  Returns:
    Scalar mean correlation.
  """
  _check_space(space, params)
  _check_seeds(images_p, images_q)
  n = images_p.shape[0]
  moved = jax.vmap(shift_image, (0, None))(images_p, shift)[0]
  f = _embed(params, jnp.concatenate([moved, images_q.astype(moved.dtype)]), space)  # one pass
  mask = _aligned_mask(shift, images_q.shape[1:3], region)
  return _mean_over_seed_pairs(f[:n], f[n:], grid_mask(mask, space), space)


@functools.partial(jax.jit, static_argnames=("space",))
def specificity(images_p: Array, images_q: Array, shift: Array, region: Array | None = None, *,
                params=None, space: str = PIXEL) -> Specificity:
  """S_pq, the two seed ceilings on the same pixels, and PSI_pq, for one pair of positions.

  Args:
    images_p, images_q: [S, H, W, 3] visualizations at p and q (RGB in [0, 1]), S >= 2.
    shift: (dy, dx) = c_q - c_p in pixels, RF centres as (y, x) floats (rounded to ints).
    region: optional [H, W] mask in q's frame restricting the comparison (e.g. q's RF box).
    params, space: as in `similarity`.

  Returns:
    Specificity of scalars.
  """
  _check_space(space, params)
  _check_seeds(images_p, images_q)
  n = images_p.shape[0]
  f = _embed(params, jnp.concatenate([images_p, images_q]), space)
  mask = _aligned_mask(shift, images_q.shape[1:3], region)
  return _specificity(params, images_p, f[:n], f[n:], shift, mask, space)


@functools.partial(jax.jit, static_argnames=("space",))
def specificity_matrix(images: Array, centres: Array, regions: Array | None = None, *, params=None,
                       space: str = PIXEL) -> Specificity:
  """`specificity` for every pair of positions at once.

  Entry [p, q] compares x_{p,s} moved by c_q - c_p with x_{q,t} (s != t) on pixels inside the
  image in both and, if `regions` is given, inside both positions' regions (p's carried along
  with x_p). The diagonal holds the plain seed ceilings (s_pq = s_pp = s_qq) and PSI = 0.
  Pixel-space entries are symmetric (s_pq[p, q] = s_pq[q, p]); feature-space ones are up to
  the feature grid when offsets are not multiples of the feature stride.

  Args:
    images: [P, S, H, W, 3] visualizations (positions x seeds), RGB in [0, 1], S >= 2.
    centres: [P, 2] RF centres (y, x) in pixels of the P node positions.
    regions: optional [P, H, W] masks, each in its own position's frame (e.g. RF boxes).
    params, space: as in `similarity`.

  Returns:
    Specificity with [P, P] fields, row p = the moved position, column q = the reference frame.
  """
  _check_space(space, params)
  if images.ndim != 5:
    raise ValueError(f"images must be [P, S, H, W, 3]; got shape {tuple(images.shape)}.")
  _check_seeds(images[0])
  n_pos, hw = images.shape[0], images.shape[2:4]
  centres = jnp.asarray(centres, jnp.float32)
  regions = jnp.ones((n_pos, *hw), bool) if regions is None else jnp.asarray(regions) > 0
  # Features of the unmoved images serve every row and the ceilings: compute them once.
  feats = jax.vmap(lambda x: _embed(params, x, space))(images)

  def row(args):
    x_p, f_p, c_p, reg_p = args

    def entry(f_q, c_q, reg_q):
      shift = c_q - c_p
      mask = _aligned_mask(shift, hw, reg_q) & shift_image(reg_p, shift)[0]
      return _specificity(params, x_p, f_p, f_q, shift, mask, space)

    return jax.vmap(entry)(feats, centres, regions)

  # One row at a time bounds memory at P*S moved images' features.
  return jax.lax.map(row, (images, feats, centres, regions))


def psi(s_pq: Array, s_pp: Array, s_qq: Array) -> Array:
  """Position-specificity index PSI_pq = 1 - S_pq / ((S_pp + S_qq) / 2); broadcasts.

  0: p and q prefer the same pattern (up to seed variability); 1: unrelated patterns; NaN where
  the ceiling is <= 0 (seeds do not even agree with themselves, so specificity is undefined).
  """
  ceiling = 0.5 * (s_pp + s_qq)
  return jnp.where(ceiling > 0, 1.0 - s_pq / jnp.where(ceiling > 0, ceiling, 1.0), jnp.nan)


# ----------------------------------------------------------------------------- transfer


def _node_acts(params, images: Array, tap: str, position: Array, channel: Array) -> Array:
  """[N] activation of `tap` at node position (i, j) = (row, col), `channel`, for images [N, H, W, 3]."""
  acts = googlenet.forward(params, images, (tap,))[tap]
  return acts[:, position[0], position[1], channel].astype(jnp.float32)


@functools.partial(jax.jit, static_argnames=("tap",))
def transfer(params, x_p: Array, x_q: Array, shift: Array, position_q: Array, channel: Array, *,
             tap: str) -> Array:
  """T_pq = act_q(x_p moved by shift) / act_q(x_q) for one node type.

  The part of the moved image that x_p does not cover is filled with `neutral_fill()`, the colour
  the net's input maps to zero, i.e. what the first layer sees beyond the image border: the node
  at q is shown p's pattern and nothing invented.

  Args:
    params: GoogLeNet params.
    x_p, x_q: [H, W, 3] RGB in [0, 1], visualizations at p and q.
    shift: (dy, dx) = c_q - c_p in pixels (rounded to ints).
    position_q: (i, j) = (row, col) of node q on `tap`'s grid.
    channel: the node type's channel in `tap`.
    tap: spatial GoogLeNet tap.

  Returns:
    Scalar ratio; 1 when p's pattern drives q as well as q's own. Inf / NaN if x_q does not
    drive its own node at all (act 0 after the ReLU), which a visualization of q never does.
  """
  moved, _ = shift_image(x_p, shift, neutral_fill())
  acts = _node_acts(params, jnp.stack([moved, x_q]), tap, position_q, channel)
  return acts[0] / acts[1]


@functools.partial(jax.jit, static_argnames=("tap",))
def transfer_matrix(params, images: Array, centres: Array, positions: Array, channel: Array, *,
                    tap: str) -> Array:
  """All T_pq = mean_s act_q(x_{p,s} moved onto q) / mean_s act_q(x_{q,s}).

  Seed means are taken before the ratio, which keeps T stable when one seed's own activation is
  small. The uncovered area of a moved image is filled as in `transfer`. The batch of P*S moved
  images for one source position p runs as one forward pass; rows run one after another.

  Args:
    params: GoogLeNet params.
    images: [P, S, H, W, 3] visualizations (positions x seeds), RGB in [0, 1].
    centres: [P, 2] RF centres (y, x) in pixels.
    positions: int [P, 2] node positions (i, j) = (row, col) on `tap`'s grid.
    channel: the node type's channel in `tap`.
    tap: spatial GoogLeNet tap.

  Returns:
    float [P, P]: row p = pattern source, column q = node driven; diagonal 1.
  """
  n_pos, n_seeds, h, w, _ = images.shape
  centres = jnp.asarray(centres, jnp.float32)
  positions = jnp.asarray(positions, jnp.int32)
  fill = neutral_fill()

  def row(args):
    x_p, c_p = args  # [S, H, W, 3], [2]
    moved = jax.vmap(lambda c_q: jax.vmap(lambda x: shift_image(x, c_q - c_p, fill)[0])(x_p))(centres)
    acts = googlenet.forward(params, moved.reshape(n_pos * n_seeds, h, w, 3), (tap,))[tap]
    acts = acts.reshape(n_pos, n_seeds, *acts.shape[1:])
    node = jax.vmap(lambda a, ij: a[:, ij[0], ij[1], channel])(acts, positions)  # [P(q), S]
    return jnp.mean(node.astype(jnp.float32), axis=1)

  # One source row at a time bounds memory at P*S forward passes.
  moved_acts = jax.lax.map(row, (images, centres))  # [P(p), P(q)]
  own = jax.vmap(lambda x, ij: jnp.mean(_node_acts(params, x, tap, ij, channel)))(images, positions)
  return moved_acts / own[None, :]


# ----------------------------------------------------------------------------- realism


class ActStats(NamedTuple):
  """Per-channel statistics of one tap's activations over spatial positions, per image.

  Attributes:
    mean: [N, C] spatial mean of each channel.
    std: [N, C] spatial standard deviation of each channel.
  """

  mean: Array
  std: Array


class Realism(NamedTuple):
  """Two realism scores per image (see `realism`).

  Attributes:
    confidence: [N] the net's top-1 softmax probability (higher = more realistic).
    stats_distance: [N] distance to natural-image activation statistics (lower = more realistic).
  """

  confidence: Array
  stats_distance: Array


def _at_size(images: Array, size: int) -> Array:
  """Resizes [N, H, W, 3] to [N, size, size, 3] (bilinear, antialiased) unless already there."""
  images = jnp.asarray(images, jnp.float32)
  if images.shape[1:3] == (size, size):
    return images
  return jax.image.resize(images, (images.shape[0], size, size, 3), "linear", antialias=True)


def _stats(acts: Array) -> ActStats:
  acts = acts.astype(jnp.float32)
  return ActStats(jnp.mean(acts, axis=(1, 2)), jnp.std(acts, axis=(1, 2)))


@functools.partial(jax.jit, static_argnames=("tap", "size"))
def activation_stats(params, images: Array, *, tap: str = REALISM_TAP, size: int = REALISM_SIZE) -> ActStats:
  """Per-image, per-channel mean and std of `tap` for images [N, H, W, 3] resized to size x size."""
  return _stats(googlenet.forward(params, _at_size(images, size), (tap,))[tap])


def stats_distance(stats: ActStats, reference: ActStats) -> Array:
  """Relative Frechet distance of each image's channel statistics to the reference's.

  Each channel's activations over positions are summarised by a 1-D Gaussian (mean m_c, std s_c).
  The squared 2-Wasserstein (Frechet) distance between N(m, s^2) and the reference N(M, S^2) is
  (m - M)^2 + (s - S)^2; summed over channels and divided by the reference's sum of M^2 + S^2,
  this is a scale-free number: 0 = the image drives the layer exactly like natural images do.
  It is a per-image, diagonal-covariance cousin of FID, computed in GoogLeNet's own space.

  Args:
    stats: ActStats with [N, C] fields (the images scored).
    reference: ActStats with [M, C] fields (natural images); their mean is the reference.

  Returns:
    float [N], >= 0, lower = more natural.
  """
  ref_m, ref_s = jnp.mean(reference.mean, axis=0), jnp.mean(reference.std, axis=0)
  num = jnp.sum((stats.mean - ref_m) ** 2 + (stats.std - ref_s) ** 2, axis=-1)
  return num / jnp.sum(ref_m ** 2 + ref_s ** 2)


@functools.partial(jax.jit, static_argnames=("tap", "size"))
def realism(params, images: Array, reference: ActStats, *, tap: str = REALISM_TAP,
            size: int = REALISM_SIZE) -> Realism:
  """How natural images look to GoogLeNet, in two complementary ways.

  The paper says tiled visualizations look "more realistic" than single-position ones. We
  measure that with the net itself, on images resized to its 224 px training resolution:

  * confidence: the top-1 softmax probability. A scene the net can name is one it finds
    natural. Cheap and interpretable, but weak on its own: adversarial patterns are named
    confidently, and even smooth random colour blobs score 0.47 against cat.jpg's 0.44 (real
    weights), while uniform noise scores 0.18. Hence the second, primary, score:
  * stats_distance: `stats_distance` of the image's `tap` (default inception_3a/output) channel
    statistics to those of real photographs (`reference`, from `activation_stats` of natural
    images). Natural images spread moderate activity over many channels; a visualization that
    drives a few channels hard in one spot and leaves start noise elsewhere does not. It needs
    no class to win: with fish-bike.jpg as the reference, cat.jpg scores 0.34, uniform noise
    0.83 and smooth random blobs 0.83.

  Both see the whole image, so compare visualizations made with the same start noise and size.

  Args:
    params: GoogLeNet params.
    images: [N, H, W, 3] RGB in [0, 1]; resized to size x size.
    reference: ActStats with [M, C] fields from `activation_stats` of natural images, computed
      with the same `tap` and `size`.
    tap: spatial GoogLeNet tap for the statistics.
    size: the side the images are resized to (223-254 px for the classifier).

  Returns:
    Realism(confidence [N], stats_distance [N]).
  """
  out = googlenet.forward(params, _at_size(images, size), (tap, "prob"))
  return Realism(jnp.max(out["prob"], axis=-1).astype(jnp.float32),
                 stats_distance(_stats(out[tap]), reference))


@functools.partial(jax.jit, static_argnames=("size",))
def confidence(params, images: Array, *, size: int = REALISM_SIZE) -> Array:
  """[N] top-1 softmax probability of GoogLeNet for images [N, H, W, 3] resized to size x size."""
  return jnp.max(googlenet.forward(params, _at_size(images, size), ("prob",))["prob"], axis=-1)


# ----------------------------------------------------------------------------- judge-layer indices
#
# The aligned correlations above divide by a seed ceiling that is often 0.01-0.2 (seeds put the
# same pattern at slightly different places), so PSI is mostly undefined. The indices below
# follow the literature (reference/MEASURING.md): a shift-tolerant similarity in one fixed judge
# layer, a floor made of OTHER channels, and rank statistics (Mann-Whitney AUCs) with bootstrap
# intervals over seeds, which stay defined whatever the seeds' agreement.

JUDGE_TAP = "inception_3a/output"  # the one judge layer for every tap; see `describe`
MIN_SEEDS = 3  # fewer seeds: the within-position pairs cannot be resampled (`undefined_reasons`)
CI_LEVEL = 0.95


class PositionSpecificity(NamedTuple):
  """Position-specificity indices of one node type (one tap, one channel) at P positions.

  W_p: judge similarities between seeds s != t at position p (within). B_pq: between position p
  and position q, seeds s != t (seeds may share start noise across positions, so s = t is left
  out). F_p: between this channel at p and the floor images (other channels) at p.

  Attributes:
    auc_id: [P] P(W_p > F_p) (ties count 1/2): seed consistency against unrelated node types;
      0.5 = no more alike than other channels, 1 = always more alike.
    auc_id_ci: [P, 2] 95 % percentile bootstrap interval over seeds (and floor images).
    psi_auc: [P, P] 2 P(W > B_pq) - 1 with W = W_p and W_q pooled: 0 = positions
      indistinguishable, 1 = every within pair beats every between pair; diagonal 0.
    psi_auc_ci: [P, P, 2].
    psi_floor: [P, P] (mean W - mean B) / (mean W - mean F), W and F pooled over p and q: 0 = same
      pattern, 1 = as different as another channel; the denominator is clamped at `FLOOR_EPS`,
      so it means something only where auc_id is well above 0.5.
    auc_id_boot: [n_boot, P] the bootstrap draws (for summaries over channels and positions).
    psi_auc_boot: [n_boot, P, P].
  """

  auc_id: Array
  auc_id_ci: Array
  psi_auc: Array
  psi_auc_ci: Array
  psi_floor: Array
  auc_id_boot: Array
  psi_auc_boot: Array


FLOOR_EPS = 1e-3


def undefined_reasons(n_seeds: int, n_floor: int) -> dict[str, str | None]:
  """THE rule for when a number is defined, shared by the sweep and the paper report.

  Returns {field: None if defined, else the reason}. psi_auc needs >= `MIN_SEEDS` seeds (the
  within pairs must survive resampling); auc_id and psi_floor also need floor images (other
  channels of the same tap at the same positions).
  """
  few = (f"needs >= {MIN_SEEDS} seeds per position (has {n_seeds})" if n_seeds < MIN_SEEDS else None)
  no_floor = few or (None if n_floor >= 1 else "needs floor images (other channels of the same tap)")
  return dict(psi_auc=few, auc_id=no_floor, psi_floor=no_floor)


def region_weights(boxes: Array, image_hw: tuple[int, int], *, tap: str = JUDGE_TAP) -> Array:
  """How much each judge node stands for the region box ∩ image: [P, h, w] weights, rows sum > 0.

  Judge node a stands for its stride cell around its RF centre, [c_a - jump/2, c_a + jump/2)
  (the first and last cells extended to the image border); its weight is the share of that cell
  inside the region, per axis, multiplied. Every non-empty region gets weight somewhere.

  Args:
    boxes: [P, 4] (top, left, bottom, right) px, half-open, may extend past the image.
    image_hw: (H, W) px.
    tap: the judge layer.
  """
  g = geometry(tap)
  (h, w), (H, W) = googlenet.blob_hw(tap, image_hw), image_hw
  boxes = jnp.asarray(boxes, jnp.float32)

  def axis(n, N, lo, hi):
    c = g.start + g.jump * jnp.arange(n, dtype=jnp.float32) + (g.size - 1) / 2
    a = jnp.where(jnp.arange(n) == 0, -1e9, c - g.jump / 2)
    b = jnp.where(jnp.arange(n) == n - 1, 1e9, c + g.jump / 2)
    lo, hi = jnp.clip(lo, 0, N), jnp.clip(hi, 0, N)
    return jnp.clip(jnp.minimum(b, hi[:, None]) - jnp.maximum(a, lo[:, None]), 0, None)  # [P, n]

  wy = axis(h, H, boxes[:, 0], boxes[:, 2])
  wx = axis(w, W, boxes[:, 1], boxes[:, 3])
  return wy[:, :, None] * wx[:, None, :]


@functools.partial(jax.jit, static_argnames=("tap",))
def describe(params, images: Array, boxes: Array, *, tap: str = JUDGE_TAP) -> Array:
  """Judge descriptors: the mean of `tap`'s features over each image's own region.

  Why pooled features of one fixed judge layer (reference/MEASURING.md):
    * Shift tolerance. Seeds put the same pattern a few px apart; an average over the region
      does not care where inside it a feature fires, while aligned correlations collapse to
      0.01-0.2 between seeds of the same node.
    * One judge for every tap keeps the numbers comparable across taps. inception_3a/output
      (RF 59 px, stride 8, 256 channels) responds to edges, colours, textures and simple parts:
      structure, not single pixels, so start noise barely moves it (measured on the real weights:
      two noise draws of a cat crop correlate 0.60 in 3a features vs 0.52 in pixels, while
      conv1/conv2 respond to the noise itself); it is still fine enough (stride 8) that a region
      of ~20 px holds a node, where deeper layers (stride 16-32) would leave small-RF regions
      with one blurred node.
    * Mean rather than Gram. A Gram (channel co-occurrence) matrix is also shift-tolerant, but
      over a small region it is rank-deficient and noisy, and it costs C^2 (65,536) numbers per
      image; the mean is a C-vector whose cosine asks "does the region hold the same kinds of
      features?", which is the paper's "same pattern".
    * Circularity: a tap at or below the judge (conv2, 3a) is judged by features computed from
      it; 3a judging 3a channels sees its own maximised channel, so sweeps leave the judge layer
      out. Everything here is the net judging itself; calibration on natural photos
      (tests/metrics_test.py) shows the scale.

  Args:
    params: GoogLeNet params.
    images: [..., H, W, 3] RGB in [0, 1].
    boxes: [..., 4] (top, left, bottom, right) px of each image's node RF (same leading shape).
    tap: the judge layer.

  Returns:
    float32 [..., C] descriptors.
  """
  lead, hw = images.shape[:-3], images.shape[-3:-1]
  x = jnp.reshape(images, (-1, *hw, 3)).astype(jnp.float32)
  b = jnp.reshape(jnp.asarray(boxes, jnp.float32), (-1, 4))
  g, margin = geometry(tap), judge_margin(tap)
  fill = neutral_fill()
  ys, xs = jnp.arange(hw[0], dtype=jnp.float32), jnp.arange(hw[1], dtype=jnp.float32)
  inside = (((ys[None, :] >= b[:, 0:1]) & (ys[None, :] < b[:, 2:3]))[:, :, None]
            & ((xs[None, :] >= b[:, 1:2]) & (xs[None, :] < b[:, 3:4]))[:, None, :])
  x = jnp.where(inside[..., None], x, fill)
  # A neutral border (plus one stride of slack), and each image moved so that its box's top-left
  # corner sits at the same phase of the judge grid: the same content in the RF frame then gives
  # the same descriptor wherever the box lies, to the pixel.
  x = jnp.pad(x - fill, ((0, 0), (margin, margin + g.jump), (margin, margin + g.jump), (0, 0))) + fill
  phase = jnp.mod(-jnp.round(b[:, :2]), g.jump)  # [N, 2] (dy, dx) in 0..jump-1
  x = jax.vmap(lambda im, d: shift_image(im - fill, d)[0] + fill)(x, phase)
  feats = googlenet.forward(params, x, (tap,))[tap].astype(jnp.float32)  # [N, h, w, C]
  canvas_hw = (hw[0] + 2 * margin + g.jump, hw[1] + 2 * margin + g.jump)
  vis = jnp.clip(b, 0, jnp.array([hw[0], hw[1], hw[0], hw[1]], jnp.float32))
  wts = region_weights(vis + margin + jnp.concatenate([phase, phase], axis=1), canvas_hw, tap=tap)
  desc = jnp.einsum("nhwc,nhw->nc", feats, wts) / jnp.sum(wts, axis=(1, 2))[:, None]
  return desc.reshape(*lead, desc.shape[-1])


def judge_margin(tap: str = JUDGE_TAP) -> int:
  """Neutral border (px) around the image for the judge: half its RF, rounded up to its stride, so no
  judge node over the image reaches the judge's own zero padding."""
  g = geometry(tap)
  return -(-(g.size // 2) // g.jump) * g.jump


def _cosine(a: Array, b: Array) -> Array:
  """[..., M, C] x [..., N, C] -> [..., M, N] cosine similarities (0 for an all-zero vector)."""
  na = a / jnp.maximum(jnp.linalg.norm(a, axis=-1, keepdims=True), 1e-12)
  nb = b / jnp.maximum(jnp.linalg.norm(b, axis=-1, keepdims=True), 1e-12)
  return jnp.einsum("...mc,...nc->...mn", na, nb)


def _auc(x: Array, wx: Array, y: Array, wy: Array) -> Array:
  """Weighted P(X > Y) + P(X = Y)/2 over the last axis of x [..., M] and y [..., N]."""
  gt = (x[..., :, None] > y[..., None, :]).astype(jnp.float32)
  eq = (x[..., :, None] == y[..., None, :]).astype(jnp.float32)
  pw = wx[..., :, None] * wy[..., None, :]
  return jnp.sum(pw * (gt + 0.5 * eq), axis=(-2, -1)) / jnp.sum(pw, axis=(-2, -1))


def _wmean(x: Array, w: Array) -> Array:
  return jnp.sum(x * w, axis=-1) / jnp.sum(w, axis=-1)


def _indices(within, floor, between, c, d, same_start):
  """auc_id [P], psi_auc [P, P], psi_floor [P, P] for seed weights c [S] and floor weights d [S2].

  within [P, S, S], floor [P, S, S2], between [P, P, S, S]; same_start [S, S2] bool pairs that
  share start noise (left out).
  """
  n_pos, n_seeds = within.shape[:2]
  off = 1.0 - jnp.eye(n_seeds)
  ww = (c[:, None] * c[None, :] * off).ravel()  # [S*S]
  fw = (c[:, None] * d[None, :] * (~same_start)).ravel()  # [S*S2]
  w = within.reshape(n_pos, -1)
  f = floor.reshape(n_pos, -1)
  b = between.reshape(n_pos, n_pos, -1)
  has_floor = f.shape[-1] > 0
  auc_id = (_auc(w, ww[None], f, fw[None]) if has_floor else jnp.full((n_pos,), jnp.nan))
  w_pq = jnp.concatenate([jnp.broadcast_to(w[:, None], b.shape), jnp.broadcast_to(w[None, :], b.shape)], -1)
  ww_pq = jnp.concatenate([ww, ww])
  psi = 2.0 * _auc(w_pq, ww_pq[None, None], b, ww[None, None]) - 1.0
  psi = jnp.where(jnp.eye(n_pos, dtype=bool), 0.0, psi)
  w_bar, b_bar = _wmean(w_pq, ww_pq), _wmean(b, ww)
  if has_floor:
    f_bar = _wmean(f, fw)
    f_pq = 0.5 * (f_bar[:, None] + f_bar[None, :])
    psi_floor = (w_bar - b_bar) / jnp.maximum(w_bar - f_pq, FLOOR_EPS)
    psi_floor = jnp.where(jnp.eye(n_pos, dtype=bool), 0.0, psi_floor)
  else:
    psi_floor = jnp.full((n_pos, n_pos), jnp.nan)
  return auc_id, psi, psi_floor


def _counts(key, n):
  return jnp.bincount(jax.random.randint(key, (n,), 0, n), length=n).astype(jnp.float32)


def _ci(boot: Array, point: Array) -> Array:
  """[n_boot, ...] draws -> [..., 2] percentile interval; draws that lost every pair are NaN and
  skipped; if all are, the point estimate stands for both ends."""
  lo, hi = (100 * (1 - CI_LEVEL) / 2, 100 * (1 + CI_LEVEL) / 2)
  q = jnp.nanpercentile(boot, jnp.array([lo, hi]), axis=0)
  q = jnp.where(jnp.isfinite(q), q, point[None])
  return jnp.moveaxis(q, 0, -1)


@functools.partial(jax.jit, static_argnames=("n_boot",))
def specificity_from_descriptors(desc: Array, floor_desc: Array, key: Array, n_boot: int = 200,
                                 floor_seed: Array | None = None) -> PositionSpecificity:
  """`position_specificity` on precomputed judge descriptors (compute features once, resample often).

  Args:
    desc: [P, S, C] descriptors (`describe`) of one node type at P positions, S seeds; seed s is
      the same start at every position.
    floor_desc: [P, S2, C] descriptors of other channels at the same positions (S2 may be 0).
    key: `jax.random.key` for the bootstrap.
    n_boot: bootstrap draws. Seeds are resampled jointly across positions (a seed is one start
      image shared by all positions), floor images independently; pairs of a resampled seed with
      itself are left out.
    floor_seed: optional int [S2]: the seed index (into S) whose start image floor image u shares,
      or -1; such pairs are left out of F (shared start noise would make them alike).

  Returns:
    `PositionSpecificity`.
  """
  n_seeds, n_floor = desc.shape[1], floor_desc.shape[1]
  within = _cosine(desc, desc)  # [P, S, S]
  floor = _cosine(desc, floor_desc)  # [P, S, S2]
  between = jax.vmap(lambda a: jax.vmap(lambda b: _cosine(a, b))(desc))(desc)  # [P, P, S, S]
  fs = jnp.full((n_floor,), -1, jnp.int32) if floor_seed is None else jnp.asarray(floor_seed, jnp.int32)
  same = jnp.arange(n_seeds)[:, None] == fs[None, :]
  point = _indices(within, floor, between, jnp.ones(n_seeds), jnp.ones(n_floor), same)

  def draw(k):
    k1, k2 = jax.random.split(k)
    return _indices(within, floor, between, _counts(k1, n_seeds), _counts(k2, n_floor), same)

  boot = jax.lax.map(draw, jax.random.split(key, n_boot))
  return PositionSpecificity(auc_id=point[0], auc_id_ci=_ci(boot[0], point[0]), psi_auc=point[1],
                             psi_auc_ci=_ci(boot[1], point[1]), psi_floor=point[2],
                             auc_id_boot=boot[0], psi_auc_boot=boot[1])


def position_specificity(params, images: Array, boxes: Array, floor_images: Array | None, key: Array,
                         n_boot: int = 200, *, floor_seed: Array | None = None,
                         judge: str = JUDGE_TAP) -> PositionSpecificity:
  """Seed consistency and position specificity of one node type, with bootstrap intervals.

  Args:
    params: GoogLeNet params (the judge is GoogLeNet's own `judge` layer; see `describe`).
    images: [P, S, H, W, 3] one node type at P positions, S >= `MIN_SEEDS` seeds, RGB [0, 1].
    boxes: [P, 4] its RF box (top, left, bottom, right) in px at each position, half-open; each
      image is pooled over its own box ∩ image, so the RF's off-image part counts for nothing.
    floor_images: [P, S2, H, W, 3] OTHER channels of the same tap at the same positions, or None
      (then auc_id and psi_floor are NaN: undefined without a floor).
    key: `jax.random.key` for the bootstrap.
    n_boot: bootstrap draws.
    floor_seed: see `specificity_from_descriptors`.
    judge: the judge layer (default `JUDGE_TAP`; keep it fixed across taps).

  Returns:
    `PositionSpecificity`; every entry finite when S >= 3 and S2 >= 1.

  Raises:
    UserError: wrong shapes or fewer than `MIN_SEEDS` seeds.
  """
  from rfspec.errors import UserError

  images = jnp.asarray(images)
  boxes = jnp.asarray(boxes, jnp.float32)
  if images.ndim != 5 or images.shape[-1] != 3 or boxes.shape != (images.shape[0], 4):
    raise UserError(f"position_specificity needs images [P, S, H, W, 3] and boxes [P, 4]; got "
                    f"{tuple(images.shape)} and {tuple(boxes.shape)}. Stack one node type's visualizations "
                    "as positions x seeds, with its RF box (top, left, bottom, right) per position.")
  n_pos, n_seeds = images.shape[:2]
  if n_seeds < MIN_SEEDS:
    raise UserError(f"position_specificity needs >= {MIN_SEEDS} seeds per position (got {n_seeds}): within-"
                    "position pairs are what the indices compare; visualize more seeds.")
  c = googlenet.LAYER_BY_NAME[judge].channels
  if floor_images is None:
    floor_desc = jnp.zeros((n_pos, 0, c), jnp.float32)
  else:
    floor_images = jnp.asarray(floor_images)
    if floor_images.ndim != 5 or floor_images.shape[0] != n_pos or floor_images.shape[2:] != images.shape[2:]:
      raise UserError(f"floor_images must be [P, S2, H, W, 3] matching images {tuple(images.shape)}; got "
                      f"{tuple(floor_images.shape)}. Pass other channels of the same tap at the same positions.")
    s2 = floor_images.shape[1]
    floor_desc = describe(params, floor_images, jnp.broadcast_to(boxes[:, None], (n_pos, s2, 4)), tap=judge)
  desc = describe(params, images, jnp.broadcast_to(boxes[:, None], (n_pos, n_seeds, 4)), tap=judge)
  return specificity_from_descriptors(desc, floor_desc, key, n_boot, floor_seed)

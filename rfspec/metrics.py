"""Position-specificity metrics: turn "this node prefers a different pattern here" into numbers.

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

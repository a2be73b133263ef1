"""Receptive-field geometry of every GoogLeNet tap, effective RFs by gradient, and an RF census.

The analytic geometry walks `rfspec.models.googlenet.LAYERS`, the same table that builds the
model, so the two cannot disagree. Per blob we track (size, jump, start) along one axis:

  * the input has size 1, jump 1, start 0 (one pixel);
  * a conv / pool layer (k, s, p) maps (size, jump, start) -> (size + (k-1)*jump, jump*s,
    start - p*jump);
  * LRN (across channels) leaves it unchanged; a concat takes the union of its branches' intervals
    (all branches share jump and grid);
  * the classifier reads a 1x1 pool5, so it too leaves it unchanged.

Node (i, j) of a tap then sees the half-open pixel box rows [start + i*jump, start + i*jump + size),
columns likewise. Every GoogLeNet layer is symmetric, so size, jump and start are the same for
rows and columns; only the grid (h, w) differs for non-square images. The box may extend past the
image: its intersection with the image is exactly the set of input pixels that can influence the
node (checked by gradients in tests/geometry_test.py).

Conventions: positions are (i, j) = (row, col) on a tap's grid, 0-based; pixels are (y, x) =
(row, col), and pixel y's centre has coordinate y (so a box [top, bottom) has centre
(top + bottom - 1) / 2).
"""

from __future__ import annotations

import dataclasses
import functools
import math
import re
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from rfspec.errors import UserError
from rfspec.models import googlenet, preprocess

Position = tuple[int, int]


# ----------------------------------------------------------------------------- analytic geometry


class Geometry(NamedTuple):
  """One axis of a blob's RF: `size` px wide, nodes `jump` px apart, node 0 starting at `start`."""

  size: int
  jump: int
  start: int


@functools.lru_cache(maxsize=None)
def _geometries() -> dict[str, Geometry]:
  """(size, jump, start) of every blob, walking `googlenet.LAYERS` in network order."""
  geo = {googlenet.INPUT: Geometry(1, 1, 0)}
  for layer in googlenet.LAYERS:
    bottoms = [geo[b] for b in layer.bottoms]
    if layer.kind in ("conv", "maxpool", "avepool"):
      size, jump, start = bottoms[0]
      geo[layer.name] = Geometry(size + (layer.k - 1) * jump, jump * layer.s, start - layer.p * jump)
    elif layer.kind == "concat":
      jumps = {g.jump for g in bottoms}
      if len(jumps) != 1:  # the table guarantees this; a new layer table might not
        raise AssertionError(f"{layer.name}: branches have different jumps {sorted(jumps)}")
      start = min(g.start for g in bottoms)
      end = max(g.start + g.size for g in bottoms)
      geo[layer.name] = Geometry(end - start, jumps.pop(), start)
    elif layer.kind in ("lrn", "fc", "softmax"):
      # LRN mixes channels only; fc reads a 1x1 pool5 (checked by `check_input_hw`).
      geo[layer.name] = bottoms[0]
    else:
      raise AssertionError(f"unhandled layer kind {layer.kind!r}")
  return geo


def geometry(tap: str) -> Geometry:
  """(size, jump, start) of `tap` along either axis, independent of the input size.

  Raises:
    UserError: unknown tap (the message suggests the closest names).
  """
  googlenet.check_tap(tap)
  return _geometries()[tap]


def branch_tap(tap: str, channel: int) -> str:
  """The blob whose RF channel `channel` of `tap` actually has.

  A concat's RF is the union over its branches, but each channel comes from one branch, whose RF
  may be smaller (inception_4c/output channel 0 is a 1x1-branch channel: RF 235, not 299). For
  any other tap this returns `tap`.

  Raises:
    UserError: unknown tap, or channel outside [0, channels).
  """
  layer = googlenet.check_tap(tap)
  if not 0 <= channel < layer.channels:
    raise UserError(f"Channel {channel} is out of range for tap {tap!r}, which has {layer.channels} channels.")
  if layer.kind != "concat":
    return tap
  for bottom in layer.bottoms:
    n = googlenet.LAYER_BY_NAME[bottom].channels
    if channel < n:
      return bottom
    channel -= n
  raise AssertionError("concat channels do not add up")


@dataclasses.dataclass(frozen=True)
class ReceptiveField:
  """The exact receptive field of every node of one tap, for one input size.

  Positions are (i, j) = (row, col) on the tap's grid; pixels are (y, x) = (row, col), with pixel
  y's centre at coordinate y. Boxes are half-open (top, left, bottom, right) in input pixels and may
  extend past the image; box ∩ image is exactly the set of pixels that can influence the node.

  Attributes:
    tap: the Caffe blob name.
    image_hw: input size (H, W) in pixels.
    size: RF side in pixels (same for rows and columns).
    stride: the jump, i.e. pixels between the RF centres of neighbouring nodes.
    offset: centre of node (0, 0)'s RF in pixels, along y and along x (= start + (size - 1) / 2).
    grid: (h, w), the tap's spatial output size.
  """

  tap: str
  image_hw: tuple[int, int]
  size: int
  stride: int
  offset: float
  grid: tuple[int, int]

  @property
  def start(self) -> int:
    """First pixel row (and column) of node (0, 0)'s box; negative when it starts off-image."""
    return int(round(self.offset - (self.size - 1) / 2))

  def _check(self, i: int, j: int) -> tuple[int, int]:
    h, w = self.grid
    if not (isinstance(i, (int, np.integer)) and isinstance(j, (int, np.integer))) or not (
        0 <= i < h and 0 <= j < w):
      raise UserError(f"Position (i, j) = ({i}, {j}) is outside the {h}x{w} grid of tap {self.tap!r} "
                       f"at {self.image_hw[0]}x{self.image_hw[1]} px; valid are 0 <= i < {h}, 0 <= j < {w} "
                       "(i = row, j = column).")
    return int(i), int(j)

  def box(self, i: int, j: int) -> tuple[int, int, int, int]:
    """Half-open (top, left, bottom, right) pixel box of node (i, j) = (row, col); may lie off-image."""
    i, j = self._check(i, j)
    top, left = self.start + i * self.stride, self.start + j * self.stride
    return top, left, top + self.size, left + self.size

  def centre(self, i: int, j: int) -> tuple[float, float]:
    """RF centre (y, x) in pixels of node (i, j) = (row, col)."""
    i, j = self._check(i, j)
    return self.offset + i * self.stride, self.offset + j * self.stride

  def inside_fraction(self, i: int, j: int) -> float:
    """Share of node (i, j)'s (row, col) RF area that lies inside the image, in [0, 1]."""
    top, left, bottom, right = self.box(i, j)
    H, W = self.image_hw
    rows = max(0, min(bottom, H) - max(top, 0))
    cols = max(0, min(right, W) - max(left, 0))
    return rows * cols / self.size ** 2

  def boxes(self) -> np.ndarray:
    """int [h, w, 4]: (top, left, bottom, right) of every node; index [i, j] = (row, col)."""
    h, w = self.grid
    tops = self.start + self.stride * np.arange(h)
    lefts = self.start + self.stride * np.arange(w)
    top, left = np.meshgrid(tops, lefts, indexing="ij")
    return np.stack([top, left, top + self.size, left + self.size], axis=-1).astype(np.int64)

  def centres(self) -> np.ndarray:
    """float [h, w, 2]: RF centre (y, x) of every node; index [i, j] = (row, col)."""
    h, w = self.grid
    y, x = np.meshgrid(self.offset + self.stride * np.arange(h), self.offset + self.stride * np.arange(w),
                       indexing="ij")
    return np.stack([y, x], axis=-1).astype(np.float64)

  def inside_fractions(self) -> np.ndarray:
    """float [h, w]: `inside_fraction` of every node; index [i, j] = (row, col)."""
    b = self.boxes()
    H, W = self.image_hw
    rows = np.clip(np.minimum(b[..., 2], H) - np.maximum(b[..., 0], 0), 0, None)
    cols = np.clip(np.minimum(b[..., 3], W) - np.maximum(b[..., 1], 0), 0, None)
    return rows * cols / float(self.size ** 2)

  def fully_inside(self) -> np.ndarray:
    """bool [h, w]: whether node (i, j)'s (row, col) whole RF box lies inside the image."""
    b = self.boxes()
    H, W = self.image_hw
    return (b[..., 0] >= 0) & (b[..., 1] >= 0) & (b[..., 2] <= H) & (b[..., 3] <= W)


def _image_hw(image_hw: int | Sequence[int]) -> tuple[int, int]:
  if isinstance(image_hw, (int, np.integer)):
    image_hw = (image_hw, image_hw)
  try:
    h, w = (int(v) for v in image_hw)
  except (TypeError, ValueError):
    raise UserError(f"image_hw must be (H, W) in pixels, got {image_hw!r}.") from None
  if h < 1 or w < 1:
    raise UserError(f"image_hw must be positive, got {(h, w)}.")
  return h, w


@functools.lru_cache(maxsize=4096)
def _receptive_field(tap: str, image_hw: tuple[int, int]) -> ReceptiveField:
  googlenet.check_input_hw((tap,), image_hw)  # unknown tap / too small / classifier size
  g = _geometries()[tap]
  return ReceptiveField(tap=tap, image_hw=image_hw, size=g.size, stride=g.jump,
                        offset=g.start + (g.size - 1) / 2, grid=googlenet.blob_hw(tap, image_hw))


def receptive_field(tap: str, image_hw: int | Sequence[int]) -> ReceptiveField:
  """The exact receptive field of every node of `tap` on an input of `image_hw` = (H, W) pixels.

  Args:
    tap: a name from `rfspec.TAPS`, e.g. "inception_4c/output". A concat's RF is the union over
      its branches (see `branch_tap` for one channel's own RF).
    image_hw: (H, W) in pixels (an int means a square image).

  Returns:
    A `ReceptiveField`; positions on it are (i, j) = (row, col), pixels (y, x) = (row, col).

  Raises:
    UserError: unknown tap (suggests the closest names), or an input too small for the tap
      (names the smallest size that works).
  """
  return _receptive_field(tap, _image_hw(image_hw))


def box_masks(tap: str, image_hw: int | Sequence[int], positions: Sequence[Position], grow: int = 0) -> np.ndarray:
  """bool [P, H, W]: each position's RF box, grown by `grow` px per side, clipped to the image.

  Positions are (i, j) = (row, col); masks are indexed (y, x), each in its own position's frame.
  """
  rf = receptive_field(tap, image_hw)
  h, w = rf.image_hw
  out = np.zeros((len(positions), h, w), bool)
  for n, (i, j) in enumerate(positions):
    top, left, bottom, right = rf.box(i, j)
    out[n, max(top - grow, 0):max(bottom + grow, 0), max(left - grow, 0):max(right + grow, 0)] = True
  return out


def nearest_node(tap: str, image_hw: int | Sequence[int], yx: Sequence[float]) -> Position:
  """The node (i, j) = (row, col) of `tap` whose RF centre is nearest the pixel (y, x) = (row, col).

  The pixel may lie anywhere (even off-image); the answer is clipped to the grid. Ties (a pixel
  exactly half-way between two centres) go to the larger index.
  """
  rf = receptive_field(tap, image_hw)
  out = []
  for v, n in zip(yx, rf.grid):
    out.append(int(np.clip(math.floor((float(v) - rf.offset) / rf.stride + 0.5), 0, n - 1)))
  return out[0], out[1]


def diagonal_positions(tap: str, image_hw: int | Sequence[int], n: int) -> list[Position]:
  """n distinct positions (i, j) = (row, col) from the centre node to the corner (0, 0), evenly spaced.

  The centre is the node whose RF centre is nearest the image centre; moving to the corner takes
  the RF's inside fraction from its largest value down to its smallest.
  """
  hw = _image_hw(image_hw)
  ci, cj = nearest_node(tap, hw, ((hw[0] - 1) / 2, (hw[1] - 1) / 2))
  out = []
  for t in np.linspace(0.0, 1.0, max(int(n), 1)):
    p = (int(round(ci * (1 - t))), int(round(cj * (1 - t))))
    if p not in out:
      out.append(p)
  return out


def mirror_node(tap: str, image_hw: int | Sequence[int], position: Position) -> Position:
  """The node whose RF centre is nearest the mirror image, about the image's centre, of `position`'s
  RF centre: the true mirror position. (The grid mirror (h-1-i, w-1-j) is not it when the grid
  sits unevenly on the image, as inception_4c's does at 224 px: 14 px off.)"""
  hw = _image_hw(image_hw)
  y, x = receptive_field(tap, hw).centre(*position)
  return nearest_node(tap, hw, (hw[0] - 1 - y, hw[1] - 1 - x))


def erf_off_share(params, tap: str, image_hw: int | Sequence[int], positions: Sequence[Position], *,
                  key: jax.Array, num_samples: int = 4) -> np.ndarray:
  """Share of each node's effective-RF mass (Luo et al. 2016) that falls off the image.

  The ERF of the tap's centre node is measured on noise images of a larger canvas (the image plus
  a border of min(RF/2, image side), rounded to the stride), where it is not truncated; for a node
  whose RF centre sits at c in the image, the share is that map's mass outside the image window
  placed around the same centre. Summed over channels.

  Returns:
    float [P] in [0, 1].
  """
  hw = _image_hw(image_hw)
  rf = receptive_field(tap, hw)
  border = int(math.ceil(min(rf.size / 2, max(hw)) / rf.stride) * rf.stride)
  big = (hw[0] + 2 * border, hw[1] + 2 * border)
  node = nearest_node(tap, big, ((big[0] - 1) / 2, (big[1] - 1) / 2))
  erf = effective_rf(params, tap, None, [node], big, key=key, num_samples=num_samples, batch_size=num_samples)
  m = np.asarray(erf.maps[0], np.float64)
  cy, cx = (float(v) for v in np.asarray(erf.centre[0]))
  total = m.sum()
  out = []
  for p in positions:
    y, x = rf.centre(*p)
    top, left = int(round(cy - y)), int(round(cx - x))
    inside = m[max(top, 0):max(top + hw[0], 0), max(left, 0):max(left + hw[1], 0)].sum()
    out.append(1.0 - inside / total if total > 0 else float("nan"))
  return np.asarray(out)


def spatial_taps() -> tuple[str, ...]:
  """Taps with a spatial grid (everything but the classifier and softmax), in network order."""
  return tuple(l.name for l in googlenet.LAYERS if l.kind not in ("fc", "softmax"))


def check_spatial_tap(tap: str) -> None:
  """Raises UserError unless `tap` is a known tap with a spatial grid."""
  layer = googlenet.check_tap(tap)
  if layer.kind in ("fc", "softmax"):
    raise UserError(f"Tap {tap!r} has no spatial grid (it classifies), so there are no positions to map; "
                    "pick a spatial tap such as 'inception_4c/5x5' (anything from 'conv1/7x7_s2' to "
                    "'pool5/7x7_s1'; see rfspec.geometry.spatial_taps()).")


def trunk_taps() -> tuple[str, ...]:
  """The main-line spatial taps (no inception branches), in network order: conv1 ... pool5."""
  return tuple(t for t in spatial_taps() if not re.match(r"inception_\w+/", t) or t.endswith("/output"))


# ----------------------------------------------------------------------------- effective RF


class EffectiveRF(NamedTuple):
  """Effective receptive fields (Luo et al. 2016) of P nodes of one tap.

  Pixels are (y, x) = (row, col), pixel y's centre at coordinate y.

  Attributes:
    maps: float [P, H, W], mean over images of |d act / d input| summed over colour channels
      (the input being RGB in [0, 1]).
    centre: float [P, 2], the analytic RF centre (y, x) of each node.
    centroid: float [P, 2], the (y, x) centre of mass of `maps` (NaN if a map is all zero).
    centroid_shift: float [P], distance in px from `centre` to `centroid`.
    radius95: float [P], radius in px of the smallest disc around `centroid` holding >= 95 % of the
      map's mass (distances between pixel centres; 0 when one pixel holds 95 %).
  """

  maps: jax.Array
  centre: jax.Array
  centroid: jax.Array
  centroid_shift: jax.Array
  radius95: jax.Array


@jax.jit
def erf_stats(maps, centres):
  """Centroid, its distance from `centres`, and the 95 %-mass radius of each map.

  Args:
    maps: float [P, H, W], non-negative; pixel (y, x) = (row, col).
    centres: float [P, 2], reference points (y, x).

  Returns:
    (centroid [P, 2], centroid_shift [P], radius95 [P]); see `EffectiveRF`. The radius is measured
    around the centroid, so it describes spread, and `centroid_shift` describes displacement.
  """
  maps = jnp.asarray(maps, jnp.float32)
  _, H, W = maps.shape
  yy, xx = jnp.meshgrid(jnp.arange(H, dtype=jnp.float32), jnp.arange(W, dtype=jnp.float32), indexing="ij")

  def one(m, c):
    total = m.sum()
    centroid = jnp.stack([(m * yy).sum(), (m * xx).sum()]) / total
    dist = jnp.hypot(yy - centroid[0], xx - centroid[1]).ravel()
    order = jnp.argsort(dist)
    cum = jnp.cumsum(m.ravel()[order])
    k = jnp.searchsorted(cum, 0.95 * total)  # first pixel where the disc holds 95 %
    radius = dist[order][jnp.minimum(k, dist.size - 1)]
    return centroid, jnp.linalg.norm(centroid - c), jnp.where(total > 0, radius, jnp.nan)

  return jax.vmap(one)(maps, jnp.asarray(centres, jnp.float32))


@functools.partial(jax.jit, static_argnames=("tap", "batch_size"))
def _erf_maps(params, images, weights, positions, channel_weights, *, tap: str, batch_size: int):
  """Sum over images of weights[n] * |d act[n, i, j, :] . channel_weights / d images[n]|, summed over colour.

  images [N, H, W, 3] with N a multiple of batch_size; positions int [P, 2] of (i, j) = (row, col);
  channel_weights [C]. Returns [P, H, W]. One forward per batch, vmapped backward over positions.
  """
  model = googlenet.GoogLeNet()

  def act_fn(x):
    out = model.apply({"params": params}, preprocess.to_caffe(x), taps=(tap,))[tap]
    return out if out.ndim == 4 else out[:, None, None, :]  # classifier taps: a 1x1 grid

  def one_batch(total, batch):
    x, w = batch
    out, vjp = jax.vjp(act_fn, x)

    def grad_at(pos):
      # Each image's act depends only on that image, so one cotangent gives per-image gradients.
      ct = jnp.zeros_like(out).at[:, pos[0], pos[1], :].set(channel_weights.astype(out.dtype))
      (g,) = vjp(ct)
      return jnp.einsum("nhwc,n->hw", jnp.abs(g), w)

    return total + jax.vmap(grad_at)(positions), None

  n, H, W, _ = images.shape
  batches = (images.reshape(n // batch_size, batch_size, H, W, 3), weights.reshape(n // batch_size, batch_size))
  total, _ = jax.lax.scan(one_batch, jnp.zeros((positions.shape[0], H, W), jnp.float32), batches)
  return total


def _positions_array(rf: ReceptiveField, positions) -> np.ndarray:
  pos = np.asarray(positions)
  if pos.ndim == 1:
    pos = pos[None]
  if pos.ndim != 2 or pos.shape[1] != 2 or pos.shape[0] == 0 or not np.issubdtype(pos.dtype, np.integer):
    raise UserError(f"positions must be integer (i, j) = (row, col) pairs, shape [P, 2]; got {positions!r}.")
  for i, j in pos:
    rf.box(int(i), int(j))  # raises, naming the grid, if out of range
  return pos.astype(np.int32)


def effective_rf(params, tap: str, channel: int | None, positions, image_hw: int | Sequence[int] | None = None, *,
                 key: jax.Array | None = None, num_samples: int = 16, images=None,
                 batch_size: int = 4) -> EffectiveRF:
  """Effective receptive fields: mean |d act / d input| of nodes of `tap`, over noise or given images.

  Follows Luo et al. (2016): the gradient of one node's activation with respect to the input,
  in absolute value, summed over colour and averaged over inputs. All positions share one
  compiled call (the backward pass is vmapped over positions); channels and positions are traced,
  so only a new tap, image shape, image count or number of positions recompiles.

  Args:
    params: GoogLeNet params.
    tap: a name from `rfspec.TAPS`.
    channel: the node's channel, or None for the whole position (the sum over channels).
    positions: (i, j) = (row, col) on the tap's grid, one pair or int [P, 2].
    image_hw: input (H, W) in pixels for noise; may be None when `images` is given.
    key: `jax.random.key` for the noise images (uniform RGB in [0, 1]); needed if `images` is None.
    num_samples: number of noise images.
    images: optional float [N, H, W, 3] RGB in [0, 1] to average over instead of noise.
    batch_size: images per forward pass (memory vs. speed).

  Returns:
    `EffectiveRF` with maps [P, H, W] and per-node statistics.

  Raises:
    UserError: unknown tap, input too small, position outside the grid, channel out of range.
  """
  layer = googlenet.check_tap(tap)
  if images is not None:
    images = jnp.asarray(images, jnp.float32)
    if images.ndim == 3:
      images = images[None]
    if images.ndim != 4 or images.shape[-1] != 3:
      raise UserError(f"images must be [N, H, W, 3] RGB in [0, 1]; got shape {tuple(images.shape)}.")
    if image_hw is not None and _image_hw(image_hw) != tuple(images.shape[1:3]):
      raise UserError(f"image_hw={image_hw} does not match the images' {tuple(images.shape[1:3])}.")
    image_hw = tuple(images.shape[1:3])
  else:
    if image_hw is None or key is None:
      raise UserError("effective_rf needs image_hw and a key (jax.random.key) for noise, or images.")
    if num_samples < 1:
      raise UserError(f"num_samples must be >= 1, got {num_samples}.")
    image_hw = _image_hw(image_hw)
    images = jax.random.uniform(key, (num_samples, *image_hw, 3), jnp.float32)
  rf = receptive_field(tap, image_hw)
  pos = _positions_array(rf, positions)
  if channel is None:
    channel_weights = np.ones(layer.channels, np.float32)
  else:
    branch_tap(tap, channel)  # range check
    channel_weights = np.eye(layer.channels, dtype=np.float32)[channel]

  n = images.shape[0]
  batch_size = max(1, min(int(batch_size), n))
  pad = -n % batch_size  # zero-weight padding keeps the batch shape, hence one compile
  weights = jnp.concatenate([jnp.full((n,), 1.0 / n), jnp.zeros((pad,))]).astype(jnp.float32)
  images = jnp.concatenate([images, jnp.zeros((pad, *images.shape[1:]), images.dtype)])
  maps = _erf_maps(params, images, weights, jnp.asarray(pos), jnp.asarray(channel_weights), tap=tap,
                   batch_size=batch_size)
  centres = jnp.asarray(rf.centres()[pos[:, 0], pos[:, 1]], jnp.float32)
  centroid, shift, radius = erf_stats(maps, centres)
  return EffectiveRF(maps=maps, centre=centres, centroid=centroid, centroid_shift=shift, radius95=radius)


def probe_positions(tap: str, image_hw: int | Sequence[int]) -> dict[str, Position]:
  """The centre, edge and corner nodes (i, j) = (row, col) of a tap.

  "centre" is the node whose RF centre is nearest the image centre ((H-1)/2, (W-1)/2) in (y, x)
  pixels (Caffe's padding makes it differ from (h // 2, w // 2)); "edge" is the node in that row
  and column 0; "corner" is (0, 0).
  """
  image_hw = _image_hw(image_hw)
  i, j = nearest_node(tap, image_hw, ((image_hw[0] - 1) / 2, (image_hw[1] - 1) / 2))
  return {"centre": (i, j), "edge": (i, 0), "corner": (0, 0)}


def erf_summary(params, taps: Sequence[str], image_hw: int | Sequence[int], *, key: jax.Array,
                num_samples: int = 16, channel: int | None = None, batch_size: int = 4,
                progress=None) -> list[dict[str, Any]]:
  """ERF statistics at the centre, edge and corner nodes of each tap, over noise images.

  Every tap sees the same noise (one key). Positions are (i, j) = (row, col); pixels (y, x).

  Returns:
    One dict per (tap, node): tap, node ("centre" | "edge" | "corner"), position, rf_size,
    inside_fraction, centre, centroid, centroid_shift, radius95 (JSON-ready Python scalars).
  """
  image_hw = _image_hw(image_hw)
  rows = []
  for n, tap in enumerate(taps):
    if progress:
      progress(f"ERF {n + 1}/{len(taps)}: {tap}")
    probes = probe_positions(tap, image_hw)
    rf = receptive_field(tap, image_hw)
    erf = effective_rf(params, tap, channel, list(probes.values()), image_hw, key=key, num_samples=num_samples,
                       batch_size=batch_size)
    for p, (name, (i, j)) in enumerate(probes.items()):
      rows.append({
          "tap": tap, "node": name, "position": [i, j], "rf_size": rf.size,
          "inside_fraction": rf.inside_fraction(i, j),
          "centre": [float(v) for v in erf.centre[p]],
          "centroid": [float(v) for v in erf.centroid[p]],
          "centroid_shift": float(erf.centroid_shift[p]),
          "radius95": float(erf.radius95[p]),
      })
  return rows


# ----------------------------------------------------------------------------- census


def census(sizes: Sequence[int | Sequence[int]], taps: Sequence[str] | None = None) -> list[dict[str, Any]]:
  """How much of each tap's RF falls off the image, for each input size.

  Args:
    sizes: input sizes, each an int (square) or (H, W).
    taps: taps to include (default: every spatial tap, `spatial_taps()`).

  Returns:
    One dict per (size, tap), sizes outer, taps in network order: image_hw, tap, depth (index in
    `rfspec.TAPS`), rf_size, stride, offset, grid, pct_fully_inside (share of positions whose RF
    box lies wholly inside the image, in %), mean_inside_fraction (mean over positions of the
    share of RF area inside the image).

  Raises:
    UserError: unknown tap, or a size too small for a tap (names the smallest size that works).
  """
  taps = spatial_taps() if taps is None else googlenet.normalize_taps(taps)
  rows = []
  for size in sizes:
    hw = _image_hw(size)
    for tap in taps:
      rf = receptive_field(tap, hw)
      rows.append({
          "image_hw": list(hw), "tap": tap, "depth": googlenet.TAPS.index(tap), "rf_size": rf.size,
          "stride": rf.stride, "offset": rf.offset, "grid": list(rf.grid),
          "pct_fully_inside": 100.0 * float(rf.fully_inside().mean()),
          "mean_inside_fraction": float(rf.inside_fractions().mean()),
      })
  return rows


def tap_filename(tap: str) -> str:
  """A file-name-safe form of a tap name: "inception_4c/output" -> "inception_4c_output"."""
  return re.sub(r"[^A-Za-z0-9_.-]+", "_", tap)

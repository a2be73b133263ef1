"""Random image transforms for transformation-robust visualisation.

Each factory returns a `Transform`, a NamedTuple holding one pure function `apply(key, image)`
on a single image float [H, W, 3] indexed (y, x) = (row, col). The key is the caller's: under
`vmap` every batch element passes its own key and so draws its own shift, scale and angle
(Lucid and Lucent share one draw across the batch).

Geometry is kept: `standard` pads, jitters, scales and rotates about the image centre, then
crops back to (H, W), so node (i, j) of a tap still looks at the same part of the picture up to
the random jitter. Everything is differentiable in the image (rolls, pads and bilinear
resampling).
"""

from __future__ import annotations

import math
from typing import Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp

from rfspec.models import preprocess

__all__ = ["Transform", "compose", "crop", "identity", "jitter", "pad", "random_rotate",
           "random_scale", "random_scale_rotate", "resample", "standard"]


class Transform(NamedTuple):
  """A random image transform.

  Attributes:
    apply: (key, image [H, W, 3]) -> image [H', W', 3]; pure, so it can be jitted and vmapped.
  """

  apply: Callable[[jax.Array, jax.Array], jax.Array]


def identity() -> Transform:
  """The no-op transform."""
  return Transform(lambda key, image: image)


def compose(*transforms: Transform) -> Transform:
  """Applies `transforms` in order, each with its own key split from the caller's."""
  transforms = tuple(t for t in transforms if t is not None)
  if not transforms:
    return identity()

  def apply(key, image):
    for k, t in zip(jax.random.split(key, len(transforms)), transforms):
      image = t.apply(k, image)
    return image

  return Transform(apply)


def pad(width: int, *, value: float = 0.5) -> Transform:
  """Pads `width` px of constant `value` on every side: [H, W, 3] -> [H + 2w, W + 2w, 3].

  A grey border lets later jitter, scale and rotation bring in neutral pixels instead of
  wrapped or smeared image content; `crop` removes it again.
  """
  if width == 0:
    return identity()

  def apply(key, image):
    del key
    return jnp.pad(image, ((width, width), (width, width), (0, 0)), constant_values=value)

  return Transform(apply)


def jitter(max_shift: int, *, wrap: bool = False) -> Transform:
  """Shifts the image by a random integer (dy, dx), each uniform in [-max_shift, max_shift].

  wrap=True rolls, as DeepDream does (rolling before the forward pass and back after the step
  equals differentiating through the roll). The default shifts without wrapping and fills the
  uncovered border with the net's zero input (the ImageNet mean colour): with a roll, a node
  whose RF touches the top edge also sees the bottom rows, which confounds exactly the
  RF-position effects rfspec measures.
  """
  if max_shift == 0:
    return identity()
  m = int(max_shift)

  def apply(key, image):
    shift = jax.random.randint(key, (2,), -m, m + 1)
    if wrap:
      return jnp.roll(image, (shift[0], shift[1]), axis=(0, 1))
    fill = preprocess.from_caffe(jnp.zeros((3,), image.dtype))
    padded = jnp.pad(image - fill, ((m, m), (m, m), (0, 0))) + fill
    return jax.lax.dynamic_slice(padded, (m - shift[0], m - shift[1], 0), image.shape)

  return Transform(apply)


def resample(image, matrix):
  """Bilinear resample about the image centre: out(p) = image(c + matrix @ (p - c)).

  Args:
    image: float [H, W, C], indexed (y, x).
    matrix: [2, 2] acting on (y, x) offsets from the centre c = ((H - 1) / 2, (W - 1) / 2).
      The identity leaves the image unchanged; 0.5 * I zooms in by 2.

  Returns:
    float [H, W, C]; samples beyond the border take the nearest edge pixel.
  """
  h, w, _ = image.shape
  yy, xx = jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                        indexing="ij")
  cy, cx = (h - 1) / 2.0, (w - 1) / 2.0
  dy, dx = yy - cy, xx - cx
  sy = jnp.clip(cy + matrix[0, 0] * dy + matrix[0, 1] * dx, 0, h - 1)
  sx = jnp.clip(cx + matrix[1, 0] * dy + matrix[1, 1] * dx, 0, w - 1)
  # One gather of the 4 neighbours for all channels at once: this compiles much faster than
  # jax.scipy.ndimage.map_coordinates per channel, and gives the same values (order=1, "nearest").
  y0, x0 = jnp.floor(sy), jnp.floor(sx)
  wy, wx = (sy - y0)[..., None], (sx - x0)[..., None]
  y0, x0 = y0.astype(jnp.int32), x0.astype(jnp.int32)
  y1, x1 = jnp.minimum(y0 + 1, h - 1), jnp.minimum(x0 + 1, w - 1)
  top = image[y0, x0] * (1 - wx) + image[y0, x1] * wx
  bottom = image[y1, x0] * (1 - wx) + image[y1, x1] * wx
  return top * (1 - wy) + bottom * wy


def _scale_matrix(s):
  return jnp.eye(2, dtype=jnp.float32) / s


def _rotation_matrix(theta):
  # Inverse rotation by theta (radians): each output pixel looks up where it came from.
  cos, sin = jnp.cos(theta), jnp.sin(theta)
  return jnp.stack([jnp.stack([cos, sin]), jnp.stack([-sin, cos])])


def _draw_scale(key, scales):
  return jnp.asarray(scales, jnp.float32)[jax.random.randint(key, (), 0, len(scales))]


def _draw_angle(key, max_degrees):
  return jax.random.uniform(key, (), jnp.float32, -max_degrees, max_degrees) * (math.pi / 180.0)


def random_scale(scales: Sequence[float]) -> Transform:
  """Zooms about the centre by a factor drawn uniformly from `scales` (> 1 enlarges content).

  The output keeps the input size, so geometry about the centre is kept.
  """
  scales = tuple(float(s) for s in scales)
  if not scales or all(s == 1.0 for s in scales):
    return identity()
  return Transform(lambda key, image: resample(image, _scale_matrix(_draw_scale(key, scales))))


def random_rotate(max_degrees: float) -> Transform:
  """Rotates about the centre by an angle uniform in [-max_degrees, max_degrees]."""
  if max_degrees == 0:
    return identity()
  return Transform(lambda key, image: resample(image, _rotation_matrix(_draw_angle(key, max_degrees))))


def random_scale_rotate(scales: Sequence[float], max_degrees: float) -> Transform:
  """`random_scale` then `random_rotate` as one resample (one interpolation, less blur)."""
  scales = tuple(float(s) for s in scales)
  if not scales or all(s == 1.0 for s in scales):
    return random_rotate(max_degrees)
  if max_degrees == 0:
    return random_scale(scales)

  def apply(key, image):
    k_scale, k_angle = jax.random.split(key)
    # Output -> source: undo the rotation, then undo the zoom.
    m = _scale_matrix(_draw_scale(k_scale, scales)) @ _rotation_matrix(_draw_angle(k_angle, max_degrees))
    return resample(image, m)

  return Transform(apply)


def crop(image_hw: tuple[int, int]) -> Transform:
  """Centre crop to (H, W) = `image_hw` (undoes `pad`); the input must be at least that big."""
  h, w = image_hw

  def apply(key, image):
    del key
    top, left = (image.shape[0] - h) // 2, (image.shape[1] - w) // 2
    if top < 0 or left < 0:
      raise ValueError(f"crop to {h}x{w} px needs an image at least that big; got "
                       f"{image.shape[0]}x{image.shape[1]}.")
    return image[top:top + h, left:left + w]

  return Transform(apply)


def standard(image_hw: tuple[int, int], *, pad_width: int = 0, max_shift: int = 0,
             scales: Sequence[float] = (), rotate_degrees: float = 0.0, wrap: bool = False) -> Transform:
  """The transform chain of a visualisation recipe: pad, jitter, scale, rotate, crop back.

  Args:
    image_hw: (H, W) of the input and the output, in pixels.
    pad_width: grey border (px) added before the random transforms and cropped off after.
    max_shift: jitter, the largest shift (px) along y and along x.
    scales: candidate zoom factors, one drawn per call ((), for none).
    rotate_degrees: largest rotation angle in degrees (0 for none).
    wrap: jitter rolls (DeepDream) instead of shifting in the net's zero input.

  Returns:
    A `Transform` mapping [H, W, 3] -> [H, W, 3]; the exact identity when every option is off.
  """
  chain = [pad(pad_width), jitter(max_shift, wrap=wrap), random_scale_rotate(scales, rotate_degrees)]
  if pad_width:
    chain.append(crop(image_hw))
  return compose(*chain)

"""Image parameterisations: what the optimiser actually updates, and how it becomes an image.

Each factory returns a `Param`, a NamedTuple of pure functions (the `optax.GradientTransformation`
pattern): `init(key) -> z`, `to_image(z) -> [H, W, 3]` RGB in [0, 1], and `project(z) -> z`, run
after every optimiser step to keep z in its valid set. Images are (y, x) = (row, col) indexed.

- `pixel`: z is the RGB image itself, starting from random dots around grey; the DeepDream /
  Inceptionism parameterisation.
- `data_dots`: z is the RGB image itself, starting from Zipser (2015)'s grey random dots, which
  the paper's script sets in Caffe's data space (see `rfspec.recipes`).
- `fourier`: z is a 1/f-scaled spectrum, decoded with decorrelated colour and a sigmoid; the
  Lucid parameterisation (Olah et al., 2017, "Feature Visualization").
"""

from __future__ import annotations

from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["COLOR_CORRELATION_SQRT", "Param", "data_dots", "decorrelate_colour", "fourier", "pixel"]


class Param(NamedTuple):
  """An image parameterisation: pure functions, safe to jit and vmap.

  Attributes:
    init: key -> z, a fresh random parameter (float32, parameterisation-specific shape).
    to_image: z -> float32 [H, W, 3] RGB in [0, 1].
    project: z -> z, applied after each optimiser step (e.g. clip to the valid range).
  """

  init: Callable[[jax.Array], jax.Array]
  to_image: Callable[[jax.Array], jax.Array]
  project: Callable[[jax.Array], jax.Array]


def pixel(image_hw: tuple[int, int], *, init_scale: float = 0.1, centre: float = 0.5) -> Param:
  """Pixel parameterisation with a random-dot start: z is the RGB image in [0, 1].

  Args:
    image_hw: (H, W) in pixels.
    init_scale: half-width of the uniform noise around `centre` (a "random dot pattern").
    centre: the grey level the noise is centred on.

  Returns:
    A `Param` with z float32 [H, W, 3]; `to_image` and `project` are the identity (the engine
    clips to `VisConfig.clip` after each step).
  """
  h, w = image_hw
  lo, hi = max(centre - init_scale, 0.0), min(centre + init_scale, 1.0)

  def init(key):
    return jax.random.uniform(key, (h, w, 3), jnp.float32, lo, hi)

  return Param(init=init, to_image=lambda z: z, project=lambda z: z)


def data_dots(image_hw: tuple[int, int], *, amplitude: float = 225.0,
              mean_bgr: tuple[float, float, float] = (104.0, 116.0, 122.0)) -> Param:
  """Zipser (2015)'s start: grey random dots set directly in Caffe's data space.

  The paper's script draws one plane `amplitude * U[0, 1)` of size H x W, copies it to all three
  channels and sets it as the data blob (BGR, 0-255, minus `mean_bgr`). In RGB [0, 1] units that
  is `(plane + mean) / 255` per channel: the same offset from the mean colour in every channel,
  and mostly brighter than white at amplitude 225 (not clipped before the first forward).

  Args:
    image_hw: (H, W) in pixels.
    amplitude: range of the dots in 0-255 units (the script's 225).
    mean_bgr: the data-space mean (the script's (104, 116, 122)); the net must be fed with the
      same mean (`VisConfig.caffe_mean`) to see the script's blob.

  Returns:
    A `Param` with z float32 [H, W, 3] RGB, `to_image` and `project` the identity.
  """
  h, w = image_hw
  # numpy, not jnp: a Param is cached per VisConfig (engine._parts) and may be built inside a
  # trace, where jnp.asarray gives a tracer that would leak into every later call.
  mean_rgb = np.asarray(mean_bgr, np.float32)[::-1].copy()

  def init(key):
    plane = amplitude * jax.random.uniform(key, (h, w, 1), jnp.float32)
    return (plane + mean_rgb) / 255.0

  return Param(init=init, to_image=lambda z: z, project=lambda z: z)


# Square root of the ImageNet RGB colour covariance (its SVD factor), as published with Lucid
# (lucid/optvis/param/color.py). Multiplying i.i.d. channels by it gives natural colour
# correlations, so the optimiser works in a decorrelated colour space.
COLOR_CORRELATION_SQRT = np.array([[0.26, 0.09, 0.02],
                                   [0.27, 0.00, -0.05],
                                   [0.27, -0.09, 0.03]], np.float32)


def decorrelate_colour(x):
  """Maps decorrelated colour [..., 3] to RGB [..., 3] (unbounded) via `COLOR_CORRELATION_SQRT`.

  The matrix is normalised by its largest column norm so that no channel is amplified.
  """
  m = COLOR_CORRELATION_SQRT / np.max(np.linalg.norm(COLOR_CORRELATION_SQRT, axis=0))
  return x @ jnp.asarray(m.T, x.dtype)


def _fft_freqs(h: int, w: int) -> np.ndarray:
  """|f| in cycles/px of the rfft2 grid [h, w // 2 + 1]."""
  fy = np.fft.fftfreq(h)[:, None]
  fx = np.fft.rfftfreq(w)[None, :]
  return np.sqrt(fy * fy + fx * fx)


def fourier(image_hw: tuple[int, int], *, init_scale: float = 0.01, decay_power: float = 1.0,
            decorrelate: bool = True) -> Param:
  """Fourier parameterisation with a 1/f spectrum, decorrelated colour and a sigmoid.

  z holds the real and imaginary parts of a per-channel rfft2 spectrum. Each frequency is scaled
  by 1/|f|^decay_power (natural images have a ~1/f amplitude spectrum), so plain gradient steps
  are roughly whitened across scales.

  Args:
    image_hw: (H, W) in pixels.
    init_scale: std of the initial spectrum coefficients.
    decay_power: exponent of the 1/|f| scaling (0 = white).
    decorrelate: map channels through `decorrelate_colour` before the sigmoid.

  Returns:
    A `Param` with z float32 [2, H, W // 2 + 1, 3] and images RGB in (0, 1).
  """
  h, w = image_hw
  freqs = _fft_freqs(h, w)
  # The DC term would be infinite; cap it at the lowest non-zero frequency of the image.
  scale = 1.0 / np.maximum(freqs, 1.0 / max(h, w)) ** decay_power
  scale = np.asarray((scale * np.sqrt(h * w))[..., None], np.float32)  # [h, wf, 1]; numpy: see data_dots

  def init(key):
    return init_scale * jax.random.normal(key, (2, *freqs.shape, 3), jnp.float32)

  def to_image(z):
    spectrum = jax.lax.complex(z[0], z[1]) * scale
    x = jnp.fft.irfft2(spectrum, s=(h, w), axes=(0, 1)).astype(jnp.float32)
    x = x / 4.0  # keeps the initial image near grey, as in Lucid
    if decorrelate:
      x = decorrelate_colour(x)
    return jax.nn.sigmoid(x)

  return Param(init=init, to_image=to_image, project=lambda z: z)

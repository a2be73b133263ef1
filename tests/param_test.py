"""Image parameterisations: shapes, value ranges, determinism per key, 1/f scaling, gradients."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from rfspec import param


class PixelTest(absltest.TestCase):

  def test_random_dot_start_around_grey(self):
    p = param.pixel((20, 30), init_scale=0.1)
    z = p.init(jax.random.key(0))
    self.assertEqual(z.shape, (20, 30, 3))
    self.assertEqual(z.dtype, jnp.float32)
    self.assertGreaterEqual(float(z.min()), 0.4)
    self.assertLessEqual(float(z.max()), 0.6)
    self.assertGreater(float(z.std()), 0.03)  # dots, not flat grey
    np.testing.assert_array_equal(p.to_image(z), z)

  def test_keys(self):
    p = param.pixel((8, 8))
    np.testing.assert_array_equal(p.init(jax.random.key(1)), p.init(jax.random.key(1)))
    self.assertFalse(np.array_equal(p.init(jax.random.key(1)), p.init(jax.random.key(2))))

  def test_the_engine_clips_pixels_to_the_recipes_range(self):
    from rfspec import engine

    p = param.pixel((2, 2))
    z = jnp.array([-0.5, 0.25, 1.5]).reshape(1, 1, 3) * jnp.ones((2, 2, 1))
    np.testing.assert_array_equal(p.project(z), z)  # the clip is the recipe's, not the param's
    cfg = engine.VisConfig(tap="conv2/3x3", image_hw=(40, 40))  # deepdream: clip to [0, 1]
    np.testing.assert_array_equal(engine.after_step(z, cfg)[0, 0], [0.0, 0.25, 1.0])


class FourierTest(parameterized.TestCase):

  @parameterized.parameters((16, 16), (15, 21))
  def test_shapes_and_range(self, h, w):
    p = param.fourier((h, w))
    z = p.init(jax.random.key(0))
    self.assertEqual(z.shape, (2, h, w // 2 + 1, 3))
    img = p.to_image(z)
    self.assertEqual(img.shape, (h, w, 3))
    self.assertEqual(img.dtype, jnp.float32)
    self.assertTrue(bool(jnp.all((img > 0) & (img < 1))))
    # The start is a faint pattern around grey.
    self.assertAlmostEqual(float(img.mean()), 0.5, delta=0.05)
    self.assertGreater(float(img.std()), 1e-4)
    np.testing.assert_array_equal(p.project(z), z)

  def test_one_over_f_scaling(self):
    """A unit coefficient at a low frequency moves pixels more than one at a high frequency."""
    h = w = 32
    p = param.fourier((h, w), decorrelate=False)
    def amplitude(fy, fx):
      z = jnp.zeros((2, h, w // 2 + 1, 3)).at[0, fy, fx, 0].set(0.01)
      return float(jnp.abs(p.to_image(z)[..., 0] - 0.5).max())
    low, high = amplitude(1, 0), amplitude(8, 8)
    self.assertGreater(low, 5 * high)  # |f| ratio is 8 * sqrt(2) / 1

  def test_decorrelated_colour_mixes_channels(self):
    p = param.fourier((8, 8), decorrelate=True)
    z = jnp.zeros((2, 8, 5, 3)).at[0, 0, 0, 0].set(0.1)  # only the first decorrelated channel
    img = p.to_image(z) - 0.5
    self.assertTrue(bool(jnp.all(jnp.abs(img[0, 0]) > 1e-4)))  # it moves all three of R, G, B
    m = param.COLOR_CORRELATION_SQRT
    out = param.decorrelate_colour(jnp.eye(3))  # rows: images of the unit vectors
    self.assertAlmostEqual(float(jnp.linalg.norm(out, axis=1).max()), 1.0, places=5)
    np.testing.assert_allclose(out, (m / np.linalg.norm(m, axis=0).max()).T, rtol=1e-6)

  def test_gradient_reaches_every_coefficient_group(self):
    p = param.fourier((12, 12))
    z = p.init(jax.random.key(3))
    g = jax.grad(lambda z: p.to_image(z)[3, 4, 1])(z)
    self.assertTrue(bool(jnp.all(jnp.isfinite(g))))
    self.assertGreater(float(jnp.abs(g[0]).sum()), 0)
    self.assertGreater(float(jnp.abs(g[1]).sum()), 0)


class BuiltInsideJitTest(absltest.TestCase):

  def test_a_start_first_made_under_jit_still_works_eagerly(self):
    # The engine caches each config's Param (engine._parts); if the first use is inside jit (the
    # docstring calls initial_image jittable), the cached Param must hold no tracer: the eager call
    # after it used to raise UnexpectedTracerError (dots' mean colour; Fourier's 1/f scale).
    import rfspec

    for recipe in ("zipser2015", "lucid"):  # param "dots", then "fourier"
      cfg = rfspec.VisConfig.from_recipe(recipe, tap="conv2/3x3", image_hw=(29, 31))  # a config no other test makes
      traced = jax.jit(rfspec.initial_image, static_argnums=1)(0, cfg)
      eager = rfspec.initial_image(0, cfg)
      np.testing.assert_allclose(eager, traced, atol=1e-6, err_msg=recipe)


if __name__ == "__main__":
  absltest.main()

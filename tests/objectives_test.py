"""Objectives: Σ mask·act has gradient = mask (the paper's rule), pre-ReLU taps, regularisers."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from rfspec import objectives
from rfspec.models import googlenet
from tests.conftest import tiny_params

HW = (40, 40)


def _images(n=2, seed=0):
  return jax.random.uniform(jax.random.key(seed), (n, *HW, 3))


class NodeObjectiveTest(absltest.TestCase):

  def test_value_and_gradient_is_the_mask(self):
    act = jax.random.normal(jax.random.key(0), (2, 5, 6, 4))
    mask = np.zeros((5, 6, 4), np.float32)
    mask[1, 2, 3] = 1.0
    mask[4, 0, 3] = 1.0
    obj = objectives.node_objective(act, mask)
    np.testing.assert_allclose(obj, act[:, 1, 2, 3] + act[:, 4, 0, 3], rtol=1e-6)
    # "Gradients for the chosen nodes are set to one, all others zero."
    g = jax.grad(lambda a: objectives.node_objective(a, mask).sum())(act)
    np.testing.assert_array_equal(g, np.broadcast_to(mask, act.shape))

  def test_unbatched_and_float32(self):
    act = jnp.ones((3, 3, 2), jnp.bfloat16)
    obj = objectives.node_objective(act, np.ones((3, 3, 2)))
    self.assertEqual(obj.shape, ())
    self.assertEqual(obj.dtype, jnp.float32)
    self.assertEqual(float(obj), 18.0)


class TapActivationTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.params = tiny_params()

  @parameterized.parameters("conv1/7x7_s2", "conv2/3x3", "inception_3a/output")
  def test_pre_relu_is_the_blob_before_relu(self, tap):
    images = _images()
    post = objectives.tap_activation(self.params, images, tap)
    pre = objectives.tap_activation(self.params, images, tap, pre_relu=True)
    want = googlenet.forward(self.params, images, (tap,))[tap]
    np.testing.assert_allclose(post, want, rtol=1e-5, atol=1e-4)
    self.assertEqual(pre.shape, post.shape)
    np.testing.assert_allclose(jax.nn.relu(pre), post, rtol=1e-4, atol=1e-3)
    self.assertLess(float(pre.min()), 0.0)  # the ReLU really clipped something

  def test_pre_relu_of_pool_and_lrn_taps_is_post(self):
    images = _images(1)
    for tap in ("pool2/3x3_s2", "conv2/norm2"):
      np.testing.assert_array_equal(objectives.tap_activation(self.params, images, tap, pre_relu=True),
                                    objectives.tap_activation(self.params, images, tap))

  def test_pre_relu_gradient_lives_where_post_is_dead(self):
    images = _images(1)
    tap = "conv2/3x3"
    pre = objectives.tap_activation(self.params, images, tap, pre_relu=True)
    i, j, c = np.unravel_index(int(jnp.argmin(pre[0])), pre.shape[1:])  # a node that is off
    mask = np.zeros(pre.shape[1:], np.float32)
    mask[i, j, c] = 1.0
    grad = lambda pre_relu: jax.grad(lambda x: objectives.node_objective(
        objectives.tap_activation(self.params, x, tap, pre_relu=pre_relu), mask).sum())(images)
    self.assertEqual(float(jnp.abs(grad(False)).sum()), 0.0)
    self.assertGreater(float(jnp.abs(grad(True)).sum()), 0.0)


class RegularisersTest(absltest.TestCase):

  def test_l2_and_tv(self):
    grey = jnp.full((1, 8, 8, 3), 0.5)
    self.assertEqual(float(objectives.l2(grey)[0]), 0.0)
    self.assertEqual(float(objectives.total_variation(grey)[0]), 0.0)
    self.assertAlmostEqual(float(objectives.l2(jnp.ones((8, 8, 3)))), 0.25)
    stripes = jnp.tile(jnp.array([0.0, 1.0]), 4)[None, :, None] * jnp.ones((8, 1, 3))
    self.assertAlmostEqual(float(objectives.total_variation(stripes)), 1.0)  # dx = 1, dy = 0
    noise = _images(1)
    self.assertGreater(float(objectives.total_variation(noise)[0]), 0.3)


if __name__ == "__main__":
  absltest.main()

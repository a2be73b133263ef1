"""rfspec.models.preprocess against Caffe's convention, written out by hand from ../shared/README.md:
RGB -> BGR, 0-255, minus the mean B 104, G 117, R 123."""

import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from rfspec.models import preprocess


class ToCaffeTest(parameterized.TestCase):

  def test_single_pixels_by_hand(self):
    rgb = np.array([[[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.5, 0.25, 0.75]]], np.float32)  # [1, 3, 3]
    want = np.array([[[0 - 104, 0 - 117, 255 - 123],           # red: only the R (last) channel is lit
                      [255 - 104, 0 - 117, 0 - 123],           # blue: only the B (first) channel
                      [191.25 - 104, 63.75 - 117, 127.5 - 123]]], np.float32)
    np.testing.assert_allclose(np.asarray(preprocess.to_caffe(jnp.asarray(rgb))), want, atol=1e-4)

  def test_mean_is_caffes_bgr_mean(self):
    np.testing.assert_array_equal(preprocess.MEAN_BGR, [104.0, 117.0, 123.0])
    grey = np.full((2, 2, 3), 117.0 / 255.0, np.float32)  # G at its mean -> 0
    out = np.asarray(preprocess.to_caffe(jnp.asarray(grey)))
    np.testing.assert_allclose(out[..., 1], 0.0, atol=1e-4)
    np.testing.assert_allclose(out[..., 0], 13.0, atol=1e-4)   # 117 - 104
    np.testing.assert_allclose(out[..., 2], -6.0, atol=1e-4)   # 117 - 123

  def test_other_mean(self):
    out = preprocess.to_caffe(jnp.zeros((1, 1, 3)), mean_bgr=np.array([1.0, 2.0, 3.0], np.float32))
    np.testing.assert_allclose(np.asarray(out), [[[-1.0, -2.0, -3.0]]])

  @parameterized.parameters(((4, 5, 3),), ((2, 4, 5, 3),), ((2, 3, 4, 5, 3),))
  def test_any_leading_shape_and_inverse(self, shape):
    rgb = np.random.default_rng(0).uniform(size=shape).astype(np.float32)
    caffe = preprocess.to_caffe(jnp.asarray(rgb))
    self.assertEqual(caffe.shape, shape)
    self.assertEqual(caffe.dtype, jnp.float32)
    np.testing.assert_allclose(np.asarray(preprocess.from_caffe(caffe)), rgb, atol=1e-6)

  def test_from_caffe_does_not_clip(self):
    out = preprocess.from_caffe(jnp.full((1, 1, 3), 300.0))
    self.assertTrue(np.all(np.asarray(out) > 1.0))

  def test_keeps_bfloat16(self):
    out = preprocess.to_caffe(jnp.ones((1, 2, 2, 3), jnp.bfloat16))
    self.assertEqual(out.dtype, jnp.bfloat16)
    np.testing.assert_allclose(np.asarray(out, np.float32)[0, 0, 0], [151.0, 138.0, 132.0], atol=1.0)


if __name__ == "__main__":
  absltest.main()

"""googlenet.forward's input checks: 0-255 and integer images are refused with the fix, shapes named as given."""

import re

import jax
import numpy as np
from absl.testing import absltest, parameterized

from rfspec.errors import UserError
from rfspec.models import googlenet
from tests.conftest import tiny_params

TAP = "conv1/7x7_s2"


class ForwardInputTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("uint8", np.full((1, 32, 32, 3), 128, np.uint8)),
      ("int32", np.full((1, 32, 32, 3), 1, np.int32)),
      ("bool", np.ones((1, 32, 32, 3), bool)),
  )
  def test_integer_images_are_refused_with_divide_by_255(self, images):
    with self.assertRaisesRegex(UserError, r"dtype .*divide by 255"):
      googlenet.forward({}, images, taps=TAP)

  def test_0_255_floats_are_refused_with_divide_by_255(self):
    images = np.linspace(0, 255, 32 * 32 * 3, dtype=np.float32).reshape(1, 32, 32, 3)
    with self.assertRaisesRegex(UserError, r"values in \[0, 255\].*divide by 255"):
      googlenet.forward({}, images, taps=TAP)

  def test_unbatched_bad_shape_names_its_own_shape(self):
    with self.assertRaisesRegex(UserError, re.escape("got shape (40, 40, 4)")):
      googlenet.forward({}, np.zeros((40, 40, 4), np.float32), taps=TAP)
    with self.assertRaisesRegex(UserError, re.escape("got shape (2, 40, 40)")):
      googlenet.forward({}, np.zeros((2, 40, 40), np.float32), taps=TAP)

  def test_images_in_range_and_slight_overshoot_run(self):
    # Optimised images overshoot [0, 1] a little; that is not a units mistake.
    params = tiny_params()
    images = np.random.default_rng(0).uniform(-0.3, 1.3, (2, 32, 32, 3)).astype(np.float32)
    out = googlenet.forward(params, images, taps=TAP)[TAP]
    self.assertEqual(out.shape, (2, 16, 16, 64))
    one = googlenet.forward(params, images[0], taps=TAP)[TAP]  # unbatched in, unbatched out
    np.testing.assert_array_equal(one, out[0])

  def test_traced_images_skip_the_value_check(self):
    # Under jit the values are unknown; shape and dtype are still checked.
    jax.jit(googlenet.check_images)(np.full((1, 8, 8, 3), 300.0, np.float32))
    with self.assertRaisesRegex(UserError, "dtype"):
      jax.jit(googlenet.check_images)(np.zeros((1, 8, 8, 3), np.int32))


if __name__ == "__main__":
  absltest.main()

"""googlenet.forward refuses, as one paragraph, inputs it cannot run: an empty batch, and work that
cannot fit in memory (checked on the static shapes, before the images are copied or compiled)."""

from unittest import mock

import numpy as np
from absl.testing import absltest, parameterized

from rfspec import memory
from rfspec.errors import UserError
from rfspec.models import googlenet

TAP = "conv1/7x7_s2"


class ForwardChecksTest(parameterized.TestCase):

  @parameterized.named_parameters(("no_images", (0, 32, 32, 3)), ("no_rows", (2, 0, 32, 3)),
                                  ("unbatched_no_columns", (32, 0, 3)))
  def test_empty_input_is_a_user_error(self, shape):
    with self.assertRaisesRegex(UserError, r"images is empty \(shape .*N >= 1") as cm:
      googlenet.forward({}, np.zeros(shape, np.float32), taps=TAP)
    self.assertNotIn("\n", str(cm.exception))

  def test_too_big_for_memory_is_refused_before_the_net_runs(self):
    images = np.broadcast_to(np.float32(0.5), (4, 3000, 3000, 3))  # a view: no memory
    with mock.patch.object(memory, "available_bytes", return_value=(1 << 30, "a test limit")), \
        mock.patch.object(googlenet, "_forward", side_effect=AssertionError("ran the net")), \
        self.assertRaisesRegex(UserError, r"4 image\(s\) of 3000x3000 px up to 'conv1/7x7_s2'.*1.1 GB of a test limit"):
      googlenet.forward({}, images, taps=TAP)

  def test_unbatched_counts_as_one_image(self):
    need = memory.estimate_forward_bytes((64, 64), 1, (TAP,))
    with mock.patch.object(memory, "available_bytes", return_value=(need, "a test limit")), \
        mock.patch.object(googlenet, "_forward", return_value={TAP: np.zeros((1, 32, 32, 64), np.float32)}):
      out = googlenet.forward({}, np.zeros((64, 64, 3), np.float32), taps=TAP)
    self.assertEqual(out[TAP].shape, (32, 32, 64))


if __name__ == "__main__":
  absltest.main()

"""Node masks and position helpers: shapes, one-hot content, (row, col) order, clear errors."""

import re

import numpy as np
from absl.testing import absltest, parameterized

from rfspec.errors import UserError
from rfspec import masks

TAP, HW = "conv2/3x3", (48, 64)  # grid 12 x 16 nodes, 192 channels


class NodeMaskTest(parameterized.TestCase):

  def test_single_node_is_one_hot_at_row_col(self):
    m = masks.node_mask(TAP, 7, HW, (3, 10))
    self.assertEqual(m.shape, (12, 16, 192))
    self.assertEqual(m.dtype, np.float32)
    self.assertEqual(m.sum(), 1.0)
    self.assertEqual(m[3, 10, 7], 1.0)  # (i, j) = (row, col), not (x, y)

  def test_none_tiles_the_whole_channel(self):
    m = masks.node_mask(TAP, 5, HW)
    np.testing.assert_array_equal(m[..., 5], np.ones((12, 16)))
    self.assertEqual(m.sum(), 12 * 16)

  def test_set_of_nodes(self):
    m = masks.node_mask(TAP, 0, HW, [(0, 0), (11, 15), (0, 0)])
    self.assertEqual(m.sum(), 2.0)
    self.assertEqual(m[11, 15, 0], 1.0)
    np.testing.assert_array_equal(masks.node_mask(TAP, 0, HW, np.array([[0, 0], [11, 15]])), m)

  def test_node_masks_stacks_one_per_position(self):
    ms = masks.node_masks(TAP, 2, HW, [(1, 2), (3, 4)])
    self.assertEqual(ms.shape, (2, 12, 16, 192))
    self.assertEqual(ms[1, 3, 4, 2], 1.0)
    self.assertEqual(ms.sum(), 2.0)

  def test_classifier_tap_is_a_1x1_grid(self):
    m = masks.node_mask("loss3/classifier", 281, (224, 224))
    self.assertEqual(m.shape, (1, 1, 1000))
    self.assertEqual(m[0, 0, 281], 1.0)

  @parameterized.named_parameters(
      ("channel_too_big", dict(channel=192), "192 channels"),
      ("channel_negative", dict(channel=-1), "0..191"),
      ("channel_float", dict(channel=1.5), "channel"),
      ("row_outside", dict(position=(12, 0)), "12x16"),
      ("col_outside", dict(position=(0, 16)), "cols 0..15"),
      ("negative_position", dict(position=(-1, 0)), "outside"),
      ("not_a_position", dict(position="centre"), "(row, col)"),
      ("empty_list", dict(position=[]), "empty"),
      ("unknown_tap", dict(tap="conv2/3x4"), "conv2/3x3"),
      ("image_too_small", dict(image_hw=(2, 2)), "at least"),
      ("bad_hw", dict(image_hw=(48,)), "(H, W)"),
  )
  def test_bad_input_names_the_fix(self, override, needle):
    kwargs = dict(tap=TAP, channel=0, image_hw=HW, position=(0, 0)) | override
    with self.assertRaisesRegex(ValueError, re.escape(needle)):
      masks.node_mask(**kwargs)


class PositionsTest(absltest.TestCase):

  def test_named_positions(self):
    pos = masks.named_positions(TAP, HW)  # grid 12 x 16
    self.assertEqual(pos["centre"], (5, 7))
    self.assertEqual(pos["middle"], pos["centre"])
    self.assertEqual(pos["top_left"], (0, 0))
    self.assertEqual(pos["bottom_right"], (11, 15))
    self.assertEqual(pos["top_right"], (0, 15))
    self.assertEqual(pos["left"], (5, 0))
    # The paper's column: top, middle, bottom of the middle column.
    column = [pos[name] for name in ("top", "middle", "bottom")]
    self.assertEqual(column, [(0, 7), (5, 7), (11, 7)])

  def test_lattice(self):
    self.assertEqual(masks.lattice(TAP, HW, 1), [(5, 7)])
    corners = masks.lattice(TAP, HW, 2)
    self.assertEqual(corners, [(0, 0), (0, 15), (11, 0), (11, 15)])
    three = masks.lattice(TAP, HW, (3, 4))
    self.assertLen(three, 12)
    self.assertLen(set(three), 12)
    self.assertEqual(three[0], (0, 0))
    self.assertEqual(three[-1], (11, 15))
    full = masks.lattice(TAP, HW, (12, 16))
    self.assertEqual(full, [(i, j) for i in range(12) for j in range(16)])
    with self.assertRaisesRegex(ValueError, "1..12"):
      masks.lattice(TAP, HW, 13)

  def test_bad_input_is_a_user_error(self):
    for bad in (lambda: masks.node_mask(TAP, 192, HW), lambda: masks.node_mask(TAP, 0, (0, 5)),
                lambda: masks.node_mask(TAP, 0, HW, (12, 0)), lambda: masks.check_mask(np.zeros((12, 16, 192)), TAP, HW)):
      with self.assertRaises(UserError):
        bad()

  def test_no_dead_aliases(self):
    # nearest_node lives in rfspec.geometry only; the paper's column is spelled out where used.
    self.assertFalse(hasattr(masks, "nearest_node"))
    self.assertFalse(hasattr(masks, "PAPER_COLUMN"))


class CheckMaskTest(absltest.TestCase):

  def test_accepts_a_good_mask(self):
    m = masks.check_mask(masks.node_mask(TAP, 1, HW, (2, 2)).tolist(), TAP, HW)
    self.assertEqual(m.dtype, np.float32)

  def test_wrong_shape_says_expected_shape(self):
    wrong = masks.node_mask(TAP, 1, (64, 64), (2, 2))
    with self.assertRaisesRegex(ValueError, r"expected \[h, w, C\] = \(12, 16, 192\)"):
      masks.check_mask(wrong, TAP, HW)
    with self.assertRaisesRegex(ValueError, r"\[P, h, w, C\]"):
      masks.check_mask(wrong[None], TAP, HW, batched=True)

  def test_all_zero(self):
    with self.assertRaisesRegex(ValueError, "all zero"):
      masks.check_mask(np.zeros((12, 16, 192)), TAP, HW)
    stack = np.stack([masks.node_mask(TAP, 1, HW, (0, 0)), np.zeros((12, 16, 192), np.float32)])
    with self.assertRaisesRegex(ValueError, r"masks \[1\] are all zero"):
      masks.check_mask(stack, TAP, HW, batched=True)

  def test_non_finite(self):
    m = masks.node_mask(TAP, 1, HW, (0, 0))
    m[0, 0, 0] = np.nan
    with self.assertRaisesRegex(ValueError, "non-finite"):
      masks.check_mask(m, TAP, HW)


if __name__ == "__main__":
  absltest.main()

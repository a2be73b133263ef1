"""rfspec.plots image grids: the image is never drawn over, the RF drawing follows its rules in the
margin (checked on hand-counted cases), and the title, labels and captions keep to their bands."""

import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from rfspec import files, plots
from rfspec.errors import UserError

H = W = 10
M = 8  # margin; RF_TICK_PX = 10 > M, so a tick spans the whole margin


def cell_frame(canvas, geo, r, c, h=H, w=W):
  """The [h + 2m, w + 2m] frame of cell (r, c): the image at [m:m + h, m:m + w]."""
  m = geo["margin"]
  top = geo["title_h"] + geo["header_h"] + r * geo["cell_h"] + m
  left = geo["label_w"] + c * geo["cell_w"] + m
  return canvas[top - m:top + h + m, left - m:left + w + m]


def render_one(box, image=None):
  image = np.random.default_rng(0).random((H, W, 3), np.float32) if image is None else image
  canvas = plots.render_grid(image[None, None], boxes=np.array([[box]]), margin=M)
  geo = plots.grid_geometry(1, 1, (H, W), margin=M)
  return cell_frame(canvas, geo, 0, 0), image


def colour_mask(frame, colour):
  return (frame == np.array(colour, np.uint8)).all(-1)


def frame_yx():
  """Image-pixel coordinates (y, x) of every frame pixel, [H + 2M, W + 2M] each."""
  return np.mgrid[-M:H + M, -M:W + M]


def ring():
  """The 1 px ring just outside the image, where the grey border goes."""
  y, x = frame_yx()
  return (y >= -1) & (y <= H) & (x >= -1) & (x <= W) & ~((y >= 0) & (y < H) & (x >= 0) & (x < W))


class RfDrawingTest(parameterized.TestCase):

  @parameterized.parameters(
      ((2, 3, 6, 7),),        # inside the image
      ((-5, -5, 15, 15),),    # around the image, inside the frame
      ((-20, -20, 30, 30),),  # beyond the frame
      ((-7, 3, 4, 7),),       # over the top edge
      ((12, 12, 16, 16),),    # wholly in the margin
      ((0, 0, H, W),),        # exactly the image
  )
  def test_image_is_never_drawn_over(self, box):
    frame, image = render_one(box)
    np.testing.assert_array_equal(frame[M:M + H, M:M + W], files.to_uint8(image))

  def test_box_inside_the_image_gets_crop_marks_only(self):
    # Box rows [2, 6), cols [3, 7): edge bands rows 2, 3, 4, 5 and cols 3, 4, 5, 6 (2 px each side).
    frame, _ = render_one((2, 3, 6, 7))
    red = colour_mask(frame, plots.RF_COLOUR)
    # 4 rows x 8 px in each side margin, 4 cols x 8 px in the top and bottom margins.
    self.assertEqual(red.sum(), 4 * M * 2 + 4 * M * 2)
    y, x = frame_yx()
    self.assertTrue(red[(y == 2) & (x == -1)].all() and red[(y == 5) & (x == W)].all())
    self.assertFalse(red[((y == 1) | (y == 6)) & (x < 0)].any())  # rows next to the edge bands stay clear
    self.assertTrue(red[(x == 3) & (y == -M)].all() and red[(x == 6) & (y == H + M - 1)].all())
    self.assertFalse(colour_mask(frame, plots.HATCH_COLOUR).any())  # nothing of the RF is off-image
    np.testing.assert_array_equal(colour_mask(frame, plots.BORDER_COLOUR), ring() & ~red)  # red wins
    self.assertEqual((ring() & red).sum(), 4 * 4)  # each of the 4 ticks' 2 x 2 px crosses the ring

  def test_every_image_has_a_grey_border(self):
    image = np.ones((H, W, 3), np.float32)  # a white image would vanish on the white canvas
    canvas = plots.render_grid(image[None, None], margin=M)
    frame = cell_frame(canvas, plots.grid_geometry(1, 1, (H, W), margin=M), 0, 0)
    np.testing.assert_array_equal(colour_mask(frame, plots.BORDER_COLOUR), ring())
    self.assertEqual(ring().sum(), 2 * (W + 2) + 2 * H)

  def test_box_around_the_image_is_outlined_and_hatched_in_the_margin(self):
    t, l, b, r = -5, -5, 15, 15
    frame, _ = render_one((t, l, b, r))
    y, x = frame_yx()
    red = colour_mask(frame, plots.RF_COLOUR)
    # A 20 x 20 box with a 2 px border: 20^2 - 16^2 px, all in the margin; no ticks (the box
    # reaches into every side margin).
    self.assertEqual(red.sum(), 20 * 20 - 16 * 16)
    self.assertTrue(red[(y == t) & (x >= l) & (x < r)].all() and red[(x == r - 1) & (y >= t) & (y < b)].all())
    inner = (y >= t + 2) & (y < b - 2) & (x >= l + 2) & (x < r - 2) & ~((y >= 0) & (y < H) & (x >= 0) & (x < W))
    np.testing.assert_array_equal(colour_mask(frame, plots.HATCH_COLOUR),
                                  inner & ~ring() & ((y + x) % plots.HATCH_PERIOD == 0))
    outside = ~((y >= t) & (y < b) & (x >= l) & (x < r))
    self.assertTrue((frame[outside] == 255).all())  # margin beyond the RF stays white

  def test_box_beyond_the_frame_is_all_hatch(self):
    frame, _ = render_one((-20, -20, 30, 30))
    y, x = frame_yx()
    self.assertFalse(colour_mask(frame, plots.RF_COLOUR).any())  # its outline lies past the margin
    margin = ~((y >= 0) & (y < H) & (x >= 0) & (x < W))
    np.testing.assert_array_equal(colour_mask(frame, plots.HATCH_COLOUR),
                                  margin & ~ring() & ((y + x) % plots.HATCH_PERIOD == 0))

  def test_box_over_the_top_edge(self):
    # Rows [-7, 4), cols [3, 7): only 4 px wide, so all of it is border band. In the margin: its
    # part above the image (7 rows x 4 cols); ticks of its bottom band (rows 2, 3) left and right
    # (8 px each: the margin); ticks of its column bands below the image (8 rows x 4 cols); no tick
    # above (the box itself reaches into the top margin).
    frame, _ = render_one((-7, 3, 4, 7))
    y, x = frame_yx()
    red = colour_mask(frame, plots.RF_COLOUR)
    expected = ((y >= -7) & (y < 0) & (x >= 3) & (x < 7)) | (((y == 2) | (y == 3)) & ((x < 0) | (x >= W))) | \
               ((x >= 3) & (x < 7) & (y >= H))
    np.testing.assert_array_equal(red, expected)
    self.assertEqual(red.sum(), 7 * 4 + 2 * 2 * M + M * 4)
    self.assertFalse(colour_mask(frame, plots.HATCH_COLOUR).any())

  def test_bad_images_are_a_user_error(self):
    with self.assertRaisesRegex(UserError, r"\[R, C, H, W, 3\]"):
      plots.render_grid(np.zeros((4, 4, 3)))


class LayoutTest(absltest.TestCase):
  TITLE = "Figure 2: each RF position has a distinct, seed-consistent preferred pattern"
  COLS = ["inception_4c ch1\nseed 0", "inception_4c ch1\nseed 1"]
  ROWS = ["top", "bottom"]
  CAPTIONS = [["(i, j) = (0, 6), RF 41% inside\nobjective 716", "(i, j) = (0, 6), RF 41% inside\nobjective 1.2e+03"],
              ["(i, j) = (13, 6), RF 38% inside\nobjective 5", "(i, j) = (13, 6), RF 38% inside\nobjective 7"]]

  def render(self, **overrides):
    kwargs = dict(title=self.TITLE, col_labels=self.COLS, row_labels=self.ROWS, captions=self.CAPTIONS)
    kwargs.update(overrides)
    images = np.zeros((2, 2, 24, 24, 3), np.float32)  # black images, far narrower than the captions
    return plots.render_grid(images, **kwargs), plots.grid_geometry(2, 2, (24, 24), **kwargs)

  def test_title_has_its_own_band(self):
    full, geo = self.render()
    bare, bare_geo = self.render(title="")
    self.assertGreater(geo["title_h"], 0)
    self.assertEqual(bare_geo["title_h"], 0)
    self.assertFalse((full[:geo["title_h"]] == 255).all())  # the title is drawn in its band ...
    width = min(full.shape[1], bare.shape[1])
    np.testing.assert_array_equal(full[geo["title_h"]:, :width], bare[:, :width])  # ... and only there

  def test_labels_and_captions_keep_to_their_bands(self):
    canvas, geo = self.render()
    m = geo["margin"]
    ink = (canvas < 255).any(-1)
    for r in range(2):
      for c in range(2):
        frame = cell_frame(canvas, geo, r, c, 24, 24)
        np.testing.assert_array_equal(frame[m:m + 24, m:m + 24], 0)  # the image
        margin = np.ones(frame.shape[:2], bool)
        margin[m:m + 24, m:m + 24] = False
        margin[m - 1:m + 25, m - 1:m + 25] = False  # the grey border
        self.assertTrue((frame[margin] == 255).all(), f"text in cell {r},{c}'s margin")
        top = geo["title_h"] + geo["header_h"] + r * geo["cell_h"] + 2 * m + 24
        self.assertTrue(ink[top:top + geo["caption_h"]].any(), f"caption {r},{c} missing")
    header = ink[geo["title_h"]:geo["title_h"] + geo["header_h"]]
    self.assertTrue(header[:, geo["label_w"]:].any())  # column labels sit in their band
    self.assertTrue(ink[:, :geo["label_w"]].any())  # row labels sit left of the cells

  def test_a_long_caption_widens_its_cell_instead_of_running_into_the_next(self):
    captions = [["(i, j) = (13, 6), RF 38% inside the image\nobjective 716", ""], ["", ""]]
    canvas, geo = self.render(captions=captions, title="", col_labels=(), row_labels=())
    self.assertGreater(geo["cell_w"], 24 + 2 * geo["margin"] + geo["gap"])  # wider than image + margins
    m = geo["margin"]
    band = (canvas[geo["header_h"] + 2 * m + 24:][:geo["caption_h"]] < 255).any(-1)
    cols = np.nonzero(band.any(0))[0]
    self.assertNotEmpty(cols)
    self.assertLess(cols.max(), geo["label_w"] + geo["cell_w"] - geo["gap"])  # inside its own cell


if __name__ == "__main__":
  absltest.main()

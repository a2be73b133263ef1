"""rfspec.plots image grids: the image is never drawn over, the RF drawing follows its rules in the
margin (checked on hand-counted cases: the clipped outline dashed, ticks solid), a small RF gets a
nearest-neighbour inset at the zoom its label states, small images are enlarged to readable
panels, and the title, labels and captions keep to their bands."""

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

  def test_box_around_the_image_is_dashed_and_hatched_in_the_margin(self):
    t, l, b, r = -5, -5, 15, 15
    frame, _ = render_one((t, l, b, r))
    y, x = frame_yx()
    red = colour_mask(frame, plots.RF_COLOUR)
    # A 20 x 20 box with a 2 px border, all of it in the margin (clipped), so all of it dashed:
    # 6 px on, 6 off from the corner (t, l). Top and bottom bands (rows -5, -4, 13, 14) are on at
    # x - l in 0..5 and 12..17: 4 rows x 12 px; the side bands (cols -5, -4, 13, 14) likewise by
    # y: 4 x 12; the corners counted twice: the top-left 2 x 2. No ticks (the box reaches into
    # every side margin).
    self.assertEqual(red.sum(), 4 * 12 + 4 * 12 - 4)
    self.assertTrue(red[(y == t) & (x >= l) & (x <= 0)].all())  # the first dash of the top edge
    self.assertFalse(red[(y == t) & (x >= 1) & (x <= 6)].any())  # then a gap
    self.assertTrue(red[(y == t) & (x >= 7) & (x <= 12)].all())
    self.assertFalse(red[(x == r - 1) & (y >= 1) & (y <= 6)].any())  # a gap in the right side
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
    # part above the image, dashed from its corner (-7, 3): rows -7..-2 on, row -1 (the 7th) off;
    # solid ticks of its bottom band (rows 2, 3) left and right (8 px each: the margin) and of its
    # column bands below the image (8 rows x 4 cols); no tick above (the box itself reaches into
    # the top margin).
    frame, _ = render_one((-7, 3, 4, 7))
    y, x = frame_yx()
    red = colour_mask(frame, plots.RF_COLOUR)
    expected = ((y >= -7) & (y < -1) & (x >= 3) & (x < 7)) | (((y == 2) | (y == 3)) & ((x < 0) | (x >= W))) | \
               ((x >= 3) & (x < 7) & (y >= H))
    np.testing.assert_array_equal(red, expected)
    self.assertEqual(red.sum(), 6 * 4 + 2 * 2 * M + M * 4)
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


class InsetTest(absltest.TestCase):
  """A 9 px RF on a 40 px image (under a quarter of its side) gets an inset at zoom 40 // 9 = 4."""

  HW = (40, 40)
  BOX = (-3, 10, 6, 19)  # 9 x 9, its top 3 rows off the image

  def render(self, box=BOX, **kw):
    image = np.asarray(jax_free_image(self.HW), np.float32)
    args = dict(boxes=np.array([[box]]), margin=M, insets=True, **kw)
    return plots.render_grid(image[None, None], **args), plots.grid_geometry(1, 1, self.HW, **args), image

  def inset(self, canvas, geo, n):
    m, s = geo["margin"], geo["scale"]
    top = geo["title_h"] + geo["header_h"] + m
    left = geo["col_left"][0] + m + self.HW[1] * s + m + plots.INSET_GAP + plots.RF_LINE_PX
    k = plots.RF_LINE_PX
    return canvas[top:top + n, left:left + n], canvas[top - k:top + n + k, left - k:left + n + k]

  def test_zoom_is_nearest_neighbour_at_the_stated_scale(self):
    canvas, geo, image = self.render()
    self.assertEqual(geo["zoom"], [[4]])
    self.assertEqual(plots.inset_label(4), "RF box x4")
    pixels, _ = self.inset(canvas, geo, 9 * 4)
    # The scale read off the pixels: every 4 x 4 block is one image pixel of the box.
    want = files.to_uint8(image)[0:6, 10:19]  # the box's rows 3..8 are image rows 0..5
    np.testing.assert_array_equal(pixels[12:], np.repeat(np.repeat(want, 4, 0), 4, 1))
    clipped = pixels[:12]  # the 3 off-image rows: white, hatched, no image pixel
    yy, xx = np.mgrid[0:12, 0:36]
    np.testing.assert_array_equal(colour_mask(clipped, plots.HATCH_COLOUR), (yy + xx) % plots.HATCH_PERIOD == 0)
    self.assertTrue((clipped[(yy + xx) % plots.HATCH_PERIOD != 0] == 255).all())
    # Its label is drawn under it, in the inset's columns (beside the image's frame).
    k, top = plots.RF_LINE_PX, geo["title_h"] + geo["header_h"] + M
    left = geo["col_left"][0] + M + 40 + M + plots.INSET_GAP
    self.assertTrue((canvas[top + 36 + k:top - M + geo["frame_h"], left:] < 128).any())
    self.assertTrue((canvas[top - M + geo["frame_h"]:, left:] == 255).all())  # nothing in the caption band

  def test_inset_outline_is_solid_on_the_image_and_dashed_where_clipped(self):
    canvas, geo, _ = self.render()
    _, framed = self.inset(canvas, geo, 36)
    red = colour_mask(framed, plots.RF_COLOUR)
    k = plots.RF_LINE_PX
    self.assertTrue(red[-k:].all())  # the bottom edge lies on the image
    self.assertTrue(red[k + 12:-k, :k].all() and red[k + 12:-k, -k:].all())  # the sides beside image rows
    top = red[:k, k:-k]
    self.assertTrue(top[:, :plots.DASH_PX - k].all() and not top.all())  # the clipped top edge: dashes

  def test_no_inset_when_the_rf_is_a_quarter_of_the_image_or_more(self):
    box = (5, 5, 15, 15)  # 10 px = a quarter of 40
    with_flag, geo, image = self.render(box)
    without = plots.render_grid(image[None, None], boxes=np.array([[box]]), margin=M)
    self.assertEqual((geo["zoom"], geo["inset_w"]), ([[0]], [0]))
    np.testing.assert_array_equal(with_flag, without)
    self.assertEqual(plots.inset_zoom((0, 0, 9, 9), (40, 40)), 4)
    self.assertEqual(plots.inset_zoom((0, 0, 0, 0), (40, 40)), 0)  # no box


def jax_free_image(hw):
  """A fixed test image whose neighbouring pixels differ (so a block size can be read off)."""
  y, x = np.mgrid[0:hw[0], 0:hw[1]]
  return np.stack([(y * 37 + x * 11) % 251, (y * 13 + x * 29) % 241, (y * 7 + x * 53) % 239], -1) / 255.0


class PanelScaleTest(absltest.TestCase):

  def test_small_images_are_shown_whole_times_larger(self):
    self.assertEqual(plots.MIN_PANEL_PX, 119)  # 3 cm at 100 dpi is 118.1 px
    image = np.asarray(jax_free_image((40, 40)), np.float32)
    box = (-4, 12, 8, 24)
    canvas = plots.render_grid(image[None, None], boxes=np.array([[box]]), margin=M, min_panel_px=plots.MIN_PANEL_PX)
    geo = plots.grid_geometry(1, 1, (40, 40), margin=M, min_panel_px=plots.MIN_PANEL_PX)
    self.assertEqual(geo["scale"], 3)  # 40 x 3 = 120 >= 119
    frame = cell_frame(canvas, geo, 0, 0, 120, 120)
    np.testing.assert_array_equal(frame[M:M + 120, M:M + 120], np.repeat(np.repeat(files.to_uint8(image), 3, 0), 3, 1))
    # The box is drawn at 3x too: its left edge band starts at x = 36 in the shown image.
    red = colour_mask(frame, plots.RF_COLOUR)
    self.assertTrue(red[:M - 1, M + 36].any() and not red[:, M + 35].any())


class PaperFigureTest(absltest.TestCase):
  """A figure's labels, from made-up results (no net): positions with their (i, j) and RF share
  per tap, seeds over the columns, the inset only beside the small RF."""

  def test_labels_and_insets(self):
    from rfspec import geometry
    from rfspec.runs import figures

    hw, seeds = (96, 96), np.array([0, 1])
    panels = []
    for tap in ("conv2/3x3", "inception_4c/5x5"):
      rf = geometry.receptive_field(tap, hw)
      named = rfspec_named(tap, hw)
      pos = np.array([named["top"], named["bottom"]])
      panels.append(figures.PanelResult(
          tap=tap, channel=7, rank=0, rule="r", rf_size=rf.size, rf_stride=rf.stride, grid=rf.grid,
          position_names=("top", "bottom"), positions=pos, boxes=np.array([rf.box(*p) for p in pos]),
          inside=np.array([rf.inside_fraction(*p) for p in pos]), seeds=seeds,
          images=np.full((2, 2, *hw, 3), 0.5, np.float32), final_activation=np.array([[1234.5, 2.0], [3.0, 4.0]]),
          psi_auc=(), auc_id=(), vis_config={}, seconds=0.0, resumed=False))
    fig = figures.FigureResult("fig1", "Figure 1", "claim", False, tuple(panels), "", "", 0.0, False)
    canvas, layout = plots.paper_figure(fig, note="smoke")
    conv2, deep = (geometry.receptive_field(t, hw) for t in ("conv2/3x3", "inception_4c/5x5"))
    top2, top4 = rfspec_named("conv2/3x3", hw)["top"], rfspec_named("inception_4c/5x5", hw)["top"]
    self.assertEqual(layout["row_labels"][0], (
        f"top\nconv2/3x3: (i, j) = ({top2[0]}, {top2[1]})\n  RF {conv2.inside_fraction(*top2):.0%} inside\n"
        f"4c/5x5: (i, j) = ({top4[0]}, {top4[1]})\n  RF {deep.inside_fraction(*top4):.0%} inside"))
    self.assertEqual(layout["col_labels"], ["conv2/3x3 ch7\nRF 19 px\nseed 0", "conv2/3x3 ch7\nRF 19 px\nseed 1",
                                            "inception_4c/5x5 ch7\nRF 299 px\nseed 0",
                                            "inception_4c/5x5 ch7\nRF 299 px\nseed 1"])
    self.assertEqual(layout["captions"][0][0], "activation 1,234")
    self.assertEqual(layout["title"], "Figure 1\nsmoke")
    geo = plots.grid_geometry(2, 4, **layout)
    self.assertEqual(geo["scale"], 2)  # 96 px shown at 192 >= MIN_PANEL_PX
    self.assertEqual([z > 0 for z in geo["zoom"][0]], [True, True, False, False])  # 19 px < 96 / 4 < 299 px
    self.assertEqual(canvas.shape[:2], (geo["height"], geo["width"]))
    ink = (canvas < 200).any(-1)
    self.assertTrue(ink[:, :geo["label_w"]].any())  # row labels
    self.assertTrue(ink[geo["title_h"]:geo["title_h"] + geo["header_h"], geo["label_w"]:].any())  # column labels


class AtlasViewsTest(absltest.TestCase):
  """The atlas's pictures say what a reader needs without the page: how to read the RF box (which
  the margin cuts), and that a quick run is a smoke test."""

  def setUp(self):
    super().setUp()
    self.images = np.full((2, 2, 16, 16, 3), 0.5, np.float32)
    self.boxes = np.broadcast_to(np.array([-40, -40, 30, 30]), (2, 2, 4))  # runs past the margin

  def test_mosaic_has_the_legend_and_the_note_under_its_title(self):
    plain, g0 = plots.atlas_mosaic(self.images, self.boxes, np.full((2, 2), 0.2), [0, 3], [0, 3], title="t",
                                   tile=160, legend="")
    canvas, g = plots.atlas_mosaic(self.images, self.boxes, np.full((2, 2), 0.2), [0, 3], [0, 3], title="t",
                                   tile=160, note="smoke test")
    self.assertEqual(g["title"], "t\nsmoke test")
    self.assertEqual(g["legend"], plots.ATLAS_LEGEND.format(seed=""))
    self.assertIn("cut at the margin", g["legend"])
    self.assertIn("dashed off the image", g["legend"])
    self.assertEqual(canvas.shape[:2], (g["height"], g["width"]))
    self.assertGreater(g["title_h"], g0["title_h"])  # the note and the legend have their own lines
    self.assertGreaterEqual(g["width"], g0["width"])
    ink = (canvas[:g["title_h"]] < 200).any(-1)
    rows = np.flatnonzero(ink.any(1))
    self.assertGreater(rows.max(), g0["title_h"])  # text below where the plain title band ended
    # The tiles are where the layout says, the same as without the legend.
    top, left = g["title_h"] + g["header_h"] + g["margin"], g["label_w"] + g["margin"]
    top0 = g0["title_h"] + g0["header_h"] + g0["margin"]
    np.testing.assert_array_equal(canvas[top + 5:top + 150, left + 5:left + 150],
                                  plain[top0 + 5:top0 + 150, left + 5:left + 150])

  def test_each_tile_names_its_start_seed(self):
    args = (self.images, self.boxes, np.full((2, 2), 0.2), [0, 3], [0, 3])
    plain, _ = plots.atlas_mosaic(*args, tile=160)
    seeded, g = plots.atlas_mosaic(*args, tile=160, seeds=np.array([[3, 5], [8, 13]]))
    self.assertIn("its start seed", g["legend"])
    self.assertEqual(plain.shape, seeded.shape)
    top = g["title_h"] + g["header_h"] + g["margin"] + 160 + g["margin"]  # tile (0, 0)'s caption band
    left = g["label_w"] + g["margin"]
    band = (slice(top, top + g["caption_h"]), slice(left, left + 160))
    self.assertFalse(np.array_equal(plain[band], seeded[band]))  # the caption says more

  def test_a_collapsed_interval_is_not_drawn_as_one(self):
    psi = np.array([[np.nan, 1.0, 0.5]])
    ci = np.array([[[np.nan, np.nan], [-0.2, 1.0], [0.1, 0.9]]])
    fig = plots.atlas_psi_figure(psi, ci, [["the reference itself", "", ""]], np.array([[0.5, 0.3, 0.3]]), [0],
                                 [0, 5, 9], (0, 0), degenerate=np.array([[False, True, False]]), n_starts=4)
    ax = next(a for a in fig.axes if a.get_label() == "psi")
    texts = [t.get_text() for t in ax.texts]
    self.assertEqual(texts, ["centre", "1.00\nn = 4, no\ninterval*", "0.50\n[0.10, 0.90]"])
    self.assertIn("no interval", fig._supxlabel.get_text())

  def test_heat_map_says_smoke_test_above_its_title(self):
    psi = np.array([[np.nan, 0.5]])
    fig = plots.atlas_psi_figure(psi, np.stack([psi - 0.1, psi + 0.1], -1), [["the reference itself", ""]],
                                 np.array([[0.5, 0.3]]), [0], [0, 5], (0, 0), title="tap", note="smoke test")
    self.assertEqual(fig._suptitle.get_text(), "smoke test\ntap")


def rfspec_named(tap, hw):
  from rfspec import masks

  return masks.named_positions(tap, hw)


if __name__ == "__main__":
  absltest.main()

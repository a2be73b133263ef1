"""rfspec.figures: a figure's layout, boxes, captions and objectives on the real net (tiny sizes),
and the whole-run progress clock (with a fake clock: no timing)."""

import numpy as np
from absl.testing import absltest

import rfspec
from rfspec import figures
from rfspec.errors import UserError
from rfspec.masks import named_positions
from tests.conftest import real_params

HW = (32, 32)
FIELDS = dict(image_hw=HW, steps=2, chunk=2)
# Two node types whose taps have different grids at 32 px (8 x 8 and 4 x 4), so one row's
# positions differ between panels -- the case Figure 1 has.
PANELS = [figures.Panel("conv2/3x3", 5), figures.Panel("inception_3a/output", 11)]
POSITIONS = ("top", "bottom")
SEEDS = (0, 3)


class MakeFigureTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.fig = figures.make_figure(real_params(), PANELS, POSITIONS, SEEDS, FIELDS)

  def test_layout(self):
    fig = self.fig
    self.assertEqual(fig.images.shape, (2, 4, *HW, 3))  # rows: positions; columns: panels x seeds
    self.assertEqual(fig.boxes.shape, (2, 4, 4))
    self.assertEqual(fig.objectives.shape, (2, 4))
    self.assertEqual(fig.row_labels, list(POSITIONS))
    self.assertEqual(fig.col_labels, ["conv2/3x3 ch5\nseed 0", "conv2/3x3 ch5\nseed 3",
                                      "inception_3a ch11\nseed 0", "inception_3a ch11\nseed 3"])
    self.assertEqual(fig.panels, PANELS)
    self.assertTrue(np.isfinite(fig.images).all() and (fig.images >= 0).all() and (fig.images <= 1).all())

  def test_each_cell_has_its_own_position_box_and_caption(self):
    fig = self.fig
    for r, name in enumerate(POSITIONS):
      for c in range(4):
        panel, seed = PANELS[c // 2], SEEDS[c % 2]
        i, j = named_positions(panel.tap, HW)[name]
        rec = fig.records[r][c]
        self.assertEqual((rec["tap"], rec["channel"], rec["seed"], rec["position"]), (panel.tap, panel.channel, seed, [i, j]))
        rf = rfspec.receptive_field(panel.tap, HW)
        np.testing.assert_array_equal(fig.boxes[r, c], rf.box(i, j))
        self.assertEqual(fig.captions[r][c].splitlines()[0],
                         f"(i, j) = ({i}, {j}), RF {rf.inside_fraction(i, j):.0%} inside")
    # The taps' grids differ, so the same row names different nodes in the two panels.
    self.assertNotEqual(fig.records[0][0]["position"], fig.records[0][2]["position"])

  def test_objective_is_the_node_value_of_the_final_image(self):
    # Read the node straight off the forward pass (not through a mask).
    fig = self.fig
    for c in (0, 3):
      panel = PANELS[c // 2]
      acts = rfspec.forward(real_params(), fig.images[:, c], taps=(panel.tap,))[panel.tap]
      for r in range(2):
        i, j = fig.records[r][c]["position"]
        self.assertAlmostEqual(float(fig.objectives[r, c]), float(acts[r, i, j, panel.channel]), places=3)
        self.assertAlmostEqual(fig.records[r][c]["objective"], float(fig.objectives[r, c]), places=5)

  def test_tiled_figure(self):
    fig = figures.make_figure(real_params(), PANELS[:1], (), SEEDS, FIELDS)
    self.assertEqual(fig.images.shape, (1, 2, *HW, 3))
    self.assertIsNone(fig.boxes)
    self.assertEqual(fig.row_labels, ["tiled"])
    self.assertEqual([c.splitlines()[0] for c in fig.captions[0]], ["(i, j): all 8 x 8"] * 2)
    acts = np.asarray(rfspec.forward(real_params(), fig.images[0], taps=("conv2/3x3",))["conv2/3x3"])
    np.testing.assert_allclose(fig.objectives[0], acts[..., 5].sum(axis=(1, 2)), rtol=1e-4)

  def test_unknown_position_is_a_user_error(self):
    with self.assertRaisesRegex(UserError, r"Unknown position.*'centre_left'.*'bottom'"):
      figures.make_figure(real_params(), PANELS[:1], ("top", "centre_left"), SEEDS, FIELDS)


class FigureGridsTest(absltest.TestCase):

  def test_one_grid_per_panel(self):
    self.assertEqual(figures.figure_grids(PANELS, POSITIONS, SEEDS, 5),
                     [("conv2/3x3", 2 * 2 * 5), ("inception_3a/output", 2 * 2 * 5)])
    self.assertEqual(figures.figure_grids(PANELS[:1], (), (0, 1, 2), 7), [("conv2/3x3", 3 * 7)])


class FakeClock:

  def __init__(self):
    self.now = 0.0

  def __call__(self):
    return self.now


class RunProgressTest(absltest.TestCase):

  def test_eta_prices_each_tap_at_its_own_rate(self):
    clock = FakeClock()
    run = figures.RunProgress([("a", 100), ("b", 200), ("a", 100)], clock=clock)
    self.assertEqual(run.total, 400)
    self.assertIsNone(run.eta_s())
    self.assertEqual(run.summary(), "whole run 0% of 400 image-steps, ETA ?")
    clock.now = 10.0
    run.update(50)  # a: 0.2 s per image-step; b not seen yet: the run's average, also 0.2
    self.assertAlmostEqual(run.eta_s(), 50 * 0.2 + 200 * 0.2 + 100 * 0.2)
    clock.now = 20.0
    run.update(100)  # grid 0 done, 0.2 s per image-step
    clock.now = 60.0
    run.update(100)  # grid 1 (b): 40 s for 100 -> 0.4
    self.assertAlmostEqual(run.eta_s(), 100 * 0.4 + 100 * 0.2)
    self.assertEqual(run.summary(), "whole run 50% of 400 image-steps, ETA 1m00s")
    clock.now = 100.0
    run.update(200)
    clock.now = 110.0
    run.update(100)
    self.assertEqual((run.done, run.eta_s()), (400, 0.0))
    with self.assertRaises(ValueError):
      run.update(1)

  def test_an_unseen_tap_is_priced_by_its_cost(self):
    clock = FakeClock()
    run = figures.RunProgress([("a", 100), ("b", 100)], cost={"a": 1.0, "b": 3.0}.get, clock=clock)
    clock.now = 10.0
    run.update(100)  # 0.1 s per image-step at cost 1
    self.assertAlmostEqual(run.eta_s(), 100 * 0.1 * 3)

  def test_tap_macs(self):
    # By hand from deploy.prototxt at 224 px: conv1 112^2 * 7^2 * 3 * 64; conv2/3x3_reduce
    # 56^2 * 64 * 64; conv2/3x3 56^2 * 3^2 * 64 * 192.
    conv1 = 112 * 112 * 49 * 3 * 64
    self.assertEqual(figures.tap_macs("conv1/7x7_s2", (224, 224)), conv1)
    self.assertEqual(figures.tap_macs("pool1/norm1", (224, 224)), conv1)  # pooling and LRN are free
    self.assertEqual(figures.tap_macs("conv2/3x3", (224, 224)), conv1 + 56 * 56 * 64 * 64 + 56 * 56 * 9 * 64 * 192)
    # A branch needs only its own ancestors: inception_3a/1x1 (28^2 * 192 * 64) is not in 3x3_reduce.
    base = figures.tap_macs("pool2/3x3_s2", (224, 224))
    self.assertEqual(figures.tap_macs("inception_3a/1x1", (224, 224)) - base, 28 * 28 * 192 * 64)
    self.assertEqual(figures.tap_macs("inception_3a/3x3_reduce", (224, 224)) - base, 28 * 28 * 192 * 96)
    # The classifier: 1024 x 1000 on top of everything before it.
    self.assertEqual(figures.tap_macs("loss3/classifier", (224, 224)) - figures.tap_macs("pool5/7x7_s1", (224, 224)),
                     1024 * 1000)

  def test_format_seconds(self):
    self.assertEqual([figures.format_seconds(s) for s in (0, 59.4, 60, 125, 3599, 3725)],
                     ["0s", "59s", "1m00s", "2m05s", "59m59s", "1h02m"])


if __name__ == "__main__":
  absltest.main()

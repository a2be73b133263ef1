"""rfspec.runs.figures on random params of the real shapes (tests/conftest.py: tiny_params): the
settings are validated as a whole, each panel is one grid call, its layout, boxes and final
activations are what the net and the geometry say, the numbers come with their reasons, and the
ETA before the first step is the plan priced by the prior (fake clock: no timing)."""

import io
import math
import os
from unittest import mock

import jax
import numpy as np
import pytest
from absl.testing import absltest
from absl.testing import parameterized

import rfspec
from rfspec import masks, metrics, progress, report, selection, throughput
from rfspec.errors import UserError
from rfspec.models import preprocess
from rfspec.runs import figures
from rfspec.runs.store import Store
from tests.conftest import tiny_params

HW = (96, 96)  # conv2/3x3's RF (19 px) is under a quarter of 96 px
VIS = dict(recipe="zipser2015", image_hw=[96, 96], steps=2, chunk=2)


def config(figs, **extra):
  return dict(dict(figures=figs, vis=dict(VIS), n_boot=20, n_perm=20), **extra)


def fig(panels, positions=("top", "bottom"), seeds=(0, 1, 2), **extra):
  return dict(dict(title="t", claim="c", panels=[dict(p) for p in panels], positions=list(positions),
                   seeds=list(seeds)), **extra)


LOW0, LOW1 = dict(tap="conv2/3x3", rank=0), dict(tap="conv2/3x3", rank=1)


class SettingsTest(parameterized.TestCase):

  def test_valid(self):
    s = figures.settings_from_config(config({"a": fig([LOW0, LOW1]), "b": fig([LOW0], positions=())}), only=["b"])
    self.assertEqual([f.name for f in s.figures], ["b"])
    self.assertTrue(s.figures[0].tiled)
    self.assertEqual(s.figures[0].panels, (figures.Panel("conv2/3x3", -1, 0),))
    self.assertEqual(s.image_hw, HW)
    self.assertEqual(s.cfg("conv2/3x3").steps, 2)

  @parameterized.named_parameters(
      ("unknown_figure", {}, ["fig9"], r"Unknown figure.*fig9.*--figures"),
      ("bad_tap", dict(panels=[dict(tap="conv9")]), [], r"panels\[0\]\.tap"),
      ("no_grid", dict(panels=[dict(tap="prob")]), [], r"no spatial grid"),
      ("channel_range", dict(panels=[dict(tap="conv2/3x3", channel=192)]), [], r"channel must be .*\[-1, 191\]"),
      ("no_seeds", dict(seeds=[]), [], r"seeds is empty"),
      ("seed_twice", dict(seeds=[0, 0]), [], r"seed twice"),
      ("bad_position", dict(positions=["top", "centre_left"]), [], r"unknown position.*centre_left.*bottom"),
      ("panel_twice", dict(panels=[LOW0, LOW0]), [], r"same node type twice"),
  )
  def test_a_bad_config_is_one_paragraph(self, change, only, pattern):
    with self.assertRaisesRegex(UserError, pattern) as ctx:
      figures.settings_from_config(config({"a": dict(fig([LOW0]), **change)}), only=only)
    self.assertNotIn("\n", str(ctx.exception))

  def test_bad_vis_is_caught_before_any_work(self):
    with self.assertRaisesRegex(UserError, r"config.vis does not work for tap 'conv2/3x3'.*stepz"):
      figures.settings_from_config(dict(config({"a": fig([LOW0])}), vis=dict(VIS, stepz=3)))
    with self.assertRaisesRegex(UserError, r"n_boot must be a whole number in \[20"):
      figures.settings_from_config(config({"a": fig([LOW0])}, n_boot=5))


  @parameterized.named_parameters(
      ("seed_fraction", dict(seeds=[0, 1.5]), r"config.figures.a.seeds must be whole numbers .*got \[0, 1.5\]"),
      ("seeds_text", dict(seeds="abc"), r"config.figures.a.seeds must be a list of whole numbers.*got 'abc'"),
  )
  def test_seeds_are_checked_as_a_list(self, change, pattern):
    # (0, 1.5) said "got 1.5" without the list; "abc" was split into seeds 'a', 'b', 'c'.
    with self.assertRaisesRegex(UserError, pattern):
      figures.settings_from_config(config({"a": dict(fig([LOW0]), **change)}))

  def test_every_bad_field_in_one_paragraph(self):
    with self.assertRaises(UserError) as ctx:
      figures.settings_from_config(config({"a": fig([LOW0], seeds=[0, 1.5]), "b": fig([LOW0], positions=["x"])},
                                          n_boot=0, n_perm=-1))
    text = str(ctx.exception)
    self.assertIn("The figures config has 4 bad field(s):", text)
    for needle in ("config.figures.a.seeds", "config.figures.b.positions", "config.n_boot", "config.n_perm"):
      self.assertIn(needle, text)
    self.assertNotIn("\n", text)

  def test_an_image_hw_that_is_not_two_numbers(self):
    with self.assertRaisesRegex(UserError, r"config.vis.image_hw must be \(H, W\), two whole numbers.*got 'abc'"):
      figures.settings_from_config(dict(config({"a": fig([LOW0])}), vis=dict(VIS, image_hw="abc")))  # was int('a')

  def test_a_size_that_cannot_fit_is_refused_before_the_weights_load(self):
    with self.assertRaisesRegex(UserError, r"config.vis.image_hw: VisConfig\(tap='conv2/3x3', image_hw=\(6000, 6000\)\) "
                                           r"on a batch of 6 image\(s\) needs about .* GB .*more than the .* GB.*RFSPEC_MEMORY_LIMIT"):
      with mock.patch.dict(os.environ, {"RFSPEC_MEMORY_LIMIT": "1G"}):
        figures.settings_from_config(dict(config({"a": fig([LOW0])}), vis=dict(VIS, image_hw=(6000, 6000))))


@pytest.mark.slow
class RunFiguresTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.params = tiny_params()
    # 2 seeds (the numbers then say why they are not computed: FigureNumbersTest computes them); the
    # tiled figure's 4 seeds make its grid the same shape as the other's 2 positions x 2 seeds, so the
    # two share one compiled function (a test of the run, not of the compiler).
    cls.settings = figures.settings_from_config(config({"pos": fig([LOW0], seeds=(0, 1)),
                                                        "tiled": fig([LOW0], positions=(), seeds=range(4))}))
    cls.calls = []
    real = figures.visualize_grid

    def counting(params, seeds, masks_, cfg, **kw):
      cls.calls.append((list(seeds), np.asarray(masks_).shape))
      return real(params, seeds, masks_, cfg, **kw)

    cls.log = io.StringIO()
    run = progress.RunProgress(figures.planned_work(cls.settings), prior_s=figures.step_prior(cls.settings),
                               stream=cls.log)
    with mock.patch.object(figures, "visualize_grid", counting):
      cls.result = figures.run_figures(cls.params, cls.settings, Store(None), progress=run)

  def test_one_grid_call_per_panel(self):
    h, w, c = masks.tap_shape("conv2/3x3", HW)
    self.assertEqual(self.calls, [([0, 1], (2, h, w, c)), (list(range(4)), (1, h, w, c))])

  def test_layout_positions_boxes_inside(self):
    pos, tiled = self.result.figures
    rf = rfspec.receptive_field("conv2/3x3", HW)
    named = masks.named_positions("conv2/3x3", HW)
    for p in pos.panels:
      self.assertEqual(p.images.shape, (2, 2, *HW, 3))
      np.testing.assert_array_equal(p.positions, [named["top"], named["bottom"]])
      np.testing.assert_array_equal(p.boxes, [rf.box(*named["top"]), rf.box(*named["bottom"])])
      np.testing.assert_allclose(p.inside, [rf.inside_fraction(*named["top"]), rf.inside_fraction(*named["bottom"])])
      self.assertEqual((p.rf_size, p.rf_stride, p.position_names), (19, rf.stride, ("top", "bottom")))
      self.assertTrue(np.isfinite(p.images).all() and (p.images >= 0).all() and (p.images <= 1).all())
    t = tiled.panels[0]
    self.assertTrue(tiled.tiled)
    self.assertEqual((t.images.shape, t.positions.shape, t.boxes.shape), ((1, 4, *HW, 3), (0, 2), (0, 4)))

  def test_channels_follow_the_one_rule(self):
    cfg = self.settings.cfg("conv2/3x3")
    named = masks.named_positions("conv2/3x3", HW)
    ranked = selection.choose_channels(self.params, cfg, [named[p] for p in ("top", "middle", "bottom")],
                                       n_channels=1, n_seeds=3, seed_pool=[0, 1, 2]).channels
    pos, tiled = self.result.figures
    self.assertEqual(pos.panels[0].channel, int(ranked[0]))
    # The tiled figure's 4 seeds join the rule's seeds, so its channel is ranked over seeds 0-3.
    four = selection.choose_channels(self.params, cfg, [named[p] for p in ("top", "middle", "bottom")],
                                     n_channels=1, n_seeds=4, seed_pool=range(4)).channels
    self.assertEqual(tiled.panels[0].channel, int(four[0]))
    self.assertIn("rank 0 by the channel rule", pos.panels[0].rule)

  def net_sees(self, images):
    """conv2/3x3 as the run's net sees images: rfspec.forward subtracts the deploy net's mean, the
    zipser2015 run the script's; the difference is a constant shift of the RGB input."""
    shift = (np.asarray(preprocess.MEAN_BGR) - np.asarray(self.settings.cfg("conv2/3x3").caffe_mean))[::-1] / 255.0
    return np.asarray(rfspec.forward(self.params, images + shift.astype(np.float32), taps=("conv2/3x3",))["conv2/3x3"])

  def test_final_activation_is_the_node_value_of_the_final_image(self):
    pos, tiled = self.result.figures
    p = pos.panels[0]
    acts = self.net_sees(p.images.reshape(-1, *HW, 3)).reshape(2, 2, *masks.tap_shape("conv2/3x3", HW))
    for r, (i, j) in enumerate(p.positions):
      np.testing.assert_allclose(p.final_activation[r], acts[r, :, i, j, p.channel], rtol=1e-4)
    t = tiled.panels[0]
    whole = self.net_sees(t.images[0])
    np.testing.assert_allclose(t.final_activation[0], whole[..., t.channel].sum(axis=(1, 2)), rtol=1e-4)

  def test_numbers_and_their_reasons(self):
    pos, tiled = self.result.figures
    # 2 seeds: too few to compare seeds within a position, said once for the figure and by each number.
    self.assertRegex(pos.psi_why, r"needs at least 3 seeds per position .*this figure shows 2")
    self.assertEqual(pos.auc_id_why, pos.psi_why)
    p, = pos.panels
    (pair,) = p.psi_auc
    self.assertEqual((pair.p, pair.q, pair.psi_auc.why), (0, 1, pos.psi_why))
    self.assertAlmostEqual(pair.window_share, metrics.frame_windows(p.boxes, HW).share[0, 1])
    self.assertTrue(math.isnan(pair.psi_auc.value))
    self.assertEqual([a.why for a in p.auc_id], [pos.psi_why] * 2)
    self.assertEqual(tiled.panels[0].psi_auc, ())
    self.assertEqual((tiled.psi_why, tiled.auc_id_why), (figures.TILED_WHY, figures.TILED_WHY))

  def test_eta_is_printed_before_the_first_step(self):
    lines = self.log.getvalue().splitlines()
    self.assertIn("2 grid call(s) to run, 0 restored", lines[0])
    self.assertRegex(lines[0], r"ETA \d+(s|m\d\ds)$")
    self.assertRegex(lines[1], r" step \d+/2, ")


def solid(colour, n_s, noise_key):
  """n_s images of one flat colour with a faint seed-specific texture, [n_s, H, W, 3]."""
  noise = np.asarray(jax.random.uniform(noise_key, (n_s, *HW, 3)), np.float32)
  return np.clip(np.asarray(colour, np.float32) + 0.02 * noise, 0, 1)


class FigureNumbersTest(absltest.TestCase):
  """figure_numbers on made-up images whose answer is known."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.params = tiny_params()
    rf = rfspec.receptive_field("conv2/3x3", HW)
    named = masks.named_positions("conv2/3x3", HW)
    cls.boxes = np.array([rf.box(*named["middle"]), rf.box(*named["bottom"])])

  def images(self, colours, n_s=3):
    return np.stack([solid(c, n_s, jax.random.key(n)) for n, c in enumerate(colours)])

  def test_distinct_positions_and_channels_separate_fully(self):
    # Position 0 red, position 1 blue, every seed alike: every within pair beats every between
    # pair in every resample, so psi_auc = 1 with no interval at n = 3; the second channel (green,
    # yellow) is the floor, so auc_id = 1 too.
    a = self.images([(0.8, 0.2, 0.2), (0.2, 0.2, 0.8)])
    b = self.images([(0.2, 0.8, 0.2), (0.8, 0.8, 0.2)])
    numbers, psi_why, auc_why = figures.figure_numbers(
        self.params, ["conv2/3x3"] * 2, [3, 4], [a, b], [self.boxes] * 2, [0, 1, 2], HW, jax.random.key(1),
        n_boot=20, n_perm=20)
    self.assertEqual((psi_why, auc_why), ("", ""))
    (pair,), auc = numbers[0]
    self.assertEqual(pair.psi_auc.value, 1.0)
    self.assertTrue(pair.psi_auc.degenerate)
    self.assertEqual(pair.psi_auc.n, 3)
    self.assertEqual(report.estimate_text(pair.psi_auc), "1.00 (n = 3, no interval)")
    self.assertEqual([e.value for e in auc], [1.0, 1.0])

  def test_too_few_seeds_is_said_once(self):
    im = self.images([(0.8, 0.2, 0.2), (0.2, 0.2, 0.8)], n_s=2)
    numbers, psi_why, auc_why = figures.figure_numbers(self.params, ["conv2/3x3"], [3], [im], [self.boxes], [0, 1],
                                                       HW, jax.random.key(1))
    self.assertRegex(psi_why, r"needs at least 3 seeds per position.*shows 2")
    self.assertEqual(auc_why, psi_why)
    self.assertTrue(math.isnan(numbers[0][0][0].psi_auc.value))

  def test_a_small_common_window_is_that_pair_s_reason(self):
    rf = rfspec.receptive_field("conv2/3x3", HW)
    far = np.array([rf.box(0, 0), rf.box(23, 23)])  # opposite corners: no common RF-frame window
    im = self.images([(0.8, 0.2, 0.2), (0.2, 0.2, 0.8)])
    numbers, psi_why, auc_why = figures.figure_numbers(self.params, ["conv2/3x3"], [3], [im], [far], [0, 1, 2], HW,
                                                       jax.random.key(1), n_boot=20, n_perm=20)
    (pair,), auc = numbers[0]
    self.assertEqual(psi_why, "")
    self.assertEqual(pair.psi_auc.why, metrics.frame_windows(far, HW).reason[0][1])
    self.assertIn("common window", pair.psi_auc.why)
    self.assertRegex(auc_why, r"needs a floor: another channel of the same tap")
    self.assertEqual(report.estimate_text(auc[0]), f"n/a: {auc_why}")


class EtaTest(absltest.TestCase):
  """The ETA's arithmetic: the plan priced by the prior, then by what ran (fake clock)."""

  def setUp(self):
    super().setUp()
    self.settings = figures.settings_from_config(config({
        "a": fig([LOW0, dict(tap="inception_3a/output")], seeds=(0,)),  # 2 positions x 1 seed
        "b": fig([LOW0], positions=(), seeds=(0, 1, 2))}))  # tiled, 3 seeds

  def test_plan(self):
    self.assertEqual(figures.planned_work(self.settings), [
        ("[a] panel 1/2 conv2/3x3", "conv2/3x3", 2 * 1 * 2),
        ("[a] panel 2/2 inception_3a/output", "inception_3a/output", 4),
        ("[b] panel 1/1 conv2/3x3", "conv2/3x3", 1 * 3 * 2)])

  def test_prior(self):
    prior = figures.step_prior(self.settings)
    step = lambda tap: throughput.seconds_per_image_step(tap, HW)  # noqa: E731  the measured table
    # conv2/3x3: 2 grid calls over 4 + 6 image-steps; inception_3a/output: 1 over 4.
    self.assertAlmostEqual(prior("conv2/3x3"), step("conv2/3x3") + throughput.CPU_GRID_SECONDS * 2 / 10)
    self.assertAlmostEqual(prior("inception_3a/output"), step("inception_3a/output") + throughput.CPU_GRID_SECONDS / 4)

  def test_eta_before_during_and_after(self):
    clock = [0.0]
    prior = {"conv2/3x3": 0.5, "inception_3a/output": 2.0}.get
    run = progress.RunProgress(figures.planned_work(self.settings), prior_s=prior, clock=lambda: clock[0], quiet=True)
    self.assertAlmostEqual(run.eta_s(), 4 * 0.5 + 4 * 2.0 + 6 * 0.5)  # before the first step: the prior alone
    run.skip("[b] panel 1/1 conv2/3x3", tap="conv2/3x3", work=6)  # restored: done, never a rate
    self.assertAlmostEqual(run.eta_s(), 4 * 0.5 + 4 * 2.0)
    clock[0] = 8.0
    run.callback("[a] panel 1/2 conv2/3x3", "conv2/3x3")(progress.Progress(1, 2, 2, 0.0, 8.0, 0.0))
    # A first chunk alone is mostly compile: the prior stands until a second chunk or a finished call.
    self.assertAlmostEqual(run.eta_s(), 2 * 0.5 + 4 * 2.0)
    clock[0] = 10.0
    run.callback("[a] panel 1/2 conv2/3x3", "conv2/3x3")(progress.Progress(2, 2, 2, 0.0, 10.0, 0.0))
    # a took 10 s where the prior gave it 2: inception_3a, not yet run, is priced 5x its prior.
    self.assertAlmostEqual(run.eta_s(), 4 * 2.0 * 5)

  def test_tap_macs(self):
    # By hand from deploy.prototxt at 224 px: conv1 112^2 * 7^2 * 3 * 64; conv2/3x3_reduce
    # 56^2 * 64 * 64; conv2/3x3 56^2 * 3^2 * 64 * 192.
    conv1 = 112 * 112 * 49 * 3 * 64
    self.assertEqual(throughput.tap_macs("conv1/7x7_s2", (224, 224)), conv1)
    self.assertEqual(throughput.tap_macs("pool1/norm1", (224, 224)), conv1)  # pooling and LRN are free
    self.assertEqual(throughput.tap_macs("conv2/3x3", (224, 224)), conv1 + 56 * 56 * 64 * 64 + 56 * 56 * 9 * 64 * 192)
    # A branch needs only its own ancestors: inception_3a/1x1 (28^2 * 192 * 64) is not in 3x3_reduce.
    base = throughput.tap_macs("pool2/3x3_s2", (224, 224))
    self.assertEqual(throughput.tap_macs("inception_3a/1x1", (224, 224)) - base, 28 * 28 * 192 * 64)
    self.assertEqual(throughput.tap_macs("inception_3a/3x3_reduce", (224, 224)) - base, 28 * 28 * 192 * 96)
    self.assertEqual(throughput.tap_macs("loss3/classifier", (224, 224)) - throughput.tap_macs("pool5/7x7_s1", (224, 224)),
                     1024 * 1000)


if __name__ == "__main__":
  absltest.main()

"""rfspec.specificity: the canvas pad rule, RF regions, and a tiny sweep on the real weights."""

import math

import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from rfspec import io, metrics
from rfspec import specificity as spec
from rfspec.masks import named_positions
from rfspec.geometry import receptive_field
from tests.conftest import IMAGES, real_params, shared_file

TINY = dict(recipe="deepdream", image_hw=(64, 64), steps=2, chunk=2, objective="pre_relu",
            learning_rate=16 / 255, jitter=2)
POSITIONS = ("centre", "top_left")
SEEDS = (0, 1)


def _coords(tap, hw, names=spec.DEFAULT_POSITIONS):
  named = named_positions(tap, hw)
  return [named[n] for n in names]


def _finite_or_none(tree):
  """Every number in a JSON-like tree is finite (or None)."""
  if isinstance(tree, dict):
    return all(_finite_or_none(v) for v in tree.values())
  if isinstance(tree, (list, tuple)):
    return all(_finite_or_none(v) for v in tree)
  if isinstance(tree, float):
    return math.isfinite(tree)
  return True


class CanvasPadTest(parameterized.TestCase):

  @parameterized.product(tap=("conv2/3x3", "inception_3b/output", "inception_4c/output", "inception_5b/output"),
                         hw=(64, 128, 224))
  def test_pad_is_the_smallest_stride_multiple_holding_every_rf(self, tap, hw):
    coords = _coords(tap, (hw, hw))
    stride = receptive_field(tap, (hw, hw)).stride
    pad = spec.canvas_pad(tap, (hw, hw), coords, max_pad=10_000)
    self.assertEqual(pad % stride, 0)
    for ij in coords:
      self.assertEqual(spec.canvas_inside_fraction(tap, (hw, hw), pad, ij), 1.0)
    if pad:  # one stride less leaves some RF partly off the canvas
      self.assertLess(min(spec.canvas_inside_fraction(tap, (hw, hw), pad - stride, ij) for ij in coords), 1.0)

  def test_cap_rounds_down_to_the_stride_and_reports_the_shortfall(self):
    tap, hw = "inception_4c/output", (128, 128)  # stride 16, needs 160 px
    coords = _coords(tap, hw)
    pad = spec.canvas_pad(tap, hw, coords, max_pad=40)
    self.assertEqual(pad, 32)
    fractions = [spec.canvas_inside_fraction(tap, hw, pad, ij) for ij in coords]
    self.assertLess(min(fractions), 1.0)
    # The canvas only adds: every RF is at least as much inside it as inside the image.
    rf = receptive_field(tap, hw)
    for ij, f in zip(coords, fractions):
      self.assertGreaterEqual(f, rf.inside_fraction(*ij))

  def test_reflect_stays_below_the_image_side(self):
    tap, hw = "inception_4c/output", (64, 64)
    pad = spec.canvas_pad(tap, hw, _coords(tap, hw), max_pad=500, fill="reflect")
    self.assertLess(pad, 64)
    self.assertEqual(pad, 48)

  def test_small_rf_needs_no_more_than_its_half_width(self):
    # conv2/3x3: RF 19 px, stride 4, node 0's box starts at -7 -> 8 px is the smallest multiple of 4.
    self.assertEqual(spec.canvas_pad("conv2/3x3", (64, 64), _coords("conv2/3x3", (64, 64)), max_pad=100), 8)

  def test_pad_not_a_stride_multiple_is_rejected(self):
    with self.assertRaisesRegex(ValueError, "multiple"):
      spec.canvas_inside_fraction("inception_4c/output", (64, 64), 8, (0, 0))


class HelpersTest(absltest.TestCase):

  def test_rf_regions_are_clipped_grown_boxes(self):
    tap, hw = "conv2/3x3", (64, 64)
    coords = _coords(tap, hw, POSITIONS)
    regions = spec.rf_regions(tap, hw, coords, grow=2)
    self.assertEqual(regions.shape, (2, 64, 64))
    rf = receptive_field(tap, hw)
    top, left, bottom, right = rf.box(*coords[0])
    self.assertEqual(regions[0].sum(), (bottom - top + 4) * (right - left + 4))
    self.assertTrue(regions[0, top - 2, left - 2] and not regions[0, top - 3, left - 3])
    # top_left: box (-7, -7, 12, 12) grown by 2 and clipped -> [0, 14) x [0, 14).
    self.assertEqual(regions[1].sum(), 14 * 14)

  def test_spearman(self):
    self.assertAlmostEqual(spec.spearman([1, 2, 3, 4], [10, 20, 25, 100]), 1.0)
    self.assertAlmostEqual(spec.spearman([1, 2, 3, 4], [4, 3, 2, 1]), -1.0)
    self.assertIsNone(spec.spearman([1, 2], [1, 2]))
    self.assertIsNone(spec.spearman([1, 2, 3], [np.nan, 1, 2]))


class SweepTest(absltest.TestCase):
  """One tiny real sweep (conv2/3x3, 2 positions, 2 seeds, 2 steps), plain and with a canvas."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.params = real_params()
    ref = io.load_image(shared_file(IMAGES / "cat.jpg"), (metrics.REALISM_SIZE,) * 2)[None]
    cls.reference = metrics.activation_stats(cls.params, jnp.asarray(ref))
    cls.plain = spec.sweep_tap(cls.params, "conv2/3x3", [3], POSITIONS, SEEDS, TINY, reference=cls.reference,
                               progress=lambda _: None)
    cls.zero = spec.sweep_tap(cls.params, "conv2/3x3", [3], POSITIONS, SEEDS, TINY,
                              canvas=spec.Canvas("zero", 64), progress=lambda _: None)

  def test_shapes_and_keys(self):
    r = self.plain
    self.assertEqual(r["images"].shape, (1, 2, 2, 64, 64, 3))
    self.assertEqual(r["tiled_images"].shape, (2, 64, 64, 3))
    self.assertTrue(np.all((r["images"] >= 0) & (r["images"] <= 1)))
    for key in ("tap", "variant", "channels", "positions", "space", "space_reason", "per_channel", "summary",
                "realism", "rf", "seconds"):
      self.assertIn(key, r)
    self.assertEqual(r["variant"], "none")
    self.assertIsNone(r["canvas"])
    self.assertEqual(r["space"], "pixel")  # RF 19 px: no room for feature RFs
    ch = r["per_channel"][0]
    self.assertEqual(ch["channel"], 3)
    self.assertIsNone(ch["feature"])
    for name in ("s_pq", "psi", "s_pp", "s_qq"):
      self.assertEqual(np.array(ch["pixel"][name], dtype=float).shape, (2, 2))
    self.assertEqual(np.array(ch["transfer"], dtype=float).shape, (2, 2))
    self.assertEqual(np.array(ch["final_objective"], dtype=float).shape, (2, 2))
    self.assertEqual([p["name"] for p in r["positions"]], list(POSITIONS))
    self.assertEqual(r["positions"][0]["inside_fraction"], 1.0)
    self.assertAlmostEqual(r["positions"][1]["inside_fraction"], 12 * 12 / 19 ** 2)
    self.assertTrue(_finite_or_none({k: v for k, v in r.items() if k not in ("images", "tiled_images")}))

  def test_psi_diagonal_is_zero(self):
    for r in (self.plain, self.zero):
      psi = r["per_channel"][0]["pixel"]["psi"]
      ceiling = r["per_channel"][0]["pixel"]["seed_ceiling"]
      for p in range(2):
        # 0 where the seeds agree at all; undefined (None) where the ceiling is <= 0.
        if ceiling[p] > 0:
          self.assertAlmostEqual(psi[p][p], 0.0, places=6)
        else:
          self.assertIsNone(psi[p][p])
      centre = r["summary"]["psi_by_position"]["centre"]
      if ceiling[0] >= spec.MIN_CEILING:
        self.assertAlmostEqual(centre, 0.0, places=6)
      else:
        self.assertIsNone(centre)

  def test_transfer_diagonal_is_one(self):
    t = np.array(self.plain["per_channel"][0]["transfer"], dtype=float)
    np.testing.assert_allclose(np.diag(t)[np.isfinite(np.diag(t))], 1.0, rtol=1e-5)

  def test_realism_compares_tiled_with_centre(self):
    real = self.plain["realism"]
    self.assertEqual(real["single_position"], "centre")
    for block in ("confidence", "stats_distance"):
      self.assertLen(real[block]["tiled_per_seed"], 2)
      self.assertAlmostEqual(real[block]["tiled_minus_single"], real[block]["tiled"] - real[block]["single"], places=5)
    self.assertGreater(real["stats_distance"]["single"], 0)

  def test_no_reference_means_no_stats_distance(self):
    out = spec.tiled_realism(self.params, self.plain["images"][0, 0], self.plain["tiled_images"], None)
    self.assertIsNone(out["stats_distance"])
    self.assertIn("no reference", out["stats_distance_note"])
    self.assertAlmostEqual(out["confidence"]["tiled"], self.plain["realism"]["confidence"]["tiled"], places=5)

  def test_canvas_variant(self):
    r = self.zero
    self.assertEqual(r["variant"], "zero")
    self.assertEqual(r["canvas"]["pad"], 8)
    self.assertEqual(r["canvas"]["net_hw"], [80, 80])
    self.assertFalse(r["canvas"]["capped"])
    self.assertEqual([p["canvas_inside_fraction"] for p in r["positions"]], [1.0, 1.0])
    self.assertEqual(r["positions"][1]["canvas_ij"], [2, 2])  # (0, 0) + pad / stride
    self.assertEqual(r["positions"][1]["box"], self.plain["positions"][1]["box"])
    self.assertIsNone(r["realism"])
    self.assertIsNone(r["tiled_images"])
    self.assertIsNone(r["per_channel"][0]["transfer"])
    self.assertEqual(r["images"].shape, (1, 2, 2, 64, 64, 3))  # the optimised image keeps its size

  def test_pair_summary(self):
    out = spec.pair_summary(self.plain)
    self.assertEqual(out["psi_pairs_defined"][1], 2)  # 1 channel x 2 ordered pairs p != q
    self.assertEqual(list(out["ceiling_by_position"]), list(POSITIONS))
    ceiling = self.plain["per_channel"][0]["pixel"]["seed_ceiling"]
    self.assertEqual(out["ceiling_by_position"]["centre"], ceiling[0])

  def test_plots(self):
    from matplotlib.figure import Figure

    results = [{k: v for k, v in r.items() if k not in ("images", "tiled_images")} for r in (self.plain, self.zero)]
    for fig in (spec.plot_psi_vs_rf_size(results), spec.plot_psi_vs_inside_fraction(results),
                spec.plot_transfer(results[0])):
      self.assertIsInstance(fig, Figure)
    with self.assertRaisesRegex(ValueError, "transfer"):
      spec.plot_transfer(results[1])

  def test_bad_input(self):
    with self.assertRaisesRegex(ValueError, "2 distinct seeds"):
      spec.sweep_tap(self.params, "conv2/3x3", [0], POSITIONS, [0], TINY)
    with self.assertRaisesRegex(ValueError, "Unknown position"):
      spec.sweep_tap(self.params, "conv2/3x3", [0], ("centre", "middle_earth"), SEEDS, TINY)
    with self.assertRaisesRegex(ValueError, "spatial"):
      spec.sweep_tap(self.params, "prob", [0], POSITIONS, SEEDS, TINY)
    with self.assertRaisesRegex(ValueError, "Canvas fill"):
      spec.sweep_tap(self.params, "conv2/3x3", [0], POSITIONS, SEEDS, TINY, canvas=spec.Canvas("plaid", 8))


if __name__ == "__main__":
  absltest.main()

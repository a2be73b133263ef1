"""rfspec.runs.atlas on random params of the real shapes: batches, resume, the measure, settings, views.

Random GoogLeNet params (a fixed jax key), conv2/3x3 at 32 px, 2 steps: the science is not the point
here, the atlas's bookkeeping is (the real weights run in tests/experiments/position_atlas_test.py).
Kept small: each psi_auc costs a `claims.condition_psi` call (about a second, mostly compiling).
"""

import os
from unittest import mock

import jax
import numpy as np
import pytest
from absl.testing import absltest, parameterized

import rfspec
from rfspec import engine, metrics, objectives, plots, report
from rfspec.errors import UserError
from rfspec.progress import RunProgress
from rfspec.runs import atlas
from rfspec.runs.store import Store
from tests.conftest import tiny_params

TAP = "conv2/3x3"  # RF 19 px: at 32 px the grid is 8 x 8 and the corner RFs run off the image
HW = (32, 32)
# A 2 x 2 lattice of corners: the reference is the corner nearest the centre node, (0, 0); two tiles
# share 13 % of the RF with it (psi defined), the opposite corner 4 % (undefined).
CONFIG = dict(tap=TAP, vis=dict(recipe="zipser2015", image_hw=HW, steps=2, chunk=2), seeds=tuple(range(8)),
              seeds_per_position=3, lattice=2, batch_positions=3, n_boot=20, n_perm=20)
QUIET = RunProgress(quiet=True)


class _Killed(Exception):
  pass


class KilledAfterFirstBatch(Store):
  """A Store whose process 'dies' right after the first batch is saved (its files and manifest written)."""

  def save(self, unit, key, arrays, meta):
    super().save(unit, key, arrays, meta)
    if unit.startswith("atlas/batch_"):
      raise _Killed(unit)


@pytest.mark.slow
class RunAtlasTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.params = tiny_params()
    cls.settings = atlas.settings_from_config(CONFIG)
    cls.cfg = cls.settings.cfg()
    fns = engine._chunk_fns(cls.cfg)  # cached per cfg; no other test uses this one
    cls.traces_before = (fns.init._cache_size(), engine.chunk_compiles(cls.cfg))
    cls.result = atlas.run_atlas(cls.params, cls.settings, Store(None), progress=QUIET)
    cls.traces_after = (fns.init._cache_size(), engine.chunk_compiles(cls.cfg))

  def test_shapes_and_lattice(self):
    r = self.result
    self.assertEqual(r.images.shape, (2, 2, 3, *HW, 3))
    self.assertEqual(r.traces.shape, (2, 2, 3, 2))
    for a in (r.seeds, r.start_activation, r.final_activation):
      self.assertEqual(a.shape, (2, 2, 3))
    np.testing.assert_array_equal(r.rows, [0, 7])  # rfspec.masks.lattice(TAP, HW, 2) of the 8 x 8 grid
    np.testing.assert_array_equal(r.cols, [0, 7])
    self.assertEqual((r.batches, r.batch_positions, r.resumed), (2, 3, 0))
    self.assertTrue(np.all(np.isfinite(r.images)))

  def test_compiles_once_for_every_batch(self):
    self.assertEqual(self.traces_before, (0, 0))
    self.assertEqual(self.traces_after, (1, 1))  # 2 batches (the last padded), one trace

  def test_every_start_drives_its_node_and_comes_from_the_seed_list(self):
    r = self.result
    self.assertTrue(set(r.seeds.ravel().tolist()) <= set(CONFIG["seeds"]))
    for row in r.seeds.reshape(4, 3):
      self.assertLen(set(row.tolist()), 3)  # three distinct starts per position
    # The start activations, recomputed from the start images themselves.
    starts = np.stack([np.asarray(rfspec.initial_image(int(s), self.cfg)) for s in r.seeds.ravel()])
    blob = np.asarray(objectives.tap_activation(self.params, starts, TAP, mean_bgr=self.cfg.caffe_mean))
    nodes = np.repeat([(i, j) for i in r.rows for j in r.cols], 3, axis=0)
    at = blob[np.arange(12), nodes[:, 0], nodes[:, 1], r.channel]
    np.testing.assert_allclose(r.start_activation.ravel(), at, rtol=1e-5, atol=1e-5)
    self.assertTrue(np.all(at > 0))

  def test_final_activation_is_the_nodes_value_on_the_final_image(self):
    r = self.result
    blob = np.asarray(objectives.tap_activation(self.params, r.images[1, 0], TAP, mean_bgr=self.cfg.caffe_mean))
    np.testing.assert_allclose(r.final_activation[1, 0], blob[:, r.rows[1], r.cols[0], r.channel], rtol=1e-5)

  def test_a_tile_is_remade_bit_for_bit_by_its_batch_call(self):
    r = self.result
    k, n = divmod(3, r.batch_positions)  # tile (1, 1) is alone in the last batch, padded with copies of it
    masks = np.stack([rfspec.node_mask(TAP, r.channel, HW, tuple(p)) for p in r.batch_plan[k] for _ in range(3)])
    out = engine.visualize_batch(self.params, r.batch_seeds[k].ravel(), masks, self.cfg, progress=None).images
    np.testing.assert_array_equal(out[n * 3:(n + 1) * 3], r.images[1, 1])
    np.testing.assert_array_equal(r.batch_seeds[k][n], r.seeds[1, 1])
    np.testing.assert_array_equal(r.batch_plan[k][1:], [r.batch_plan[k][0]] * 2)

  def test_resume_after_a_kill_redoes_no_finished_batch_and_is_bit_identical(self):
    workdir = self.create_tempdir().full_path
    with self.assertRaises(_Killed):
      with KilledAfterFirstBatch(workdir, weights_sha256="w", schema=atlas.SCHEMA) as store:
        atlas.run_atlas(self.params, self.settings, store, progress=QUIET)
    first = os.path.join(workdir, "atlas", "batch_000.npz")
    stamp = os.stat(first).st_mtime_ns
    self.assertFalse(os.path.exists(os.path.join(workdir, "atlas", "batch_001.npz")))
    progress = RunProgress(atlas.planned_work(self.settings), quiet=True)
    with Store(workdir, weights_sha256="w", schema=atlas.SCHEMA) as store:
      again = atlas.run_atlas(self.params, self.settings, store, progress=progress)
    self.assertEqual(again.resumed, 1)
    self.assertEqual(os.stat(first).st_mtime_ns, stamp)  # not rewritten
    self.assertTrue(progress._grids["atlas/batch_000"]["skipped"])
    self.assertFalse(progress._grids["atlas/batch_001"]["skipped"])
    np.testing.assert_array_equal(again.images, self.result.images)
    np.testing.assert_array_equal(again.psi, self.result.psi)

  def test_psi_is_defined_where_the_common_window_is_large_enough(self):
    r = self.result
    rf = rfspec.receptive_field(TAP, HW)
    ref = r.reference
    self.assertEqual(ref, (0, 0))  # the lattice node nearest the centre node (3, 3)
    self.assertTrue(np.isnan(r.psi[ref]))
    self.assertEqual(r.psi_reason[ref[0]][ref[1]], "the reference itself")
    for rr in range(2):
      for c in range(2):
        # The common window by hand: offsets (u, v) of the RF frame inside the image at both positions.
        (t0, l0, _, _), (t1, l1, _, _) = r.boxes[rr, c], r.boxes[ref]
        u = min(rf.size, HW[0] - t0, HW[0] - t1) - max(0, -t0, -t1)
        v = min(rf.size, HW[1] - l0, HW[1] - l1) - max(0, -l0, -l1)
        share = max(u, 0) * max(v, 0) / rf.size ** 2
        self.assertAlmostEqual(r.window_share[rr, c], share)
        if (rr, c) == ref:
          continue
        self.assertEqual(np.isfinite(r.psi[rr, c]), share >= metrics.MIN_WINDOW_SHARE, (rr, c, share))
        if share < metrics.MIN_WINDOW_SHARE:
          self.assertIn("below the minimum", r.psi_reason[rr][c])
        else:
          self.assertEqual(r.psi_reason[rr][c], "")
          lo, hi = r.psi_ci[rr, c]
          self.assertTrue(-1 <= lo <= hi <= 1)
        # The window's rects, at the tile and at the centre: the same RF-frame offsets, inside the image.
        at_tile, at_ref = r.window_rects[rr, c]
        np.testing.assert_array_equal(at_tile - np.tile(r.boxes[rr, c, :2], 2), at_ref - np.tile(r.boxes[ref][:2], 2))
        if share > 0:
          self.assertTrue(np.all(at_tile >= 0) and np.all(at_tile[2:] <= HW))
    self.assertEqual(int(np.isfinite(r.psi).sum()), 2)  # both cases occur


class PsiVsCentreTest(absltest.TestCase):
  """The measure on made-up tiles: the same content in the RF frame reads as one position; content that
  differs per position reads as distinct, and only on the common window."""

  def test_frame_aligned_content_is_not_position_specific_but_distinct_content_is(self):
    rf = rfspec.receptive_field(TAP, HW)
    positions = [(3, 3), (0, 3)]  # the centre node, then the top edge (its RF runs off the image)
    boxes = np.array([rf.box(*p) for p in positions])
    key = jax.random.key(1)
    canvases = np.asarray(jax.random.uniform(key, (2, 128, 128, 3)))  # one texture per position

    def tiles(texture_of):
      """Position p's 3 starts: its texture placed so that texture pixel (50, 50) sits at the RF's
      top-left corner (the same RF-frame content wherever the RF is), plus a little noise per start."""
      out = np.zeros((2, 3, *HW, 3), np.float32)
      for p, (t, l, _, _) in enumerate(boxes):
        crop = canvases[texture_of(p)][50 - t:50 - t + HW[0], 50 - l:50 - l + HW[1]]
        noise = np.asarray(jax.random.normal(jax.random.fold_in(key, p), (3, *HW, 3))) * 0.03
        out[p] = np.clip(crop[None] + noise, 0, 1)
      return out

    seeds = np.arange(6).reshape(2, 3)
    same = atlas.psi_vs_centre(tiny_params(), tiles(lambda p: 0), seeds, boxes, HW, 0, key=key, n_boot=20, n_perm=20)
    other = atlas.psi_vs_centre(tiny_params(), tiles(lambda p: p), seeds, boxes, HW, 0, key=key, n_boot=20, n_perm=20)
    self.assertEqual(same.reason, ("the reference itself", ""))
    self.assertLess(same.psi[1], 0.5, same)
    self.assertGreater(other.psi[1], 0.9, other)
    # The two groups were compared on the same RF-frame window, placed at each position.
    np.testing.assert_array_equal(same.rects[1, 0] - np.tile(boxes[1, :2], 2), same.rects[1, 1] - np.tile(boxes[0, :2], 2))

  def test_undefined_pairs_say_why_without_measuring(self):
    rf = rfspec.receptive_field(TAP, HW)
    boxes = np.array([rf.box(3, 3), rf.box(0, 3), rf.box(0, 0), rf.box(7, 7)])
    images = np.full((4, 2, *HW, 3), 0.5, np.float32)
    # params=None: a pair that is measured would fail; none may be.
    two = atlas.psi_vs_centre(None, images, np.arange(8).reshape(4, 2), boxes, HW, 0, key=jax.random.key(0))
    self.assertTrue(np.all(np.isnan(two.psi)))
    self.assertIn("2 start(s) per position, fewer than the 3", two.reason[1])
    corners = atlas.psi_vs_centre(None, np.full((2, 3, *HW, 3), 0.5, np.float32), np.arange(6).reshape(2, 3),
                                  boxes[2:], HW, 0, key=jax.random.key(0))
    self.assertEqual(corners.reason[0], "the reference itself")
    # Opposite corners: frame offsets 7..18 are inside at (0, 0), 0..10 at (7, 7): 4 x 4 of 19 x 19 in common.
    self.assertEqual(corners.reason[1], "the common window is 4% of the RF, below the minimum 10%")
    self.assertAlmostEqual(corners.share[1], 16 / 19 ** 2)
    self.assertTrue(np.isnan(corners.psi[1]))


class PositionAtlasTest(absltest.TestCase):
  """The public `rfspec.position_atlas`: the same seeds at every position."""

  def test_tiles_equal_visualize_and_resume_from_the_store(self):
    cfg = atlas.settings_from_config(CONFIG).cfg()
    workdir = self.create_tempdir().full_path
    positions = [(0, 0), (0, 7), (7, 0), (7, 7)]
    with Store(workdir) as store:
      a = rfspec.position_atlas(tiny_params(), TAP, 7, [0, 1, 2], cfg, positions=positions, batch_positions=3,
                                store=store)
    self.assertEqual(a.images.shape, (2, 2, 3, *HW, 3))
    one = rfspec.visualize(tiny_params(), 2, rfspec.node_mask(TAP, 7, HW, (7, 0)), cfg, progress=None)
    np.testing.assert_allclose(a.images[1, 0, 2], one, atol=1e-5)
    with Store(workdir) as store:
      b = rfspec.position_atlas(tiny_params(), TAP, 7, [0, 1, 2], cfg, positions=positions, batch_positions=3,
                                store=store)
    self.assertEqual(b.resumed, 2)
    np.testing.assert_array_equal(a.images, b.images)

  def test_errors_name_the_fix(self):
    cfg = atlas.settings_from_config(CONFIG).cfg()
    for args, pattern in ((("prob", 0, [0], cfg), r"'prob' has no spatial grid"),
                          ((TAP, 192, [0], cfg), r"channel must be an int in 0..191"),
                          ((TAP, 0, [1, 1], cfg), r"distinct"),
                          ((TAP, 0, [0], cfg, dict(positions=[(0, 0), (1, 1)])), r"lattice")):
      kw = args[4] if len(args) > 4 else {}
      with self.assertRaisesRegex(UserError, pattern):
        rfspec.position_atlas(None, *args[:4], **kw)


  def test_progress_false_is_silence_and_other_values_are_one_paragraph(self):
    cfg = atlas.settings_from_config(CONFIG).cfg()
    with self.assertRaisesRegex(UserError, r"progress must be a rfspec.progress.RunProgress.*got 'yes'"):
      rfspec.position_atlas(None, TAP, 7, [0, 1, 2], cfg, positions=[(0, 0)], progress="yes")
    # progress=False used to fail deep in the first batch (a bool has no .callback).
    a = rfspec.position_atlas(tiny_params(), TAP, 7, [0, 1, 2], cfg, positions=[(0, 0)], batch_positions=1,
                              progress=False)
    self.assertEqual(a.images.shape, (1, 1, 3, *HW, 3))


class PlanTest(absltest.TestCase):

  def test_batches_have_one_shape_and_pad_with_their_own_first_position(self):
    plan = atlas.plan_batches([(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)], 2)
    self.assertEqual([b.shape for b in plan], [(2, 2)] * 3)
    np.testing.assert_array_equal(plan[2], [(2, 0), (2, 0)])

  def test_batch_size_follows_the_memory_available(self):
    class FakeGpu:
      platform = "gpu"
      id, device_kind = 0, "fake"

      def memory_stats(self):
        return {"bytes_limit": 16 * 2**30, "bytes_in_use": 0}

    cfg = rfspec.VisConfig(tap="inception_4c/5x5", image_hw=(224, 224))
    per_device = int(0.5 * 16 * 2**30 // atlas.bytes_per_element(cfg))  # half of each device's free memory
    self.assertEqual(atlas.default_batch_positions(cfg, 4, 10_000, devices=[FakeGpu()] * 2), per_device * 2 // 4)
    self.assertEqual(atlas.default_batch_positions(cfg, 4, 10, devices=[FakeGpu()] * 2), 10)  # at most the positions
    self.assertEqual(atlas.default_batch_positions(cfg, 10**6, 10, devices=[FakeGpu()]), 1)  # at least 1


class SettingsTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("mosaic_tile", dict(mosaic_tile=-5), r"config.mosaic_tile must be a whole number in \[160, 2048\].*got -5"),
      ("batch_positions", dict(batch_positions=-1), r"config.batch_positions must be .* got -1"),
      ("seeds_float", dict(seeds=(0, 1.5)), r"config.seeds must be a list of whole numbers.*got \(0, 1.5\)"),
      ("seeds_text", dict(seeds="abc"), r"config.seeds must be a list of whole numbers.*got 'abc'"),
      ("too_few_seeds", dict(seeds=(5,)), r"config.seeds holds 1 seed\(s\) \[5\], fewer than config.seeds_per_position"),
      ("duplicate_seeds", dict(seeds=(1, 1, 2)), r"config.seeds must be distinct"),
      ("two_starts", dict(seeds_per_position=2), r"seeds_per_position must be .*MIN_SEEDS = 3"),
      ("tap", dict(tap="prob"), r"config.tap: .*'prob' has no spatial grid"),
      ("channel", dict(channel=192), r"config.channel must be a whole number in \[-1, 191\]"),
      ("lattice", dict(lattice=9), r"config.lattice: lattice rows must be an int in 1..8"),
      ("vis", dict(vis=dict(recipe="zipser2015", image_hw=HW, steps=0)), r"config.vis does not work.*steps"),
      ("bool_channel", dict(channel=True), r"config.channel must be a whole number"),
  )
  def test_one_paragraph_that_names_the_field(self, overrides, pattern):
    with self.assertRaisesRegex(UserError, pattern) as e:
      atlas.settings_from_config({**CONFIG, **overrides})
    self.assertNotIn("\n", str(e.exception))

  def test_a_size_that_cannot_fit_is_refused_before_the_weights_load(self):
    with mock.patch.dict(os.environ, {"RFSPEC_MEMORY_LIMIT": "1G"}):
      with self.assertRaisesRegex(UserError, r"config.vis.image_hw / config.batch_positions: VisConfig\(tap='conv2/3x3', "
                                             r"image_hw=\(6000, 6000\)\) on a batch of 9 image\(s\) needs about"):
        atlas.settings_from_config({**CONFIG, "vis": dict(CONFIG["vis"], image_hw=(6000, 6000))})

  def test_every_bad_field_in_one_paragraph(self):
    with self.assertRaises(UserError) as e:
      atlas.settings_from_config({**CONFIG, "mosaic_tile": -5, "batch_positions": -1, "seeds": (0, 1.5)})
    text = str(e.exception)
    self.assertIn("3 bad field(s)", text)
    for field in ("mosaic_tile", "batch_positions", "seeds"):
      self.assertIn(f"config.{field}", text)
    self.assertNotIn("\n", text)

  def test_the_configs_variants_are_valid(self):
    from experiments.configs import position_atlas as configs

    for variant in ("full", "cpu", "quick"):
      s = atlas.settings_from_config(configs.get_config(variant))
      self.assertGreaterEqual(s.seeds_per_position, metrics.MIN_SEEDS)
      self.assertGreaterEqual(s.mosaic_tile, atlas.MIN_TILE_PX)
    self.assertTrue(atlas.settings_from_config(configs.get_config("quick")).smoke_test)
    self.assertFalse(atlas.settings_from_config(configs.get_config("cpu")).smoke_test)


class ViewsTest(absltest.TestCase):

  def test_mosaic_places_tiles_and_draws_the_rf_box(self):
    rng = np.random.default_rng(0)
    images = np.repeat(rng.uniform(0.3, 0.7, (2, 2, 32, 32, 1)), 3, axis=-1).astype(np.float32)  # grey: no red
    boxes = np.broadcast_to(np.array([-10, -10, 20, 20]), (2, 2, 4))  # runs off the top and left only
    canvas, g = plots.atlas_mosaic(images, boxes, np.full((2, 2), 0.3), [0, 7], [0, 7], title="t", tile=160)
    self.assertEqual((g["tile_hw"], g["scale"]), ((160, 160), 5.0))
    top = g["title_h"] + g["header_h"] + g["cell_h"] + g["margin"]  # tile (1, 1)
    left = g["label_w"] + g["cell_w"] + g["margin"]
    tile = canvas[top:top + 160, left:left + 160].astype(int)
    red = (tile[..., 0] > tile[..., 1] + 60) & (tile[..., 0] > tile[..., 2] + 60)
    edge = 20 * 5 - 1  # the box (half-open, to 20) ends at 100 px on the 5x tile: its last row and col
    self.assertGreater(red[edge, :edge].mean(), 0.9)  # the solid in-image part of the bottom edge
    self.assertGreater(red[:edge, edge].mean(), 0.9)  # and of the right edge
    self.assertEqual(red[edge + 2:].sum() + red[:, edge + 2:].sum(), 0)  # beyond the RF the image is untouched
    self.assertEqual(red[2:edge - 2, 2:edge - 2].sum(), 0)  # and inside it
    # Off the image, above the tile, the right edge goes on dashed: red and white runs.
    above = canvas[top - g["margin"]:top - 2, left + edge]
    is_red = above[:, 0] > 200
    is_red &= above[:, 1] < 100
    self.assertTrue(is_red.any() and (~is_red).any(), above)
    self.assertGreaterEqual(int(np.sum(np.diff(is_red.astype(int)) != 0)), 4)
    # Nothing is drawn below or right of the image, where the box does not reach.
    below = canvas[top + 161:top + 160 + g["margin"], left - 1:left + 161]
    self.assertFalse(np.any((below[..., 0] > 200) & (below[..., 1] < 100)))

  def test_heat_map_cells_are_where_the_figure_draws_them(self):
    psi = np.array([[np.nan, 0.9], [-0.9, np.nan]])
    fig = plots.atlas_psi_figure(psi, np.stack([psi - 0.1, psi + 0.1], -1), [["the reference itself", ""], ["", "x"]],
                                 np.array([[0.5, 0.3], [0.3, 0.05]]), [0, 5], [0, 5], (0, 0))
    pixels, cells = plots.atlas_psi_heatmap(fig)
    h, w, _ = pixels.shape
    for (r, c), want in (((0, 1), "red"), ((1, 0), "blue")):
      x0, y0, x1, y1 = cells[r, c] * [w, h, w, h]
      # Sample near the cell's corner, away from its text.
      y, x = int(y0 + 0.12 * (y1 - y0)), int(x0 + 0.12 * (x1 - x0))
      rgb = pixels[y, x].astype(int)
      self.assertEqual("red" if rgb[0] > rgb[2] + 60 else "blue" if rgb[2] > rgb[0] + 60 else "grey", want, rgb)

  def test_the_pages_view_parser(self):
    """The page's own URL logic (`ATLAS_VIEW_JS`), run in Node when it is installed."""
    import shutil
    import subprocess

    node = shutil.which("node")
    if node is None:
      self.skipTest("node is not installed; the parser runs in the browser only")
    script = report.ATLAS_VIEW_JS + """
const cases = [['?cell=0,2', ''], ['', '#tile-13-6'], ['?cell=0,2', '#tile-1-1'], ['?cell=a,2', ''], ['', ''],
               ['?x=1&tile=3,4', '#other']];
console.log(JSON.stringify(cases.map(([s, h]) => atlasView(s, h))));"""
    out = subprocess.run([node, "-e", script], capture_output=True, text=True, timeout=60)
    self.assertEqual(out.returncode, 0, out.stderr)
    import json

    self.assertEqual(json.loads(out.stdout), [
        dict(kind="cell", i=0, j=2), dict(kind="tile", i=13, j=6), dict(kind="tile", i=1, j=1), None, None,
        dict(kind="tile", i=3, j=4)])


if __name__ == "__main__":
  absltest.main()

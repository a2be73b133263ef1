"""rfspec.atlas on the real weights: tiles equal `visualize`, one compile for all batches, resume, errors."""

import dataclasses

import numpy as np
from absl.testing import absltest, parameterized

import rfspec
from rfspec import atlas, engine, masks, objectives
from rfspec.errors import UserError
from tests.conftest import real_params

TAP = "inception_4c/5x5"
HW = (64, 64)  # inception_4c/5x5's grid is 4 x 4 here
QUIET = dict(progress=lambda _: None)


def small_cfg(**overrides):
  fields = dict(tap=TAP, image_hw=HW, steps=2, chunk=1)
  fields.update(overrides)
  return rfspec.VisConfig.from_recipe("zipser2015", **fields)


class MemoryStore:
  """An in-memory `atlas.BatchStore` that records what was saved and loaded."""

  def __init__(self):
    self.saved, self.loaded, self.batches = [], [], {}

  def load(self, index, positions):
    got = self.batches.get(index)
    if got is None or not np.array_equal(got.positions, positions):
      return None
    self.loaded.append(index)
    return got

  def save(self, index, result):
    self.saved.append(index)
    self.batches[index] = result


class AtlasTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.params = real_params()
    cls.cfg = small_cfg()
    # A 2 x 3 lattice (6 positions) in batches of 4: the second batch is padded with 2 copies.
    cls.positions = [(i, j) for i in (0, 2) for j in (3, 1, 0)]
    cls.seeds = [0, 5]
    cls.events = []
    cls.store = MemoryStore()
    # Compiled functions of this cfg, cached per cfg; no other test uses this one.
    cls.fns = engine._chunk_fns(cls.cfg)
    cls.traces_before = (cls.fns.init._cache_size(), cls.fns.chunk._cache_size())
    cls.result = atlas.position_atlas(cls.params, TAP, 7, cls.seeds, cls.cfg, positions=cls.positions,
                                      batch_positions=4, progress=cls.events.append, store=cls.store)
    cls.traces_after = (cls.fns.init._cache_size(), cls.fns.chunk._cache_size())

  def test_shape_and_lattice_order(self):
    r = self.result
    self.assertEqual(r.images.shape, (2, 3, 2, *HW, 3))
    self.assertEqual(r.traces.shape, (2, 3, 2, self.cfg.steps))
    self.assertEqual(r.final_activation.shape, (2, 3, 2))
    np.testing.assert_array_equal(r.rows, [0, 2])
    np.testing.assert_array_equal(r.cols, [0, 1, 3])  # ascending, whatever the order given
    self.assertEqual((r.batches, r.batch_positions, r.resumed), (2, 4, 0))
    self.assertTrue(np.all(np.isfinite(r.images)))

  @parameterized.parameters((0, 0, 0), (1, 2, 1), (1, 1, 0))  # (1, *) lie in the padded last batch
  def test_tile_equals_visualize(self, r, c, s):
    i, j = int(self.result.rows[r]), int(self.result.cols[c])
    mask = rfspec.node_mask(TAP, 7, HW, (i, j))
    one = rfspec.visualize(self.params, self.seeds[s], mask, self.cfg, **QUIET)
    np.testing.assert_allclose(self.result.images[r, c, s], one, atol=1e-5)

  def test_activations_are_the_nodes_blob_values(self):
    r, c = 1, 2
    i, j = int(self.result.rows[r]), int(self.result.cols[c])
    # The net sees images with the recipe's mean (zipser2015: the script's 104/116/122).
    see = lambda x: objectives.tap_activation(self.params, x, TAP, mean_bgr=self.cfg.caffe_mean)
    starts = np.stack([np.asarray(rfspec.initial_image(s, self.cfg)) for s in self.seeds])
    blob = np.asarray(see(starts))
    np.testing.assert_allclose(self.result.start_activation[r, c], blob[:, i, j, 7], rtol=1e-5, atol=1e-5)
    blob = np.asarray(see(self.result.images[r, c]))
    np.testing.assert_allclose(self.result.final_activation[r, c], blob[:, i, j, 7], rtol=1e-5, atol=1e-5)

  def test_progress_covers_the_whole_atlas(self):
    done = [e.done for e in self.events]
    self.assertEqual(done, sorted(done))  # never goes back between batches
    self.assertEqual(done[-1], 1.0)
    self.assertEqual([e.batch for e in self.events if e.batch_done], [1, 2])
    self.assertEqual({e.batches for e in self.events}, {2})
    self.assertEqual(self.events[-1].eta_s, 0.0)
    mid = [e for e in self.events if e.batch == 2 and e.step < e.steps]  # batch 2, step 1 of 2
    self.assertLen(mid, 1)
    self.assertEqual(mid[0].done, 0.75)  # 3 of the atlas's 4 batch-steps
    self.assertTrue(np.isfinite(mid[0].eta_s))

  def test_resume_redoes_no_finished_batch(self):
    self.assertEqual(self.store.saved, [0, 1])
    events = []
    again = atlas.position_atlas(self.params, TAP, 7, self.seeds, self.cfg, positions=self.positions,
                                 batch_positions=4, progress=events.append, store=self.store)
    self.assertEqual(again.resumed, 2)
    self.assertEqual(self.store.loaded, [0, 1])
    self.assertEqual(self.store.saved, [0, 1])  # nothing recomputed, nothing saved again
    self.assertTrue(all(e.batch_done for e in events))  # no optimisation chunk ran
    np.testing.assert_array_equal(again.images, self.result.images)

  def test_compiles_once_for_all_batches(self):
    # 2 batches (the last padded) x 2 chunks each ran through one trace of init and of the chunk.
    self.assertEqual(self.result.batches, 2)
    self.assertEqual(self.traces_before, (0, 0))
    self.assertEqual(self.traces_after, (1, 1))

  def test_every_position_by_default(self):
    h, w, _ = self.cfg.tap_shape
    rows, cols, seeds = atlas.check_atlas_args(TAP, 7, [1, 2], self.cfg)
    np.testing.assert_array_equal(rows, np.arange(h))
    np.testing.assert_array_equal(cols, np.arange(w))
    self.assertEqual(seeds.dtype, np.int32)


class ErrorsTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("non_spatial_tap", dict(tap="prob"), r"'prob' has no spatial grid.*inception_4c/5x5"),
      ("unknown_tap", dict(tap="inception_4c/5x6"), r"Unknown tap 'inception_4c/5x6'"),
      ("cfg_for_another_tap", dict(tap="inception_4c/output"), r"cfg.tap is 'inception_4c/5x5'.*tap='inception_4c/output'"),
      ("channel_too_big", dict(channel=64), r"channel must be an int in 0..63.*64 channels; got 64"),
      ("channel_negative", dict(channel=-1), r"channel must be an int in 0..63"),
      ("duplicate_seeds", dict(seeds=[1, 1]), r"seeds must be distinct"),
      ("no_seeds", dict(seeds=[]), r"non-empty list of ints"),
      ("not_a_lattice", dict(positions=[(0, 0), (1, 1)]), r"lattice.*rfspec.masks.lattice"),
      ("off_grid", dict(positions=[(0, 4)]), r"outside 'inception_4c/5x5'.*grid of 4x4"),
      ("batch_positions", dict(batch_positions=0), r"batch_positions must be an int >= 1"),
  )
  def test_user_error_names_the_fix(self, overrides, pattern):
    args = dict(tap=TAP, channel=7, seeds=[0, 1], positions=None, batch_positions=None)
    args.update(overrides)
    with self.assertRaisesRegex(UserError, pattern):
      atlas.position_atlas(None, args["tap"], args["channel"], args["seeds"], small_cfg(),
                           positions=args["positions"], batch_positions=args["batch_positions"])


class CentreSpecificityTest(absltest.TestCase):

  def test_a_pattern_that_moves_with_the_rf_is_not_position_specific(self):
    # Every tile is the same photo moved so that it sits the same way in each node's RF (plus a
    # little noise per seed): PSI against the centre must be ~0 everywhere; with an independent
    # photo per row it must be clearly higher (seeds still agree, positions do not).
    from PIL import Image

    from tests.conftest import IMAGES, shared_file

    cfg = small_cfg()
    rf = rfspec.receptive_field(TAP, HW)
    rows, cols = np.array([0, 1]), np.array([1, 2])  # the centre of the 4 x 4 grid is (1, 1)
    photos = [np.asarray(Image.open(shared_file(IMAGES / name)).convert("RGB").resize((160, 160)), np.float32) / 255
              for name in ("cat.jpg", "fish-bike.jpg")]
    noise = np.random.default_rng(0).normal(0, 0.02, (2, *HW, 3)).astype(np.float32)

    def tiles(photo_for_row):
      out = np.zeros((2, 2, 2, *HW, 3), np.float32)
      for r, i in enumerate(rows):
        for c, j in enumerate(cols):
          dy, dx = (int(v - w) for v, w in zip(rf.centre(i, j), rf.centre(1, 1)))
          crop = photo_for_row(r)[48 - dy:48 - dy + HW[0], 48 - dx:48 - dx + HW[1]]
          out[r, c] = np.clip(crop[None] + noise, 0, 1)
      return out

    def fake(images):
      zeros = np.zeros(images.shape[:3], np.float32)
      return atlas.Atlas(images, zeros[..., None], zeros, zeros, rows, cols, np.array([0, 1]), 1, 1, 0)

    moving = atlas.psi_vs_centre(real_params(), fake(tiles(lambda r: photos[0])), cfg)
    self.assertEqual(moving.reference, (1, 0))
    self.assertEqual(moving.space, "pixel")  # a 64 px image holds too few whole inception_3a RFs
    self.assertTrue(np.all(np.isfinite(moving.psi)), moving)
    self.assertLess(np.max(np.abs(moving.psi)), 0.1, moving)
    other = atlas.psi_vs_centre(real_params(), fake(tiles(lambda r: photos[r])), cfg)
    self.assertGreater(np.nanmin(other.psi[0]), np.max(moving.psi) + 0.3, other)


class PlanTest(absltest.TestCase):

  def test_batches_are_equal_and_padded_with_their_own_first_position(self):
    positions = [(0, 0), (0, 1), (1, 0), (1, 1), (2, 0)]
    plan = atlas.plan_batches(positions, 2)
    self.assertLen(plan, 3)
    for b in plan:
      self.assertEqual(b.shape, (2, 2))
    np.testing.assert_array_equal(plan[2], [(2, 0), (2, 0)])
    np.testing.assert_array_equal(np.concatenate(plan)[:5], positions)

  def test_memory_estimate(self):
    # XLA's memory analysis of the compiled step (CPU) gave 43 MB per element at 128 px for this
    # tap (see `atlas._BYTES_PER_VALUE`); activations scale with the area, so ~130 MB at 224 px.
    cfg = rfspec.VisConfig(tap=TAP, image_hw=(224, 224))
    per = atlas.bytes_per_element(cfg)
    self.assertGreater(per, 65e6)
    self.assertLess(per, 260e6)
    quarter = atlas.bytes_per_element(rfspec.VisConfig(tap=TAP, image_hw=(112, 112)))
    self.assertAlmostEqual(per / quarter, 4.0, delta=0.6)  # activations scale with the area
    n = atlas.default_batch_positions(cfg, n_seeds=2, n_positions=196)
    self.assertGreaterEqual(n, 1)
    self.assertLessEqual(n, 196)

  def test_batch_size_from_device_memory_and_count(self):
    class FakeGpu:
      platform = "gpu"

      def memory_stats(self):
        return {"bytes_limit": 16 * 2**30}

    cfg = rfspec.VisConfig(tap=TAP, image_hw=(224, 224))
    per_device = int(0.5 * 16 * 2**30 // atlas.bytes_per_element(cfg))  # half of each device's memory
    self.assertEqual(atlas.default_batch_positions(cfg, 2, 1000, devices=[FakeGpu()] * 4), per_device * 4 // 2)
    self.assertEqual(atlas.default_batch_positions(cfg, 2, 10, devices=[FakeGpu()] * 4), 10)  # capped
    self.assertEqual(atlas.default_batch_positions(cfg, 10**6, 10, devices=[FakeGpu()]), 1)  # at least 1


class ChannelRuleTest(absltest.TestCase):

  def test_active_channel_is_on_everywhere_and_the_strongest_such(self):
    params = real_params()
    cfg = small_cfg()
    positions = masks.lattice(TAP, HW, 2)
    choice = atlas.active_channel(params, cfg, [0, 1], positions)
    starts = np.stack([np.asarray(rfspec.initial_image(s, cfg)) for s in (0, 1)])
    blob = np.asarray(objectives.tap_activation(params, starts, TAP, mean_bgr=cfg.caffe_mean))  # [2, h, w, 64]
    at = np.stack([blob[:, i, j] for i, j in positions], 1).reshape(-1, blob.shape[-1])  # [pairs, 64]
    everywhere = np.flatnonzero((at > 0).all(axis=0))
    self.assertEqual(choice.candidates, len(everywhere))
    if len(everywhere):
      self.assertIn(choice.channel, everywhere)
      self.assertEqual(choice.active_share, 1.0)
      self.assertAlmostEqual(choice.min_start, at[:, everywhere].min(axis=0).max(), places=4)
    else:
      self.assertEqual((at[:, choice.channel] > 0).sum(), (at > 0).sum(axis=0).max())


if __name__ == "__main__":
  absltest.main()

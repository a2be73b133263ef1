"""The visualisation engine: recipes work, masks isolate nodes, the grid is one compiled call.

Random weights of the real shapes (tests/conftest.py: tiny_params), tiny images (40-48 px), a few
steps; the real weights only where the recipes must drive the real net's nodes tenfold.
"""

import dataclasses
import threading
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest, parameterized

import rfspec.engine
from rfspec import masks, objectives
from rfspec.errors import UserError
from rfspec.geometry import receptive_field
from tests.conftest import real_params, tiny_params

vis = rfspec.engine
VisConfig = vis.VisConfig

TAP, HW = "conv2/3x3", (40, 40)  # grid 10 x 10, RF 19 px: most pixels lie outside one node's RF
# pre_relu: every node has a gradient from the start, whatever the seed.
SMALL = VisConfig(tap=TAP, image_hw=HW, steps=6, jitter=3, chunk=4, learning_rate=0.02, objective="pre_relu")
# No jitter, 3 steps: one compiled shape shared by the tests that need pixels to stay put.
STILL = dataclasses.replace(SMALL, jitter=0, steps=3)
# A chunk long enough to run two steps per scan iteration (engine._chunk_unroll).
LONG_CHUNK = dataclasses.replace(SMALL, steps=8, chunk=8)
QUIET = dict(progress=lambda info: None)


def _masks(cfg=SMALL, channel=11, positions=((2, 3), (7, 6))):
  return masks.node_masks(cfg.tap, channel, cfg.image_hw, positions)


class VisConfigTest(parameterized.TestCase):

  def test_default_is_the_deepdream_recipe(self):
    cfg = VisConfig(tap="inception_4c/output")
    self.assertEqual(cfg, VisConfig.deepdream("inception_4c/output"))
    self.assertEqual((cfg.image_hw, cfg.param, cfg.optimizer), ((224, 224), "pixel", "sgd"))
    self.assertTrue(cfg.normalize_grad)
    self.assertGreater(cfg.jitter, 0)
    self.assertEqual(cfg.init_scale, 0.1)
    self.assertEqual(cfg.tap_shape, (14, 14, 512))

  def test_lucid_recipe(self):
    cfg = VisConfig.lucid("inception_4c/output", steps=64)
    self.assertEqual((cfg.param, cfg.optimizer, cfg.learning_rate), ("fourier", "adam", 0.05))
    self.assertEqual((cfg.pad, cfg.jitter, cfg.rotate_degrees), (12, 8, 10.0))
    self.assertLen(cfg.scales, 11)
    self.assertFalse(cfg.normalize_grad)
    self.assertEqual(cfg.steps, 64)
    self.assertEqual(cfg, VisConfig.from_recipe("lucid", tap="inception_4c/output", steps=64))

  def test_hashable_and_normalised(self):
    a = VisConfig(tap=TAP, image_hw=[40, 40], scales=[1, 1.1])
    b = VisConfig(tap=TAP, image_hw=(40, 40), scales=(1.0, 1.1))
    self.assertEqual(a, b)
    self.assertEqual(hash(a), hash(b))
    self.assertEqual(a.image_hw, (40, 40))
    self.assertEqual(dataclasses.replace(a, steps=9).steps, 9)

  @parameterized.named_parameters(
      ("tap", dict(tap="inception_4c/outptu"), "inception_4c/output"),
      ("too_small", dict(tap="inception_4c/output", image_hw=(8, 8)), "at least"),
      ("hw", dict(image_hw=(40,)), "image_hw"),
      ("steps", dict(steps=0), "steps"),
      ("chunk", dict(chunk=0), "chunk"),
      ("param", dict(param="fft"), "pixel"),
      ("optimizer", dict(optimizer="lbfgs"), "adam"),
      ("objective", dict(objective="relu"), "pre_relu"),
      ("dtype", dict(dtype="float16"), "bfloat16"),
      ("lr", dict(learning_rate=0.0), "learning_rate"),
      ("jitter", dict(jitter=-1), "jitter"),
      ("scales", dict(scales=(0.0,)), "scales"),
      ("tv", dict(tv=-1.0), "tv"),
  )
  def test_invalid_values(self, override, needle):
    with self.assertRaisesRegex(ValueError, needle):
      VisConfig(**(dict(tap=TAP, image_hw=HW) | override))

  def test_unknown_recipe(self):
    with self.assertRaisesRegex(ValueError, "deepdream"):
      VisConfig.from_recipe("inceptionism", tap=TAP)


class VisualizeTest(parameterized.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.params = tiny_params()

  @pytest.mark.slow
  @parameterized.parameters("deepdream", "lucid")
  def test_target_node_grows_tenfold_in_every_element(self, recipe):
    """Both recipes at 48 px on the real net: every (position, seed) ends at >= 10x its start
    activation (the recipes' step sizes are tuned for it; random weights need not grow so fast)."""
    params = real_params()
    tap, hw, seeds = "inception_3a/output", (48, 48), [0, 1]
    overrides = dict(jitter=4) if recipe == "deepdream" else {}  # DeepDream's 32 px is for 224 px
    cfg = VisConfig.from_recipe(recipe, tap=tap, image_hw=hw, steps=40, chunk=20, **overrides)
    named = masks.named_positions(tap, hw)
    positions = [named["centre"], named["top_left"]]
    act = lambda images: np.asarray(objectives.tap_activation(params, jnp.asarray(images), tap))
    a0 = act(np.stack([vis.initial_image(s, cfg) for s in seeds]))  # [S, h, w, C]
    start = np.stack([a0[:, i, j] for i, j in positions])  # [P, S, C]
    # The post-ReLU objective needs a node that is on at the start; take the weakest such channel.
    on = (start > 0).all(axis=(0, 1))
    self.assertTrue(on.any())
    channel = int(np.argmin(np.where(on, start.max(axis=(0, 1)), np.inf)))
    node_masks = masks.node_masks(tap, channel, hw, positions)
    res = vis.visualize_batch(params, np.tile(seeds, 2), np.repeat(node_masks, 2, axis=0), cfg, **QUIET)
    images, traces = res.images.reshape(2, 2, 48, 48, 3), res.traces.reshape(2, 2, -1)
    self.assertEqual(traces.shape, (2, 2, 40))
    a1 = act(images.reshape(-1, 48, 48, 3)).reshape(2, 2, *a0.shape[1:])
    end = np.stack([a1[p, :, i, j, channel] for p, (i, j) in enumerate(positions)])
    ratio = end / start[..., channel]
    self.assertTrue(np.all(ratio >= 10), f"{recipe}: channel {channel}, end/start per (p, s) = {ratio}")

  def test_mask_isolates_the_node(self):
    """Pixel parameterisation, no transforms: pixels outside the node's RF box never move."""
    cfg = STILL
    i, j = 2, 7
    image = vis.visualize(self.params, 3, masks.node_mask(TAP, 11, HW, (i, j)), cfg, **QUIET)
    start = np.asarray(vis.initial_image(3, cfg))
    top, left, bottom, right = receptive_field(TAP, HW).box(i, j)
    inside = np.zeros(HW, bool)
    inside[max(top, 0):bottom, max(left, 0):right] = True
    self.assertGreater((~inside).sum(), 0.6 * inside.size)
    np.testing.assert_array_equal(image[~inside], start[~inside])
    self.assertGreater(np.mean(image[inside] != start[inside]), 0.5)

  def test_grid_element_equals_visualize(self):
    seeds, ms = [3, 11], _masks()
    grid = vis.visualize_grid(self.params, seeds, ms, SMALL, **QUIET)
    self.assertEqual(grid.shape, (2, 2, 40, 40, 3))
    self.assertEqual(grid.dtype, np.float32)
    for p in range(2):
      for s in range(2):
        one = vis.visualize(self.params, seeds[s], ms[p], SMALL, **QUIET)
        np.testing.assert_allclose(one, grid[p, s], atol=1e-5, err_msg=f"element (p, s) = ({p}, {s})")
    self.assertFalse(np.allclose(grid[0, 0], grid[1, 0]))

  def test_make_grid_fn_is_the_same_computation(self):
    seeds, ms = np.array([3, 11], np.int32), _masks()
    images = vis.visualize_grid(self.params, seeds, ms, SMALL, **QUIET)
    traces = vis.visualize_batch(self.params, np.tile(seeds, 2), np.repeat(ms, 2, axis=0), SMALL, **QUIET).traces
    fn = vis.make_grid_fn(SMALL)
    compiled = fn.lower(self.params, np.tile(seeds, 2), np.repeat(ms, 2, axis=0)).compile()
    out = compiled(self.params, np.tile(seeds, 2), np.repeat(ms, 2, axis=0))
    np.testing.assert_allclose(out.image.reshape(images.shape), images, atol=1e-5)
    np.testing.assert_allclose(out.trace.reshape(traces.shape), traces, rtol=1e-4, atol=1e-3)

  def test_same_seed_bit_identical_different_seeds_differ(self):
    ms = _masks()[:1]  # 1 mask x 4 seeds: the batch of 4 the other SMALL tests compile
    a = vis.visualize_grid(self.params, [5, 5, 6, 7], ms, SMALL, **QUIET)
    b = vis.visualize_grid(self.params, [5, 5, 6, 7], ms, SMALL, **QUIET)
    np.testing.assert_array_equal(a, b)
    np.testing.assert_array_equal(a[0, 0], a[0, 1])
    self.assertGreater(np.abs(a[0, 0] - a[0, 2]).mean(), 1e-3)

  def test_grid_compiles_once_whatever_the_seeds(self):
    cfg = dataclasses.replace(SMALL, steps=5, chunk=2)  # 3 chunks, the last one padded
    calls = []
    vis.visualize_grid(self.params, [0, 1], _masks(cfg), cfg, progress=calls.append)
    vis.visualize_grid(self.params, [987654, -3], _masks(cfg), cfg, progress=calls.append)
    # One compiled chunk function for both grids and every chunk (the last one is padded).
    self.assertEqual(vis.chunk_compiles(cfg), 1)
    self.assertEqual([c.step for c in calls], [2, 4, 5] * 2)
    self.assertTrue(all(c.total == 5 and c.images == 4 and c.image_steps_per_s > 0 for c in calls))
    self.assertEqual(calls[-1].eta_s, 0.0)

  def test_a_batch_runs_as_one_call_per_half_from_two_threads_with_the_same_numbers(self):
    # On a lone CPU device visualize_grid runs each half of a batch as its own call of the compiled
    # chunk, from its own thread (XLA's CPU runtime then runs them on separate cores); an odd batch
    # first gets a copy of element 0. The images must be those of one call that cuts that batch in
    # two inside, bit for bit.
    cfg = STILL
    calls, real_cached = [], vis.program_cache.cached

    def recording(*args, **kwargs):
      fn = real_cached(*args, **kwargs)

      def call(*a):
        calls.append((threading.get_ident(), len(a[1]), kwargs.get("parts", 1)))
        return fn(*a)

      return call

    fns = vis._chunk_fns(cfg)
    # (seeds, masks, the calls' (batch, parts inside) and how many threads make them): 4 elements
    # in two halves; 3 in two halves of 2 (the second ending with the copy of the first); 1 alone.
    cases = (([3, 11], _masks(cfg), [(2, 1), (2, 1)], 2), ([3, 11, 5], _masks(cfg)[:1], [(2, 1), (2, 1)], 2),
             ([3], _masks(cfg)[:1], [(1, 1)], 1))
    self.assertLen(_masks(cfg), 2)
    for seeds, ms, want_calls, threads in cases:
      flat_seeds = np.tile(np.array(seeds, np.int32), len(ms))
      flat_masks = np.repeat(ms, len(seeds), axis=0)
      pad = len(flat_seeds) % 2 * (len(flat_seeds) > 1)  # the copy of element 0 an odd batch gets
      flat_seeds, flat_masks = (np.concatenate([a, a[:pad]]) for a in (flat_seeds, flat_masks))
      one_call = fns.chunk(self.params, flat_seeds, flat_masks, fns.init(flat_seeds), np.int32(0),
                           parts=min(2, len(flat_seeds)))[2][:len(flat_seeds) - pad]
      calls.clear()
      with mock.patch.object(vis.program_cache, "cached", recording):
        grid = vis.visualize_grid(self.params, seeds, ms, cfg, progress=None)
      np.testing.assert_array_equal(grid.reshape(one_call.shape), one_call)
      self.assertEqual(sorted(c[1:] for c in calls), want_calls)  # nothing cut inside
      self.assertLen({c[0] for c in calls}, threads)

  def test_batch_cut_in_pieces_is_the_same_computation(self):
    # visualize_grid cuts each step's batch into independent pieces on a lone CPU device; every
    # element must still get its own seed, mask and state whatever the piece (3 elements, 2
    # uneven pieces, and more pieces than elements).
    cfg = STILL
    seeds = np.array([3, 11, 5], np.int32)
    ms = np.concatenate([_masks(cfg), _masks(cfg)[:1]])
    fns = vis._chunk_fns(cfg)
    whole = fns.chunk(self.params, seeds, ms, fns.init(seeds), np.int32(0), parts=1)
    for parts in (2, 5):
      cut = fns.chunk(self.params, seeds, ms, fns.init(seeds), np.int32(0), parts=parts)
      np.testing.assert_allclose(cut[2], whole[2], atol=1e-5, err_msg=f"images, parts={parts}")
      np.testing.assert_allclose(cut[1], whole[1], rtol=1e-4, atol=1e-3, err_msg=f"traces, parts={parts}")
    self.assertFalse(np.allclose(whole[2][0], whole[2][2]))  # same mask, other seed: pieces can't swap
    self.assertEqual(vis.batch_parts(jax.devices()[:1]), 2)

  def test_two_steps_per_loop_iteration_is_the_same_computation_bit_for_bit(self):
    # Long chunks run their scan two steps per iteration (speed); the images and traces must be
    # exactly those of one step per iteration, with the batch cut as visualize_grid cuts it.
    self.assertEqual([vis._chunk_unroll(n) for n in (3, 6, 8, 9, 50)], [1, 1, 2, 1, 2])
    cfg = LONG_CHUNK
    seeds = np.array([3, 11], np.int32)
    ms = _masks(cfg)
    # The benchmark test's unroll pairs use this config and these shapes: the compilation cache serves both.
    runs = [vis._chunk_fns(cfg, unroll) for unroll in (None, 1)]
    got, want = (f.chunk(self.params, seeds, ms, f.init(seeds), np.int32(0), parts=2) for f in runs)
    np.testing.assert_array_equal(got[2], want[2])  # images
    np.testing.assert_array_equal(got[1], want[1])  # traces
    self.assertTrue(np.all(np.ptp(want[1], axis=1) > 0))  # each element's objective moved over the 8 steps

  def test_apply_in_parts(self):
    x = jnp.arange(7.0)
    fn = lambda a, b: (a * 2 + b, {"s": a[:, None] * jnp.ones(3)})
    want = fn(x, -x)
    for parts in (1, 2, 3, 7, 9):
      got = vis.apply_in_parts(fn, parts, x, -x)
      jax.tree.map(np.testing.assert_array_equal, got, want)
    calls = []
    vis.apply_in_parts(lambda a: calls.append(a.shape) or a, 3, x)
    self.assertEqual(calls, [(2,), (3,), (2,)])

  def test_trace_starts_at_the_initial_objective(self):
    cfg = STILL
    m = _masks(cfg)[0]
    res = vis.visualize_batch(self.params, [4], m[None], cfg, **QUIET)
    image, trace = res.images[0], res.traces[0]
    self.assertEqual(trace.shape, (3,))
    act = objectives.tap_activation(self.params, vis.initial_image(4, cfg)[None], TAP, pre_relu=True)  # SMALL's objective
    self.assertAlmostEqual(float(trace[0]), float(objectives.node_objective(act, m)[0]), places=3)
    self.assertEqual(image.shape, (40, 40, 3))

  def test_pure_function_vmaps(self):
    f = lambda seed, m: vis.visualize(self.params, seed, m, SMALL)
    out = jax.eval_shape(jax.vmap(jax.vmap(f, (0, None)), (None, 0)), jnp.arange(3), jnp.asarray(_masks()))
    self.assertEqual(out.shape, (2, 3, 40, 40, 3))

  def test_bfloat16(self):
    cfg = dataclasses.replace(SMALL, dtype="bfloat16", steps=3, chunk=3)
    image = vis.visualize(self.params, 0, _masks()[0], cfg, **QUIET)
    self.assertEqual(image.dtype, np.float32)
    self.assertTrue(np.all(np.isfinite(image)) and image.min() >= 0 and image.max() <= 1)
    self.assertGreater(np.abs(image - np.asarray(vis.initial_image(0, cfg))).max(), 1e-3)

  def test_bad_masks_and_seeds(self):
    good = _masks()
    with self.assertRaisesRegex(ValueError, r"expected \[h, w, C\] = \(10, 10, 192\)"):
      vis.visualize(self.params, 0, masks.node_mask(TAP, 0, (48, 48), (0, 0)), SMALL)
    with self.assertRaisesRegex(ValueError, r"\(P, 10, 10, 192\)"):
      vis.visualize_grid(self.params, [0], good[0], SMALL)
    with self.assertRaisesRegex(ValueError, "all zero"):
      vis.visualize(self.params, 0, np.zeros_like(good[0]), SMALL)
    with self.assertRaisesRegex(ValueError, r"masks \[1\] are all zero"):
      vis.visualize_grid(self.params, [0], np.stack([good[0], 0 * good[0]]), SMALL)
    for seeds in ([], [[0, 1]], [0.5]):
      with self.assertRaisesRegex(ValueError, "seeds"):
        vis.visualize_grid(self.params, seeds, good, SMALL)

  def test_visualize_returns_one_type(self):
    # return_trace is gone: asking for it names where traces come from, before any work.
    for call in (lambda: vis.visualize(self.params, 0, _masks()[0], SMALL, return_trace=True),
                 lambda: vis.visualize_grid(self.params, [0], _masks(), SMALL, return_trace=True)):
      with self.assertRaisesRegex(UserError, r"returns the images only.*visualize_batch.*GridResult"):
        call()

  def test_non_finite_names_the_elements(self):
    ms = _masks()
    ms[1] *= 1e38  # finite, but mask * act overflows float32 for element p = 1 only
    with self.assertRaisesRegex(FloatingPointError, r"\(p, s\) = \(1, 0\).*\(p, s\) = \(1, 1\)") as cm:
      vis.visualize_grid(self.params, [0, 1], ms, SMALL, **QUIET)
    self.assertNotIn("(0, ", str(cm.exception))
    self.assertIn("learning_rate", str(cm.exception))
    self.assertIsInstance(cm.exception, ValueError)  # the binaries report it as a user error


if __name__ == "__main__":
  absltest.main()

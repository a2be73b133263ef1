"""The zipser2015 recipe equals the paper's own procedure (../shared/reference/zipser2015/PROCEDURE.md).

The reference below is a literal numpy transcription of PROCEDURE.md's step in Caffe's data space
(BGR, 0-255, minus the script's mean), with the input gradient taken the way the script takes it:
the tap's blob is seeded with its own activation times the mask and back-propagated to the data
blob (a VJP of the Flax net applied to the data blob directly, not the engine's objective code).
Real BVLC weights, small images.
"""

import dataclasses
import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest

import rfspec
from rfspec import engine, masks, recipes
from rfspec.errors import UserError
from rfspec.geometry import receptive_field
from rfspec.models import googlenet
from tests.conftest import real_params

MEAN = np.array([104.0, 116.0, 122.0], np.float32)  # PROCEDURE.md: the script's mean, BGR


def _data(rgb):
  """RGB [0, 1] -> the script's data space (BGR, 0-255, minus its mean), float64."""
  return np.asarray(rgb, np.float64)[..., ::-1] * 255.0 - MEAN


def _script_gradient(params, tap, data, mask):
  """PROCEDURE.md step 2: forward to the tap, dst.diff = dst.data * mask, backward to the data."""
  return np.asarray(_blob_vjp(params, jnp.asarray(data, jnp.float32), jnp.asarray(mask, jnp.float32), tap=tap),
                    np.float64)


# Jitted only so that each compiles as one program (eagerly, each of the net's ops compiles on its own).
@functools.partial(jax.jit, static_argnames="tap")
def _data_blob(params, data, *, tap):
  """The tap's blob of the net applied to the data blob directly [h, w, C] (data: [H, W, 3])."""
  return googlenet.GoogLeNet().apply({"params": params}, data[None], taps=(tap,))[tap][0]


@functools.partial(jax.jit, static_argnames="tap")
def _blob_vjp(params, data, mask, *, tap):
  act, vjp = jax.vjp(lambda d: _data_blob(params, d, tap=tap), data)
  return vjp(act * mask)[0]


def _script_step(params, tap, x, mask, oy, ox):
  """PROCEDURE.md's make_step, transcribed literally (x: data space [H, W, 3] BGR)."""
  x = np.roll(x, (oy, ox), axis=(0, 1))                    # 1. roll by ox along width, oy along height
  g = _script_gradient(params, tap, x, mask)               # 2. the L2 feedback gradient
  x = x + 1.5 / np.mean(np.abs(g[g != 0])) * g             # 3. step over the non-zero |g|
  x = x * 0.995                                            # 4. decay
  m = x.mean(axis=2, keepdims=True)                        # 5. 1 % desaturation
  x = 0.99 * x + 0.01 * m
  x = np.roll(x, (-oy, -ox), axis=(0, 1))                  # 6. roll back
  return np.clip(x, -MEAN, 255.0 - MEAN)                   # 7. clip


def _fade(x, steps):
  """Steps 4, 5 and 7 alone, `steps` times: what a pixel the gradient cannot reach goes through."""
  for _ in range(steps):
    x = x * 0.995
    x = 0.99 * x + 0.01 * x.mean(axis=2, keepdims=True)
    x = np.clip(x, -MEAN, 255.0 - MEAN)
  return x


def _roll_of_step(cfg, seed, step):
  """The (oy, ox) roll the engine draws at `step`, read off by rolling an index image."""
  h, w = cfg.image_hw
  index = jnp.stack(jnp.meshgrid(jnp.arange(h, dtype=jnp.float32), jnp.arange(w, dtype=jnp.float32),
                                 indexing="ij") + [jnp.zeros((h, w))], -1)
  key = jax.random.fold_in(engine._keys(seed)[1], step)
  moved = np.asarray(jax.jit(engine._parts(cfg).transform.apply)(key, index))
  # A roll by (oy, ox): moved[1, 1] = index[1 - oy, 1 - ox].
  return 1 - int(moved[1, 1, 0]), 1 - int(moved[1, 1, 1])


class Zipser2015RecipeTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.params = real_params()

  def test_recipe_holds_the_procedures_values(self):
    cfg = rfspec.VisConfig.from_recipe("zipser2015", tap="inception_4c/5x5", image_hw=(224, 224))
    self.assertEqual(cfg.recipe, "zipser2015")
    self.assertEqual(cfg.steps, 2000)
    self.assertEqual(cfg.caffe_mean, (104.0, 116.0, 122.0))
    self.assertEqual((cfg.param, cfg.init_scale), ("dots", 225.0))
    self.assertEqual((cfg.jitter, cfg.jitter_wrap, cfg.scales, cfg.rotate_degrees, cfg.pad), (1, True, (), 0.0, 0))
    self.assertEqual((cfg.optimizer, cfg.normalize_grad), ("sgd", True))
    self.assertAlmostEqual(cfg.learning_rate * 255.0, 1.5)
    self.assertEqual((cfg.objective, cfg.decay, cfg.desaturate, cfg.clip), ("l2_feedback", 0.005, 0.01, (0.0, 1.0)))
    # The same config, recipe as a field; explicit fields win over the recipe's.
    self.assertEqual(cfg, rfspec.VisConfig(tap="inception_4c/5x5", recipe="zipser2015"))
    self.assertEqual(rfspec.VisConfig(tap="conv2/3x3", recipe="zipser2015", steps=7).steps, 7)
    self.assertEqual(dict(recipes.RECIPES["zipser2015"])["decay"], 0.005)

  def test_start_is_one_grey_plane_in_data_space_unclipped(self):
    cfg = rfspec.VisConfig.from_recipe("zipser2015", tap="conv2/3x3", image_hw=(40, 56))
    x = _data(rfspec.initial_image(3, cfg))
    self.assertEqual(x.shape, (40, 56, 3))
    np.testing.assert_allclose(x[..., 0], x[..., 1], atol=1e-4)  # the same in all three channels
    np.testing.assert_allclose(x[..., 0], x[..., 2], atol=1e-4)
    self.assertGreaterEqual(x.min(), -1e-4)
    self.assertLess(x.max(), 225.0 + 1e-3)
    self.assertGreater(x.max(), 200.0)  # 225 * U[0, 1): spread over the range
    self.assertGreater(x.max(), 255.0 - MEAN.min())  # above the clip: unclipped at the first forward
    np.testing.assert_array_equal(rfspec.initial_image(3, cfg), rfspec.initial_image(3, cfg))
    self.assertGreater(np.abs(rfspec.initial_image(3, cfg) - rfspec.initial_image(4, cfg)).max(), 0.1)

  def test_one_engine_step_equals_the_procedure(self):
    tap, hw = "inception_3a/5x5", (48, 48)  # a branch conv blob like the paper's inception_4c/5x5
    cfg = rfspec.VisConfig.from_recipe("zipser2015", tap=tap, image_hw=hw, steps=1, chunk=1)
    h, w, _ = cfg.tap_shape
    # A seed whose first roll moves along both axes, so the roll and roll-back are exercised.
    seed = next(s for s in range(50) if all(_roll_of_step(cfg, s, 0)))
    oy, ox = _roll_of_step(cfg, seed, 0)
    x0 = _data(rfspec.initial_image(seed, cfg))
    start = np.asarray(_data_blob(self.params, jnp.asarray(x0, jnp.float32), tap=tap))
    channel = int(np.argmax(start[h // 2, w // 2]))
    mask = np.asarray(masks.node_mask(tap, channel, hw, position=(h // 2, w // 2)))
    want = _script_step(self.params, tap, x0, mask, oy, ox)
    got = _data(rfspec.visualize(self.params, seed, mask, cfg, progress=None))
    self.assertGreater(np.abs(want - x0).max(), 5.0)  # the step did something
    np.testing.assert_allclose(got / 255.0, want / 255.0, rtol=0, atol=1e-5)

  def test_unreachable_pixels_only_decay_desaturate_and_clip(self):
    tap, hw, steps = "conv2/3x3", (64, 64), 12
    cfg = rfspec.VisConfig.from_recipe("zipser2015", tap=tap, image_hw=hw, steps=steps, chunk=6)
    rf = receptive_field(tap, hw)
    i, j = rf.grid[0] // 2, rf.grid[1] // 2
    start = rfspec.forward(self.params, rfspec.initial_image(0, cfg)[None], taps=tap)[tap][0]
    channel = int(np.argmax(start[i, j]))
    mask = masks.node_mask(tap, channel, hw, position=(i, j))
    image = rfspec.visualize(self.params, 0, mask, cfg, progress=None)
    # The gradient reaches the node's RF box, moved by up to the 1 px roll.
    top, left, bottom, right = rf.box(i, j)
    reach = np.zeros(hw, bool)
    reach[max(top - 1, 0):bottom + 1, max(left - 1, 0):right + 1] = True
    want = _fade(_data(rfspec.initial_image(0, cfg)), steps)
    got = _data(image)
    np.testing.assert_allclose(got[~reach] / 255.0, want[~reach] / 255.0, rtol=0, atol=1e-5)
    self.assertGreater(np.abs(got[reach] - want[reach]).max(), 5.0)  # inside, the node drove it

  def test_a_node_that_is_zero_at_the_start_stays_zero(self):
    tap, hw, steps = "inception_3a/5x5", (64, 64), 16
    cfg = rfspec.VisConfig.from_recipe("zipser2015", tap=tap, image_hw=hw, steps=steps, chunk=8)
    h, w, _ = cfg.tap_shape
    start = np.asarray(rfspec.forward(self.params, rfspec.initial_image(0, cfg)[None], taps=tap)[tap][0])
    off = np.flatnonzero(start[h // 2, w // 2] == 0)
    self.assertNotEmpty(off)
    mask = masks.node_mask(tap, int(off[0]), hw, position=(h // 2, w // 2))
    res = rfspec.engine.visualize_batch(self.params, [0], mask[None], cfg, progress=None)
    image, trace = res.images[0], res.traces[0]
    np.testing.assert_array_equal(trace, np.zeros(steps, np.float32))
    end = rfspec.forward(self.params, image[None], taps=tap)[tap][0]
    self.assertEqual(float(end[h // 2, w // 2, off[0]]), 0.0)
    # Without a gradient the whole image just fades: exactly decay + desaturation + clip.
    want = _fade(_data(rfspec.initial_image(0, cfg)), steps)
    np.testing.assert_allclose(_data(image) / 255.0, want / 255.0, rtol=0, atol=1e-5)

  def test_the_node_grows_and_the_background_fades_to_the_mean_colour(self):
    tap, hw, steps = "inception_3a/5x5", (64, 64), 60
    cfg = rfspec.VisConfig.from_recipe("zipser2015", tap=tap, image_hw=hw, steps=steps, chunk=30)
    h, w, _ = cfg.tap_shape
    start = np.asarray(rfspec.forward(self.params, rfspec.initial_image(0, cfg)[None], taps=tap)[tap][0])
    channel = int(np.argmax(start[h // 2, w // 2]))
    mask = masks.node_mask(tap, channel, hw, position=(h // 2, w // 2))
    trace = rfspec.engine.visualize_batch(self.params, [0], mask[None], cfg, progress=None).traces[0]
    self.assertGreater(trace[-1], 10 * trace[0])


class NormalisationTest(absltest.TestCase):

  def test_scale_by_mean_abs_nonzero_is_the_scripts_normalisation(self):
    g = np.array([[0.0, 2.0], [-4.0, 0.0], [0.0, 0.5]], np.float32)
    t = engine.scale_by_mean_abs_nonzero()
    out, _ = t.update(jnp.asarray(g), t.init(jnp.asarray(g)))
    np.testing.assert_allclose(out, g / np.mean(np.abs(g[g != 0])), rtol=1e-6)
    zero, _ = t.update(jnp.zeros(3), t.init(jnp.zeros(3)))
    np.testing.assert_array_equal(zero, np.zeros(3))  # a node with no gradient does not move (no NaN)

  def test_chained_before_sgd_it_is_the_1p5_step(self):
    g = jnp.asarray([0.0, 1.0, -3.0])
    opt = optax.chain(engine.scale_by_mean_abs_nonzero(), optax.sgd(1.5))
    updates, _ = opt.update(-g, opt.init(g))  # the engine descends on -objective
    np.testing.assert_allclose(updates, 1.5 / 2.0 * np.asarray(g), rtol=1e-6)


class VisConfigFieldsTest(absltest.TestCase):

  def test_pixel_ops_need_an_image_space_param(self):
    with self.assertRaisesRegex(ValueError, "clip=None"):
      rfspec.VisConfig(tap="conv2/3x3", image_hw=(40, 40), param="fourier")
    cfg = rfspec.VisConfig(tap="conv2/3x3", image_hw=(40, 40), param="fourier", clip=None, init_scale=0.01)
    self.assertIsNone(cfg.clip)

  def test_bad_values_name_the_field(self):
    for override, needle in [(dict(decay=1.0), "decay"), (dict(desaturate=-0.1), "desaturate"),
                             (dict(clip=(1.0, 0.0)), "clip"), (dict(tv=float("inf")), "tv"),
                             (dict(l2=float("nan")), "l2"), (dict(image_hw=(40.5, 40)), "image_hw"),
                             (dict(recipe="zipser"), "zipser2015"), (dict(caffe_mean=(1, 2)), "caffe_mean")]:
      with self.subTest(override=override):
        with self.assertRaisesRegex(UserError, needle):
          rfspec.VisConfig(**(dict(tap="conv2/3x3", image_hw=(40, 40)) | override))

  def test_fields_round_trip(self):
    cfg = rfspec.VisConfig.from_recipe("zipser2015", tap="conv2/3x3", image_hw=(40, 48), steps=3)
    self.assertEqual(rfspec.VisConfig(**cfg.fields()), cfg)
    self.assertEqual(dataclasses.replace(cfg, steps=5).steps, 5)


if __name__ == "__main__":
  absltest.main()

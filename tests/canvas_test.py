"""The canvas (padding ablation) and the support-normalised DeepDream step of the engine."""

import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest, parameterized

from rfspec import masks
from rfspec.models import preprocess
from rfspec.engine import VisConfig, embed_canvas, visualize
from tests.conftest import tiny_params

TAP = "conv2/3x3"


class CanvasTest(parameterized.TestCase):

  def test_fills(self):
    img = np.random.default_rng(1).uniform(size=(2, 8, 6, 3)).astype(np.float32)
    zero = np.asarray(embed_canvas(jnp.asarray(img), VisConfig(tap=TAP, image_hw=(8, 6), canvas_pad=4)))
    self.assertEqual(zero.shape, (2, 16, 14, 3))
    np.testing.assert_array_equal(zero[:, 4:12, 4:10], img)
    # "zero" is the net's zero input: Caffe preprocessing maps the border to exactly 0.
    np.testing.assert_allclose(np.asarray(preprocess.to_caffe(jnp.asarray(zero)))[:, :4], 0, atol=1e-4)
    grey = np.asarray(embed_canvas(jnp.asarray(img), VisConfig(tap=TAP, image_hw=(8, 6), canvas_pad=4, canvas_fill="grey")))
    self.assertTrue(np.all(grey[:, :, :4] == 0.5))
    refl = np.asarray(embed_canvas(jnp.asarray(img), VisConfig(tap=TAP, image_hw=(8, 6), canvas_pad=4, canvas_fill="reflect")))
    np.testing.assert_array_equal(refl, np.pad(img, ((0, 0), (4, 4), (4, 4), (0, 0)), mode="reflect"))

  def test_masks_index_the_canvas_grid(self):
    cfg = VisConfig(tap=TAP, image_hw=(32, 32), canvas_pad=16, steps=2, chunk=2, jitter=0)
    self.assertEqual(cfg.net_hw, (64, 64))
    self.assertEqual(cfg.tap_shape, masks.tap_shape(TAP, (64, 64)))
    small = masks.node_mask(TAP, 0, (32, 32), (0, 0))
    with self.assertRaisesRegex(ValueError, r"64x64 px"):
      visualize(tiny_params(), 0, small, cfg, progress=lambda _: None)
    image = visualize(tiny_params(), 0, masks.node_mask(TAP, 0, (64, 64), (4, 4)), cfg, progress=lambda _: None)
    self.assertEqual(image.shape, (32, 32, 3))

  def test_bad_fill(self):
    with self.assertRaisesRegex(ValueError, "canvas_fill"):
      VisConfig(tap=TAP, image_hw=(32, 32), canvas_pad=4, canvas_fill="blue")
    with self.assertRaisesRegex(ValueError, "reflect"):
      VisConfig(tap=TAP, image_hw=(32, 32), canvas_pad=40, canvas_fill="reflect")


class SupportNormalisedStepTest(absltest.TestCase):

  def test_single_node_step_is_lr_per_reached_pixel(self):
    # One SGD step, no transforms: the mean |change| over the pixels the node can reach is the
    # learning rate (DeepDream's normalisation, restricted to the gradient's support), however
    # small the RF is compared with the image.
    lr = 0.01
    cfg = VisConfig(tap=TAP, image_hw=(48, 48), steps=1, chunk=1, jitter=0, learning_rate=lr,
                    objective="pre_relu", init_scale=0.1)
    from rfspec.engine import initial_image

    mask = masks.node_mask(TAP, 3, cfg.image_hw, (6, 6))
    start = np.asarray(initial_image(0, cfg))
    end = visualize(tiny_params(), 0, mask, cfg, progress=lambda _: None)
    delta = np.abs(end - start)
    moved = delta > 0
    self.assertGreater(moved.sum(), 0)
    self.assertLess(moved.mean(), 0.5)  # a single node reaches only its RF
    clipped = (end <= 0) | (end >= 1)
    np.testing.assert_allclose(delta[moved & ~clipped].mean(), lr, rtol=0.2)


if __name__ == "__main__":
  absltest.main()


@pytest.mark.slow
class LucidGridTest(absltest.TestCase):

  def test_lucid_grid_runs_twice_and_matches_single(self):
    # The Fourier parameterisation's cached arrays must be built outside any trace.
    from rfspec.engine import visualize_grid

    params = tiny_params()
    cfg = VisConfig.lucid(TAP, image_hw=(40, 40), steps=2, chunk=2, jitter=2, pad=2, scales=(), rotate_degrees=0)
    node_masks = masks.node_masks(TAP, 0, cfg.image_hw, [(4, 4), (5, 5)])
    quiet = lambda _: None
    first = visualize_grid(params, [0, 1], node_masks, cfg, progress=quiet)
    again = visualize_grid(params, [0, 1], node_masks, cfg, progress=quiet)
    np.testing.assert_array_equal(first, again)
    single = visualize(params, 1, node_masks[1], cfg, progress=quiet)
    np.testing.assert_allclose(first[1, 1], single, atol=1e-5)

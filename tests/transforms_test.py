"""Random transforms: geometry kept, each key its own draw, exact identity when off."""

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from rfspec import transforms

H, W = 20, 24


def _image(seed=0):
  return jax.random.uniform(jax.random.key(seed), (H, W, 3))


def _keys(n):
  return jax.random.split(jax.random.key(42), n)


# The transforms run jitted, as the engine runs them: eagerly, each of their ops is compiled on its own.
def _apply(t):
  return jax.jit(t.apply)


def _apply_each(t):
  return jax.jit(jax.vmap(t.apply, in_axes=(0, None)))


class TransformsTest(parameterized.TestCase):

  def test_all_off_is_the_exact_identity(self):
    t = transforms.standard((H, W))
    img = _image()
    np.testing.assert_array_equal(_apply(t)(jax.random.key(0), img), img)

  def test_pad_and_crop(self):
    img = _image()
    padded = transforms.pad(3, value=0.5).apply(None, img)
    self.assertEqual(padded.shape, (H + 6, W + 6, 3))
    np.testing.assert_array_equal(padded[:3], 0.5)
    np.testing.assert_array_equal(transforms.crop((H, W)).apply(None, padded), img)

  def test_jitter_wrap_is_a_roll_within_range_and_per_key(self):
    img = _image()
    t = transforms.jitter(3, wrap=True)
    outs = _apply_each(t)(_keys(16), img)
    shifts = set()
    for out in np.asarray(outs):
      found = [(dy, dx) for dy in range(-3, 4) for dx in range(-3, 4)
               if np.array_equal(out, np.roll(img, (dy, dx), axis=(0, 1)))]
      self.assertLen(found, 1)
      shifts.add(found[0])
    self.assertGreater(len(shifts), 4)  # each element draws its own shift
    np.testing.assert_array_equal(_apply(t)(jax.random.key(5), img), _apply(t)(jax.random.key(5), img))

  def test_jitter_shifts_without_wrapping(self):
    # The default never shows one edge's pixels at the other: the uncovered border is the
    # net's zero input (the ImageNet mean colour).
    from rfspec.models import preprocess

    img = np.asarray(_image())
    fill = np.asarray(preprocess.from_caffe(jnp.zeros(3)))
    t = transforms.jitter(3)
    shifts = set()
    for out in np.asarray(_apply_each(t)(_keys(16), jnp.asarray(img))):
      found = []
      for dy in range(-3, 4):
        for dx in range(-3, 4):
          want = np.broadcast_to(fill, img.shape).copy()
          ys, xs = slice(max(dy, 0), H + min(dy, 0)), slice(max(dx, 0), W + min(dx, 0))
          want[ys, xs] = img[max(-dy, 0):H - max(dy, 0), max(-dx, 0):W - max(dx, 0)]
          if np.allclose(out, want, atol=1e-6):
            found.append((dy, dx))
      self.assertLen(found, 1)
      shifts.add(found[0])
    self.assertGreater(len(shifts), 4)

  def test_resample_matches_map_coordinates(self):
    img = _image(1)
    m = jnp.array([[0.83, 0.2], [-0.3, 0.9]])
    yy, xx = np.meshgrid(np.arange(H), np.arange(W), indexing="ij")
    cy, cx = (H - 1) / 2, (W - 1) / 2
    sy = cy + m[0, 0] * (yy - cy) + m[0, 1] * (xx - cx)
    sx = cx + m[1, 0] * (yy - cy) + m[1, 1] * (xx - cx)
    ref = jnp.stack([jax.scipy.ndimage.map_coordinates(img[..., k], (sy, sx), order=1, mode="nearest")
                     for k in range(3)], -1)
    resample = jax.jit(transforms.resample)
    np.testing.assert_allclose(resample(img, m), ref, atol=1e-6)
    np.testing.assert_allclose(resample(img, jnp.eye(2)), img, atol=1e-7)

  def test_scale_zooms_about_the_centre(self):
    img = jnp.zeros((21, 21, 3)).at[10, 12].set(1.0)  # a dot 2 px right of the centre
    out = _apply(transforms.random_scale((2.0,)))(jax.random.key(0), img)
    self.assertEqual(out.shape, img.shape)
    y, x = np.unravel_index(np.argmax(np.asarray(out[..., 0])), (21, 21))
    self.assertEqual((y, x), (10, 14))  # now 4 px right of the centre

  def test_rotation_per_key_and_keeps_constants(self):
    flat = jnp.full((H, W, 3), 0.3)
    t = transforms.random_rotate(20.0)
    np.testing.assert_allclose(_apply(t)(jax.random.key(0), flat), flat, atol=1e-6)
    outs = _apply_each(t)(_keys(4), _image())
    self.assertEqual(outs.shape, (4, H, W, 3))
    for a in range(4):
      for b in range(a):
        self.assertFalse(np.allclose(outs[a], outs[b]))

  @parameterized.parameters(((0.9, 1.1), 0.0), ((), 10.0), ((0.95, 1.05), 10.0))
  def test_standard_chain_keeps_size_and_is_differentiable(self, scales, degrees):
    t = transforms.standard((H, W), pad_width=4, max_shift=2, scales=scales, rotate_degrees=degrees)
    img = _image()
    out = _apply(t)(jax.random.key(0), img)
    self.assertEqual(out.shape, (H, W, 3))
    g = jax.jit(jax.grad(lambda x: t.apply(jax.random.key(0), x)[H // 2, W // 2].sum()))(img)
    self.assertTrue(bool(jnp.all(jnp.isfinite(g))))
    self.assertGreater(float(g.sum()), 0.5)  # the centre pixel comes from somewhere near it
    outs = _apply_each(t)(_keys(3), img)
    self.assertFalse(np.allclose(outs[0], outs[1]))


if __name__ == "__main__":
  absltest.main()

"""Calibration of rfspec.metrics: the numbers mean what they claim.

The four calibration points of the issue, each in pixel space and in GoogLeNet feature space
(real BVLC weights):
  1. identical images give S = 1 and PSI = 0;
  2. an image against its exact translate, aligned, gives S = 1 and PSI ~ 0;
  3. independent random images give S ~ 0;
  4. a translation-invariant one-conv-layer "net", visualized by gradient ascent at two interior
     positions, gives PSI ~ 0 (and a position-dependent net, the positive control, does not).
Plus the building blocks (shift, masked correlation, RF erosion), the matrix forms, transfer,
and the realism scores.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized
from PIL import Image

from rfspec import metrics
from tests.conftest import IMAGES, real_params, shared_file

ZERO = np.zeros(2, np.float32)
FEAT_HW = 128  # inception_3a's RF is 59 px: 128 px leaves a 9x9 grid of fully-inside features


@functools.lru_cache(maxsize=None)
def _photo(name: str) -> np.ndarray:
  """float [H, W, 3] RGB in [0, 1]."""
  return np.asarray(Image.open(shared_file(IMAGES / name)).convert("RGB"), np.float32) / 255.0


def _crop(top: int, left: int, size: int = FEAT_HW) -> np.ndarray:
  return _photo("cat.jpg")[top:top + size, left:left + size]


# Test data comes from numpy's seeded Generator: jax.random would compile a program per shape.
def _rng(seed: int) -> np.random.Generator:
  return np.random.default_rng(seed)


def _uniform(seed: int, shape) -> np.ndarray:
  return _rng(seed).uniform(size=shape).astype(np.float32)


def _noisy(image, seeds, sigma: float = 0.1) -> jax.Array:
  """[S, H, W, 3]: `image` plus independent Gaussian pixel noise per seed (a stand-in for seeds)."""
  noise = np.stack([_rng(s).normal(size=image.shape) for s in seeds]).astype(np.float32)
  return jnp.asarray(np.clip(image + sigma * noise, 0.0, 1.0))


# ----------------------------------------------------------------------------- building blocks


class ShiftTest(parameterized.TestCase):

  @parameterized.parameters((0, 0), (3, -5), (-7, 11), (40, 0), (0, -40))
  def test_matches_slicing_and_never_wraps(self, dy, dx):
    x = np.arange(20 * 30 * 2, dtype=np.float32).reshape(20, 30, 2)
    moved, valid = metrics.shift_image(x, jnp.array([dy, dx]), fill=-1.0)
    want = np.full_like(x, -1.0)
    want_valid = np.zeros((20, 30), bool)
    for y in range(20):
      for xx in range(30):
        if 0 <= y - dy < 20 and 0 <= xx - dx < 30:
          want[y, xx] = x[y - dy, xx - dx]
          want_valid[y, xx] = True
    np.testing.assert_array_equal(moved, want)
    np.testing.assert_array_equal(valid, want_valid)

  def test_traced_float_shift_rounds(self):
    x = _uniform(0, (16, 16, 3))
    f = jax.jit(lambda s: metrics.shift_image(x, s)[0])
    np.testing.assert_array_equal(f(jnp.array([2.0, -3.0])), f(jnp.array([1.6, -3.4])))

  def test_neutral_fill_is_zero_caffe_input(self):
    from rfspec.models import preprocess
    np.testing.assert_allclose(preprocess.to_caffe(metrics.neutral_fill()), 0.0, atol=1e-4)


class CorrelationTest(parameterized.TestCase):

  def test_matches_numpy_pearson(self):
    a, b = np.asarray(_uniform(1, (12, 10, 3))), np.asarray(_uniform(2, (12, 10, 3)))
    b = b + 0.5 * a
    mask = np.asarray(_uniform(3, (12, 10))) > 0.4
    want = np.corrcoef(a[mask].ravel(), b[mask].ravel())[0, 1]
    self.assertAlmostEqual(float(metrics.masked_correlation(a, b, mask)), want, places=5)

  def test_per_channel_centres_each_channel(self):
    a = np.asarray(_uniform(4, (8, 8, 2)))
    b = a + np.array([0.0, 5.0], np.float32)  # channel offset: irrelevant after per-channel centring
    self.assertAlmostEqual(float(metrics.masked_correlation(a, b, np.ones((8, 8)), per_channel=True)),
                           1.0, places=5)
    self.assertLess(float(metrics.masked_correlation(a, b, np.ones((8, 8)))), 0.5)

  def test_degenerate_cases(self):
    a = _uniform(5, (8, 8, 3))
    self.assertTrue(np.isnan(metrics.masked_correlation(a, a, np.zeros((8, 8)))))
    self.assertEqual(float(metrics.masked_correlation(a, jnp.ones_like(a), np.ones((8, 8)))), 0.0)


class GridMaskTest(parameterized.TestCase):

  @parameterized.parameters(("conv2/3x3", 19, 4, -7), ("inception_3a/output", 59, 8, -23),
                            ("inception_4c/output", 299, 16, -135))
  def test_feature_box_from_layers(self, tap, size, stride, start):
    self.assertEqual(metrics._feature_box(tap), (size, stride, start))

  @parameterized.parameters("conv2/3x3", "inception_3a/output")
  def test_erosion_matches_brute_force(self, tap):
    hw = (160, 150)
    _, valid = metrics.shift_image(np.zeros(hw), jnp.array([13, -6]))
    mask = np.asarray(valid).copy()
    mask[40:45, 30:33] = False  # a hole
    got = np.asarray(metrics.grid_mask(mask, tap))
    size, stride, start = metrics._feature_box(tap)
    want = np.zeros_like(got)
    for i in range(got.shape[0]):
      for j in range(got.shape[1]):
        top, left = start + i * stride, start + j * stride
        inside = top >= 0 and left >= 0 and top + size <= hw[0] and left + size <= hw[1]
        want[i, j] = inside and mask[top:top + size, left:left + size].all()
    np.testing.assert_array_equal(got, want)
    self.assertGreater(want.sum(), 0)

  def test_rejects_non_spatial_space_and_missing_params(self):
    x = np.zeros((64, 64, 3), np.float32)
    with self.assertRaisesRegex(ValueError, "no spatial grid"):
      metrics.similarity(x, x, ZERO, params={}, space="prob")
    with self.assertRaisesRegex(ValueError, "needs params"):
      metrics.similarity(x, x, ZERO, space="conv2/3x3")


# ----------------------------------------------------------------------------- calibration 1-3


class CalibrationTest(parameterized.TestCase):
  """Identical, translated and independent images, in pixel and in feature space."""

  def _kw(self, space):
    return {} if space == "pixel" else dict(params=real_params(), space=space)

  @parameterized.parameters("pixel", metrics.FEATURE_TAP)
  def test_identical_images_give_one_and_zero_psi(self, space):
    x = jnp.asarray(_crop(100, 200))
    xs = jnp.stack([x, x])
    spec = metrics.specificity(xs, xs, ZERO, **self._kw(space))
    np.testing.assert_allclose([spec.s_pq, spec.s_pp, spec.s_qq], 1.0, atol=1e-5)
    np.testing.assert_allclose(spec.psi, 0.0, atol=1e-5)
    np.testing.assert_allclose(metrics.similarity(x, x, ZERO, **self._kw(space)), 1.0, atol=1e-5)

  @parameterized.product(space=("pixel", metrics.FEATURE_TAP), shift=((8, 16), (5, -3), (-24, 0)))
  def test_translate_aligned_gives_one_and_psi_near_zero(self, space, shift):
    dy, dx = shift
    # x_q[y, x] = x_p[y - dy, x - dx]: two crops of one photo, the second `shift` up-left.
    top, left = 100, 200
    x_p, x_q = _crop(top, left), _crop(top - dy, left - dx)
    s = metrics.similarity(x_p, x_q, np.array(shift), **self._kw(space))
    np.testing.assert_allclose(s, 1.0, atol=1e-5)
    # Seeds as independent pixel noise on the two translates: S_pq must match the ceilings.
    xs_p, xs_q = _noisy(x_p, range(2)), _noisy(x_q, range(2, 4))
    spec = metrics.specificity(xs_p, xs_q, np.array(shift), **self._kw(space))
    self.assertGreater(min(spec.s_pp, spec.s_qq), 0.4)
    self.assertLess(abs(float(spec.psi)), 0.05)

  def test_independent_noise_pixel_similarity_near_zero(self):
    xs = _uniform(10, (4, 64, 64, 3))
    self.assertLess(abs(float(metrics.seed_ceiling(xs))), 0.05)
    self.assertLess(abs(float(metrics.pixel_similarity(xs[0], xs[1], np.array([8, -8])))), 0.05)

  def test_independent_noise_feature_similarity_near_zero(self):
    # Features are centred per channel: their shared positive ReLU mean does not count.
    xs = _uniform(11, (4, FEAT_HW, FEAT_HW, 3))
    self.assertLess(abs(float(metrics.seed_ceiling(xs, params=real_params(), space=metrics.FEATURE_TAP))), 0.1)

  def test_features_separate_same_from_different_pattern(self):
    params = real_params()
    same = _noisy(_crop(60, 150), range(2), sigma=0.2)
    other = _noisy(_photo("fish-bike.jpg")[60:188, 150:278], range(2, 3), sigma=0.2)[0]
    s_same = metrics.feature_similarity(params, same[0], same[1], ZERO)
    s_diff = metrics.feature_similarity(params, same[0], other, ZERO)
    self.assertGreater(float(s_same), 0.5)
    self.assertLess(abs(float(s_diff)), 0.1)


# ----------------------------------------------------------------------------- calibration 4


K, TOY_HW = 7, 32  # one 7x7 conv, valid, stride 1, on 32 px images: node (i, j) sees [i, i+7)


def _toy_visualize(kernel, position, x0, steps: int = 30, lr: float = 0.02):
  """Gradient ascent on one node of a one-conv-layer net: softplus(conv(x - 0.5, kernel))[i, j].

  The -0.5 is a bias that puts mid-grey at zero, so every kernel starts in softplus's sloped
  part and its pattern emerges. Pixels stay in [0, 1]; only the node's 7x7 RF ever gets
  gradient. Returns [H, W, 3].
  """

  def node(x):
    act = jax.lax.conv_general_dilated(x[None] - 0.5, kernel[..., None], (1, 1), "VALID",
                                       dimension_numbers=("NHWC", "HWIO", "NHWC"))[0, ..., 0]
    return jax.nn.softplus(act[position[0], position[1]])

  def step(_, x):
    return jnp.clip(x + lr * jax.grad(node)(x), 0.0, 1.0)

  return jax.lax.fori_loop(0, steps, step, x0)


# One compiled program for every kernel, position and seed stack.
_toy_visualize_seeds = jax.jit(jax.vmap(_toy_visualize, (None, None, 0)))


def _toy_start(seed):
  return (0.5 + 0.25 * _rng(seed).uniform(-1, 1, (TOY_HW, TOY_HW, 3))).astype(np.float32)


def _toy_box(position) -> np.ndarray:
  m = np.zeros((TOY_HW, TOY_HW), bool)
  m[position[0]:position[0] + K, position[1]:position[1] + K] = True
  return m


class TranslationInvariantNetTest(parameterized.TestCase):
  """PSI of a convolution (same kernel everywhere) is ~0 between interior positions.

  Both positions' RFs lie inside the image, so the net is exactly translation-equivariant there
  and the ascent at q is the ascent at p, moved. Comparisons are restricted to q's RF box (pixels
  outside any RF never change, they are pure start noise). Everything is seeded: deterministic.
  """

  P, Q = (4, 5), (15, 19)  # interior node positions (i, j) = (row, col)
  SEEDS = 8

  def setUp(self):
    super().setUp()
    self.kernel = jnp.asarray(_rng(100).normal(size=(K, K, 3)), jnp.float32)
    c = (K - 1) / 2
    self.shift = np.array([self.Q[0] - self.P[0], self.Q[1] - self.P[1]], np.float32)  # c_q - c_p
    self.centres = np.array([[self.P[0] + c, self.P[1] + c], [self.Q[0] + c, self.Q[1] + c]], np.float32)
    np.testing.assert_array_equal(self.centres[1] - self.centres[0], self.shift)

  def _psi(self, xs_p, xs_q):
    # Restricting to q's RF box in q's frame is p's RF box in p's frame: both ceilings see the box.
    spec = metrics.specificity(xs_p, xs_q, self.shift, _toy_box(self.Q))
    np.testing.assert_allclose(spec.s_pp, metrics.seed_ceiling(xs_p, _toy_box(self.P)), atol=1e-6)
    np.testing.assert_allclose(spec.s_qq, metrics.seed_ceiling(xs_q, _toy_box(self.Q)), atol=1e-6)
    return spec

  def _vis(self, kernel, position, starts):
    return _toy_visualize_seeds(kernel, jnp.array(position), starts)

  def test_translated_starts_give_exactly_zero_psi(self):
    # The sound, exact version: seed s at q starts from seed s at p moved by c_q - c_p; then
    # x*_q,s equals x*_p,s moved, inside q's RF, so S_pq == S_pp == S_qq.
    starts_p = jnp.stack([_toy_start(s) for s in range(self.SEEDS)])
    starts_q = jax.vmap(lambda x: metrics.shift_image(x, self.shift, 0.5)[0])(starts_p)
    xs_p, xs_q = self._vis(self.kernel, self.P, starts_p), self._vis(self.kernel, self.Q, starts_q)
    spec = self._psi(xs_p, xs_q)
    self.assertGreater(float(spec.s_pp), 0.3)
    np.testing.assert_allclose([spec.s_qq, spec.s_pq], spec.s_pp, atol=1e-5)
    np.testing.assert_allclose(spec.psi, 0.0, atol=1e-5)

  def test_independent_seeds_give_psi_near_zero(self):
    xs_p = self._vis(self.kernel, self.P, jnp.stack([_toy_start(s) for s in range(self.SEEDS)]))
    xs_q = self._vis(self.kernel, self.Q, jnp.stack([_toy_start(100 + s) for s in range(self.SEEDS)]))
    psi = self._psi(xs_p, xs_q).psi
    self.assertLess(abs(float(psi)), 0.1)
    # The matrix form agrees, with RF boxes as regions.
    m = metrics.specificity_matrix(jnp.stack([xs_p, xs_q]), self.centres,
                                   jnp.stack([_toy_box(self.P), _toy_box(self.Q)]))
    np.testing.assert_allclose(m.psi[0, 1], psi, atol=1e-5)
    np.testing.assert_allclose(m.psi[1, 0], psi, atol=1e-5)  # pixel similarity is symmetric
    np.testing.assert_allclose(jnp.diagonal(m.psi), 0.0, atol=1e-6)

  def test_position_dependent_net_gives_high_psi(self):
    # Positive control: a locally connected "net" with a different kernel at q.
    other = jnp.asarray(_rng(200).normal(size=(K, K, 3)), jnp.float32)
    xs_p = self._vis(self.kernel, self.P, jnp.stack([_toy_start(s) for s in range(self.SEEDS)]))
    xs_q = self._vis(other, self.Q, jnp.stack([_toy_start(100 + s) for s in range(self.SEEDS)]))
    spec = self._psi(xs_p, xs_q)
    self.assertGreater(float(min(spec.s_pp, spec.s_qq)), 0.5)  # both positions have a pattern...
    self.assertGreater(float(spec.psi), 0.5)  # ...but not the same one


# ----------------------------------------------------------------------------- matrices, vmap


class MatrixTest(absltest.TestCase):

  def test_feature_matrix_matches_pairwise_and_ceilings(self):
    params, tap = real_params(), metrics.FEATURE_TAP
    centres = np.array([[40.0, 40.0], [48.0, 64.0], [40.0, 24.0]], np.float32)
    # Position p shows the photo translated with its centre: a translation-invariant "node".
    images = jnp.stack([_noisy(_crop(140 - int(c[0]), 240 - int(c[1])), (3 * p, 3 * p + 1), 0.05)
                        for p, c in enumerate(centres)])
    m = metrics.specificity_matrix(images, centres, params=params, space=tap)
    self.assertEqual(m.psi.shape, (3, 3))
    for p in range(3):
      ceiling = metrics.specificity(images[p], images[p], ZERO, params=params, space=tap).s_pp
      np.testing.assert_allclose([m.s_pq[p, p], m.s_pp[p, p], m.s_qq[p, p]], ceiling, atol=1e-5)
    pair = metrics.specificity(images[0], images[1], centres[1] - centres[0], params=params, space=tap)
    np.testing.assert_allclose([m.s_pq[0, 1], m.s_pp[0, 1], m.s_qq[0, 1], m.psi[0, 1]], list(pair), atol=1e-5)
    self.assertLess(float(jnp.max(jnp.abs(m.psi))), 0.05)

  def test_psi_undefined_without_ceiling(self):
    self.assertTrue(np.isnan(metrics.psi(0.1, 0.0, -0.2)))
    np.testing.assert_allclose(metrics.psi(0.25, 0.5, 0.5), 0.5)

  def test_pixel_similarity_vmaps_over_shifts(self):
    x = _uniform(20, (32, 32, 3))
    shifts = jnp.array([[0, 0], [1, 2], [-3, 4]])
    got = jax.jit(jax.vmap(lambda d: metrics.pixel_similarity(x, x, d)))(shifts)
    self.assertEqual(got.shape, (3,))
    self.assertAlmostEqual(float(got[0]), 1.0, places=5)
    self.assertLess(float(jnp.max(jnp.abs(got[1:]))), 0.1)

  def test_cross_position_needs_two_seeds(self):
    with self.assertRaisesRegex(ValueError, "S >= 2"):
      metrics.seed_ceiling(jnp.zeros((1, 8, 8, 3)))


# ----------------------------------------------------------------------------- transfer


class TransferTest(absltest.TestCase):
  TAP, CHANNEL, HW = "conv2/3x3", 5, 64
  # conv2/3x3: RF 19 px, stride 4, centre of node (i, j) = (4i + 2, 4j + 2); interior: 2 <= i <= 13.

  def _centre(self, ij):
    return np.array([4.0 * ij[0] + 2, 4.0 * ij[1] + 2], np.float32)

  def test_translated_pattern_transfers_fully(self):
    params = real_params()
    p, q = (4, 5), (9, 11)
    shift = self._centre(q) - self._centre(p)
    top, left = 100, 200
    x_p = _crop(top, left, self.HW)
    x_q = _crop(top - int(shift[0]), left - int(shift[1]), self.HW)  # x_p moved by c_q - c_p
    t = metrics.transfer(params, x_p, x_q, shift, np.array(q), self.CHANNEL, tap=self.TAP)
    np.testing.assert_allclose(t, 1.0, rtol=1e-4)
    images = jnp.stack([x_p, x_q])[:, None]  # [P=2, S=1, H, W, 3]
    tm = metrics.transfer_matrix(params, images, np.stack([self._centre(p), self._centre(q)]),
                                 np.array([p, q]), self.CHANNEL, tap=self.TAP)
    np.testing.assert_allclose(tm, np.ones((2, 2)), rtol=1e-4)


# ----------------------------------------------------------------------------- realism


class RealismTest(absltest.TestCase):

  def test_photo_scores_more_realistic_than_noise(self):
    params = real_params()
    reference = metrics.activation_stats(params, jnp.asarray(_photo("fish-bike.jpg"))[None])
    cat = jax.image.resize(jnp.asarray(_photo("cat.jpg")), (224, 224, 3), "linear")
    images = jnp.stack([cat, _uniform(30, (224, 224, 3))])
    r = metrics.realism(params, images, reference)
    self.assertTrue(np.all(np.isfinite(r.confidence)) and np.all(np.isfinite(r.stats_distance)))
    self.assertGreater(float(r.confidence[0]), float(r.confidence[1]))
    self.assertLess(float(r.stats_distance[0]), float(r.stats_distance[1]))
    # The reference itself is at distance 0.
    self.assertAlmostEqual(float(metrics.stats_distance(reference, reference)[0]), 0.0, places=6)


if __name__ == "__main__":
  absltest.main()

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


# ----------------------------------------------------------------------------- judge-layer indices


def _mann_whitney_auc(x, y) -> float:
  """P(X > Y) + P(X = Y)/2 by scipy's U statistic: the independent reference for `_auc`."""
  from scipy.stats import mannwhitneyu

  return float(mannwhitneyu(x, y, alternative="two-sided").statistic) / (len(x) * len(y))


class IndicesTest(absltest.TestCase):
  """The AUC indices on given descriptors, against scipy's Mann-Whitney U and numpy means."""

  def test_point_estimates_match_scipy_and_numpy(self):
    rng = _rng(3)
    n_pos, n_seeds, n_floor = 3, 5, 4
    desc = rng.normal(size=(n_pos, n_seeds, 8)).astype(np.float32) + np.arange(n_pos)[:, None, None] * 0.3
    floor = rng.normal(size=(n_pos, n_floor, 8)).astype(np.float32)
    res = metrics.specificity_from_descriptors(jnp.asarray(desc), jnp.asarray(floor), jax.random.key(0), 50)

    def cos(a, b):
      return float(a @ b / np.linalg.norm(a) / np.linalg.norm(b))

    pairs = [(s, t) for s in range(n_seeds) for t in range(n_seeds) if s < t]
    within = [[cos(desc[p, s], desc[p, t]) for s, t in pairs] for p in range(n_pos)]
    fl = [[cos(desc[p, s], floor[p, u]) for s in range(n_seeds) for u in range(n_floor)] for p in range(n_pos)]
    for p in range(n_pos):
      self.assertAlmostEqual(float(res.auc_id[p]), _mann_whitney_auc(within[p], fl[p]), places=5)
      for q in range(n_pos):
        if p == q:
          self.assertEqual(float(res.psi_auc[p, q]), 0.0)
          continue
        between = [cos(desc[p, s], desc[q, t]) for s in range(n_seeds) for t in range(n_seeds) if s != t]
        w = within[p] + within[q]
        self.assertAlmostEqual(float(res.psi_auc[p, q]), 2 * _mann_whitney_auc(w, between) - 1, places=5)
        want = (np.mean(w) - np.mean(between)) / (np.mean(w) - 0.5 * (np.mean(fl[p]) + np.mean(fl[q])))
        self.assertAlmostEqual(float(res.psi_floor[p, q]), want, places=4)
    np.testing.assert_allclose(res.psi_auc, np.asarray(res.psi_auc).T, atol=1e-6)

  def test_intervals_hold_the_estimate_and_no_nan_at_three_seeds(self):
    rng = _rng(4)
    desc = jnp.asarray(rng.normal(size=(4, 3, 6)), jnp.float32)
    floor = jnp.asarray(rng.normal(size=(4, 3, 6)), jnp.float32)
    res = metrics.specificity_from_descriptors(desc, floor, jax.random.key(1), 100)
    for name in ("auc_id", "auc_id_ci", "psi_auc", "psi_auc_ci", "psi_floor"):
      self.assertTrue(np.isfinite(np.asarray(getattr(res, name))).all(), name)
    self.assertEqual(res.auc_id_ci.shape, (4, 2))
    self.assertEqual(res.psi_auc_ci.shape, (4, 4, 2))
    self.assertEqual(res.psi_auc_boot.shape, (100, 4, 4))
    ci = np.asarray(res.auc_id_ci)
    self.assertTrue((ci[:, 0] <= ci[:, 1]).all())
    again = metrics.specificity_from_descriptors(desc, floor, jax.random.key(1), 100)
    np.testing.assert_array_equal(res.psi_auc_ci, again.psi_auc_ci)  # same key, same draws

  def test_shared_start_pairs_are_left_out(self):
    # Floor image u shares seed u's start and is identical to it: counted, auc_id would drop.
    desc = jnp.asarray(_rng(5).normal(size=(1, 4, 6)), jnp.float32) * 0.1 + 1.0
    floor = desc
    res = metrics.specificity_from_descriptors(desc, floor, jax.random.key(0), 10, floor_seed=jnp.arange(4))
    res_all = metrics.specificity_from_descriptors(desc, floor, jax.random.key(0), 10)
    self.assertAlmostEqual(float(res.auc_id[0]), 0.5, places=5)  # the floor is the same population
    self.assertLess(float(res_all.auc_id[0]), float(res.auc_id[0]))

  def test_undefined_rule(self):
    self.assertEqual(metrics.undefined_reasons(3, 1), dict(psi_auc=None, auc_id=None, psi_floor=None))
    self.assertIn("floor", metrics.undefined_reasons(6, 0)["auc_id"])
    self.assertIsNone(metrics.undefined_reasons(6, 0)["psi_auc"])
    self.assertIn(">= 3 seeds", metrics.undefined_reasons(2, 5)["psi_auc"])

  def test_bad_input_is_a_user_error(self):
    from rfspec.errors import UserError

    with self.assertRaisesRegex(UserError, ">= 3 seeds"):
      metrics.position_specificity(None, np.zeros((2, 2, 64, 64, 3)), np.zeros((2, 4)), None, jax.random.key(0))
    with self.assertRaisesRegex(UserError, r"boxes \[P, 4\]"):
      metrics.position_specificity(None, np.zeros((2, 3, 64, 64, 3)), np.zeros((3, 4)), None, jax.random.key(0))


class RegionWeightsTest(absltest.TestCase):

  def test_matches_brute_force_cell_overlap(self):
    from rfspec.geometry import geometry
    from rfspec.models import googlenet

    g = geometry(metrics.JUDGE_TAP)
    hw = (96, 80)
    h, w = googlenet.blob_hw(metrics.JUDGE_TAP, hw)
    boxes = np.array([[-30, -10, 20, 33], [40, 41, 70, 79], [90, 0, 130, 8]], np.float32)
    got = np.asarray(metrics.region_weights(boxes, hw))

    def cells(n, size):  # pixel -> the node whose cell holds its centre (first/last cells extended)
      centres = g.start + g.jump * np.arange(n) + (g.size - 1) / 2
      return [int(np.clip(np.searchsorted(centres + g.jump / 2, y + 0.5, side="right"), 0, n - 1))
              for y in range(size)]

    cy, cx = cells(h, hw[0]), cells(w, hw[1])
    for b, box in enumerate(boxes.astype(int)):
      want = np.zeros((h, w))
      for y in range(max(box[0], 0), min(box[2], hw[0])):
        for x in range(max(box[1], 0), min(box[3], hw[1])):
          want[cy[y], cx[x]] += 1
      np.testing.assert_allclose(got[b], want, atol=1e-4)


def _skimage_photos(side: int = 64) -> np.ndarray:
  """16 natural photos bundled with scikit-image (colour, and grey ones as RGB), square centre
  crops resized to side px: [16, side, side, 3] RGB in [0, 1]."""
  from skimage import data, transform

  out = []
  for name in ("astronaut", "chelsea", "coffee", "rocket", "immunohistochemistry", "hubble_deep_field", "retina",
               "colorwheel", "camera", "coins", "brick", "grass", "gravel", "moon", "clock", "page"):
    im = getattr(data, name)()
    im = np.stack([im] * 3, -1) if im.ndim == 2 else im[..., :3]
    h, w = im.shape[:2]
    s = min(h, w)
    im = im[(h - s) // 2:(h - s) // 2 + s, (w - s) // 2:(w - s) // 2 + s].astype(np.float32) / 255.0
    out.append(transform.resize(im, (side, side), anti_aliasing=True).astype(np.float32))
  return np.stack(out)


class NaturalPhotoCalibrationTest(absltest.TestCase):
  """Known truths built from natural photos: a 48 px crop pasted into each position's box of a
  96 px grey image, per-seed shifts of up to 4 px and Gaussian noise (sigma 0.05)."""

  HW, BOX, SEEDS, FLOOR = 96, 48, 6, 10
  # Corner, middle, corner; offsets that are not multiples of the judge's 8 px stride.
  BOXES = np.array([[0, 0, 48, 48], [21, 26, 69, 74], [45, 48, 93, 96]], np.float32)

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.params = real_params()
    cls.photos = _skimage_photos()
    cls.rng = _rng(11)
    # The pool: every photo x 4 shifts x 3 positions; judge descriptors computed once.
    cls.shifts = [(-4, -4), (4, 4), (-4, 4), (4, -4)]
    pool = np.stack([[cls._paste(i, p, cls.shifts[k]) for i in range(len(cls.photos)) for k in range(4)]
                     for p in range(3)])
    boxes = np.broadcast_to(cls.BOXES[:, None], (3, pool.shape[1], 4))
    cls.pool = np.asarray(metrics.describe(cls.params, jnp.asarray(pool), jnp.asarray(boxes)))

  @classmethod
  def _paste(cls, photo: int, position: int, shift) -> np.ndarray:
    img = np.full((cls.HW, cls.HW, 3), 0.5, np.float32)
    top, left = (int(v) for v in cls.BOXES[position, :2])
    img[top:top + cls.BOX, left:left + cls.BOX] = cls.photos[photo][8 + shift[0]:8 + shift[0] + cls.BOX,
                                                                   8 + shift[1]:8 + shift[1] + cls.BOX]
    return np.clip(img + 0.05 * cls.rng.standard_normal(img.shape).astype(np.float32), 0, 1)

  def _pick(self, photos):
    """photos [P][n] photo ids -> [P, n, C] pool descriptors, each with a random shift."""
    return jnp.asarray(np.stack([self.pool[p, [4 * i + self.rng.integers(4) for i in row]]
                                 for p, row in enumerate(photos)]))

  def _floor(self, exclude):
    others = [i for i in range(len(self.photos)) if i not in exclude]
    return self._pick([others[:self.FLOOR]] * 3)

  def test_same_photo_everywhere(self):
    images = np.stack([[self._paste(0, p, self.rng.integers(-4, 5, 2)) for _ in range(self.SEEDS)] for p in range(3)])
    floor = np.stack([[self._paste(1 + u, p, (0, 0)) for u in range(self.FLOOR)] for p in range(3)])
    res = metrics.position_specificity(self.params, images, self.BOXES, floor, jax.random.key(0))
    off = ~np.eye(3, dtype=bool)
    self.assertLess(abs(float(np.mean(np.asarray(res.psi_auc)[off]))), 0.35, res.psi_auc)
    self.assertLess(float(np.max(np.abs(np.asarray(res.psi_floor)))), 0.05, res.psi_floor)
    np.testing.assert_array_less(0.95, res.auc_id)

  def test_different_photo_per_position(self):
    res = metrics.specificity_from_descriptors(self._pick([[p] * self.SEEDS for p in range(3)]),
                                               self._floor(exclude=(0, 1, 2)), jax.random.key(0), 200)
    off = ~np.eye(3, dtype=bool)
    np.testing.assert_array_less(0.9, np.asarray(res.psi_auc)[off])
    np.testing.assert_array_less(0.5, np.asarray(res.psi_auc_ci)[..., 0][off])  # the interval excludes 0

  def test_random_photo_per_seed(self):
    res = metrics.specificity_from_descriptors(self._pick([self.rng.permutation(16)[:self.SEEDS] for _ in range(3)]),
                                               self._pick([self.rng.permutation(16)[:self.FLOOR] for _ in range(3)]),
                                               jax.random.key(0), 200)
    self.assertLess(abs(float(np.mean(res.auc_id)) - 0.5), 0.15, res.auc_id)

  def test_intervals_cover_the_truth(self):
    # Truths by symmetry: random photos per seed and per floor image are one population, so
    # P(W > F) = 0.5; the same photo at every position (shifts only) has psi_auc = 0.
    fn = jax.jit(metrics.specificity_from_descriptors, static_argnames="n_boot")
    n_draws, cover_id, cover_psi = 40, [], []
    upper = np.triu_indices(3, 1)
    for r in range(n_draws):
      ids = self.rng.permutation(16)
      res = fn(self._pick([ids[:self.SEEDS]] * 3), self._pick([ids[self.SEEDS:self.SEEDS + self.FLOOR]] * 3),
               jax.random.key(r), n_boot=200)
      ci = np.asarray(res.auc_id_ci)
      cover_id += list((ci[:, 0] <= 0.5) & (ci[:, 1] >= 0.5))
      res = fn(self._pick([[ids[0]] * self.SEEDS] * 3), self._floor(exclude=(ids[0],)), jax.random.key(r), n_boot=200)
      ci = np.asarray(res.psi_auc_ci)[upper]
      cover_psi += list((ci[:, 0] <= 0) & (ci[:, 1] >= 0))
    # Stated 95 %; 120 intervals per index, so 0.88 is ~3 binomial SDs below.
    self.assertGreaterEqual(np.mean(cover_id), 0.88)
    self.assertGreaterEqual(np.mean(cover_psi), 0.88)

  def test_pattern_moved_anywhere_keeps_its_descriptor(self):
    img = np.full((3, self.HW, self.HW, 3), 0.5, np.float32)
    boxes = np.array([[8, 8, 40, 40], [53, 37, 85, 69], [3, 61, 35, 93]], np.float32)  # any integer offsets
    for n, (t, l, _, _) in enumerate(boxes.astype(int)):
      img[n, t:t + 32, l:l + 32] = self.photos[2][:32, :32]
    d = np.asarray(metrics.describe(self.params, jnp.asarray(img), jnp.asarray(boxes)))
    np.testing.assert_allclose(d[1:], np.broadcast_to(d[0], d[1:].shape), rtol=1e-3, atol=1e-4)

  def test_noise_at_every_position_gives_psi_near_zero(self):
    # Start-noise-like content: a fresh uniform noise patch per seed in every box; positions only
    # differ in where the box lies (sub-stride phase, image corner), which must not register.
    noise = self.rng.uniform(size=(3, self.SEEDS, self.HW, self.HW, 3)).astype(np.float32)
    res = metrics.position_specificity(self.params, noise, self.BOXES, None, jax.random.key(0))
    off = ~np.eye(3, dtype=bool)
    self.assertLess(abs(float(np.mean(np.asarray(res.psi_auc)[off]))), 0.35, res.psi_auc)
    self.assertTrue(np.isnan(np.asarray(res.auc_id)).all())  # no floor: undefined, and says so

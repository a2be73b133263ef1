"""rfspec.metrics: the RF-frame measure means what it says, on inputs whose answer is known by construction.

The calibration (real BVLC weights, natural photos from scikit-image placed in the RF frame of
inception_4a/output): the same content at truncated positions gives |psi_auc| <= 0.2; different
content gives >= 0.8, also on the smallest window the measure accepts; the same content moved
within the RF is reported (the measure calls a move larger than the starts' scatter a difference).
Plus the geometry of common windows (brute force), exact descriptor invariance, the truncation
null (exactly 0), transfer (1 for the same pattern), the indices against hand computations, the
intervals, and bad input (one paragraph each, or an honest NaN with its reason).
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest, parameterized
from PIL import Image

import rfspec
from rfspec import metrics
from rfspec.errors import UserError
from rfspec.geometry import receptive_field
from tests.conftest import real_params

TAP = "inception_4a/output"  # RF 171 px, stride 16
HW = (160, 160)  # the RF overhangs every border: all positions are truncated
S = 5


@functools.lru_cache(maxsize=None)
def _photo(name: str, size: int) -> np.ndarray:
  from skimage import data

  a = np.asarray(getattr(data, name)())
  a = np.repeat(a[..., None], 3, -1) if a.ndim == 2 else a[..., :3]
  side = min(a.shape[:2])
  a = a[(a.shape[0] - side) // 2:][:side, (a.shape[1] - side) // 2:][:, :side]
  return np.asarray(Image.fromarray(a.astype(np.uint8)).resize((size, size), Image.BILINEAR), np.float32) / 255.0


def _place(frame: np.ndarray, box, hw, shift=(0, 0), noise=0.0, rng=None) -> np.ndarray:
  """An image whose RF frame at `box` holds `frame` (moved by shift px), neutral elsewhere, plus noise."""
  fill = np.asarray(metrics.neutral_fill())
  img = np.tile(fill, (*hw, 1)).astype(np.float32)
  r = frame.shape[0]
  top, left = box[0] + shift[0], box[1] + shift[1]
  ys, xs = np.arange(r) + top, np.arange(r) + left
  oy, ox = (ys >= 0) & (ys < hw[0]), (xs >= 0) & (xs < hw[1])
  img[np.ix_(ys[oy], xs[ox])] = frame[np.ix_(oy, ox)]
  if noise:
    img = img + noise * rng.standard_normal(img.shape).astype(np.float32)
  return np.clip(img, 0, 1)


def _stack(frames, boxes, hw, seed=0, jitter=3, noise=0.03, shifts=None):
  """[P, S, H, W, 3]: frames[p] in position p's RF frame, each start with its own jitter and noise."""
  rng = np.random.default_rng(seed)
  out = []
  for p, (f, b) in enumerate(zip(frames, boxes)):
    base = (0, 0) if shifts is None else shifts[p]
    out.append([_place(f, b, hw, (base[0] + rng.integers(-jitter, jitter + 1), base[1] + rng.integers(-jitter, jitter + 1)),
                       noise, rng) for _ in range(S)])
  return np.asarray(out, np.float32)


class FrameWindowTest(parameterized.TestCase):

  def test_windows_match_brute_force(self):
    rng = np.random.default_rng(0)
    hw, r = (50, 70), 31
    boxes = np.stack([rng.integers(-25, 45, 4) for _ in range(6)])
    boxes[:, 2:] = boxes[:, :2] + r
    w = metrics.frame_windows(boxes, hw, min_share=0.0)
    for p in range(6):
      for q in range(6):
        inside = lambda b: np.array([[0 <= b[0] + u < hw[0] and 0 <= b[1] + v < hw[1] for v in range(r)]  # noqa: E731
                                     for u in range(r)])
        both = inside(boxes[p]) & inside(boxes[q])
        u0, v0, u1, v1 = w.window[p, q]
        mask = np.zeros((r, r), bool)
        mask[max(u0, 0):max(u1, 0), max(v0, 0):max(v1, 0)] = True
        np.testing.assert_array_equal(mask, both, f"pair {p, q}")
        self.assertAlmostEqual(w.share[p, q], both.mean())

  def test_minimum_share_and_reasons(self):
    rf = receptive_field("inception_4c/5x5", 224)
    boxes = np.array([rf.box(6, 6), rf.box(0, 0), rf.box(13, 13)])
    w = metrics.frame_windows(boxes, (224, 224))
    self.assertTrue(w.defined[0, 1])  # centre vs corner: 18 % of the RF
    self.assertAlmostEqual(w.share[0, 1], (128 / 299) ** 2, places=6)
    self.assertFalse(w.defined[1, 2])  # opposite corners share almost nothing
    self.assertIn("below the minimum", w.reason[1][2])

  def test_boxes_off_the_image_are_refused(self):
    with self.assertRaisesRegex(UserError, "wholly off"):
      metrics.frame_windows(np.array([[0, 0, 10, 10], [200, 0, 210, 10]]), (64, 64))


class DescriptorInvarianceTest(absltest.TestCase):

  def test_same_frame_content_gives_the_same_descriptor_anywhere(self):
    # The RF frame of three positions holds the same photo; on each pair's common window the
    # descriptors of the two positions agree to float rounding (phase-aligned judge).
    rf = receptive_field(TAP, HW)
    boxes = np.array([rf.box(4, 4), rf.box(2, 2), rf.box(0, 0)])
    frame = _photo("astronaut", rf.size)
    x = np.stack([[_place(frame, b, HW)] for b in boxes])  # [P, 1, H, W, 3]
    w = metrics.frame_windows(boxes, HW)
    d = metrics.window_descriptors(real_params(), x, boxes, w)
    for p in range(3):
      for q in range(3):
        np.testing.assert_allclose(d[p, 0, q], d[q, 0, p], rtol=2e-4, atol=2e-4 * np.abs(d[p, 0, q]).max())


@pytest.mark.slow
class NaturalPhotoCalibrationTest(parameterized.TestCase):
  """The calibration of issue 19: photos in the RF frame, S starts with jitter and noise."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    rf = receptive_field(TAP, HW)
    cls.rf = rf
    cls.boxes = np.array([rf.box(4, 4), rf.box(2, 2), rf.box(0, 0)])  # inside 0.87, 0.61, 0.21 (all truncated)
    cls.frames = {n: _photo(n, rf.size) for n in ("astronaut", "coffee", "chelsea", "rocket")}

  def _psi(self, images, key=0):
    return metrics.position_specificity(real_params(), images, self.boxes, key=jax.random.key(key), n_boot=50)

  def test_identical_content_at_truncated_positions_is_the_same_pattern(self):
    for name in ("astronaut", "rocket"):
      res = self._psi(_stack([self.frames[name]] * 3, self.boxes, HW, seed=1))
      off = res.psi_auc[~np.eye(3, dtype=bool)]
      self.assertTrue(np.all(np.isfinite(off)), res.undefined)
      self.assertLessEqual(np.abs(off).max(), 0.2, f"{name}: {res.psi_auc}")

  def test_different_content_is_a_different_pattern(self):
    res = self._psi(_stack([self.frames[n] for n in ("astronaut", "coffee", "chelsea")], self.boxes, HW, seed=2))
    off = res.psi_auc[~np.eye(3, dtype=bool)]
    self.assertGreaterEqual(off.min(), 0.8, res.psi_auc)

  def test_different_content_separates_on_the_smallest_accepted_window(self):
    # Two positions whose common window is just above MIN_WINDOW_SHARE.
    rf = receptive_field("inception_4c/5x5", (224, 224))
    boxes = np.array([rf.box(6, 6), rf.box(0, 0)])
    w = metrics.frame_windows(boxes, (224, 224))
    self.assertLess(w.share[0, 1], 2 * metrics.MIN_WINDOW_SHARE)
    frames = [_photo(n, rf.size) for n in ("astronaut", "coffee")]
    same = _stack([frames[0], frames[0]], boxes, (224, 224), seed=3)
    diff = _stack(frames, boxes, (224, 224), seed=3)
    p = lambda x: metrics.position_specificity(real_params(), x, boxes, key=jax.random.key(0), n_boot=20).psi_auc[0, 1]  # noqa: E731
    self.assertLessEqual(abs(p(same)), 0.2)
    self.assertGreaterEqual(p(diff), 0.8)

  def test_translation_within_the_rf_is_reported(self):
    # The same photo, moved by d px within the RF frame at every non-reference position. The measure
    # asks whether positions are distinguishable given the starts' scatter (+-3 px here): a move
    # within that scatter is the same pattern, a systematic move well beyond it is a difference.
    frame = self.frames["astronaut"]
    small = self._psi(_stack([frame] * 3, self.boxes, HW, seed=4, shifts=[(0, 0), (2, 2), (2, 2)]))
    large = self._psi(_stack([frame] * 3, self.boxes, HW, seed=4, shifts=[(0, 0), (24, 24), (24, 24)]))
    self.assertLessEqual(abs(small.psi_auc[0, 1]), 0.5)
    self.assertGreaterEqual(large.psi_auc[0, 1], 0.8)


class TruncationNullTest(absltest.TestCase):

  def test_the_centres_pattern_cut_to_each_window_is_the_same_pattern(self):
    rf = receptive_field(TAP, HW)
    boxes = np.array([rf.box(4, 4), rf.box(2, 2), rf.box(0, 0)])
    rng = np.random.default_rng(5)
    centre = np.clip(rng.uniform(size=(S, *HW, 3)), 0, 1).astype(np.float32)
    w = metrics.frame_windows(boxes, HW)
    null = metrics.null_images(centre, boxes, 0, w)
    res = metrics.position_specificity(real_params(), null, boxes, key=jax.random.key(0), n_boot=20)
    np.testing.assert_array_equal(res.psi_auc[0], [0.0, 0.0, 0.0])


class TransferTest(absltest.TestCase):

  def test_the_same_pattern_transfers_fully(self):
    rf = receptive_field(TAP, HW)
    boxes = np.array([rf.box(4, 4), rf.box(0, 0)])
    frame = _photo("coffee", rf.size)
    x = np.stack([[_place(frame, b, HW)] * 3 for b in boxes])
    w = metrics.frame_windows(boxes, HW)
    blob = np.asarray(rfspec.forward(real_params(), x[:, 0], taps=(TAP,))[TAP])
    channel = int(np.argmax(np.minimum(blob[0, 4, 4], blob[1, 0, 0])))  # a node the photo drives at both positions
    acts = metrics.transfer_activations(real_params(), x, boxes, w, np.array([(4, 4), (0, 0)]), channel, tap=TAP)
    for p, q in ((0, 1), (1, 0)):
      lab = jnp.array([0, 0, 0, 1, 1, 1])
      t = float(metrics.pair_transfer(jnp.concatenate([acts[p, q, 0], acts[p, q, 1]]), lab, jnp.ones(6)))
      self.assertAlmostEqual(t, 1.0, places=3)


class IndexTest(absltest.TestCase):

  def test_psi_against_hand_counts(self):
    # 2 images per position; W pairs: (0,1) and (2,3); B pairs: the other four.
    sims = np.full((4, 4), 0.1, np.float32)
    sims[0, 1] = sims[1, 0] = 0.9
    sims[2, 3] = sims[3, 2] = 0.8
    lab, ids, w = jnp.array([0, 0, 1, 1]), jnp.array([0, 1, 2, 3]), jnp.ones(4)
    self.assertAlmostEqual(float(metrics.pair_psi(jnp.asarray(sims), lab, ids, w)), 1.0)
    sims[0, 2] = sims[2, 0] = 0.85  # one B pair beats one W pair: P(W > B) = 7/8
    self.assertAlmostEqual(float(metrics.pair_psi(jnp.asarray(sims), lab, ids, w)), 2 * 7 / 8 - 1)
    # The same start at both positions (ids equal) drops those pairs.
    self.assertAlmostEqual(float(metrics.pair_psi(jnp.asarray(sims), lab, jnp.array([0, 1, 0, 3]), w)), 1.0)

  def test_auc_id_against_hand_counts(self):
    # Channel 0 images 0, 1; floor images 2, 3. W = sims[0,1]; F = (0,2), (0,3), (1,2), (1,3).
    sims = np.array([[1, .5, .6, .2], [.5, 1, .1, .1], [.6, .1, 1, .9], [.2, .1, .9, 1]], np.float32)
    i, j = metrics.upper_pairs(4)
    cmp = metrics.compare(jnp.asarray(sims)[i, j])
    a = metrics.auc_id_from(cmp, jnp.arange(4), jnp.array([0, 0, 1, 1]), jnp.ones(4), 0)
    self.assertAlmostEqual(float(a), 3 / 4)

  def test_transfer_ratio(self):
    v = jnp.array([1.0, 3.0, 4.0, 4.0])
    self.assertAlmostEqual(float(metrics.pair_transfer(v, jnp.array([0, 0, 1, 1]), jnp.ones(4))), 0.5)
    self.assertTrue(np.isnan(float(metrics.pair_transfer(v, jnp.array([0, 0, 1, 1]), jnp.array([0., 0, 1, 1])))))


class IntervalTest(absltest.TestCase):

  def test_ordinary_draws(self):
    iv = metrics.interval(np.linspace(0, 1, 101), 10)
    self.assertAlmostEqual(iv.lo, 0.025)
    self.assertAlmostEqual(iv.hi, 0.975)
    self.assertFalse(iv.degenerate)

  def test_collapsed_draws_are_flagged_and_widened_at_a_bound(self):
    iv = metrics.interval(np.ones(200), 3, bounds=(-1, 1))
    self.assertTrue(iv.degenerate)
    # 3 starts all agreeing: the proportion's exact lower bound is 0.025 ** (1/3) = 0.292.
    self.assertAlmostEqual(iv.lo, 2 * 0.025 ** (1 / 3) - 1, places=6)
    self.assertEqual(iv.hi, 1.0)
    mid = metrics.interval(np.full(50, 0.3), 3, bounds=(-1, 1))
    self.assertTrue(mid.degenerate)  # flagged even where no bound applies

  def test_nothing_defined(self):
    self.assertTrue(np.isnan(metrics.interval(np.full(5, np.nan), 3).lo))


class BadInputTest(parameterized.TestCase):

  def setUp(self):
    super().setUp()
    rf = receptive_field("conv2/3x3", (32, 32))
    self.boxes = np.array([rf.box(4, 4), rf.box(0, 0)])
    self.images = np.random.default_rng(0).uniform(size=(2, 3, 32, 32, 3)).astype(np.float32)

  def _call(self, images=None, boxes=None, **kw):
    kw.setdefault("key", jax.random.key(0))
    kw.setdefault("n_boot", 20)
    return metrics.position_specificity(real_params(), self.images if images is None else images,
                                        self.boxes if boxes is None else boxes, **kw)

  def test_nan_images(self):
    x = self.images.copy()
    x[0, 1, 3, 3, 0] = np.nan
    with self.assertRaisesRegex(UserError, "NaN"):
      self._call(x)

  def test_uint8_images(self):
    with self.assertRaisesRegex(UserError, "255"):
      self._call((self.images * 255).astype(np.uint8))

  def test_0_255_floats(self):
    with self.assertRaisesRegex(UserError, r"\[0, 1\]"):
      self._call(self.images * 255)

  def test_boxes_off_the_image(self):
    with self.assertRaisesRegex(UserError, "wholly off"):
      self._call(boxes=np.array([[0, 0, 19, 19], [100, 100, 119, 119]]))

  def test_identical_constant_images_are_nan_with_a_reason(self):
    res = self._call(np.full_like(self.images, 0.5))
    self.assertTrue(np.isnan(res.psi_auc[0, 1]))
    self.assertIn("no seed variation", res.undefined[0][1])

  @parameterized.parameters(0, None, np.uint32(3))
  def test_key_must_be_a_jax_key(self, key):
    with self.assertRaisesRegex(UserError, "jax.random.key"):
      self._call(key=key)

  def test_n_boot_zero(self):
    with self.assertRaisesRegex(UserError, "n_boot"):
      self._call(n_boot=0)

  def test_two_starts_are_too_few(self):
    with self.assertRaisesRegex(UserError, "starts"):
      self._call(self.images[:, :2])


class RealismTest(absltest.TestCase):

  def test_spectrum_slope_of_known_spectra(self):
    rng = np.random.default_rng(0)
    white = rng.uniform(size=(2, 128, 128, 3))
    self.assertLess(np.abs(metrics.spectrum_slope(white)).max(), 0.3)
    # 1/f amplitude (power ~ f^-2), as natural images.
    fy, fx = np.meshgrid(np.fft.fftfreq(128), np.fft.fftfreq(128), indexing="ij")
    amp = 1 / np.maximum(np.hypot(fy, fx), 1 / 128)
    pink = np.real(np.fft.ifft2(amp * np.exp(2j * np.pi * rng.uniform(size=(128, 128)))))
    pink = (pink - pink.min()) / np.ptp(pink)
    self.assertAlmostEqual(float(metrics.spectrum_slope(np.repeat(pink[None, ..., None], 3, -1))[0]), -2.0, delta=0.35)

  def test_start_remnant_share(self):
    rng = np.random.default_rng(1)
    start = rng.uniform(size=(1, 32, 32, 3))
    self.assertAlmostEqual(float(metrics.start_remnant_share(start, start, 1.0)[0]), 1.0)
    pattern = rng.uniform(size=(1, 32, 32, 3))
    # The start decayed to 10 % of its amplitude under a pattern of the same spread: 1 % of the variance.
    self.assertAlmostEqual(float(metrics.start_remnant_share(pattern, start, 0.1)[0]), 0.01, delta=0.002)


class EveryMeasureRefusesBadImagesTest(parameterized.TestCase):
  """Issue 20 item 1 for every public measure, not only position_specificity: NaN, uint8 and 0-255
  images and boxes wholly off the image are one UserError paragraph that names the fix; an input
  whose number is undefined (a flat image) gives NaN, not a confident number. The checks run
  before the net, so no params are needed (None would fail later, inside the forward)."""

  def setUp(self):
    super().setUp()
    rf = receptive_field("conv2/3x3", (32, 32))
    self.boxes = np.array([rf.box(4, 4), rf.box(0, 0)])
    self.off = np.array([[0, 0, 19, 19], [100, 100, 119, 119]])
    self.windows = metrics.frame_windows(self.boxes, (32, 32))
    self.images = np.random.default_rng(0).uniform(size=(2, 3, 32, 32, 3)).astype(np.float32)

  def _measures(self, images, boxes=None):
    b = self.boxes if boxes is None else boxes
    return {
        "window_descriptors": lambda: metrics.window_descriptors(None, images, b, self.windows),
        "null_images": lambda: metrics.null_images(images[0], b, 0, self.windows),
        "transfer_activations": lambda: metrics.transfer_activations(None, images, b, self.windows, [(4, 4), (0, 0)], 0,
                                                                     tap="conv2/3x3"),
        "describe": lambda: metrics.describe(None, images, np.zeros(images.shape[:-3] + (4,))),
        "spectrum_slope": lambda: metrics.spectrum_slope(images[0]),
        "start_remnant_share": lambda: metrics.start_remnant_share(images[0], images[0], 0.5),
    }

  def test_nan_images(self):
    x = self.images.copy()
    x[0, 1, 3, 3, 0] = np.nan
    for name, call in self._measures(x).items():
      with self.subTest(name), self.assertRaisesRegex(UserError, r"1 NaN or infinite values.*Drop those images"):
        call()

  def test_uint8_images(self):
    for name, call in self._measures((self.images * 255).astype(np.uint8)).items():
      with self.subTest(name), self.assertRaisesRegex(UserError, r"uint8.*Divide 0-255 pixels by 255"):
        call()

  def test_0_255_floats(self):
    for name, call in self._measures(self.images * 255).items():
      with self.subTest(name), self.assertRaisesRegex(UserError, r"range over \[.*\[0, 1\]"):
        call()

  def test_boxes_wholly_off_the_image(self):
    for name in ("window_descriptors", "null_images", "transfer_activations"):
      with self.subTest(name), self.assertRaisesRegex(UserError, r"lie wholly off the 32x32 image.*receptive_field"):
        self._measures(self.images, self.off)[name]()

  def test_windows_of_other_boxes(self):
    with self.assertRaisesRegex(UserError, "frame_windows"):
      metrics.window_descriptors(None, self.images[:1], self.boxes[:1], self.windows)

  def test_a_flat_image_has_no_spectrum_slope(self):
    flat = np.full((2, 32, 32, 3), 0.5, np.float32)
    slopes = metrics.spectrum_slope(np.concatenate([flat, self.images[0, :1]]))
    self.assertTrue(np.all(np.isnan(slopes[:2])), slopes)  # was 1e-15: "white noise" from a grey card
    self.assertTrue(np.isfinite(slopes[2]))

  def test_flat_final_and_start_have_no_remnant_share(self):
    flat = np.full((1, 32, 32, 3), 0.5, np.float32)
    self.assertTrue(np.isnan(metrics.start_remnant_share(flat, flat, 0.5)[0]))  # was inf
    self.assertEqual(metrics.start_remnant_share(flat, self.images[0, :1], 0.5)[0], np.inf)

  def test_a_start_image_may_overshoot_the_range(self):
    start = self.images[0, :1] * 1.4  # zipser2015's dots reach 1.36
    self.assertTrue(np.isfinite(metrics.start_remnant_share(self.images[0, :1], start, 0.1)[0]))

  def test_remnant_must_be_a_share(self):
    with self.assertRaisesRegex(UserError, r"remnant must be a number in \[0, 1\]"):
      metrics.start_remnant_share(self.images[0], self.images[0], float("nan"))

  def test_images_of_different_sizes(self):
    ragged = [self.images[0, 0], self.images[0, 0, :16]]
    with self.assertRaisesRegex(UserError, r"one array of RGB images of one size.*Resize them"):
      metrics.spectrum_slope(ragged)

  def test_several_keys_and_a_billion_draws(self):
    with self.assertRaisesRegex(UserError, r"key must be ONE JAX random key.*got an array of 3 keys"):
      metrics.position_specificity(None, self.images, self.boxes, key=jax.random.split(jax.random.key(0), 3))
    with self.assertRaisesRegex(UserError, r"n_boot must be a whole number in \[20, 100000\]; got 1000000000"):
      metrics.position_specificity(None, self.images, self.boxes, key=jax.random.key(0), n_boot=10 ** 9)

  @parameterized.parameters(([[0, 1.5, 2], [0, 1, 2]],), ([0, 1, 2],))
  def test_position_specificity_seeds_are_whole_and_per_image(self, seeds):
    with self.assertRaisesRegex(UserError, r"seeds must be \[P, S\] = \[2, 3\] whole numbers"):
      metrics.position_specificity(None, self.images, self.boxes, key=jax.random.key(0), n_boot=20, seeds=seeds)


if __name__ == "__main__":
  absltest.main()

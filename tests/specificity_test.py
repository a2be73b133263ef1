"""rfspec.specificity: positions, the channel rule, ERF off-image share, spectrum slope, and the
verdict logic on synthetic results whose truth is set by hand."""

import math

import jax
import numpy as np
from absl.testing import absltest

from rfspec import specificity as spec
from rfspec.engine import VisConfig, initial_image
from rfspec.geometry import receptive_field
from rfspec.models import googlenet
from tests.conftest import real_params


class PositionsTest(absltest.TestCase):

  def test_diagonal_runs_from_centre_to_corner_with_falling_inside_fraction(self):
    for tap, hw in (("conv2/3x3", (128, 128)), ("inception_4c/output", (224, 224))):
      pos = spec.diagonal_positions(tap, hw, 4)
      rf = receptive_field(tap, hw)
      self.assertEqual(pos[-1], (0, 0))
      self.assertEqual(len(set(pos)), len(pos))
      centre = ((hw[0] - 1) / 2, (hw[1] - 1) / 2)
      dist = [math.dist(rf.centre(*p), centre) for p in pos]
      self.assertEqual(dist[0], min(math.dist(rf.centre(i, j), centre) for i in range(rf.grid[0])
                                    for j in range(rf.grid[1])))
      inside = [rf.inside_fraction(*p) for p in pos]
      self.assertEqual(inside, sorted(inside, reverse=True))
      self.assertLess(inside[-1], inside[0])

  def test_mirror(self):
    h, w = googlenet.blob_hw("inception_4c/output", (224, 224))
    self.assertEqual(spec.mirror_position("inception_4c/output", (224, 224), (0, 2)), (h - 1, w - 3))


class ChannelRuleTest(absltest.TestCase):

  def test_post_relu_rule_keeps_only_channels_alive_at_every_position_and_seed(self):
    params = real_params()
    cfg = VisConfig.from_recipe("zipser2015", tap="inception_4c/5x5", image_hw=(96, 96), steps=1)
    pos = spec.diagonal_positions(cfg.tap, cfg.image_hw, 3)
    choice = spec.choose_channels(params, cfg, pos, [0, 1, 2], 3)
    acts = np.stack([np.asarray(googlenet.forward(params, initial_image(s, cfg)[None], (cfg.tap,))[cfg.tap][0])
                     for s in (0, 1, 2)])  # [S, h, w, C], an independent recomputation
    at = np.stack([acts[:, i, j] for i, j in pos], 1)  # [S, P, C]
    alive = (at > 0).all(axis=(0, 1))
    self.assertEqual(choice.eligible, int(alive.sum()))
    self.assertLen(choice.channels, min(3, int(alive.sum())))
    for c in choice.channels:
      self.assertTrue(alive[c])
    mins = at.min(axis=(0, 1))
    self.assertEqual(choice.channels, sorted(choice.channels, key=lambda c: (-mins[c], c)))
    self.assertIn("never moves", choice.rule)


class ErfOffShareTest(absltest.TestCase):

  def test_centre_inside_corner_off(self):
    params = real_params()
    hw = (64, 64)
    rf = receptive_field("inception_3b/output", hw)
    pos = spec.diagonal_positions("inception_3b/output", hw, 3)
    share = spec.erf_off_share(params, "inception_3b/output", hw, np.array([rf.centre(*p) for p in pos]),
                               key=jax.random.key(0), num_samples=2)
    self.assertTrue(((share >= 0) & (share <= 1)).all(), share)
    self.assertLess(share[0], share[-1])
    # The ERF is more compact than the theoretical RF: less of its mass is off the image.
    self.assertLess(share[-1], 1 - rf.inside_fraction(*pos[-1]))


class SpectrumSlopeTest(absltest.TestCase):

  def test_recovers_the_slope_of_power_law_noise(self):
    rng = np.random.default_rng(0)
    n = 128
    fy, fx = np.meshgrid(np.fft.fftfreq(n), np.fft.fftfreq(n), indexing="ij")
    f = np.hypot(fy, fx)
    f[0, 0] = 1.0
    for alpha in (1.0, 2.0, 3.0):  # power ~ 1/f^alpha, so amplitude ~ f^(-alpha/2)
      spectrum = (rng.normal(size=(n, n)) + 1j * rng.normal(size=(n, n))) * f ** (-alpha / 2)
      img = np.real(np.fft.ifft2(spectrum))
      img = (img - img.min()) / np.ptp(img)
      slope = spec.spectrum_slope(np.repeat(img[None, ..., None], 3, -1))[0]
      self.assertAlmostEqual(slope, -alpha, delta=0.35)


def _result(psi_c, auc, rf_size, rf_off, n_boot=200, k=3, noise=0.05, seed=0):
  """A synthetic TapResult: psi_auc(p, centre) = psi_c[p], auc_id = auc, with bootstrap draws
  spread by `noise` around them."""
  rng = np.random.default_rng(seed)
  p = len(psi_c)
  psi = np.zeros((k, p, p))
  psi[:, :, 0] = psi[:, 0, :] = psi_c
  boot = psi[:, None] + noise * rng.standard_normal((k, n_boot, p, p))
  auc_boot = auc + noise * rng.standard_normal((k, n_boot, p))
  z = np.zeros
  return spec.TapResult(
      tap=f"tap{rf_size}", rf_size=rf_size, stride=8, channels=np.arange(k), positions=np.zeros((p, 2), int), n_main=p,
      boxes=z((p, 4)), rf_off=np.asarray(rf_off, float), erf_off=0.5 * np.asarray(rf_off, float),
      auc_id=np.full((k, p), auc), auc_id_ci=z((k, p, 2)), psi_auc=psi, psi_auc_ci=z((k, p, p, 2)),
      psi_floor=z((k, p, p)), auc_id_boot=auc_boot, psi_auc_boot=boot, mirror_psi=z((k, 0)),
      mirror_psi_boot=z((k, n_boot, 0)), objective=z((k, p, 3)), images=z((0,)), tiled=z((0,)))


class ClaimsTest(absltest.TestCase):
  HW = (128, 128)

  def _verdicts(self, results, realism=None):
    return [v.verdict for v in spec.claims(results, self.HW, 6, realism)["verdicts"]]

  def test_the_paper_holds(self):
    small = _result([0.0, 0.01, 0.0, 0.4], 0.9, 19, [0, 0, 0, 0.5])
    large = _result([0.0, 0.5, 0.7, 0.9], 0.9, 299, [0.6, 0.7, 0.8, 0.9])
    real = spec.realism_difference([dict(single=[0.5, 0.6, 0.55], tiled=[0.3, 0.35, 0.3])], jax.random.key(0))
    self.assertEqual(self._verdicts([small, large], real), ["supported"] * 5)

  def test_the_paper_fails(self):
    small = _result([0.0, 0.6, 0.7, 0.7], 0.9, 19, [0, 0, 0, 0.5])
    large = _result([0.0, -0.5, -0.6, -0.7], 0.2, 299, [0.6, 0.7, 0.8, 0.9])
    real = spec.realism_difference([dict(single=[0.3, 0.3, 0.35], tiled=[0.5, 0.6, 0.55])], jax.random.key(0))
    self.assertEqual(self._verdicts([small, large], real), ["not supported"] * 5)

  def test_noisy_is_inconclusive_and_says_what_would_settle_it(self):
    small = _result([0.0, 0.1, 0.1, 0.1], 0.5, 19, [0, 0, 0, 0.5], noise=0.3)
    large = _result([0.0, 0.05, 0.0, 0.05], 0.52, 299, [0.6, 0.7, 0.8, 0.9], noise=0.3)
    out = spec.claims([small, large], self.HW, 6, None)["verdicts"]
    self.assertEqual([v.verdict for v in out[:4]], ["inconclusive"] * 4)
    self.assertRegex(out[0].settle, r"needs about \d+ seeds to show equivalence")
    self.assertEqual(out[4].verdict, "inconclusive")  # no tiled run
    for v in out[:4]:
      self.assertTrue(np.isfinite(v.estimate) and np.all(np.isfinite(v.ci)))

  def test_equivalence_needs_the_margin_not_a_failed_difference_test(self):
    # psi_auc ~ 0.15 with a tight interval: no difference from 0 is NOT equivalence within 0.2...
    wide = _result([0.0, 0.15, 0.15, 0.15], 0.9, 19, [0, 0, 0, 0], noise=0.2)
    self.assertEqual(self._verdicts([wide])[0], "inconclusive")
    # ...but a tight interval inside +-0.2 is.
    tight = _result([0.0, 0.15, 0.15, 0.15], 0.9, 19, [0, 0, 0, 0], noise=0.01)
    self.assertEqual(self._verdicts([tight])[0], "supported")



class ReflectPaddingTest(absltest.TestCase):

  def test_conv1_equals_numpy_reflect_then_valid_conv(self):
    import jax.numpy as jnp

    from rfspec.models import preprocess

    params = real_params()
    x = np.random.default_rng(0).uniform(size=(1, 40, 40, 3)).astype(np.float32)
    got = np.asarray(googlenet.forward(params, x, ("conv1/7x7_s2",), pad_mode="reflect")["conv1/7x7_s2"])
    layer = googlenet.LAYER_BY_NAME["conv1/7x7_s2"]
    data = np.asarray(preprocess.to_caffe(jnp.asarray(x)))
    padded = np.pad(data, ((0, 0), (layer.p, layer.p), (layer.p, layer.p), (0, 0)), mode="reflect")
    w = np.asarray(params["conv1/7x7_s2"]["kernel"], np.float64)
    out = np.zeros(got.shape)
    for i in range(got.shape[1]):
      for j in range(got.shape[2]):
        patch = padded[0, i * layer.s:i * layer.s + layer.k, j * layer.s:j * layer.s + layer.k]
        out[0, i, j] = np.einsum("hwc,hwco->o", patch, w)
    out = np.maximum(out + np.asarray(params["conv1/7x7_s2"]["bias"]), 0)
    np.testing.assert_allclose(got, out, rtol=1e-4, atol=1e-3)
    zero = np.asarray(googlenet.forward(params, x, ("conv1/7x7_s2",))["conv1/7x7_s2"])
    np.testing.assert_allclose(zero[:, 2:-2, 2:-2], got[:, 2:-2, 2:-2], rtol=1e-5, atol=1e-4)  # interior alike
    self.assertGreater(np.abs(zero[:, 0] - got[:, 0]).max(), 1.0)  # the border is not

  def test_the_engine_visualises_with_the_configs_padding(self):
    import rfspec
    from rfspec import objectives

    params = real_params()
    x = np.random.default_rng(1).uniform(size=(1, 48, 48, 3)).astype(np.float32)
    tap = "inception_3a/5x5"
    want = googlenet.forward(params, x, (tap,), pad_mode="reflect")[tap]
    got = objectives.tap_activation(params, x, tap, pad_mode="reflect")
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-4)
    # A pre-ReLU tap reflects too: relu of it is the reflect-padded blob.
    pre = objectives.tap_activation(params, x, tap, pre_relu=True, pad_mode="reflect")
    np.testing.assert_allclose(np.maximum(pre, 0), want, rtol=1e-5, atol=1e-4)
    self.assertEqual(rfspec.VisConfig(tap=tap, image_hw=(48, 48), pad_mode="reflect").pad_mode, "reflect")
    with self.assertRaisesRegex(ValueError, "pad_mode"):
      rfspec.VisConfig(tap=tap, image_hw=(48, 48), pad_mode="mirror")


if __name__ == "__main__":
  absltest.main()

"""rfspec.claims on synthetic measurements whose answers are known by construction.

Descriptors are drawn so that positions share a channel's pattern (answer: psi ~ 0) or each has
its own (answer: psi = 1); transfer activations are set to equal (T = 1) or halved (T = 0.5). The
verdict rules, the nulls, dead runs and the collapse of intervals are checked on them. One shape
(K, P, S) and fixed draw counts keep this to one compilation.
"""

import jax
import numpy as np
import pytest
from absl.testing import absltest

from rfspec import claims

K, P, S, C = 4, 3, 5, 12
N_DRAWS = 60


def _measures(sep: float, *, tap="t", rf_size=50, inside=(1.0, 0.8, 0.4), transfer_ratio=1.0, seed=0,
              dead=None, realism=None) -> claims.TapMeasures:
  rng = np.random.default_rng(seed)
  proto = rng.standard_normal((K, C)) * 2
  per_pos = rng.standard_normal((K, P, C)) * 2 * sep
  desc = proto[:, None, None, None, :] + per_pos[:, :, None, None, :] + 0.5 * rng.standard_normal((K, P, S, 1, C))
  desc = np.broadcast_to(desc, (K, P, S, P, C)).astype(np.float32)  # the same on every window
  seeds = np.broadcast_to(np.arange(S), (K, P, S)).copy()
  null_desc = np.broadcast_to(desc[:, 0, :, 0][:, None], (K, P, S, C)).copy()
  own = 1.0 + rng.uniform(0, 0.2, (K, P, P, S))
  transfer = np.stack([own * transfer_ratio, own], axis=3).astype(np.float32)  # [K, P, P, 2, S]
  null_transfer = np.stack([own, own], axis=3).astype(np.float32)
  final = np.ones((K, P, S), np.float32)
  if dead is not None:
    final[dead] = 0.0
  empty = np.zeros((0,))
  r = realism or {}
  return claims.TapMeasures(
      tap=tap, image_hw=(100, 100), rf_size=rf_size, positions=np.zeros((P, 2), int),
      roles=("centre", "diagonal", "corner"), boxes=np.zeros((P, 4), int), inside=np.asarray(inside),
      erf_off=np.zeros(P), window=np.zeros((P, P, 4), int), share=np.ones((P, P)), defined=np.ones((P, P), bool),
      channels=np.arange(K), eligible=K, seeds=seeds, final_act=final, alive=~claims.dead_runs(final), desc=desc,
      null_desc=null_desc, transfer=transfer, null_transfer=null_transfer, mirror_desc=np.zeros((K, 0, S, C)),
      single_slope=np.asarray(r.get("single", empty)), tiled_slope=np.asarray(r.get("tiled", empty)),
      single_start_share=np.asarray(r.get("corr", empty)), tiled_start_share=np.asarray(r.get("corr", empty)),
      single_final=np.asarray(r.get("final", empty)), tiled_final=np.asarray(r.get("final", empty)))


def _summary(m):
  return claims.summarize_tap(m, jax.random.key(0), n_boot=N_DRAWS, n_perm=N_DRAWS)


@pytest.mark.slow
class TapSummaryTest(absltest.TestCase):

  def test_same_pattern_everywhere_gives_psi_near_zero_and_a_wide_null(self):
    s = _summary(_measures(0.0))
    self.assertLess(np.nanmax(np.abs(s.psi_centre)), 0.25)
    lo, hi = np.nanpercentile(s.psi_centre_boot[:, 1], [2.5, 97.5])
    self.assertLess(lo, 0.0)
    self.assertGreater(hi, 0.0)

  def test_own_pattern_per_position_gives_psi_one_above_its_nulls(self):
    s = _summary(_measures(1.0))
    np.testing.assert_allclose(s.psi_centre[1:], 1.0)
    np.testing.assert_allclose(s.psi_null[1:], 0.0)  # truncation null: the centre's own pattern
    self.assertLess(np.nanpercentile(s.psi_centre_perm[:, 1], 95), 0.9)

  def test_seed_consistency_against_other_channels(self):
    s = _summary(_measures(0.0))
    self.assertGreater(np.min(s.auc_id), 0.9)  # a channel's starts agree far more than two channels
    self.assertLess(abs(np.nanmean(s.auc_id_perm) - 0.5), 0.1)  # permuted channel labels: chance

  def test_transfer_and_its_null(self):
    s = _summary(_measures(1.0, transfer_ratio=0.5))
    np.testing.assert_allclose(s.transfer[1:], 0.5, rtol=1e-5)
    np.testing.assert_allclose(s.transfer_null[1:], 1.0, rtol=1e-6)

  def test_dead_runs_are_counted_and_cannot_move_the_estimate(self):
    dead = np.zeros((K, P, S), bool)
    dead[0, 1, 0] = True
    m = _measures(0.0, dead=dead)
    wild = m.desc.copy()
    wild[0, 1, 0] = 1e3 * np.random.default_rng(9).standard_normal(wild[0, 1, 0].shape)  # start noise, say
    a, b = _summary(m), _summary(m._replace(desc=wild))
    self.assertEqual(a.dead, 1)
    np.testing.assert_allclose(a.psi_centre, b.psi_centre)

  def test_mirror_ablation_known_answers(self):
    # mirror_desc [K, 4, S, C]: corner on W*, centre on W*, mirror on mirror(W*), centre on
    # mirror(W*). A mirror position that shows the centre's pattern while the corner shows its own
    # gives psi(mirror) - psi(corner) = 0 - 1 = -1; the other way round +1.
    rng = np.random.default_rng(3)
    centre = rng.standard_normal((K, 1, 1, C)) * 2 + 0.5 * rng.standard_normal((K, 1, S, C))
    other = rng.standard_normal((K, 1, 1, C)) * 2 + 0.5 * rng.standard_normal((K, 1, S, C))
    base = _measures(0.0)._replace(roles=("centre", "mirror", "corner"))
    for mirror_like, corner_like, answer in ((centre, other, -1.0), (other, centre, 1.0)):
      d = np.concatenate([corner_like, centre, mirror_like, centre], axis=1).astype(np.float32)
      est, boot = claims._mirror_numbers(base._replace(mirror_desc=d), jax.random.key(1), 40)
      self.assertAlmostEqual(est, answer, places=5)
      self.assertEqual(boot.shape, (40,))
      self.assertTrue(np.all(np.abs(boot - answer) < 1e-5), boot)

  def test_dead_run_rule(self):
    act = np.array([[10.0, 9.0, 0.3, 0.0, -1.0, 8.0]])  # median 4.15: 0.3 is below 10 % of it
    np.testing.assert_array_equal(claims.dead_runs(act), [[False, False, True, True, True, False]])


class DecideTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.small_same = _measures(0.0, tap="small", rf_size=20, inside=(1.0, 1.0, 0.4), seed=1)
    cls.large_diff = _measures(1.0, tap="large", rf_size=90, inside=(0.6, 0.5, 0.3), transfer_ratio=0.5, seed=2)
    cls.s_small, cls.s_large = _summary(cls.small_same), _summary(cls.large_diff)

  def _decide(self, taps, **kw):
    kw.setdefault("image_hw", (100, 100))
    kw.setdefault("n_starts", S)
    return claims.decide(taps, n_boot=N_DRAWS, **kw)

  def test_the_verdicts_follow_the_construction(self):
    v = self._decide([(self.small_same, self.s_small), (self.large_diff, self.s_large)])
    self.assertEqual(len(v), 5)
    self.assertIn(v[0].verdict, ("supported", "inconclusive"))  # equivalence needs a tight interval
    self.assertLess(abs(v[0].estimate), 0.2)
    self.assertEqual(v[1].verdict, "supported", v[1].why)
    self.assertEqual(v[1].second["says"], "different")
    self.assertEqual(v[2].verdict, "supported", v[2].why)
    self.assertEqual(v[3].verdict, "supported", v[3].why)  # the deeper tap is more specific at matched truncation
    self.assertEqual(v[4].verdict, "not measured")  # no tiled run

  def test_measures_that_disagree_are_not_a_verdict(self):
    agree_psi = _measures(1.0, tap="large", rf_size=90, inside=(0.6, 0.5, 0.3), transfer_ratio=1.0, seed=2)
    v = self._decide([(agree_psi, _summary(agree_psi))])
    self.assertEqual(v[1].verdict, "inconclusive")
    self.assertIn("disagree", v[1].why)

  def test_smoke_tests_are_not_evaluated(self):
    v = self._decide([(self.large_diff, self.s_large)], smoke_test=True)
    self.assertEqual({c.verdict for c in v}, {"not evaluated"})

  def test_missing_units_say_not_measured(self):
    v = self._decide([(self.large_diff, self.s_large)])
    self.assertEqual(v[0].verdict, "not measured")
    self.assertIn("small-RF", v[0].why)

  def test_claim5_needs_photos_and_no_start_noise(self):
    real = dict(single=np.full(S, -0.5), tiled=np.full(S, -2.0), corr=np.zeros(S), final=np.ones(S))
    m = _measures(1.0, tap="large", rf_size=90, realism=real)
    s = _summary(m)
    few = claims.Realism(np.full(5, -2.5), tuple("abcde"))
    self.assertEqual(self._decide([(m, s)], realism=few)[4].verdict, "not measured")
    rng = np.random.default_rng(0)
    many = claims.Realism(-2.5 + 0.2 * rng.standard_normal(25), tuple(map(str, range(25))))
    self.assertEqual(self._decide([(m, s)], realism=many)[4].verdict, "supported")
    noisy = m._replace(single_start_share=np.full(S, 0.3))
    self.assertIn("start noise", self._decide([(noisy, s)], realism=many)[4].why)
    unrecorded = m._replace(single_final=np.zeros(0), tiled_final=np.zeros(0))
    self.assertIn("no final node activations", self._decide([(unrecorded, s)], realism=many)[4].why)

  def test_claim5_leaves_out_dead_realism_starts(self):
    # Start 0's single run died: its image is all start noise and its slope is wildly off. The dead
    # rule removes it (and its tiled partner); left in, it would trip the start-noise gate.
    R = 8  # realism starts (enough for p < 0.05 with one left out)
    single_slope = np.full(R, -0.5)
    single_slope[0] = 5.0
    share = np.zeros(R)
    share[0] = 1.9
    final = np.ones(R)
    final[0] = 0.0
    real = dict(single=single_slope, tiled=np.full(R, -2.0), corr=share, final=final)
    m = _measures(1.0, tap="large", rf_size=90, realism=real)
    s = _summary(m)
    rng = np.random.default_rng(0)
    many = claims.Realism(-2.5 + 0.2 * rng.standard_normal(25), tuple(map(str, range(25))))
    c = self._decide([(m, s)], realism=many)[4]
    self.assertEqual(c.verdict, "supported")
    self.assertEqual(c.n, R - 1)
    self.assertAlmostEqual(c.estimate, abs(-0.5 - np.median(many.natural_slope)) - abs(-2.0 - np.median(
        many.natural_slope)), places=6)
    self.assertIn("1 dead realism start", c.why)
    alive_noisy = m._replace(single_final=np.ones(R), tiled_final=np.ones(R))  # the same image counted alive trips the gate
    self.assertIn("start noise", self._decide([(alive_noisy, s)], realism=many)[4].why)


class ConditionPsiTest(absltest.TestCase):

  def test_paired_draws_and_known_answers(self):
    rng = np.random.default_rng(3)
    a = rng.standard_normal((2, 4, C)) + 3 * rng.standard_normal((2, 1, C))
    same = claims.condition_psi(a, a[:, ::-1] + 0.01, np.tile(np.arange(4), (2, 1)), np.tile(np.arange(4, 8), (2, 1)),
                                jax.random.key(0), n_boot=40, n_perm=40)
    other = claims.condition_psi(a, a + 5 * rng.standard_normal((2, 1, C)), np.tile(np.arange(4), (2, 1)),
                                 np.tile(np.arange(4, 8), (2, 1)), jax.random.key(0), n_boot=40, n_perm=40)
    self.assertLess(abs(same["estimate"]), 0.5)
    self.assertEqual(other["estimate"], 1.0)
    self.assertEqual(len(other["boot"]), 40)


if __name__ == "__main__":
  absltest.main()

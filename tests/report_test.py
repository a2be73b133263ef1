"""rfspec.report text: the smoke-test head of a quick run's stdout line, claim rows whose sentences
do not run into each other, and per-tap rows that say why a position has no number."""

from absl.testing import absltest

from rfspec import report


def claim(**kw):
  return dict(dict(claim="1. A claim.", estimate=0.5, ci=[0.1, 0.9], ci_degenerate=False, n=3, null=0.0,
                   null_kind="truncation null", p_value=0.04, verdict="not evaluated", why=report.SMOKE_TEST,
                   settle="", measure="mean psi_auc", second=None), **kw)


class ReportTextTest(absltest.TestCase):

  def test_smoke_head_starts_a_quick_line(self):
    self.assertEqual(report.smoke_head(True), report.SMOKE_TEST + "; ")
    self.assertEqual(report.smoke_head(False), "")

  def test_why_ends_before_the_measure_begins(self):
    row = report.claim_rows([claim()])[0]
    self.assertEqual(row[4], "not evaluated")
    self.assertEqual(row[-1], f"{report.SMOKE_TEST}. Measure: mean psi_auc.")
    row = report.claim_rows([claim(why="too few starts.", settle="run more")])[0]
    self.assertEqual(row[-1], "too few starts; run more. Measure: mean psi_auc.")

  def test_a_collapsed_interval_says_so(self):
    row = report.claim_rows([claim(ci=[1.0, 1.0], ci_degenerate=True, n=3)])[0]
    self.assertIn("(n = 3, no interval", row[1])


  def test_an_undefined_estimate_is_n_a_alone(self):
    self.assertEqual(report.claim_rows([claim(estimate=None, ci=[None, None])])[0][1], "n/a")

  def test_per_tap_rows_say_why_a_position_has_no_number(self):
    ci = lambda lo, hi, deg=False: dict(ci=[lo, hi], degenerate=deg)  # noqa: E731
    tap = dict(tap="inception_4a/output", rf_size=171, channels=[1, 2], channels_eligible=9,
               positions=[[1, 1], [0, 0], [2, 2]], roles=["centre", "corner", "mirror"], inside=[0.14, 0.14, 0.14],
               window_share_with_centre=[1.0, 0.4, 0.08], window_defined_with_centre=[True, True, False],
               psi_vs_centre=[None, 0.5, None], psi_vs_centre_ci=[ci(None, None), ci(0.2, 0.8), ci(None, None)],
               psi_truncation_null=[None, 0.1, None], auc_id=[0.9, 0.8, 0.7],
               auc_id_ci=[ci(0.85, 1.0, True), ci(0.6, 0.9), ci(0.5, 0.9)], transfer=[None, 0.9, None],
               dead_runs=0, runs=18, starts_per_position=3)
    row = report.tap_rows([tap])[0]
    self.assertEqual(row[4], "centre; 0.50 [0.20, 0.80]; n/a (window 8%)")
    self.assertEqual(row[5], "centre; 0.10; n/a (window 8%)")
    self.assertEqual(row[6], "0.90 (n = 3, no interval; exact bound [0.85, 1.00]); 0.80 [0.60, 0.90]; "
                             "0.70 [0.50, 0.90]")
    self.assertEqual(row[7], "centre; 0.90; n/a (window 8%)")


if __name__ == "__main__":
  absltest.main()

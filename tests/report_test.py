"""rfspec.report text: the smoke-test head of a quick run's stdout line, and claim rows whose
sentences do not run into each other."""

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


if __name__ == "__main__":
  absltest.main()

"""experiments.specificity end to end in quick mode (random weights of the real shapes,
tests/experiments/quick_runs.py): the five claims in the JSON the issue asks for, the smoke-test
line, outputs verified by checksum on rerun, resume from the stored batches, and user errors."""

import json
import os

import pytest
from absl.testing import absltest

from rfspec.weights import store
from tests.conftest import tiny_weights
from tests.experiments import quick_runs
from tests.experiments.quick_runs import weights_flag
from tests.experiments.reproduce_paper_test import check_page

QUICK = quick_runs.SPEC_ARGS[0]
SMOKE = "smoke test (tiny size and steps): checks the pipeline, not the science"


def run_binary(*args, timeout=900):
  return quick_runs.run_binary("specificity", *args, timeout=timeout)


def _mtimes(workdir, sub=""):
  out = {}
  for root, _, names in os.walk(os.path.join(workdir, sub)):
    for f in names:
      if f != ".rfspec.lock":  # the lock records its holder each run
        out[os.path.join(root, f)] = os.stat(os.path.join(root, f)).st_mtime_ns
  return out


@pytest.mark.slow
class QuickRunTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.workdir, cls.first = quick_runs.specificity()

  def test_writes_the_five_claims_as_the_issue_asks(self):
    self.assertEqual(self.first.returncode, 0, self.first.stderr[-3000:])
    with open(os.path.join(self.workdir, "specificity.json")) as f:
      summary = json.load(f)
    st = summary["settings"]
    for field in ("image_hw", "recipe", "steps", "seeds", "channels_per_tap"):
      self.assertIn(field, st)
    self.assertEqual(st["recipe"], "zipser2015")
    self.assertLen(summary["claims"], 5)
    for c in summary["claims"]:
      for field in ("verdict", "estimate", "ci", "null"):
        self.assertIn(field, c)
      self.assertEqual(c["verdict"], "not evaluated")  # a smoke test decides nothing
    # ... but it computes: claims 1-4 each get a number (at 64 px the two taps share off-image
    # fractions, so claim 4's matched-truncation comparison has pairs to compare).
    for c in summary["claims"][:4]:
      self.assertIsInstance(c["estimate"], float, c)
    self.assertEqual(set(summary["dead_runs"]), {"conv2/3x3", "inception_3b/output"})
    self.assertEqual(summary["weights_sha256"], store.weights_sha256(tiny_weights()))

  def test_every_output_says_smoke_test(self):
    self.assertTrue(self.first.stdout.startswith(SMOKE + "; specificity: claims 1: not evaluated;"), self.first.stdout)
    for name, title in (("specificity.md", "# The paper's claims"), ("specificity.html", "<h1>The paper's claims")):
      with open(os.path.join(self.workdir, name)) as f:
        text = f.read()
        self.assertIn(SMOKE, text, name)
        self.assertLess(text.index(SMOKE), text.index(title), name)  # above the title

  def test_page_parses_offline_with_alt_text_and_its_files(self):
    check_page(self, os.path.join(self.workdir, "specificity.html"))

  def test_an_eta_comes_before_the_first_step(self):
    first = next(l for l in self.first.stderr.splitlines() if "whole run" in l)
    self.assertNotRegex(first, r" step \d+/")
    self.assertRegex(first, r"whole run 0% of [\d,]+ image-steps, ETA \d+(s|m\d\ds)$")  # priced, not '?'

  def test_rerun_verifies_outputs_and_does_nothing(self):
    workdir = quick_runs.copy_workdir(self.workdir, "spec_rerun_")  # the session's run stays as it is
    before = _mtimes(workdir)
    again = run_binary(f"--workdir={workdir}", QUICK, weights_flag())
    self.assertEqual(again.returncode, 0, again.stderr[-2000:])
    self.assertTrue(again.stdout.startswith(SMOKE + "; specificity: up to date"), again.stdout)
    self.assertEqual(_mtimes(workdir), before)

  def test_a_killed_run_resumes_from_its_batches_and_damaged_outputs_are_redone(self):
    # A copy of the finished run with a truncated page and a hand-edited JSON (their seal no longer
    # holds) and without conv2/3x3's measures (as if killed before they were saved). The rerun
    # visualizes nothing, recomputes only those measures from the stored batches, rewrites the
    # outputs, and says what the uninterrupted run said (the run's numbers, not the edit).
    self.assertEqual(self.first.returncode, 0, self.first.stderr[-3000:])
    workdir = quick_runs.copy_workdir(self.workdir, "spec_resume_")
    with open(os.path.join(workdir, "specificity.html"), "r+") as f:
      f.truncate(100)  # a damaged page is redone, not kept
    path = os.path.join(workdir, "specificity.json")
    with open(path) as f:
      made = json.load(f)
    with open(path, "w") as f:
      json.dump(dict(made, claims=[dict(c, estimate=0.99) for c in made["claims"]]), f)  # hand-edited
    measures = os.path.join(workdir, "sweep", "conv2_3x3", "measures")
    realism = os.path.join(workdir, "sweep", "conv2_3x3", "realism_measures")
    for suffix in (".npz", ".json", ".done.json"):
      os.unlink(measures + suffix)
      os.unlink(realism + suffix)
    kept = {p: t for p, t in _mtimes(workdir, "sweep").items() if "batch_" in p or "inception_3b" in p}
    self.assertLen([p for p in kept if "measures" in p], 6)  # 3b's measures and realism_measures units
    again = run_binary(f"--workdir={workdir}", QUICK, weights_flag())
    self.assertEqual(again.returncode, 0, again.stderr[-2000:])
    self.assertNotIn("up to date", again.stdout)
    self.assertNotIn("image-steps/s", again.stderr)  # nothing was visualized again
    self.assertEqual({p: t for p, t in _mtimes(workdir, "sweep").items() if p in kept}, kept)  # nor restored units redone
    self.assertTrue(os.path.isfile(measures + ".npz"))
    self.assertTrue(os.path.isfile(realism + ".npz"))  # from its stored batch (nothing visualized, above)
    with open(os.path.join(workdir, "specificity.html")) as f:
      self.assertIn("</html>", f.read())
    with open(os.path.join(self.workdir, "specificity.json")) as f:
      want = json.load(f)
    with open(os.path.join(workdir, "specificity.json")) as f:
      got = json.load(f)
    for field in ("claims", "dead_runs", "settings"):
      self.assertEqual(got[field], want[field], field)
    self.assertEqual([t["realism"] for t in got["taps"]], [t["realism"] for t in want["taps"]])


if __name__ == "__main__":
  absltest.main()

"""experiments.specificity end to end in quick mode: the five claims in the JSON the issue asks for, the
smoke-test line, outputs verified by checksum on rerun, resume, the lock, and user errors."""

import json
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest

from tests.conftest import CAFFEMODEL, REPO, shared_file
from tests.experiments.reproduce_paper_test import check_page

QUICK = "--config=experiments/configs/specificity.py:quick"
SMOKE = "smoke test (tiny size and steps): checks the pipeline, not the science"


def run_binary(*args, timeout=900):
  return subprocess.run([sys.executable, "-m", "experiments.specificity", *args], cwd=REPO, env=dict(os.environ),
                        capture_output=True, text=True, timeout=timeout)


def weights_flag():
  return f"--weights={shared_file(CAFFEMODEL)}"


def _mtimes(workdir, sub=""):
  out = {}
  for root, _, names in os.walk(os.path.join(workdir, sub)):
    for f in names:
      if f != ".rfspec.lock":  # the lock records its holder each run
        out[os.path.join(root, f)] = os.stat(os.path.join(root, f)).st_mtime_ns
  return out


class QuickRunTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.workdir = tempfile.mkdtemp(prefix="spec_")
    cls.first = run_binary(f"--workdir={cls.workdir}", QUICK, weights_flag())

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
    self.assertEqual(set(summary["dead_runs"]), {"conv2/3x3", "inception_4a/output"})
    self.assertEqual(summary["weights_sha256"], "27b6f275d2be77e4a3556d67ce5689315fb1e0a41a01b6f8092954451d345bbd")

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

  def test_rerun_verifies_outputs_and_redoes_what_fails(self):
    before = _mtimes(self.workdir)
    again = run_binary(f"--workdir={self.workdir}", QUICK, weights_flag())
    self.assertEqual(again.returncode, 0, again.stderr[-2000:])
    self.assertTrue(again.stdout.startswith(SMOKE + "; specificity: up to date"), again.stdout)
    self.assertEqual(_mtimes(self.workdir), before)
    with open(os.path.join(self.workdir, "specificity.html"), "r+") as f:
      f.truncate(100)  # a damaged page is redone, not kept
    path = os.path.join(self.workdir, "specificity.json")
    with open(path) as f:
      made = json.load(f)
    with open(path, "w") as f:
      json.dump(dict(made, claims=[dict(c, estimate=0.99) for c in made["claims"]]), f)  # hand-edited
    units = _mtimes(self.workdir, "sweep")
    fixed = run_binary(f"--workdir={self.workdir}", QUICK, weights_flag())
    self.assertEqual(fixed.returncode, 0, fixed.stderr[-2000:])
    self.assertNotIn("up to date", fixed.stdout)
    with open(os.path.join(self.workdir, "specificity.html")) as f:
      self.assertIn("</html>", f.read())
    with open(path) as f:
      self.assertEqual(json.load(f)["claims"], made["claims"])  # the run's numbers, not the edit
    self.assertEqual(_mtimes(self.workdir, "sweep"), units)  # no visual batch or measure recomputed

  def test_a_killed_run_resumes_from_its_batches(self):
    workdir = tempfile.mkdtemp(prefix="spec_resume_")
    # Build one tap's batches, then "kill": drop that tap's measures and the other tap entirely.
    cfg = ("--config.taps=('conv2/3x3',)",)
    run = run_binary(f"--workdir={workdir}", QUICK, weights_flag(), *cfg)
    self.assertEqual(run.returncode, 0, run.stderr[-2000:])
    batches = {p: t for p, t in _mtimes(workdir, "sweep").items() if "batch_" in p}
    for suffix in (".npz", ".json", ".done.json"):
      os.unlink(os.path.join(workdir, "sweep", "conv2_3x3", "measures" + suffix))
    again = run_binary(f"--workdir={workdir}", QUICK, weights_flag(), *cfg)
    self.assertEqual(again.returncode, 0, again.stderr[-2000:])
    self.assertNotIn("image-steps/s", again.stderr)  # nothing was visualized again
    self.assertEqual({p: t for p, t in _mtimes(workdir, "sweep").items() if "batch_" in p}, batches)

  def test_config_errors_are_one_paragraph(self):
    for override, words in (("--config.channels_per_tap=0", "channels_per_tap"),
                            ("--config.seeds_per_position=2", "seeds_per_position"),
                            ("--config.taps=('inception_3a/output',)", "judge layer"),
                            ("--config.vis.stepz=3", "stepz")):
      out = run_binary(f"--workdir={tempfile.mkdtemp()}", QUICK, weights_flag(), override, timeout=300)
      self.assertEqual(out.returncode, 1, (override, out.stderr[-1500:]))
      self.assertIn(words, out.stderr)
      self.assertNotIn("Traceback", out.stderr)


if __name__ == "__main__":
  absltest.main()

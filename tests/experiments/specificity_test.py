"""experiments.specificity in quick mode on the real weights: five verdicts, plots, report, resume,
the paper report's numbers kept, and user errors."""

import json
import math
import os
import subprocess
import sys
import tempfile

from absl.testing import absltest

from tests.conftest import CAFFEMODEL, REPO, shared_file

QUICK = "--config=experiments/configs/specificity.py:quick"
TAPS = ["conv2/3x3", "inception_4c/output"]
PLOTS = ["psi_vs_off_image.png", "specificity_by_tap.png"]
VERDICTS = {"supported", "not supported", "inconclusive"}


def run_binary(*args, module="experiments.specificity", timeout=600):
  return subprocess.run([sys.executable, "-m", module, *args], cwd=REPO, env=dict(os.environ),
                        capture_output=True, text=True, timeout=timeout)


def weights_flag():
  return f"--weights={shared_file(CAFFEMODEL)}"


def _numbers_ok(tree, path="$"):
  """Every number is finite (JSON null stands for undefined); returns the first bad path or None."""
  if isinstance(tree, dict):
    return next((bad for k, v in tree.items() if (bad := _numbers_ok(v, f"{path}.{k}"))), None)
  if isinstance(tree, list):
    return next((bad for n, v in enumerate(tree) if (bad := _numbers_ok(v, f"{path}[{n}]"))), None)
  if isinstance(tree, float) and not (math.isfinite(tree) and abs(tree) < 1e300):
    return path
  return None


def _mtimes(workdir):
  out = {}
  for root, _, files in os.walk(workdir):
    for f in files:
      path = os.path.join(root, f)
      out[path] = os.path.getmtime(path)
  return out


class QuickRunTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.workdir = tempfile.mkdtemp(prefix="spec_")
    # A paper figure first: the sweep rewrites report.html and observations.json, and must keep
    # the figure's numbers (they need the weights).
    cls.fig = run_binary(f"--workdir={cls.workdir}", "--config=experiments/configs/fig2.py:quick", weights_flag(),
                         module="experiments.reproduce_paper")
    cls.first = run_binary(f"--workdir={cls.workdir}", QUICK, weights_flag())

  def _json(self):
    with open(os.path.join(self.workdir, "specificity.json")) as f:
      return json.load(f, parse_constant=lambda c: self.fail(f"non-JSON constant {c} in specificity.json"))

  def test_five_claims_with_verdicts_and_finite_numbers(self):
    self.assertEqual(self.first.returncode, 0, self.first.stderr[-3000:])
    self.assertIn("2 tap(s) computed", self.first.stdout)
    self.assertEqual(len(self.first.stdout.strip().splitlines()), 1, self.first.stdout)
    self.assertIn("ETA", self.first.stderr)  # progress on stderr
    out = self._json()
    self.assertIsNone(_numbers_ok(out))
    self.assertLen(out["claims"], 5)
    for n, c in enumerate(out["claims"], 1):
      self.assertTrue(c["claim"].startswith(f"{n}."), c["claim"])
      self.assertIn(c["verdict"], VERDICTS)
      self.assertIsNotNone(c["estimate"], c)
      self.assertLen(c["ci"], 2)
      self.assertTrue(all(v is not None for v in c["ci"]), c)
      self.assertLessEqual(c["ci"][0], c["ci"][1])
      self.assertTrue(c["why"])
      self.assertEqual(bool(c["settle"]), c["verdict"] == "inconclusive", c)
    self.assertEqual([t["tap"] for t in out["taps"]], TAPS)
    for t in out["taps"]:
      self.assertLen(t["channels"], 3)
      self.assertLen(t["per_channel"], 3)
      self.assertLen(t["positions"], 3 if t["tap"] == "conv2/3x3" else 2)  # 4c at 64 px: centre, corner
      self.assertEqual(t["positions"][-1], [0, 0])
      self.assertEqual(t["undefined"], dict(psi_auc=None, auc_id=None, psi_floor=None))
      for ch in t["per_channel"]:
        self.assertTrue(all(v is not None for row in ch["psi_auc"] for v in row))
      self.assertIsNotNone(t["realism"]["tiled"]["stats_distance"]["mean"])
      for ext in ("npz", "json", "done.json"):
        name = t["tap"].replace("/", "_")
        self.assertTrue(os.path.exists(os.path.join(self.workdir, "specificity", f"{name}.{ext}")))
    self.assertEqual(sorted(out["realism_references"]["natural_images"]), ["cat.jpg", "fish-bike.jpg"])

  def test_plots_are_pngs(self):
    from PIL import Image

    for name in PLOTS:
      with Image.open(os.path.join(self.workdir, name)) as im:
        self.assertEqual(im.format, "PNG", name)
        self.assertGreater(im.size[0], 200)

  def test_verdicts_top_the_report_section(self):
    html = open(os.path.join(self.workdir, "report.html")).read()
    self.assertIn("Position specificity", html)
    self.assertLess(html.index("Verdicts"), html.index("psi_vs_off_image.png"))
    self.assertIn("Quick variant", html)
    md = open(os.path.join(self.workdir, "specificity.md")).read()
    self.assertIn("| 1. Small-RF nodes", md)
    self.assertIn("64x64 px", md)  # the scale is stated
    self.assertEqual([f for f in os.listdir(self.workdir) if f.endswith(".tmp")], [])

  def test_paper_report_keeps_the_figure_numbers(self):
    # Issue 13 item 7: the sweep used to rewrite observations.json without the weights, dropping them.
    self.assertEqual(self.fig.returncode, 0, self.fig.stderr[-2000:])
    with open(os.path.join(self.workdir, "observations.json")) as f:
      obs = json.load(f)
    panel = obs["fig2"][0]
    self.assertIsNotNone(panel.get("psi_auc_mean"), panel)
    self.assertEqual(panel["undefined"]["psi_auc"], None)

  def test_rerun_does_no_work_then_resumes(self):
    before = _mtimes(self.workdir)
    again = run_binary(f"--workdir={self.workdir}", QUICK, weights_flag())
    self.assertEqual(again.returncode, 0, again.stderr[-2000:])
    self.assertIn("0 tap(s) computed, 2 up to date", again.stdout)
    self.assertNotIn("loading weights", again.stderr)
    self.assertEqual(before, _mtimes(self.workdir))
    # A lost (killed) tap is redone alone; a corrupted one too.
    os.unlink(os.path.join(self.workdir, "specificity", "conv2_3x3.done.json"))
    kept = os.path.join(self.workdir, "specificity", "inception_4c_output.npz")
    resumed = run_binary(f"--workdir={self.workdir}", QUICK, weights_flag())
    self.assertEqual(resumed.returncode, 0, resumed.stderr[-2000:])
    self.assertIn("1 tap(s) computed, 1 up to date", resumed.stdout)
    self.assertEqual(os.path.getmtime(kept), before[kept])
    self.assertIsNone(_numbers_ok(self._json()))


class BadInputTest(absltest.TestCase):

  def assert_user_error(self, pattern, *overrides, config=QUICK):
    proc = run_binary(f"--workdir={self.create_tempdir().full_path}", config, weights_flag(), *overrides)
    self.assertEqual(proc.returncode, 1, proc.stderr[-2000:])
    self.assertNotIn("Traceback", proc.stderr)
    self.assertRegex(proc.stderr, pattern)
    self.assertNotIn("loading weights", proc.stderr)  # caught before any work

  def test_unknown_tap(self):
    self.assert_user_error(r"inception_4z/output", "--config.taps=('conv2/3x3','inception_4z/output')")

  def test_judge_tap_is_circular(self):
    self.assert_user_error(r"judge layer", "--config.taps=('inception_3a/output',)")

  def test_unknown_variant(self):
    self.assert_user_error(r"huge", config="--config=experiments/configs/specificity.py:huge")

  def test_too_few_seeds(self):
    self.assert_user_error(r"at least 3 distinct seeds", "--config.seeds=(0,1)")

  def test_seed_out_of_int32_names_the_field(self):
    self.assert_user_error(r"config\.seeds.*int32", "--config.seeds=(0,1,4294967296)")

  def test_too_many_channels_names_the_field(self):
    self.assert_user_error(r"config\.channels_per_tap = 200 exceeds the 192 channels of 'conv2/3x3'",
                           "--config.channels_per_tap=200")


if __name__ == "__main__":
  absltest.main()

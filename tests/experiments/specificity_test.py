"""experiments.specificity in quick mode on the real weights: outputs, report section, resume, errors."""

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
VARIANTS = ["none", "zero"]
PLOTS = ["psi_vs_rf_size.png", "psi_vs_inside_fraction.png", "transfer_conv2_3x3.png",
         "transfer_inception_4c_output.png"]


def run_binary(*args, timeout=600):
  return subprocess.run([sys.executable, "-m", "experiments.specificity", *args], cwd=REPO, env=dict(os.environ),
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
    cls.first = run_binary(f"--workdir={cls.workdir}", QUICK, weights_flag())

  def _json(self):
    with open(os.path.join(self.workdir, "specificity.json")) as f:
      return json.load(f, parse_constant=lambda c: self.fail(f"non-JSON constant {c} in specificity.json"))

  def test_valid_json_with_every_tap_and_variant(self):
    self.assertEqual(self.first.returncode, 0, self.first.stderr[-3000:])
    self.assertIn("4 tap-variant(s) computed", self.first.stdout)
    self.assertEqual(len(self.first.stdout.strip().splitlines()), 1, self.first.stdout)
    self.assertIn("step", self.first.stderr)  # progress on stderr
    out = self._json()
    self.assertEqual(out["taps"], TAPS)
    self.assertEqual(out["variants"], VARIANTS)
    self.assertIn("rank_channels", out["channel_rule"])
    self.assertEqual(out["reference_images"], ["cat.jpg", "fish-bike.jpg"])
    self.assertTrue(out["conclusions"])
    for key in ("grid_s", "metrics_s", "this_run_s"):
      self.assertIn(key, out["timing"])
    self.assertEqual(sorted((r["variant"], r["tap"]) for r in out["results"]),
                     sorted((v, t) for v in VARIANTS for t in TAPS))
    self.assertIsNone(_numbers_ok(out))
    for r in out["results"]:
      for key in ("positions", "per_channel", "summary", "space", "rf", "canvas", "seconds", "pairs"):
        self.assertIn(key, r)
      self.assertLen(r["per_channel"], 1)
      self.assertEqual([p["name"] for p in r["positions"]], ["centre", "top", "left", "top_left", "bottom_right"])
      for key in ("psi_vs_reference_mean", "psi_pixel_mean", "seed_ceiling_mean", "psi_by_position"):
        self.assertIn(key, r["summary"])
      if r["variant"] == "none":
        self.assertIsNone(r["canvas"])
        self.assertIsNotNone(r["per_channel"][0]["transfer"])
        self.assertIsNotNone(r["realism"]["stats_distance"])
      else:
        self.assertEqual(r["canvas"]["fill"], "zero")
        self.assertEqual(r["canvas"]["pad"] % r["rf"]["stride"], 0)
        self.assertLessEqual(r["canvas"]["pad"], 32)
    conv2 = next(r for r in out["results"] if r["variant"] == "zero" and r["tap"] == "conv2/3x3")
    self.assertEqual(conv2["canvas"]["pad"], 8)  # uncapped: every RF inside the canvas
    self.assertTrue(all(p["canvas_inside_fraction"] == 1.0 for p in conv2["positions"]))
    # Per-(variant, tap) cache files.
    for v in VARIANTS:
      for t in ("conv2_3x3", "inception_4c_output"):
        for ext in ("json", "npz"):
          self.assertTrue(os.path.exists(os.path.join(self.workdir, "specificity", f"{v}__{t}.{ext}")))

  def test_plots_are_pngs(self):
    from PIL import Image

    for name in PLOTS:
      with Image.open(os.path.join(self.workdir, name)) as im:
        self.assertEqual(im.format, "PNG", name)
        self.assertGreater(im.size[0], 200)

  def test_report_has_the_section(self):
    html = open(os.path.join(self.workdir, "report.html")).read()
    self.assertIn("Position specificity across layers", html)
    self.assertIn("src='psi_vs_rf_size.png'", html)
    self.assertIn("src='transfer_inception_4c_output.png'", html)
    self.assertIn("Measured:", html)
    self.assertIn("not the full 224 px sweep", html)  # the reduced run says so
    md = open(os.path.join(self.workdir, "specificity.md")).read()
    self.assertIn("| inception_4c/output | 299 |", md)
    self.assertEqual([f for f in os.listdir(self.workdir) if f.endswith(".tmp")], [])

  def test_rerun_does_no_work_then_resumes(self):
    before = _mtimes(self.workdir)
    again = run_binary(f"--workdir={self.workdir}", QUICK, weights_flag())
    self.assertEqual(again.returncode, 0, again.stderr[-2000:])
    self.assertIn("0 tap-variant(s) computed, 4 up to date", again.stdout)
    self.assertNotIn("loading weights", again.stderr)
    self.assertEqual(before, _mtimes(self.workdir))
    # A lost (killed) tap is redone alone; the others stay cached.
    os.unlink(os.path.join(self.workdir, "specificity", "zero__conv2_3x3.json"))
    kept = os.path.join(self.workdir, "specificity", "none__inception_4c_output.json")
    resumed = run_binary(f"--workdir={self.workdir}", QUICK, weights_flag())
    self.assertEqual(resumed.returncode, 0, resumed.stderr[-2000:])
    self.assertIn("1 tap-variant(s) computed, 3 up to date", resumed.stdout)
    self.assertEqual(os.path.getmtime(kept), before[kept])
    self.assertIsNone(_numbers_ok(self._json()))


class BadInputTest(absltest.TestCase):

  def assert_user_error(self, proc, pattern):
    self.assertEqual(proc.returncode, 1, proc.stderr[-2000:])
    self.assertNotIn("Traceback", proc.stderr)
    self.assertRegex(proc.stderr, pattern)

  def test_unknown_tap(self):
    proc = run_binary(f"--workdir={self.create_tempdir().full_path}", QUICK, weights_flag(),
                      "--config.taps=('conv2/3x3','inception_4z/output')")
    self.assert_user_error(proc, r"inception_4z/output")

  def test_unknown_variant(self):
    proc = run_binary(f"--workdir={self.create_tempdir().full_path}",
                      "--config=experiments/configs/specificity.py:huge", weights_flag())
    self.assert_user_error(proc, r"huge")

  def test_one_seed(self):
    proc = run_binary(f"--workdir={self.create_tempdir().full_path}", QUICK, weights_flag(), "--config.seeds=(0,)")
    self.assert_user_error(proc, r"2 distinct seeds")


if __name__ == "__main__":
  absltest.main()

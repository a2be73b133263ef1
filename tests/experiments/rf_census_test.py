"""experiments.rf_census in quick mode: outputs, the 224 px numbers, clean reruns (its user errors are
tests/experiments/flag_errors_test.py's census_* cases)."""

import json
import os
import tempfile

import pytest
from absl.testing import absltest

from rfspec.locking import LOCK_FILE
from tests.conftest import tiny_weights
from tests.experiments import quick_runs

QUICK = "--config=experiments/configs/rf_census.py:quick"
OUTPUTS = ("rf_census.json", "rf_census.md", "pct_inside_vs_depth.png", "inside_fraction_inception_3a_output.png",
           "inside_fraction_inception_4c_output.png")


def run_binary(*args, timeout=600):
  return quick_runs.run_binary("rf_census", *args, timeout=timeout)


def stray_files(workdir):
  """Temporary or hidden files an atomic writer might leave behind."""
  return [f for f in os.listdir(workdir) if f != LOCK_FILE and (f.startswith(".") or f.endswith(".tmp"))]


@pytest.mark.slow
class GeometryOnlyTest(absltest.TestCase):
  """Quick config with the ERF section off: no weights needed."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.workdir = os.path.join(tempfile.mkdtemp(prefix="rf_census_"), "new", "dir")  # created by the binary
    cls.first = run_binary(f"--workdir={cls.workdir}", QUICK, "--config.erf=False")

  def test_writes_outputs(self):
    self.assertEqual(self.first.returncode, 0, self.first.stderr[-3000:])
    from PIL import Image

    for name in OUTPUTS:
      path = os.path.join(self.workdir, name)
      self.assertTrue(os.path.exists(path), name)
      if name.endswith(".png"):
        with Image.open(path) as im:
          self.assertGreater(min(im.size), 100, name)
    self.assertEqual(stray_files(self.workdir), [])
    self.assertLen(self.first.stdout.strip().splitlines(), 1)  # one-line summary
    self.assertIn("census:", self.first.stderr)  # progress on stderr

  def test_json_holds_the_224_numbers(self):
    with open(os.path.join(self.workdir, "rf_census.json")) as f:
      data = json.load(f)
    self.assertEqual(data["sizes"], [[224, 224], [299, 299]])
    self.assertIsNone(data["erf"])
    by = {(r["image_hw"][0], r["tap"]): r for r in data["census"]}
    row = by[224, "inception_4c/output"]
    self.assertEqual((row["rf_size"], row["stride"], row["grid"]), (299, 16, [14, 14]))
    self.assertEqual(row["pct_fully_inside"], 0.0)
    self.assertEqual((by[224, "pool5/7x7_s1"]["rf_size"], by[224, "pool5/7x7_s1"]["stride"]), (907, 32))
    self.assertGreater(by[224, "conv1/7x7_s2"]["pct_fully_inside"], 90.0)
    md = open(os.path.join(self.workdir, "rf_census.md")).read()
    self.assertIn("| `inception_4c/output` | 299 | 16 | 14 | 14x14 | 0.0 |", md)
    self.assertIn("## Input 299x299", md)


@pytest.mark.slow
class WithWeightsTest(absltest.TestCase):
  """Quick config with the ERF section on random weights of the real shapes: the section's plumbing,
  caching and per-tap checksums; the ERF on the real weights is tests/geometry_test.py's."""

  def test_erf_summary(self):
    workdir = tempfile.mkdtemp(prefix="rf_census_erf_")
    result = run_binary(f"--workdir={workdir}", QUICK, f"--weights={tiny_weights()}")
    self.assertEqual(result.returncode, 0, result.stderr[-3000:])
    with open(os.path.join(workdir, "rf_census.json")) as f:
      erf = json.load(f)["erf"]
    self.assertEqual(erf["image_hw"], [96, 96])
    rows = {(r["tap"], r["node"]): r for r in erf["rows"]}
    self.assertEqual(set(rows), {(t, n) for t in ("conv2/3x3", "inception_3a/output")
                                 for n in ("centre", "edge", "corner")})
    for tap in ("conv2/3x3", "inception_3a/output"):
      self.assertLess(rows[tap, "centre"]["centroid_shift"], rows[tap, "corner"]["centroid_shift"], tap)
      self.assertLess(rows[tap, "corner"]["inside_fraction"], 1.0)
      self.assertGreater(rows[tap, "centre"]["radius95"], 0.0)
    self.assertIn("## Effective RF at 96x96", open(os.path.join(workdir, "rf_census.md")).read())
    # A rerun with the same settings reuses the cached ERFs (no weights needed any more), and
    # rewrites a report an old run left truncated.
    json_path = os.path.join(workdir, "rf_census.json")
    with open(json_path) as f:
      before = json.load(f)
    with open(json_path, "w") as f:
      f.write("{ truncated")  # as if an old run had been killed mid-write
    again = run_binary(f"--workdir={workdir}", QUICK, f"--weights={tiny_weights()}")
    self.assertEqual(again.returncode, 0, again.stderr[-3000:])
    with open(json_path) as f:
      self.assertEqual(json.load(f), before)
    self.assertIn("cached", again.stderr)
    self.assertNotIn("loading weights", again.stderr)
    self.assertEqual(stray_files(workdir), [])
    self.assertEqual(sorted(set(os.listdir(workdir)) - {LOCK_FILE, "erf"}), sorted(OUTPUTS))  # the outputs, nothing else
    # Keyed on the weights' content, recorded in the JSON (issue 20 item 3); each tap's ERF is a unit
    # verified by checksum, so a hand-edited one is recomputed, not trusted (item 2).
    from rfspec.weights.store import weights_sha256

    self.assertEqual(erf["weights_sha256"], weights_sha256(tiny_weights()))
    unit = os.path.join(workdir, "erf", "conv2_3x3.json")
    with open(unit) as f:
      edited = f.read().replace('"radius95": ', '"radius95": 1')
    with open(unit, "w") as f:
      f.write(edited)
    fixed = run_binary(f"--workdir={workdir}", QUICK, f"--weights={tiny_weights()}")
    self.assertEqual(fixed.returncode, 0, fixed.stderr[-3000:])
    self.assertIn("ERF 1/2: conv2/3x3 at", fixed.stderr)  # that tap only is recomputed
    self.assertIn("ERF 2/2: inception_3a/output cached", fixed.stderr)
    with open(os.path.join(workdir, "rf_census.json")) as f:
      self.assertEqual(json.load(f)["erf"]["rows"], erf["rows"])


if __name__ == "__main__":
  absltest.main()

"""experiments.classify on Caffe's example images, and its user errors."""

import os

import pytest
from absl.testing import absltest

from tests.conftest import CAFFEMODEL, IMAGES, REPO, shared_file
from tests.experiments import launcher, quick_runs


def classify(*args):
  # XLA's defaults (no smoke_env): the top-5 are the real net's numbers.
  return quick_runs.finish(launcher.start("classify", (f"--weights={shared_file(CAFFEMODEL)}", *args), dict(os.environ)),
                           timeout=300)


@pytest.mark.slow
class ClassifyBinaryTest(absltest.TestCase):

  def test_top5_for_example_images(self):
    proc = classify(str(shared_file(IMAGES / "cat.jpg")), str(shared_file(IMAGES / "fish-bike.jpg")))
    self.assertEqual(proc.returncode, 0, proc.stderr[-2000:])
    lines = proc.stdout.splitlines()
    self.assertTrue(lines[0].endswith("cat.jpg"))
    self.assertIn("tiger cat", lines[1])
    self.assertEqual(sum("  " in l for l in lines[1:6]), 5)
    fish = lines.index(next(l for l in lines if l.endswith("fish-bike.jpg")))
    self.assertIn("barrow", lines[fish + 1])
    prob = float(lines[1].split()[0])
    self.assertAlmostEqual(prob, 0.44, delta=0.02)  # ../shared/README.md: tiger cat ~ 0.44

  def test_missing_image_is_a_user_error(self):
    proc = classify("/nonexistent/cat.jpg")
    self.assertEqual(proc.returncode, 1)
    self.assertIn("No such image file", proc.stderr)
    self.assertNotIn("Traceback", proc.stderr)

  def test_directory_says_so_and_what_to_pass(self):
    folder = str(shared_file(IMAGES))
    proc = classify(folder)
    self.assertEqual(proc.returncode, 1, proc.stderr[-2000:])
    self.assertNotIn("Traceback", proc.stderr)
    self.assertNotIn("No such image file", proc.stderr)
    self.assertIn(f"{folder} is a directory", proc.stderr)
    self.assertIn(f"{folder}/*.jpg", proc.stderr)  # what to pass instead
    self.assertIn("cat.jpg", proc.stderr)
    self.assertLen(proc.stderr.strip().splitlines(), 1)

  def test_not_an_image(self):
    proc = classify(str(REPO / "setup.py"))
    self.assertEqual(proc.returncode, 1)
    self.assertNotIn("Traceback", proc.stderr)


if __name__ == "__main__":
  absltest.main()

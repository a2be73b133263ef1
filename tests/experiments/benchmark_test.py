"""experiments.benchmark runs and reports JSON (its numbers are measurements, never asserted)."""

import json
import os
import subprocess
import sys

from absl.testing import absltest

from tests.conftest import CAFFEMODEL, REPO, SHARED, shared_file


class BenchmarkSmokeTest(absltest.TestCase):

  def test_tiny_run_writes_json(self):
    workdir = self.create_tempdir().full_path
    proc = subprocess.run(
        [sys.executable, "-m", "experiments.benchmark", f"--weights={shared_file(CAFFEMODEL)}", f"--workdir={workdir}",
         "--sections=forward,visualize,step", "--repeats=1", "--sizes=40", "--grid=2,2", "--steps=2", "--tap=conv2/3x3",
         "--step_size=40", "--step_batch=2", "--step_loop=2"],
        cwd=REPO, env=dict(os.environ, RFSPEC_SHARED=str(SHARED)), capture_output=True, text=True, timeout=600)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    self.assertEqual(report, json.load(open(os.path.join(workdir, "benchmark.json"))))
    self.assertEqual([r["batch"] for r in report["forward"]], [1, 8])
    for row in report["forward"]:
      self.assertGreater(row["ratio"], 0)  # OpenCV ran side by side
    vis = report["visualize"][0]
    self.assertEqual(vis["grid"], [2, 2])
    for key in ("grid_image_steps_per_s", "loop_image_steps_per_s", "grid_compile_s", "flops_per_call"):
      self.assertGreater(vis[key], 0, key)
    step = report["step"]
    self.assertEqual((step["image_hw"], step["batch"], step["tap"]), ([40, 40], 2, "conv2/3x3"))
    self.assertEqual((step["loop_steps"], step["parts"]), (2, 2))  # one CPU device: the engine cuts the batch in 2
    for way in ("in_parts", "loop", "single_call"):
      sub = step[way]
      for kind in ("forward", "step"):  # each median lies within its own interquartile range
        lo, hi = sub[f"{kind}_s_quartiles"]
        self.assertTrue(0 < lo <= sub[f"{kind}_s"] <= hi < float("inf"), (way, kind, sub))
        self.assertGreaterEqual(sub[f"{kind}_minor_faults_per_call"], 0, (way, kind))
      self.assertLessEqual(sub["step_s_quartiles"][0], sub["step_s_quartiles"][1])
    self.assertEqual(step["step_over_forward"], step["in_parts"]["step_over_forward"])  # judged as the engine runs

  def test_unknown_section_is_a_user_error(self):
    proc = subprocess.run([sys.executable, "-m", "experiments.benchmark", f"--weights={shared_file(CAFFEMODEL)}",
                           "--sections=warp"], cwd=REPO, capture_output=True, text=True, timeout=300)
    self.assertEqual(proc.returncode, 1)
    self.assertIn("Unknown --sections", proc.stderr)
    self.assertNotIn("Traceback", proc.stderr)

  def test_peer_without_the_bench_extra_is_one_paragraph(self):
    # CI's environment has no torch / torch-lucent: the section must say how to get them.
    proc = subprocess.run([sys.executable, "-m", "experiments.benchmark", f"--weights={shared_file(CAFFEMODEL)}",
                           "--sections=peer"], cwd=REPO, capture_output=True, text=True, timeout=300)
    self.assertEqual(proc.returncode, 1)
    error = [line for line in proc.stderr.splitlines() if line.startswith("error: ")]
    self.assertLen(error, 1, proc.stderr[-3000:])  # one paragraph, which says what to install and the way out
    for words in ("torch-lucent", "pip install -e .[bench]", "leave `peer` out of --sections"):
      self.assertIn(words, error[0])
    self.assertEqual(proc.stdout, "")  # it stopped before timing anything: no report
    self.assertNotIn("Traceback", proc.stderr)


if __name__ == "__main__":
  absltest.main()

"""experiments.benchmark runs and reports JSON (its numbers are measurements, never asserted)."""

import json
import os
import subprocess
import sys

from absl.testing import absltest
import numpy as np

from tests.conftest import CAFFEMODEL, REPO, SHARED, shared_file, smoke_env, tiny_weights
from tests.experiments import quick_runs


class BenchmarkSmokeTest(absltest.TestCase):

  def test_tiny_run_writes_json(self):
    workdir = self.create_tempdir().full_path
    proc = quick_runs.run_binary(
        "benchmark", f"--weights={shared_file(CAFFEMODEL)}", f"--workdir={workdir}",
        "--sections=forward,visualize,step", "--repeats=1", "--sizes=40", "--grid=2,2", "--steps=2", "--tap=conv2/3x3",
        "--step_size=40", "--step_batch=2", "--step_loop=2",
        env={"RFSPEC_SHARED": str(SHARED)}, timeout=600)  # the plumbing and OpenCV side by side; timings, not numbers
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    report = json.loads(proc.stdout.strip().splitlines()[-1])
    self.assertEqual(report, json.load(open(os.path.join(workdir, "benchmark.json"))))
    from rfspec.weights.store import weights_sha256

    self.assertEqual(report["weights_sha256"], weights_sha256(str(shared_file(CAFFEMODEL))))  # issue 20 item 3
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

  def test_recorded_cpu_benchmark_is_consistent(self):
    # The one recorded JSON (experiments/results/benchmark_cpu.json) behind the README's speed
    # section and rfspec.throughput: its ratios are there, positive and finite, and the table
    # in rfspec.throughput is the JSON's throughput section.
    from rfspec import throughput

    report = json.load(open(os.path.join(REPO, "experiments", "results", "benchmark_cpu.json")))
    for key in ("grad_over_forward", "flops_over_matmul", "warm_compile_over_cold"):
      self.assertTrue(np.isfinite(report[key]) and report[key] > 0, key)
    self.assertEqual(report["throughput"]["image_hw"], [224, 224])
    self.assertEqual(set(report["throughput"]["image_steps_per_s"]), set(throughput.CPU_224))
    for tap, rate in report["throughput"]["image_steps_per_s"].items():
      self.assertAlmostEqual(throughput.CPU_224[tap], rate, places=1)
    self.assertLen(report["load_average_1_5_15_min_at_start"], 3)
    # The flops row's headline is its own ratio, and its pairs timed the same numbers (the unrolled
    # scan, and the batch's halves called from two threads).
    flops = report["flops"]
    self.assertEqual(report["flops_over_matmul"], flops["flops_over_matmul"])
    self.assertAlmostEqual(flops["flops_over_matmul"], flops["achieved_gflops"] / flops["matmul_gflops"])
    self.assertEqual((flops["unroll"], flops["max_abs_diff"], flops["threaded_max_abs_diff"]), (2, 0.0, 0.0))

  def test_device_check_dry_run_reports_every_speed_section(self):
    # experiments/device_check.sh end to end on CPU at tiny sizes: no install, the speed sections
    # (grid, flops, grad, compile, throughput) in one benchmark process, the quick atlas, one merged
    # JSON. The sections' keys, positive finite ratios, and each headline number equal to the
    # section row it comes from (never a timing threshold).
    out = self.create_tempdir().full_path
    # Random weights of the real shapes: the dry run checks the plumbing, not the net's numbers.
    proc = subprocess.run(["bash", "experiments/device_check.sh", "--dry_run", f"--weights={tiny_weights()}",
                           f"--out={out}"], cwd=REPO,
                          env=dict(os.environ, RFSPEC_SHARED=str(SHARED), PYTHON=sys.executable, **smoke_env()),
                          capture_output=True, text=True, timeout=1800)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    report = json.load(open(os.path.join(out, "device_check_dry_run.json")))
    self.assertTrue(report["dry_run"])
    self.assertEqual(report["sections_run"], ["grid", "flops", "grad", "compile", "throughput"])
    self.assertEqual(report["atlas"]["exit"], "0", open(os.path.join(out, "device_check.log")).read()[-3000:])
    self.assertTrue(os.path.exists(os.path.join(out, "device_check_atlas")))
    for key in ("load_average_1_5_15_min_at_start", "load_average_1_5_15_min_at_end"):
      self.assertLen(report[key], 3)
    for key, section in (("grad_over_forward", "grad"), ("flops_over_matmul", "flops"),
                         ("warm_compile_over_cold", "compile")):
      self.assertTrue(np.isfinite(report[key]) and report[key] > 0, key)
      self.assertEqual(report[key], report[section][key])
    grad = report["grad"]
    self.assertEqual((grad["batch"], grad["tap"], grad["parts"]), (2, "conv2/3x3", 2))
    self.assertAlmostEqual(grad["grad_over_forward"], grad["grad_s"] / grad["forward_s"])
    self.assertAlmostEqual(grad["uncut_over_forward"], grad["grad_uncut_s"] / grad["forward_s"])
    if report["malloc_arena_max_1"]:  # glibc: the same gradient with rfspec.engine.keep_freed_memory() on
      self.assertAlmostEqual(grad["kept_memory_over_forward"], grad["grad_kept_memory_s"] / grad["forward_s"])
    flops = report["flops"]
    self.assertGreater(flops["flops_per_image_step"], 0)
    self.assertAlmostEqual(flops["flops_over_matmul"], flops["achieved_gflops"] / flops["matmul_gflops"])
    self.assertAlmostEqual(flops["image_steps_per_s"], 2 * 1 * 2 / flops["grid_s"])
    self.assertEqual(flops["threaded_max_abs_diff"], 0.0)  # the threaded halves, timed against one call
    lo, hi = flops["threaded_over_one_call_quartiles"]
    self.assertTrue(0 < lo <= flops["threaded_over_one_call"] <= hi, flops)
    comp = report["compile"]
    self.assertGreater(comp["cache_entries"], 0)  # the first process wrote the cache the second read
    self.assertEqual(comp["cold"]["cache_dir"], comp["warm"]["cache_dir"])
    self.assertAlmostEqual(comp["warm_compile_over_cold"], comp["warm"]["first_call_s"] / comp["cold"]["first_call_s"])
    taps = ["conv1/7x7_s2", "conv2/3x3"]
    thr = report["throughput"]
    self.assertEqual(list(thr["image_steps_per_s"]), taps)
    self.assertEqual([r["tap"] for r in thr["rows"]], taps)
    for row in thr["rows"]:
      self.assertTrue(np.isfinite(row["image_steps_per_s"]) and row["image_steps_per_s"] > 0)
      self.assertAlmostEqual(row["image_steps_per_s"], 2 * 3 / row["grid_s"])
    self.assertEqual([r["dtype"] for r in report["grid"]], ["float32", "bfloat16"])
    for row in report["grid"]:
      self.assertGreater(row["peak_memory_bytes"], 0)
      self.assertGreater(row["flops_per_image_step"], 0)

  def test_engine_pairs_time_the_same_numbers(self):
    # The flops section's pairs (two steps per scan iteration vs one; threaded halves vs one call)
    # on random weights at 40 px:
    # the same images, the ratio is the median of the pairs' ratios. The engine test's config and
    # shapes, so the session's compilation cache serves both.
    from experiments import _engine_timing  # not experiments.benchmark: its flags clash with other binaries'
    from tests.conftest import tiny_params
    from tests.engine_test import LONG_CHUNK, _masks

    row = _engine_timing.unroll_pairs(tiny_params(), LONG_CHUNK, np.array([3, 11], np.int32), _masks(LONG_CHUNK)[:1],
                                  repeats=3)
    self.assertEqual(row["unroll"], 2)
    self.assertEqual(row["max_abs_diff"], 0.0)
    lo, hi = row["unrolled_over_one_step_quartiles"]
    self.assertTrue(0 < lo <= row["unrolled_over_one_step"] <= hi, row)
    self.assertGreater(min(row["unrolled_s"], row["one_step_s"]), 0)
    # The batch's halves called from two threads (as visualize_grid runs them) vs one call cut inside.
    row = _engine_timing.threaded_pieces_pairs(tiny_params(), LONG_CHUNK, np.array([3, 11], np.int32),
                                               _masks(LONG_CHUNK)[:1], repeats=3)
    self.assertEqual(row["threaded_max_abs_diff"], 0.0)
    lo, hi = row["threaded_over_one_call_quartiles"]
    self.assertTrue(0 < lo <= row["threaded_over_one_call"] <= hi, row)
    self.assertGreater(min(row["threaded_s"], row["one_call_s"]), 0)

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

"""experiments.position_atlas in quick mode on the real weights: kill and resume, outputs, user errors."""

import os
import re
import signal
import subprocess
import sys
import tempfile

import numpy as np
from absl.testing import absltest, parameterized

from rfspec import files
from tests.conftest import CAFFEMODEL, REPO, shared_file

QUICK = "--config=experiments/configs/position_atlas.py:quick"


def run_binary(*args, timeout=600):
  return subprocess.run([sys.executable, "-m", "experiments.position_atlas", *args], cwd=REPO,
                        capture_output=True, text=True, timeout=timeout)


def weights_flag():
  return f"--weights={shared_file(CAFFEMODEL)}"


def mtimes(folder):
  return {f: os.path.getmtime(os.path.join(folder, f)) for f in sorted(os.listdir(folder))}


class KilledThenResumedRunTest(absltest.TestCase):
  """One quick atlas (3 x 3 positions x 2 seeds, one position per batch), SIGKILLed after its
  second batch is saved and then rerun to completion; the other tests read its outputs."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.workdir = tempfile.mkdtemp(prefix="atlas_")
    args = [f"--workdir={cls.workdir}", QUICK, weights_flag(), "--config.batch_positions=1"]
    proc = subprocess.Popen([sys.executable, "-m", "experiments.position_atlas", *args], cwd=REPO,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    cls.killed_log = []
    # Wait on the binary's own line (printed after the batch's file and manifest are written).
    for line in proc.stderr:
      cls.killed_log.append(line)
      if line.startswith("[atlas] batch 2 saved"):
        break
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    proc.stderr.close()
    batches = os.path.join(cls.workdir, "batches")
    cls.after_kill = mtimes(batches) if os.path.isdir(batches) else {}
    cls.outputs_after_kill = [f for f in os.listdir(cls.workdir) if f.startswith("atlas")]
    cls.rerun = run_binary(*args)
    cls.meta = files.read_json(os.path.join(cls.workdir, "atlas.json"))
    cls.npz = dict(np.load(os.path.join(cls.workdir, "atlas.npz")))

  def test_kill_leaves_finished_batches_and_no_outputs(self):
    self.assertIn("batch_0000.npz", self.after_kill, "".join(self.killed_log)[-2000:])
    self.assertIn("batch_0001.done.json", self.after_kill)
    self.assertEqual(self.outputs_after_kill, [])

  def test_rerun_resumes_without_redoing_finished_batches(self):
    self.assertEqual(self.rerun.returncode, 0, self.rerun.stderr[-3000:])
    done = sorted(f for f in self.after_kill if f.endswith(".done.json"))
    self.assertGreaterEqual(len(done), 2)
    for f in done:
      k = int(re.search(r"batch_(\d+)", f).group(1)) + 1
      self.assertIn(f"[atlas] batch {k} resumed", self.rerun.stderr)
      self.assertNotIn(f"[atlas] batch {k} saved", self.rerun.stderr)
    now = mtimes(os.path.join(self.workdir, "batches"))
    for f, t in self.after_kill.items():  # finished batches were not rewritten
      if f.startswith("batch_") and f[:10] + ".done.json" in self.after_kill:
        self.assertEqual(now[f], t, f)
    self.assertLen([f for f in now if f.endswith(".done.json")], 9)
    self.assertIn(f"9 batches ({len(done)} resumed)", self.rerun.stdout)
    self.assertEqual([f for root, _, fs in os.walk(self.workdir) for f in fs if f.endswith(".tmp")], [])

  def test_result_is_complete(self):
    self.assertEqual(self.npz["images"].shape, (3, 3, 2, 96, 96, 3))
    self.assertTrue(np.all(np.isfinite(self.npz["images"])))
    np.testing.assert_array_equal(self.npz["rows"], [0, 2, 5])  # lattice(3) of the 6 x 6 grid
    np.testing.assert_array_equal(self.npz["cols"], [0, 2, 5])
    self.assertIsNotNone(files.check_manifest(os.path.join(self.workdir, "atlas.done.json")))
    self.assertIn("step", self.rerun.stderr)
    self.assertRegex(self.rerun.stderr, r"ETA \d+s")

  def test_json_describes_every_tile(self):
    import rfspec

    rf = rfspec.receptive_field(self.meta["tap"], tuple(self.meta["image_hw"]))
    self.assertLen(self.meta["tiles"], 9)
    for t in self.meta["tiles"]:
      self.assertEqual(t["box"], list(rf.box(*t["position"])))
      self.assertAlmostEqual(t["inside_fraction"], rf.inside_fraction(*t["position"]))
      np.testing.assert_allclose(t["final_activation"], self.npz["final_activation"][t["r"], t["c"]], rtol=1e-6)
    # The channel rule's promise: the node is on at the start at every tile and seed.
    self.assertTrue(np.all(self.npz["start_activation"] > 0))

  def test_json_regenerates_a_tile_exactly(self):
    import rfspec
    from tests.conftest import real_params

    fields = {k: tuple(v) if isinstance(v, list) else v for k, v in self.meta["vis_config"].items()}
    cfg = rfspec.VisConfig(**fields)
    t = self.meta["tiles"][6]  # (i, j) = (5, 0), bottom left
    self.assertEqual(self.meta["batch_plan"][t["batch"]][t["index_in_batch"]], t["position"])
    masks = np.stack([rfspec.node_mask(self.meta["tap"], self.meta["channel"], cfg.net_hw, tuple(p))
                      for p in self.meta["batch_plan"][t["batch"]]])
    grid = rfspec.visualize_grid(real_params(), self.meta["seeds"], masks, cfg, progress=lambda _: None)
    np.testing.assert_array_equal(grid[t["index_in_batch"], 1], self.npz["images"][t["r"], t["c"], 1])

  def test_html_is_self_contained_and_holds_every_image(self):
    page = open(os.path.join(self.workdir, "atlas.html")).read()
    self.assertEqual(page.count("data:image/jpeg;base64,"), 9 * 2)
    self.assertNotRegex(page, r"(src|href)\s*=\s*['\"]?(https?:)?//")  # nothing from the network
    self.assertIn("#tile-", page)
    self.assertIn(self.meta["tap"], page)

  def test_mosaic_holds_each_tile_at_its_position(self):
    from PIL import Image

    from rfspec import plots

    png = np.asarray(Image.open(os.path.join(self.workdir, "atlas.png")).convert("RGB"))
    layout = self.meta["mosaic"]
    g = plots.grid_geometry(3, 3, (96, 96), title=layout["title"], row_labels=layout["row_labels"],
                            col_labels=layout["col_labels"], captions=layout["captions"], margin=layout["margin"])
    self.assertEqual(png.shape[:2], (g["height"], g["width"]))
    for r in range(3):
      for c in range(3):
        top = g["title_h"] + g["header_h"] + r * g["cell_h"] + g["margin"]
        left = g["label_w"] + c * g["cell_w"] + g["margin"]
        np.testing.assert_array_equal(png[top:top + 96, left:left + 96], files.to_uint8(self.npz["images"][r, c, 0]))

  def test_third_run_does_no_work(self):
    before = mtimes(self.workdir)
    again = run_binary(f"--workdir={self.workdir}", QUICK, weights_flag(), "--config.batch_positions=1")
    self.assertEqual(again.returncode, 0, again.stderr[-2000:])
    self.assertIn("up to date", again.stdout)
    self.assertEqual(mtimes(self.workdir), before)


class BadInputTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("unknown_tap", "--config.tap=inception_4c/5x6", r"Unknown tap 'inception_4c/5x6'.*inception_4c/5x5"),
      ("channel_out_of_range", "--config.channel=64", r"channel=64 is out of range.*64 channels"),
      ("non_spatial_tap", "--config.tap=prob", r"'prob' has no spatial grid"),
  )
  def test_one_paragraph_and_exit_1(self, flag, pattern):
    proc = run_binary(f"--workdir={self.create_tempdir().full_path}", QUICK, weights_flag(), flag)
    self.assertEqual(proc.returncode, 1, proc.stderr[-2000:])
    self.assertNotIn("Traceback", proc.stderr)
    self.assertRegex(proc.stderr, pattern)
    error = [l for l in proc.stderr.splitlines() if l.startswith("error:")]
    self.assertLen(error, 1)


if __name__ == "__main__":
  absltest.main()

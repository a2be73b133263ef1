"""experiments.reproduce_paper in quick mode on the real weights: outputs, grid layout, resume, errors."""

import json
import os
import re
import signal
import subprocess
import sys
import tempfile

import numpy as np
from absl.testing import absltest
from absl.testing import parameterized

from rfspec import files, plots
from tests.conftest import CAFFEMODEL, REPO, shared_file

QUICK = "--config=experiments/configs/reproduce_paper.py:quick"
FIGS = [f"fig{i}" for i in range(1, 7)]


def run_binary(*args, env=None, timeout=900):
  env = dict(os.environ, **(env or {}))
  return subprocess.run([sys.executable, "-m", "experiments.reproduce_paper", *args], cwd=REPO, env=env,
                        capture_output=True, text=True, timeout=timeout)


def weights_flag():
  return f"--weights={shared_file(CAFFEMODEL)}"


def expected_rf_drawing(box, h, w, m):
  """(line, hatch, border) bool masks over a cell's [h + 2m, w + 2m] frame, from the drawing rules.

  Rules (rfspec.plots): a grey 1 px border rings the image; the RF box's border band (RF_LINE_PX
  wide, inside the box) is red where it falls in the margin; an edge band crossing the image's
  rows (cols) gets a red tick RF_TICK_PX long in a side margin that the box does not reach; other
  margin pixels in the box, off the grey ring, are hatched on the diagonals
  (y + x) % HATCH_PERIOD == 0; red wins over grey; nothing is drawn on the image.
  """
  k, tick, period = plots.RF_LINE_PX, plots.RF_TICK_PX, plots.HATCH_PERIOD
  line = np.zeros((h + 2 * m, w + 2 * m), bool)
  hatch = np.zeros_like(line)
  border = np.zeros_like(line)
  for fy in range(h + 2 * m):
    for fx in range(w + 2 * m):
      y, x = fy - m, fx - m
      if 0 <= y < h and 0 <= x < w:
        continue  # the image
      ring = -1 <= y <= h and -1 <= x <= w
      border[fy, fx] = ring
      if box is None:
        continue
      t, l, b, r = box
      inside = t <= y < b and l <= x < r
      on_row_edge = 0 <= y - t < k or 0 <= b - 1 - y < k
      on_col_edge = 0 <= x - l < k or 0 <= r - 1 - x < k
      edge_band = inside and (on_row_edge or on_col_edge)
      ticked = (on_row_edge and 0 <= y < h and ((l >= 0 and -tick <= x < 0) or (r <= w and w <= x < w + tick))) or \
               (on_col_edge and 0 <= x < w and ((t >= 0 and -tick <= y < 0) or (b <= h and h <= y < h + tick)))
      line[fy, fx] = edge_band or ticked
      hatch[fy, fx] = inside and not line[fy, fx] and not ring and (y + x) % period == 0
  return line, hatch, border


class QuickRunTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.workdir = tempfile.mkdtemp(prefix="paper_")
    cls.first = run_binary(f"--workdir={cls.workdir}", QUICK, weights_flag())

  def test_writes_all_figures_and_report(self):
    self.assertEqual(self.first.returncode, 0, self.first.stderr[-3000:])
    for name in FIGS:
      for ext in ("png", "json", "npz"):
        self.assertTrue(os.path.exists(os.path.join(self.workdir, f"{name}.{ext}")), f"{name}.{ext}")
    html = open(os.path.join(self.workdir, "report.html")).read()
    for name in FIGS:
      self.assertIn(f"src='{name}.png'", html)
    # The report names the recipe and summarises the paper's procedure, with where its facts live.
    self.assertIn("<b>Recipe <code>zipser2015</code></b>: the paper's own procedure", html)
    self.assertIn("../shared/reference/zipser2015/PROCEDURE.md", html)
    self.assertIn("6 figure(s) made", self.first.stdout)
    self.assertIn("step", self.first.stderr)  # progress was shown
    self.assertEqual(self.first.stderr.splitlines()[0], "reproduce_paper: variant 'quick', as --config names it")

  def test_progress_has_an_eta_for_the_whole_run(self):
    # Every progress line prices the whole run (all figures, all steps), not only its panel.
    lines = [l for l in self.first.stderr.splitlines() if ": step " in l]
    self.assertNotEmpty(lines)
    eta = r"whole run (\d+)% of (\d+) image-steps, ETA (\d+s|\d+m\d\ds|\d+h\d\dm)$"
    for line in lines:
      self.assertRegex(line, eta)
    shares = [int(re.search(eta, l).group(1)) for l in lines]
    self.assertEqual(shares, sorted(shares))
    self.assertEqual(shares[-1], 100)
    # 6 figures' panels x images x 12 steps: fig1 2 x 3, fig2/3 9, fig4-6 3 each.
    self.assertEqual({int(re.search(eta, l).group(2)) for l in lines}, {(6 + 9 + 9 + 3 + 3 + 3) * 12})
    self.assertIn("[run] 6 figure(s) to make (0 up to date)", self.first.stderr)
    self.assertEqual([f for f in os.listdir(self.workdir) if f.endswith(".tmp")], [])

  def test_each_png_has_the_expected_grid(self):
    # Fig 1: 3 positions x 2 node types; Fig 2-3: 3 positions x 3 seeds; Fig 4-6: 1 (tiled) x 3 seeds.
    expected = {"fig1": (3, 2), "fig2": (3, 3), "fig3": (3, 3), "fig4": (1, 3), "fig5": (1, 3), "fig6": (1, 3)}
    from PIL import Image

    for name, (rows, cols) in expected.items():
      meta = files.read_json(os.path.join(self.workdir, f"{name}.json"))
      images = np.load(os.path.join(self.workdir, f"{name}.npz"))["images"]
      self.assertEqual(images.shape[:2], (rows, cols), name)
      self.assertEqual((meta["rows"], meta["cols"]), (rows, cols), name)
      self.assertLen(meta["images"], rows)
      h, w = images.shape[2:4]
      geo = plots.grid_geometry(rows, cols, (h, w), title=meta["title"], row_labels=meta["row_labels"],
                                col_labels=meta["col_labels"], captions=meta["captions"])
      png = np.asarray(Image.open(os.path.join(self.workdir, f"{name}.png")).convert("RGB"))
      self.assertEqual(png.shape[:2], (geo["height"], geo["width"]), name)
      m = geo["margin"]
      for r in range(rows):
        for c in range(cols):
          rec = meta["images"][r][c]
          # Each panel is labelled with its own node position (Fig 1's two taps have different grids).
          where = "all" if rec["position"] is None else "({}, {})".format(*rec["position"])
          self.assertIn(where, meta["captions"][r][c], f"{name} {r},{c}")
          top = geo["title_h"] + geo["header_h"] + r * geo["cell_h"] + m
          left = geo["label_w"] + c * geo["cell_w"] + m
          frame = png[top - m:top + h + m, left - m:left + w + m]
          # The image is never drawn over: every pixel is the saved image's.
          np.testing.assert_array_equal(frame[m:m + h, m:m + w], files.to_uint8(images[r, c]), f"{name} {r},{c}")
          # The margin holds exactly the RF drawing that the JSON's box implies, else white.
          line, hatch, border = expected_rf_drawing(rec["rf"]["box"], h, w, m)
          margin = np.ones(frame.shape[:2], bool)
          margin[m:m + h, m:m + w] = False
          want = np.full(frame.shape, 255, np.uint8)
          want[border] = plots.BORDER_COLOUR
          want[hatch] = plots.HATCH_COLOUR
          want[line] = plots.RF_COLOUR
          np.testing.assert_array_equal(frame[margin], want[margin], f"{name} {r},{c} margin")
          if rec["position"] is not None and rec["rf"]["inside_fraction"] < 1:
            self.assertTrue(hatch.any(), f"{name} {r},{c}: off-image RF share not shown")

  def test_json_regenerates_an_image_exactly(self):
    # The JSON's recipe for remaking an image -- the same grid call -- gives it back bit for bit.
    import rfspec
    from rfspec.engine import VisConfig
    from rfspec import masks as masks_lib
    from tests.conftest import real_params

    meta = files.read_json(os.path.join(self.workdir, "fig2.json"))
    self.assertIn("rfspec.visualize_grid(params, seeds", meta["regenerate"])
    rec = meta["images"][2][1]  # bottom position, second seed
    cfg_fields = dict(rec["vis_config"])
    cfg_fields["image_hw"] = tuple(cfg_fields["image_hw"])
    cfg_fields["scales"] = tuple(cfg_fields["scales"])
    cfg = VisConfig(**cfg_fields)
    positions = [tuple(row[0]["position"]) for row in meta["images"]]
    seeds = [r["seed"] for r in meta["images"][0]]
    masks = masks_lib.node_masks(rec["tap"], rec["channel"], cfg.image_hw, positions)
    grid = rfspec.visualize_grid(real_params(), seeds, masks, cfg, return_trace=True, progress=lambda _: None)
    saved = np.load(os.path.join(self.workdir, "fig2.npz"))["images"]
    np.testing.assert_array_equal(np.asarray(grid.images)[2, seeds.index(rec["seed"])], saved[2, 1])
    rf = rfspec.receptive_field(rec["tap"], cfg.image_hw)
    self.assertEqual(rec["rf"]["box"], list(rf.box(*rec["position"])))

  def test_second_run_does_no_work(self):
    before = {f: os.path.getmtime(os.path.join(self.workdir, f"{f}.json")) for f in FIGS}
    again = run_binary(f"--workdir={self.workdir}", QUICK, weights_flag())
    self.assertEqual(again.returncode, 0, again.stderr[-2000:])
    self.assertIn("0 figure(s) made, 6 up to date", again.stdout)
    self.assertEqual(before, {f: os.path.getmtime(os.path.join(self.workdir, f"{f}.json")) for f in FIGS})


class ResumeTest(absltest.TestCase):

  def test_killed_run_resumes_where_it_stopped(self):
    workdir = self.create_tempdir().full_path
    args = [sys.executable, "-m", "experiments.reproduce_paper", f"--workdir={workdir}", QUICK, weights_flag(),
            "--figures=fig4,fig5"]
    proc = subprocess.Popen(args, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    done = os.path.join(workdir, "fig4.json")
    # Wait on the binary's own progress line (flushed after fig4's JSON is written), not a timer.
    for line in proc.stderr:
      if line.startswith("[fig4] done"):
        break
    self.assertTrue(os.path.exists(done), "fig4 never finished")
    proc.send_signal(signal.SIGKILL)  # mid-way through fig5
    proc.wait()
    proc.stderr.close()
    self.assertFalse(os.path.exists(os.path.join(workdir, "fig5.json")), "fig5 finished before the kill")
    first_fig4 = os.path.getmtime(done)
    rerun = run_binary(f"--workdir={workdir}", QUICK, weights_flag(), "--figures=fig4,fig5")
    self.assertEqual(rerun.returncode, 0, rerun.stderr[-2000:])
    self.assertIn("1 figure(s) made, 1 up to date", rerun.stdout)
    self.assertEqual(os.path.getmtime(done), first_fig4)
    self.assertTrue(os.path.exists(os.path.join(workdir, "fig5.png")))
    self.assertEqual([f for f in os.listdir(workdir) if f.endswith(".tmp")], [])


class VariantTest(parameterized.TestCase):
  """Without a variant in --config the run fits the machine: full on a GPU/TPU, cpu otherwise."""

  @parameterized.parameters(("gpu", "full", (224, 224)), ("cuda", "full", (224, 224)),
                            ("tpu", "full", (224, 224)), ("cpu", "cpu", (224, 224)))
  def test_picks_the_variant_for_the_backend(self, backend, variant, image_hw):
    from unittest import mock

    import jax
    from experiments.configs import figures
    from experiments.configs import reproduce_paper as default_config

    with mock.patch.object(jax, "default_backend", return_value=backend):
      config = default_config.get_config()
    self.assertEqual(config.variant, variant)
    self.assertEqual(config.picked_for_backend, backend)
    self.assertEqual(tuple(config.vis.image_hw), image_hw)
    self.assertEqual(config.vis.steps, {"full": figures.FULL_VIS, "cpu": figures.CPU_VIS}[variant]["steps"])

  @parameterized.parameters("full", "cpu", "quick")
  def test_an_explicit_variant_does_not_ask_the_backend(self, variant):
    from unittest import mock

    import jax
    from experiments.configs import reproduce_paper as default_config

    with mock.patch.object(jax, "default_backend", side_effect=AssertionError("asked the backend")):
      config = default_config.get_config(variant)
    self.assertEqual((config.variant, config.picked_for_backend), (variant, ""))

  def test_first_line_says_which_variant_and_why(self):
    # No --config: on this CPU machine the run picks `cpu`, and says so before anything else
    # (here the run then stops at a bad --figures, so no work is done). JAX's libtpu notice is not shown.
    proc = run_binary(f"--workdir={self.create_tempdir().full_path}", weights_flag(), "--figures=fig9")
    self.assertEqual(proc.returncode, 1, proc.stderr[-2000:])
    first = proc.stderr.splitlines()[0]
    self.assertRegex(first, r"^reproduce_paper: variant 'cpu', picked because --config names no variant "
                            r"and JAX's backend is 'cpu' \(no GPU or TPU\); pass "
                            r"--config=experiments/configs/reproduce_paper\.py:full")
    self.assertNotIn("libtpu", proc.stderr)


class BadInputTest(absltest.TestCase):

  def assert_user_error(self, proc, pattern):
    self.assertEqual(proc.returncode, 1, proc.stderr[-2000:])
    self.assertNotIn("Traceback", proc.stderr)
    self.assertRegex(proc.stderr, pattern)

  def test_unknown_figure(self):
    proc = run_binary(f"--workdir={self.create_tempdir().full_path}", QUICK, weights_flag(), "--figures=fig9")
    self.assert_user_error(proc, r"Unknown figure.*fig9")

  def test_unwritable_workdir(self):
    blocker = self.create_tempfile("not_a_dir").full_path  # a file where a directory must go
    proc = run_binary(f"--workdir={blocker}/out", QUICK, weights_flag())
    self.assert_user_error(proc, r"Cannot write to --workdir")

  def test_missing_weights_offline(self):
    cache = self.create_tempdir().full_path
    proc = run_binary(f"--workdir={self.create_tempdir().full_path}", QUICK, "--weights=bvlc_googlenet",
                      env={"RFSPEC_CACHE": cache, "RFSPEC_WEIGHTS_URL": "http://127.0.0.1:9/bvlc_googlenet.caffemodel"})
    self.assert_user_error(proc, r"bvlc_googlenet\.caffemodel")
    self.assertIn(cache, proc.stderr)
    self.assertEqual(os.listdir(cache) if os.path.isdir(cache) else [], [])


if __name__ == "__main__":
  absltest.main()

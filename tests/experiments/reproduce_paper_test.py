"""experiments.reproduce_paper end to end, kept small (Figure 4 of the quick variant at 2 steps, on
random weights of the real shapes: tests/experiments/quick_runs.py): outputs, the smoke-test line,
the ETA before the first step, a report that parses offline, the RF inset in the PNG, sealed
outputs (a rerun does nothing; a truncated report is redone), the variant picked for the machine,
and user errors."""

import html.parser
import os
import re
import subprocess
import sys
import tempfile

import numpy as np
import pytest
from absl.testing import absltest
from absl.testing import parameterized

from rfspec import files, plots, report
from tests.conftest import REPO
from tests.experiments import quick_runs
from tests.experiments.quick_runs import weights_flag

SMALL = list(quick_runs.PAPER_ARGS)
ABSL_LOG = re.compile(r"^[IWEF]\d{4} ")  # absl/JAX log lines (e.g. a machine without a TPU says so)


def start_binary(*args, env=None):
  return quick_runs.start_binary("reproduce_paper", *args, env=env)


finish = quick_runs.finish


def run_binary(*args, env=None):
  return finish(start_binary(*args, env=env))


def own_lines(stderr):
  """stderr without absl/JAX log lines."""
  return [l for l in stderr.splitlines() if not ABSL_LOG.match(l)]


class PageCheck(html.parser.HTMLParser):
  """Collects every <img> and link of a page, to check it offline."""

  def __init__(self):
    super().__init__()
    self.imgs, self.refs = [], []

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if tag == "img":
      self.imgs.append(attrs)
    for key in ("src", "href"):
      if key in attrs:
        self.refs.append(attrs[key])


def check_page(testcase, path):
  """The page parses; every <img> has alt text; every referenced file exists beside it; nothing
  is fetched from the network."""
  page = PageCheck()
  with open(path) as f:
    text = f.read()
  page.feed(text)
  page.close()
  testcase.assertNotEmpty(page.imgs)
  for img in page.imgs:
    testcase.assertTrue(img.get("alt"), img)
  for ref in page.refs:
    testcase.assertNotRegex(ref, r"^(https?:)?//", ref)
    if not ref.startswith("#"):
      testcase.assertTrue(os.path.isfile(os.path.join(os.path.dirname(path), ref)), ref)
  testcase.assertTrue(text.rstrip().endswith("</html>"))
  return text


@pytest.mark.slow
class SmallRunTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.cache = tempfile.mkdtemp(prefix="cache_")
    # The user errors run beside the real run (they stop before any work).
    cls.errors = {
        "no_variant": start_binary(f"--workdir={tempfile.mkdtemp()}", weights_flag(), "--figures=fig9"),
        "unwritable": start_binary(f"--workdir={os.devnull}/out", *SMALL, weights_flag()),
        "offline": start_binary(f"--workdir={tempfile.mkdtemp()}", *SMALL, "--weights=bvlc_googlenet",
                                env={"RFSPEC_CACHE": cls.cache,
                                     "RFSPEC_WEIGHTS_URL": "http://127.0.0.1:9/x.caffemodel"}),
    }
    cls.workdir, cls.first = quick_runs.paper()
    cls.errors = {name: finish(p) for name, p in cls.errors.items()}

  def test_outputs_and_the_smoke_line(self):
    self.assertEqual(self.first.returncode, 0, self.first.stderr[-3000:])
    for ext in ("png", "json", "npz"):
      self.assertTrue(os.path.isfile(os.path.join(self.workdir, f"fig4.{ext}")), ext)
    out = self.first.stdout.strip().splitlines()
    self.assertLen(out, 1)
    self.assertTrue(out[0].startswith(report.SMOKE_TEST + "; reproduce_paper: 1 figure(s) made"), out[0])
    page = check_page(self, os.path.join(self.workdir, "report.html"))
    body = page[page.index("<body>"):]
    self.assertLess(body.index(report.SMOKE_TEST), body.index("<h1>"))  # at the top
    self.assertIn("tiled: each image drives every position at once", page)  # the reason, said once
    self.assertEqual(page.count("psi_auc not computed"), 1)
    meta = files.read_json(os.path.join(self.workdir, "fig4.json"))
    self.assertTrue(meta["smoke_test"])
    self.assertIn("rfspec.visualize_grid(params, seeds", meta["regenerate"])

  def test_first_line_names_the_variant_then_the_eta_comes_before_any_step(self):
    lines = own_lines(self.first.stderr)
    self.assertEqual(lines[0], "reproduce_paper: variant 'quick', as --config names it")
    eta = next(n for n, l in enumerate(lines) if "grid call(s) to run" in l)
    self.assertRegex(lines[eta], r"1 grid call\(s\) to run, 0 restored.* ETA \d+(s|m\d\ds)$")
    self.assertLess(eta, next(n for n, l in enumerate(lines) if re.search(r" step \d+/\d+", l)))

  def test_png_shows_the_small_rf_zoomed(self):
    # Figure 4 tiles conv2/3x3 (RF 19 px < 96 / 4): each cell shows the centre node's RF box zoomed,
    # nearest neighbour, and the 96 px images at 2x (3 cm panels); the pixels are the NPZ's.
    import rfspec
    from PIL import Image

    meta = files.read_json(os.path.join(self.workdir, "fig4.json"))
    images = files.read_npz(os.path.join(self.workdir, "fig4.npz"))["images"][0]  # [1, S, H, W, 3]
    png = np.asarray(Image.open(os.path.join(self.workdir, "fig4.png")).convert("RGB"))
    hw, n_s = images.shape[2:4], images.shape[1]
    t, l, b, r = rfspec.receptive_field("conv2/3x3", hw).box(*rfspec.masks.named_positions("conv2/3x3", hw)["centre"])
    layout = meta["png_layout"]
    self.assertEqual(layout["boxes"], [[[t, l, b, r]] * n_s])
    geo = plots.grid_geometry(1, n_s, **layout)
    s, m, z = geo["scale"], geo["margin"], geo["zoom"][0][0]
    self.assertEqual((s, z), (2, 96 // 19))
    self.assertEqual(png.shape[:2], (geo["height"], geo["width"]))
    top = geo["title_h"] + geo["header_h"] + m
    for c in range(n_s):
      left = geo["col_left"][c] + m
      image = files.to_uint8(images[0, c])
      np.testing.assert_array_equal(png[top:top + 96 * s, left:left + 96 * s], np.repeat(np.repeat(image, s, 0), s, 1))
      il, n = left + 96 * s + m + plots.INSET_GAP + plots.RF_LINE_PX, (b - t) * z * s
      np.testing.assert_array_equal(png[top:top + n, il:il + n],
                                    np.repeat(np.repeat(image[t:b, l:r], z * s, 0), z * s, 1))
    self.assertTrue(all("seed" in label for label in layout["col_labels"]))

  def test_sealed_outputs_rerun_does_nothing_and_a_truncated_report_is_redone(self):
    workdir = quick_runs.copy_workdir(self.workdir, "paper_rerun_")  # the session's run stays as it is

    def mtimes():
      return {os.path.join(d, f): os.path.getmtime(os.path.join(d, f))
              for d, _, fs in os.walk(workdir) for f in fs if f != ".rfspec.lock"}  # the lock records each run

    before = mtimes()
    again = run_binary(f"--workdir={workdir}", *SMALL, weights_flag())
    self.assertEqual(again.returncode, 0, again.stderr[-2000:])
    self.assertIn("reproduce_paper: up to date, outputs verified by checksum", again.stdout)
    self.assertNotIn("loading weights", again.stderr)
    self.assertEqual(mtimes(), before)
    page = os.path.join(workdir, "report.html")
    with open(page, "r+b") as f:
      f.truncate(os.path.getsize(page) // 2)
    png = open(os.path.join(workdir, "fig4.png"), "rb").read()
    fixed = run_binary(f"--workdir={workdir}", *SMALL, weights_flag())
    self.assertEqual(fixed.returncode, 0, fixed.stderr[-2000:])
    self.assertIn("0 figure(s) made, 1 restored from the store", fixed.stdout)
    check_page(self, page)
    self.assertEqual(open(os.path.join(workdir, "fig4.png"), "rb").read(), png)  # bit for bit
    units = {p: t for p, t in before.items() if os.sep + "figures" + os.sep in p}
    self.assertNotEmpty(units)
    self.assertEqual({p: os.path.getmtime(p) for p in units}, units)  # no unit redone

  def test_no_variant_picks_cpu_here_and_says_why_first(self):
    proc = self.errors["no_variant"]
    self.assertEqual(proc.returncode, 1, proc.stderr[-2000:])
    self.assertRegex(own_lines(proc.stderr)[0], r"^reproduce_paper: variant 'cpu', picked because --config names no "
                                               r"variant and JAX's backend is 'cpu' \(no GPU or TPU\); pass "
                                               r"--config=experiments/configs/reproduce_paper\.py:full")
    self.assertRegex(proc.stderr, r"Unknown figure.*fig9")
    self.assertNotIn("Traceback", proc.stderr)

  def test_unwritable_workdir(self):
    proc = self.errors["unwritable"]
    self.assertEqual(proc.returncode, 1, proc.stderr[-2000:])
    self.assertRegex(proc.stderr, r"Cannot write to --workdir")
    self.assertNotIn("Traceback", proc.stderr)

  def test_missing_weights_offline(self):
    proc = self.errors["offline"]
    self.assertEqual(proc.returncode, 1, proc.stderr[-2000:])
    self.assertRegex(proc.stderr, r"bvlc_googlenet\.caffemodel")
    self.assertIn(self.cache, proc.stderr)
    self.assertNotIn("Traceback", proc.stderr)
    self.assertEqual(os.listdir(self.cache), [])


class VariantTest(parameterized.TestCase):
  """Configs ask nothing of the machine; the binary picks: full on a GPU/TPU, cpu otherwise."""

  def test_configs_have_no_side_effects(self):
    code = ("import sys\n"
            "from experiments.configs import fig1, fig2, fig3, fig4, fig5, fig6, reproduce_paper\n"
            "for m in (fig1, fig2, fig3, fig4, fig5, fig6, reproduce_paper):\n"
            "  m.get_config(); m.get_config('quick')\n"
            "assert 'jax' not in sys.modules, 'a config imported jax'\n")
    proc = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True, timeout=120)
    self.assertEqual(proc.returncode, 0, proc.stderr)

  @parameterized.parameters(("gpu", "full", 2000), ("cuda", "full", 2000), ("tpu", "full", 2000), ("cpu", "cpu", 300))
  def test_picks_the_variant_for_the_backend(self, backend, variant, steps):
    from experiments import reproduce_paper
    from experiments.configs import reproduce_paper as default_config

    config, line = reproduce_paper.pick_variant(default_config.get_config(), backend)
    self.assertEqual((config["variant"], config["vis"]["steps"]), (variant, steps))
    self.assertIn(f"variant '{variant}', picked because --config names no variant and JAX's backend is '{backend}'",
                  line)

  def test_a_command_line_override_stands_on_any_machine(self):
    from experiments import reproduce_paper
    from experiments.configs import reproduce_paper as default_config

    config = default_config.get_config()
    config.vis.steps = 500  # as --config.vis.steps=500 would
    picked, _ = reproduce_paper.pick_variant(config, "cpu")
    self.assertEqual((picked["vis"]["steps"], picked["vis"]["chunk"]), (500, 50))

  def test_a_named_variant_is_kept(self):
    from experiments import reproduce_paper
    from experiments.configs import reproduce_paper as default_config

    config, line = reproduce_paper.pick_variant(default_config.get_config("quick"), "gpu")
    self.assertEqual((config["variant"], config["vis"]["image_hw"], config["smoke_test"]), ("quick", (96, 96), True))
    self.assertEqual(line, "reproduce_paper: variant 'quick', as --config names it")


if __name__ == "__main__":
  absltest.main()

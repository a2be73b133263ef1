"""experiments.position_atlas end to end: outputs, the page, sealed outputs redone, user errors.

One run of the quick variant shrunk further (conv2/3x3 at 32 px, a 2 x 2 lattice: two psi_auc values
and one undefined; random weights of the real shapes, tests/experiments/quick_runs.py), then its
page truncated and its JSON edited and the run repeated (both are redone, no batch is), then once
more (nothing to do). Resume after a kill is tested on the library (tests/atlas_test.py).
"""

import html.parser
import os
import re

import numpy as np
import pytest
from absl.testing import absltest

from rfspec import files, report
from rfspec.weights import store
from tests.conftest import tiny_weights
from tests.experiments import quick_runs
from tests.experiments.quick_runs import weights_flag

QUICK = list(quick_runs.ATLAS_ARGS)


def run_binary(*args, timeout=600):
  return quick_runs.run_binary("position_atlas", *args, timeout=timeout)


def mtimes(folder):
  return {os.path.relpath(os.path.join(root, f), folder): os.stat(os.path.join(root, f)).st_mtime_ns
          for root, _, fs in os.walk(folder) for f in fs if not f.startswith(".")}


class PageParser(html.parser.HTMLParser):
  """Every tag with its attributes, in order."""

  def __init__(self):
    super().__init__()
    self.tags = []

  def handle_starttag(self, tag, attrs):
    self.tags.append((tag, dict(attrs)))


@pytest.mark.slow
class QuickRunTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    shared, cls.first = quick_runs.atlas()
    cls.workdir = quick_runs.copy_workdir(shared, "atlas_rerun_")  # the session's run stays as it is
    args = [f"--workdir={cls.workdir}", *QUICK, weights_flag()]
    assert cls.first.returncode == 0, cls.first.stderr[-3000:]
    cls.page = open(os.path.join(cls.workdir, "atlas.html")).read()
    cls.meta = files.read_json(os.path.join(cls.workdir, "atlas.json"))
    cls.npz = files.read_npz(os.path.join(cls.workdir, "atlas.npz"))
    cls.units = mtimes(os.path.join(cls.workdir, "atlas"))
    # A truncated page and a hand-edited JSON: the seal no longer vouches for them.
    with open(os.path.join(cls.workdir, "atlas.html"), "r+") as f:
      f.truncate(len(cls.page) // 2)
    edited = dict(cls.meta, channel=cls.meta["channel"] + 1)
    files.write_json(os.path.join(cls.workdir, "atlas.json"), edited)
    cls.second = run_binary(*args)
    cls.after_second = mtimes(cls.workdir)
    cls.third = run_binary(*args)
    cls.after_third = mtimes(cls.workdir)

  def test_stdout_is_one_line_that_says_smoke_test(self):
    self.assertEqual(self.first.stdout.count("\n"), 1, self.first.stdout)
    self.assertTrue(self.first.stdout.startswith(f"{report.SMOKE_TEST}; position_atlas: conv2/3x3 channel "),
                    self.first.stdout)
    self.assertIn("2 x 2 positions x 3 starts", self.first.stdout)
    self.assertRegex(self.first.stderr, r"whole run \d+% of [\d,]+ image-steps, ETA")

  def test_an_eta_comes_before_the_first_step(self):
    first = next(l for l in self.first.stderr.splitlines() if "whole run" in l)
    self.assertNotRegex(first, r" step \d+/")
    self.assertRegex(first, r"whole run 0% of [\d,]+ image-steps, ETA \d+(s|m\d\ds)$")  # priced, not '?'

  def test_json_records_the_weights_and_every_tile(self):
    self.assertEqual(self.meta["weights_sha256"], store.weights_sha256(tiny_weights()))
    self.assertTrue(self.meta["smoke_test"])
    self.assertLen(self.meta["tiles"], 4)
    self.assertEqual([t["position"] for t in self.meta["tiles"]], [[0, 0], [0, 7], [7, 0], [7, 7]])
    self.assertTrue(np.all(self.npz["start_activation"] > 0))  # the channel rule's promise
    psi = {tuple(t["position"]): (t["psi_auc"], t["psi_reason"]) for t in self.meta["tiles"]}
    self.assertEqual(psi[(0, 0)], (None, "the reference itself"))
    self.assertIsNone(psi[(7, 7)][0])
    self.assertIn("below the minimum", psi[(7, 7)][1])
    for p in ((0, 7), (7, 0)):
      self.assertTrue(-1 <= psi[p][0] <= 1, psi)
    self.assertEqual(self.npz["images"].shape, (2, 2, 3, 32, 32, 3))

  def test_page_parses_references_only_what_exists_and_describes_every_image(self):
    parser = PageParser()
    parser.feed(self.page)
    self.assertTrue(self.page.rstrip().endswith("</html>"))
    self.assertNotRegex(self.page, r"https?://")  # nothing from the network
    images = [a for tag, a in parser.tags if tag == "img"]
    self.assertLen(images, 1 + 4)  # the heat map and one mosaic tile per position
    for a in images:
      self.assertTrue(a.get("alt", "").strip(), a.get("src", "")[:40])
    refs = [a.get("href") or a.get("src") for tag, a in parser.tags if tag in ("a", "img", "script", "link")]
    local = [r for r in refs if r and not r.startswith(("data:", "#"))]
    self.assertNotEqual(local, [])
    for r in local:
      self.assertTrue(os.path.isfile(os.path.join(self.workdir, r)), r)
    self.assertFalse([tag for tag, a in parser.tags if tag == "script" and a.get("src")])  # inline scripts only

  def test_heat_map_is_on_the_page_with_a_link_per_cell(self):
    parser = PageParser()
    parser.feed(self.page)
    heat = [a for tag, a in parser.tags if tag == "img" and a.get("id") == "heatmap"]
    self.assertLen(heat, 1)
    self.assertTrue(heat[0]["src"].startswith("data:image/png;base64,"))
    self.assertIn("Heat map of psi_auc", heat[0]["alt"])
    cells = {a["id"]: a["href"] for tag, a in parser.tags if tag == "a" and a.get("class") == "cell"}
    self.assertEqual(cells, {f"cell-{i}-{j}": f"#cell-{i}-{j}" for i in (0, 7) for j in (0, 7)})

  def test_smoke_test_line_comes_first(self):
    body = self.page[self.page.index("<body>"):]
    self.assertLess(body.index(report.SMOKE_TEST), body.index("<h1>"))

  def test_mosaic_png_has_the_layout_the_json_records(self):
    from PIL import Image

    png = Image.open(os.path.join(self.workdir, "atlas.png"))
    layout = self.meta["mosaic"]
    self.assertEqual((png.height, png.width), (layout["height"], layout["width"]))
    self.assertEqual(layout["tile_hw"], [160, 160])
    self.assertIn(report.SMOKE_TEST, layout["title"])  # the picture says it too, under its title

  def test_a_truncated_page_and_an_edited_json_are_redone_without_redoing_batches(self):
    self.assertEqual(self.second.returncode, 0, self.second.stderr[-3000:])
    self.assertIn("2 batches (2 resumed)", self.second.stdout)
    page = open(os.path.join(self.workdir, "atlas.html")).read()
    self.assertEqual(page, self.page)
    meta = files.read_json(os.path.join(self.workdir, "atlas.json"))
    self.assertEqual(meta["channel"], self.meta["channel"])
    units = {k: v for k, v in self.after_second.items() if k.startswith("atlas" + os.sep)}
    self.assertEqual(units, {os.path.join("atlas", k): v for k, v in self.units.items()})

  def test_third_run_does_no_work(self):
    self.assertEqual(self.third.returncode, 0, self.third.stderr[-2000:])
    self.assertTrue(self.third.stdout.startswith(f"{report.SMOKE_TEST}; position_atlas: up to date"),
                    self.third.stdout)
    self.assertNotIn("loading weights", self.third.stderr)
    self.assertEqual(self.after_third, self.after_second)


@pytest.mark.slow
class BadSettingsTest(absltest.TestCase):

  def test_every_bad_field_in_one_paragraph_and_exit_1(self):
    proc = run_binary(f"--workdir={self.create_tempdir().full_path}", *QUICK, weights_flag(),
                      "--config.mosaic_tile=-5", "--config.batch_positions=-1", "--config.seeds=(0, 1.5)")
    self.assertEqual(proc.returncode, 1, proc.stderr[-2000:])
    self.assertNotIn("Traceback", proc.stderr)
    error = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    self.assertLen(error, 1)
    for field in ("config.mosaic_tile", "config.batch_positions", "config.seeds"):
      self.assertIn(field, error[0])
    self.assertNotIn("loading weights", proc.stderr)  # settings are checked before the weights load

  def test_seeds_that_are_not_a_list_is_one_paragraph(self):
    proc = run_binary(f"--workdir={self.create_tempdir().full_path}", *QUICK, weights_flag(), "--config.seeds=abc")
    self.assertEqual(proc.returncode, 1, proc.stderr[-2000:])
    self.assertNotIn("Traceback", proc.stderr)
    self.assertRegex(proc.stderr, re.compile(r"^error: .*seeds", re.M))


if __name__ == "__main__":
  absltest.main()

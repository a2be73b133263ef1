"""experiments.screenshots: URLs, names, trimming, and a clear error without Chromium (no browser needed),
plus, where Chromium is installed, one real screenshot and the atlas page's views opened from disk."""

import os
import shutil

import numpy as np
from absl.testing import absltest

from experiments import _chromium, screenshots
from rfspec.errors import UserError
from tests.conftest import REPO


class HelpersTest(absltest.TestCase):

  def test_page_url_carries_the_view(self):
    path = os.path.join(self.create_tempdir().full_path, "my atlas.html")
    url = _chromium.page_url(path, cell=(0, 13))
    self.assertTrue(url.startswith("file:///"), url)
    self.assertTrue(url.endswith("/my%20atlas.html?cell=0,13"), url)
    self.assertEqual(_chromium.page_url(path), url.split("?")[0])

  def test_names(self):
    self.assertEqual(_chromium.shot_name("/x/atlas.html"), "atlas.png")
    self.assertEqual(_chromium.shot_name("/x/atlas.html", cell=(0, 13)), "atlas_cell_0_13.png")
    self.assertEqual(_chromium.shot_name("/x/atlas_psi.png"), "atlas_psi.png")

  def test_positions(self):
    self.assertEqual(screenshots.parse_position("6,13"), (6, 13))
    for bad in ("6", "a,b", "-1,2", "1,2,3"):
      with self.assertRaisesRegex(UserError, r"I,J"):
        screenshots.parse_position(bad)

  def test_views_only_for_pages_that_open_them(self):
    folder = self.create_tempdir().full_path
    atlas, report = os.path.join(folder, "atlas.html"), os.path.join(folder, "report.html")
    open(atlas, "w").write("<script>function atlasView(search, hash){}</script>")
    open(report, "w").write("<p>no views</p>")
    views = [dict(), dict(cell=(0, 0)), dict(tile=(1, 2))]
    self.assertEqual(_chromium.views_of(atlas, views), views)
    self.assertEqual(_chromium.views_of(report, views), [dict()])  # not three copies of one page
    self.assertEqual(_chromium.views_of(os.path.join(folder, "fig1.png"), views), [dict()])

  def test_the_browser_runs_headless_with_a_throwaway_profile(self):
    cmd = _chromium.chromium_command("/usr/bin/chromium", "file:///a.html?cell=1,2", "/o.png", (800, 600), "/p")
    for flag in ("--headless", "--no-sandbox", "--disable-background-networking", "--user-data-dir=/p",
                 "--window-size=800,600", "--screenshot=/o.png"):
      self.assertIn(flag, cmd)
    self.assertEqual(cmd[-1], "file:///a.html?cell=1,2")

  def test_no_chromium_is_one_paragraph_naming_the_fix(self):
    empty = self.create_tempdir().full_path
    old = os.environ["PATH"]
    os.environ["PATH"] = empty
    try:
      with self.assertRaisesRegex(UserError, r"No Chromium found.*apt-get install -y chromium.*--chromium=") as e:
        _chromium.find_chromium("")
    finally:
      os.environ["PATH"] = old
    self.assertNotIn("\n", str(e.exception))

  def test_finish_trims_the_blank_page_and_keeps_under_the_limit(self):
    from PIL import Image

    path = os.path.join(self.create_tempdir().full_path, "shot.png")
    rng = np.random.default_rng(0)
    arr = np.full((400, 300, 3), 255, np.uint8)
    arr[:100] = rng.integers(0, 256, (100, 300, 3))  # content that compresses badly, then blank page
    Image.fromarray(arr).save(path)
    size = _chromium.finish(path, max_kb=40)
    im = Image.open(path)
    self.assertEqual(im.size, (300, 116))  # the content and a 16 px band
    self.assertLessEqual(size, os.path.getsize(path))
    self.assertEqual(im.mode, "P")  # quantised: the truecolour PNG was over 40 KB

  def test_quantising_keeps_rare_colours(self):
    """The recorded mosaic's red RF lines and colour-bar ends are a few pixels among many: quantised
    to 256 colours they keep their colour (median cut moved some by 100 of 255)."""
    from PIL import Image

    path = os.path.join(self.create_tempdir().full_path, "shot.png")
    src = os.path.join(REPO, "experiments", "results", "position_atlas_cpu", "atlas.png")
    before = np.asarray(Image.open(src).convert("RGB")).astype(int)
    Image.fromarray(before.astype(np.uint8)).save(path)
    _chromium.finish(path, max_kb=100)
    im = Image.open(path)
    self.assertEqual(im.mode, "P")
    after = np.asarray(im.convert("RGB")).astype(int)
    rows = min(len(before), len(after))  # finish trims blank rows at the bottom
    self.assertLessEqual(np.abs(after[:rows] - before[:rows]).max(), 64)


def _need_chromium(test):
  """Skips where Chromium is missing, except in CI (.ci/run installs it and sets RFSPEC_CI): there a
  missing browser fails, since a skipped test is not a pass."""
  if any(shutil.which(b) for b in _chromium.BROWSERS):
    return
  if os.environ.get("RFSPEC_CI"):
    test.fail("Chromium is not installed, and CI needs it: apt-get install chromium (see README, Test).")
  test.skipTest("Chromium is not installed")


class ChromiumTest(absltest.TestCase):

  def test_a_page_sees_its_view_parameter(self):
    """Where Chromium is installed: ?cell=I,J reaches the page's script when opened from disk."""
    _need_chromium(self)
    from PIL import Image

    folder = self.create_tempdir().full_path
    page = os.path.join(folder, "p.html")
    open(page, "w").write(
        "<!doctype html><html><body style='margin:0'><div id='d' style='width:200px;height:200px;background:#00f'>"
        "</div><script>if (new URLSearchParams(location.search).get('cell') === '2,3') "
        "document.getElementById('d').style.background = '#f00';</script></body></html>")
    out = os.path.join(folder, "shot.png")
    chromium = _chromium.find_chromium()
    _chromium.screenshot(chromium, _chromium.page_url(page, cell=(2, 3)), out, (400, 300), max_kb=1000)
    shot = np.asarray(Image.open(out).convert("RGB"))
    np.testing.assert_array_equal(shot[100, 100], [255, 0, 0])  # the script saw cell=2,3 (else blue)


  def test_the_recorded_atlas_page_opens_a_tile_and_a_heat_map_cell(self):
    """Where Chromium is installed: the atlas page, built from the recorded atlas.json (grey images
    stand in for atlas.npz, which is not kept), opened from disk at ?tile=0,0 shows every start with
    the RF box, its in-image edge included; at ?cell=0,0 both positions' starts cut to the common
    window."""
    _need_chromium(self)
    import html.parser
    import json

    from rfspec import report

    with open(os.path.join(REPO, "experiments", "results", "position_atlas_cpu", "atlas.json")) as f:
      summary = json.load(f)
    n_r, n_c, n_s = len(summary["rows"]), len(summary["cols"]), summary["seeds_per_position"]
    h, w = summary["image_hw"]
    cells = np.array([[[c / n_c, r / n_r, (c + 1) / n_c, (r + 1) / n_r] for c in range(n_c)] for r in range(n_r)])
    page = os.path.join(self.create_tempdir().full_path, "atlas.html")
    with open(page, "w") as f:
      f.write(report.atlas_html(summary, np.full((n_r, n_c, n_s, h, w, 3), 0.5, np.float32),
                                heatmap=np.full((60, 60, 3), 255, np.uint8), heatmap_cells=cells))

    class Tree(html.parser.HTMLParser):
      """Each element's tag, attributes and the ids/classes of the elements it sits in."""

      def __init__(self):
        super().__init__()
        self.stack, self.elements = [], []

      def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        self.elements.append((tag, attrs, [(a.get("id"), a.get("class")) for _, a in self.stack]))
        if tag not in ("img", "br", "meta", "input"):
          self.stack.append((tag, attrs))

      def handle_endtag(self, tag):
        while self.stack and self.stack.pop()[0] != tag:
          pass

    def within(tree, ident):
      return [(tag, a, up) for tag, a, up in tree.elements if any(i == ident for i, _ in up)]

    chromium = _chromium.find_chromium()
    tile = Tree()
    tile.feed(_chromium.dom(chromium, _chromium.page_url(page, tile=(0, 0))))
    detail = next(a for tag, a, _ in tile.elements if a.get("id") == "detail")
    self.assertNotIn("hidden", detail)
    shown = within(tile, "detail")
    self.assertLen([a for tag, a, _ in shown if tag == "img"], n_s)
    self.assertLen([a for tag, a, _ in shown if a.get("class") == "rf"], n_s)  # the whole box, off the image
    self.assertLen([a for tag, a, up in shown if a.get("class") == "rfin" and (None, "clip") in up], n_s)  # on it
    # The frame holds the whole box (inception_4c/5x5's 299 px RF at a 224 px corner), not cut at 25 %.
    style = lambda a: {k.strip(): float(v.strip()[:-2]) for k, v in  # noqa: E731
                       (kv.split(":") for kv in a["style"].split(";") if kv.strip())}
    frames = [style(a) for tag, a, _ in shown if a.get("class") == "frame big"]
    boxes = [style(a) for tag, a, _ in shown if a.get("class") == "rf"]
    for f, b in zip(frames, boxes):
      self.assertGreaterEqual(min(b["top"], b["left"]), 0, (f, b))
      self.assertLessEqual(b["top"] + b["height"], f["height"] + 0.5, (f, b))
      self.assertLessEqual(b["left"] + b["width"], f["width"] + 0.5, (f, b))
    cell = Tree()
    cell.feed(_chromium.dom(chromium, _chromium.page_url(page, cell=(0, 0))))
    body = next(a for tag, a, _ in cell.elements if a.get("id") == "pairbody")
    self.assertNotIn("hidden", body)
    cuts = [a for tag, a, up in within(cell, "pairbody") if tag == "img" and (None, "cut") in up]
    self.assertLen(cuts, 2 * n_s)  # both positions' starts, each cut to the common window
    for a in cuts:
      self.assertIn("cut to the common window", a["alt"])
    # A pair whose bootstrap collapsed shows no interval, only the value, n and the exact bound.
    (i, j), = [t["position"] for t in summary["tiles"] if t["psi_degenerate"]]
    text = _chromium.dom(chromium, _chromium.page_url(page, cell=(i, j)))
    self.assertIn(f"psi_auc 1.00 (n = {n_s}, no interval; exact bound [-0.20, 1.00])", text)


if __name__ == "__main__":
  absltest.main()

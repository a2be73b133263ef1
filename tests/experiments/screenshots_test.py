"""experiments.screenshots: URLs, names, trimming, and a clear error without Chromium (no browser needed),
plus one real screenshot where Chromium is installed."""

import os
import shutil

import numpy as np
from absl.testing import absltest

from experiments import screenshots
from rfspec.errors import UserError


class HelpersTest(absltest.TestCase):

  def test_page_url_carries_the_view(self):
    path = os.path.join(self.create_tempdir().full_path, "my atlas.html")
    url = screenshots.page_url(path, cell=(0, 13))
    self.assertTrue(url.startswith("file:///"), url)
    self.assertTrue(url.endswith("/my%20atlas.html?cell=0,13"), url)
    self.assertEqual(screenshots.page_url(path), url.split("?")[0])

  def test_names(self):
    self.assertEqual(screenshots.shot_name("/x/atlas.html"), "atlas.png")
    self.assertEqual(screenshots.shot_name("/x/atlas.html", cell=(0, 13)), "atlas_cell_0_13.png")
    self.assertEqual(screenshots.shot_name("/x/atlas_psi.png"), "atlas_psi.png")

  def test_positions(self):
    self.assertEqual(screenshots.parse_position("6,13"), (6, 13))
    for bad in ("6", "a,b", "-1,2", "1,2,3"):
      with self.assertRaisesRegex(UserError, r"I,J"):
        screenshots.parse_position(bad)

  def test_the_browser_runs_headless_with_a_throwaway_profile(self):
    cmd = screenshots.chromium_command("/usr/bin/chromium", "file:///a.html?cell=1,2", "/o.png", (800, 600), "/p")
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
        screenshots.find_chromium("")
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
    size = screenshots.finish(path, max_kb=40)
    im = Image.open(path)
    self.assertEqual(im.size, (300, 116))  # the content and a 16 px band
    self.assertLessEqual(size, os.path.getsize(path))
    self.assertEqual(im.mode, "P")  # quantised: the truecolour PNG was over 40 KB


class ChromiumTest(absltest.TestCase):

  def test_a_page_sees_its_view_parameter(self):
    """Where Chromium is installed: ?cell=I,J reaches the page's script when opened from disk."""
    if not any(shutil.which(b) for b in screenshots.BROWSERS):
      self.skipTest("Chromium is not installed")
    from PIL import Image

    folder = self.create_tempdir().full_path
    page = os.path.join(folder, "p.html")
    open(page, "w").write(
        "<!doctype html><html><body style='margin:0'><div id='d' style='width:200px;height:200px;background:#00f'>"
        "</div><script>if (new URLSearchParams(location.search).get('cell') === '2,3') "
        "document.getElementById('d').style.background = '#f00';</script></body></html>")
    out = os.path.join(folder, "shot.png")
    chromium = screenshots.find_chromium()
    screenshots.screenshot(chromium, screenshots.page_url(page, cell=(2, 3)), out, (400, 300), max_kb=1000)
    shot = np.asarray(Image.open(out).convert("RGB"))
    np.testing.assert_array_equal(shot[100, 100], [255, 0, 0])  # the script saw cell=2,3 (else blue)


if __name__ == "__main__":
  absltest.main()

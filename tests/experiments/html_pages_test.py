"""Every HTML page the binaries write (their quick configs) works offline and says it is a smoke test.

The pages are those of the suite's quick runs (tests/experiments/quick_runs.py: reproduce_paper,
position_atlas, specificity), parsed with html.parser: every referenced local file exists beside
the page, every <img> has alt text, nothing is fetched from the network (no http:, https: or
protocol-relative // in any attribute, script or style; plain text may name a URL), and the
smoke-test line is on the page.
"""

import html.parser
import os
import re

import pytest
from absl.testing import absltest

from rfspec import report
from tests.experiments import quick_runs

# Attributes whose value is a URL the browser loads or follows.
URL_ATTRS = ("src", "href", "srcset", "poster", "data", "action", "formaction", "background")
EXTERNAL = re.compile(r"^\s*(https?:)?//", re.I)
EXTERNAL_IN_CODE = re.compile(r"(https?:)?//[\w.-]+\.\w", re.I)  # a host name after //, in a script or style
CSS_URL = re.compile(r"url\(\s*['\"]?([^'\")]+)", re.I)


class Page(html.parser.HTMLParser):
  """Every URL a page references, its <img> tags, its visible text, and its scripts and styles."""

  def __init__(self):
    super().__init__(convert_charrefs=True)
    self.urls, self.imgs, self.text, self.code = [], [], [], []
    self._in = []

  def handle_starttag(self, tag, attrs):
    attrs = dict(attrs)
    if tag == "img":
      self.imgs.append(attrs)
    for name in URL_ATTRS:
      if attrs.get(name):
        values = [v.strip().split()[0] for v in attrs[name].split(",")] if name == "srcset" else [attrs[name]]
        self.urls.extend((tag, name, v) for v in values if v)
    if attrs.get("style"):
      self.code.append(attrs["style"])
    self._in.append(tag)

  def handle_endtag(self, tag):
    if tag in self._in:
      del self._in[len(self._in) - 1 - self._in[::-1].index(tag):]

  def handle_data(self, data):
    if self._in and self._in[-1] in ("script", "style"):
      self.code.append(data)
    else:
      self.text.append(data)


def local_file(url):
  """The relative path a URL names, or None for an in-page or inline reference."""
  if url.startswith(("#", "data:", "javascript:")):
    return None
  return url.split("#")[0].split("?")[0] or None


@pytest.mark.slow
class HtmlPagesTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.pages = quick_runs.html_pages()

  def test_every_binary_wrote_its_page(self):
    names = {binary: sorted(os.path.basename(p) for p in pages) for binary, pages in self.pages.items()}
    self.assertEqual(names, {"reproduce_paper": ["report.html"], "position_atlas": ["atlas.html"],
                             "specificity": ["specificity.html"]})

  def test_pages_work_offline_describe_their_images_and_say_smoke_test(self):
    for binary, paths in self.pages.items():
      for path in paths:
        with self.subTest(page=os.path.relpath(path, os.path.dirname(os.path.dirname(path)))):
          with open(path, encoding="utf-8") as f:
            text = f.read()
          page = Page()
          page.feed(text)
          page.close()
          self.assertTrue(text.rstrip().endswith("</html>"), f"{binary}: the page is cut short")
          for tag, attr, url in page.urls:
            self.assertNotRegex(url, EXTERNAL, f"{binary}: <{tag} {attr}> loads {url[:80]} from the network")
            path_of = local_file(url)
            if path_of:
              self.assertTrue(os.path.isfile(os.path.join(os.path.dirname(path), path_of)),
                              f"{binary}: <{tag} {attr}={url!r}> names a file that does not exist")
          for code in page.code:  # scripts and styles fetch nothing either
            self.assertNotRegex(code, EXTERNAL_IN_CODE, f"{binary}: a script or style names a URL")
            for url in CSS_URL.findall(code):
              self.assertIsNone(EXTERNAL.match(url), f"{binary}: CSS url({url[:80]})")
          for img in page.imgs:
            self.assertTrue(img.get("alt", "").strip(), f"{binary}: <img src={img.get('src', '')[:60]!r}> has no alt")
          self.assertIn(report.SMOKE_TEST, " ".join(" ".join(page.text).split()), f"{binary}: no smoke-test line")

  def test_the_checker_catches_what_it_checks(self):
    # A page with each fault, checked by the same parser: the test above can fail.
    page = Page()
    page.feed('<html><body><p>see https://example.org</p><img src="missing.png">'
              '<script src="//cdn.example.org/x.js"></script><a href="#top">top</a>'
              '<div style="background: url(https://example.org/b.png)"></div></body></html>')
    self.assertEqual([u for _, _, u in page.urls], ["missing.png", "//cdn.example.org/x.js", "#top"])
    self.assertEqual(page.imgs, [{"src": "missing.png"}])
    self.assertIn("see https://example.org", "".join(page.text))  # plain text may name a URL
    self.assertEqual(CSS_URL.findall(page.code[0]), ["https://example.org/b.png"])
    self.assertIsNone(local_file("#top"))
    self.assertEqual(local_file("fig4.png?v=2#x"), "fig4.png")


if __name__ == "__main__":
  absltest.main()

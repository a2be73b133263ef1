"""Screenshots of pages and figures as a reader sees them, taken by headless Chromium.

  python -m experiments.screenshots --out_dir=/tmp/shots /tmp/atlas_cpu/atlas.html --cell=0,0
  python -m experiments.screenshots --out_dir=/tmp/shots /tmp/atlas_cpu/atlas_psi.png --window=1000x500

For each input (an HTML page or a PNG figure) writes OUT_DIR/<name>.png; with --cell=I,J also
OUT_DIR/<name>_cell_I_J.png, the page opened as `<page>?cell=I,J` (the atlas page's own script
opens that heat-map cell, exactly as a click does), and with --tile=I,J likewise a tile's detail
(only for pages that have those views: the atlas page).
The screenshots are trimmed of the blank page below the content and re-encoded (PNG, optimised;
quantised to 256 colours when over --max_kb), so they can be kept in experiments/results/.

Chromium: the system's (`chromium`, `chromium-browser`, `google-chrome`, or $CHROMIUM), started
headless with no network services, a throwaway profile, and a virtual-time budget so the page's
scripts finish before the picture is taken. Pages are opened from disk (file://), as a reader would.
"""

from __future__ import annotations

import io
import os
import pathlib
import shutil
import subprocess
import sys
import tempfile
import urllib.parse

from absl import flags

from experiments import _cli

_OUT_DIR = flags.DEFINE_string("out_dir", None, "Where the screenshots go (created).", required=True)
_WINDOW = flags.DEFINE_string("window", "1400x1800", "Browser window WIDTHxHEIGHT in CSS px (the page is cut there).")
_CELL = flags.DEFINE_multi_string("cell", [], "I,J: also screenshot each page with that heat-map cell open.")
_TILE = flags.DEFINE_multi_string("tile", [], "I,J: also screenshot each page with that mosaic tile open.")
_MAX_KB = flags.DEFINE_integer("max_kb", 1000, "Quantise a screenshot to 256 colours when its PNG is larger.")
_CHROMIUM = flags.DEFINE_string("chromium", os.environ.get("CHROMIUM", ""), "Chromium binary; default: found on PATH.")

BROWSERS = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable")
# Headless, no first-run UI, nothing that phones home or updates itself.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--hide-scrollbars", "--force-device-scale-factor=1", "--virtual-time-budget=5000")


def find_chromium(given: str = "") -> str:
  """The Chromium binary to use: `given`, else the first of BROWSERS on PATH; UserError if none."""
  if given:
    path = shutil.which(given)
    if path is None:
      raise _cli.UserError(f"--chromium={given!r} is not an executable file; pass a Chromium binary or leave it "
                           "empty to search PATH.")
    return path
  for name in BROWSERS:
    path = shutil.which(name)
    if path:
      return path
  raise _cli.UserError(f"No Chromium found: none of {', '.join(BROWSERS)} is on PATH and $CHROMIUM is unset. Install "
                       "it (Debian: apt-get install -y chromium) or pass --chromium=/path/to/chromium.")


def parse_position(text: str) -> tuple[int, int]:
  """'I,J' -> (i, j) = (row, col) of the tap's grid; UserError otherwise."""
  try:
    i, j = (int(v) for v in text.split(","))
  except ValueError:
    raise _cli.UserError(f"A position is I,J (row, col of the tap's grid), e.g. --cell=0,2; got {text!r}.") from None
  if i < 0 or j < 0:
    raise _cli.UserError(f"A position is I,J with row and col >= 0, e.g. --cell=0,2; got {text!r}.")
  return i, j


def page_url(path: str | os.PathLike, **view: tuple[int, int]) -> str:
  """file:// URL of a page, with view parameters: page_url(p, cell=(0, 2)) -> 'file:///.../p?cell=0,2'."""
  url = pathlib.Path(path).resolve().as_uri()
  if view:
    url += "?" + urllib.parse.urlencode({k: f"{v[0]},{v[1]}" for k, v in view.items()}, safe=",")
  return url


def shot_name(path: str | os.PathLike, **view: tuple[int, int]) -> str:
  """The screenshot's file name: 'atlas.png', 'atlas_cell_0_2.png'."""
  stem = pathlib.Path(path).stem
  return "_".join([stem] + [f"{k}_{v[0]}_{v[1]}" for k, v in view.items()]) + ".png"


def chromium_command(chromium: str, url: str, out: str, window: tuple[int, int], profile: str) -> list[str]:
  return [chromium, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", f"--window-size={window[0]},{window[1]}",
          f"--screenshot={out}", url]


def finish(path: str, max_kb: int) -> int:
  """Trims the blank rows under the content, re-encodes the PNG (quantised if still over max_kb).
  Returns the file's size in bytes."""
  import numpy as np
  from PIL import Image

  from rfspec import files

  im = Image.open(path).convert("RGB")
  arr = np.asarray(im)
  blank = np.all(arr == arr[-1:, :1], axis=(1, 2))  # rows the colour of the bottom-left pixel
  content = np.flatnonzero(~blank)
  if content.size:
    im = im.crop((0, 0, im.width, min(im.height, int(content[-1]) + 1 + 16)))  # keep a 16 px band
  for quantise in (False, True):
    # Octree keeps rare colours (an RF line, a colour bar's end) that median cut merges into common ones.
    out = im.quantize(256, method=Image.Quantize.FASTOCTREE) if quantise else im
    buf = io.BytesIO()
    out.save(buf, format="PNG", optimize=True)
    if buf.tell() <= max_kb * 1024 or quantise:
      files.atomic_write(path, buf.getvalue())
      return buf.tell()
  return os.path.getsize(path)


def screenshot(chromium: str, url: str, out: str, window: tuple[int, int], max_kb: int) -> int:
  """One screenshot of `url` at `out`; returns its size in bytes."""
  with tempfile.TemporaryDirectory(prefix="rfspec-chromium-") as profile:
    tmp = os.path.join(profile, "shot.png")
    proc = subprocess.run(chromium_command(chromium, url, tmp, window, profile), capture_output=True, text=True,
                          timeout=180)
    if proc.returncode != 0 or not os.path.isfile(tmp):
      tail = " ".join(proc.stderr.split()[-40:])
      raise _cli.UserError(f"Chromium could not screenshot {url} (exit {proc.returncode}): {tail}")
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    shutil.move(tmp, out)
  return finish(out, max_kb)


def views_of(path: str, views: list[dict]) -> list[dict]:
  """The views to screenshot of one input: all of `views` for a page that opens them (the atlas page's
  ?cell= / ?tile=), else the plain view only (a PNG, or a page without them, would give copies)."""
  plain = [v for v in views if not v]
  if path.endswith((".html", ".htm")):
    with open(path, encoding="utf-8", errors="replace") as f:
      if "atlasView(" in f.read():
        return list(views)
  return plain or [dict()]


def dom(chromium: str, url: str, window: tuple[int, int] = (1400, 1800)) -> str:
  """The page's DOM after its scripts ran (Chromium's --dump-dom), e.g. to check what a view opens."""
  with tempfile.TemporaryDirectory(prefix="rfspec-chromium-") as profile:
    cmd = chromium_command(chromium, url, "", window, profile)
    cmd = [c for c in cmd if not c.startswith("--screenshot")]
    proc = subprocess.run(cmd[:-1] + ["--dump-dom", url], capture_output=True, text=True, timeout=180)
  if proc.returncode != 0:
    tail = " ".join(proc.stderr.split()[-40:])
    raise _cli.UserError(f"Chromium could not open {url} (exit {proc.returncode}): {tail}")
  return proc.stdout


def main(argv):
  inputs = argv[1:]
  if not inputs:
    raise _cli.UserError("Name the pages or PNG figures to screenshot, e.g. python -m experiments.screenshots "
                         "--out_dir=/tmp/shots /tmp/atlas_cpu/atlas.html.")
  for p in inputs:
    if not os.path.isfile(p) or not p.endswith((".html", ".htm", ".png")):
      raise _cli.UserError(f"{p!r} is not an .html page or a .png figure on disk.")
  try:
    window = tuple(int(v) for v in _WINDOW.value.lower().split("x"))
    assert len(window) == 2 and min(window) > 0
  except (ValueError, AssertionError):
    raise _cli.UserError(f"--window is WIDTHxHEIGHT in px, e.g. 1400x1800; got {_WINDOW.value!r}.") from None
  views = [dict()] + [dict(cell=parse_position(v)) for v in _CELL.value] + [dict(tile=parse_position(v))
                                                                          for v in _TILE.value]
  chromium = find_chromium(_CHROMIUM.value)
  for p in inputs:
    for view in views_of(p, views):
      out = os.path.join(_OUT_DIR.value, shot_name(p, **view))
      size = screenshot(chromium, page_url(p, **view), out, window, _MAX_KB.value)
      print(f"screenshots: {out} ({size / 1024:.0f} KB)", file=sys.stderr, flush=True)
  print(f"screenshots: {len(inputs)} input(s) -> {_OUT_DIR.value}")


if __name__ == "__main__":
  _cli.run(main)

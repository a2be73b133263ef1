"""Screenshots of pages and figures as a reader sees them, taken by headless Chromium.

  python -m experiments.screenshots --out_dir=/tmp/shots /tmp/atlas_cpu/atlas.html --cell=0,0
  python -m experiments.screenshots --out_dir=/tmp/shots /tmp/atlas_cpu/atlas_psi.png --window=1000x500

For each input (an HTML page or a PNG figure) writes OUT_DIR/<name>.png; with --cell=I,J also
OUT_DIR/<name>_cell_I_J.png, the page opened as `<page>?cell=I,J` (the atlas page's own script
opens that heat-map cell, exactly as a click does), and with --tile=I,J likewise a tile's detail
(only for pages that have those views: the atlas page).
The screenshots are trimmed of the blank page below the content and re-encoded (PNG, optimised;
quantised to 256 colours when over --max_kb), so they can be kept in experiments/results/.

Chromium: the system's, or --chromium (see experiments/_chromium.py).
"""

from __future__ import annotations

import os
import sys

from absl import flags

from experiments import _cli
from experiments._chromium import find_chromium, page_url, screenshot, shot_name, views_of

_OUT_DIR = flags.DEFINE_string("out_dir", None, "Where the screenshots go (created).", required=True)
_WINDOW = flags.DEFINE_string("window", "1400x1800", "Browser window WIDTHxHEIGHT in CSS px (the page is cut there).")
_CELL = flags.DEFINE_multi_string("cell", [], "I,J: also screenshot each page with that heat-map cell open.")
_TILE = flags.DEFINE_multi_string("tile", [], "I,J: also screenshot each page with that mosaic tile open.")
_MAX_KB = flags.DEFINE_integer("max_kb", 1000, "Quantise a screenshot to 256 colours when its PNG is larger.")
_CHROMIUM = flags.DEFINE_string("chromium", os.environ.get("CHROMIUM", ""), "Chromium binary; default: found on PATH.")


def parse_position(text: str) -> tuple[int, int]:
  """'I,J' -> (i, j) = (row, col) of the tap's grid; UserError otherwise."""
  try:
    i, j = (int(v) for v in text.split(","))
  except ValueError:
    raise _cli.UserError(f"A position is I,J (row, col of the tap's grid), e.g. --cell=0,2; got {text!r}.") from None
  if i < 0 or j < 0:
    raise _cli.UserError(f"A position is I,J with row and col >= 0, e.g. --cell=0,2; got {text!r}.")
  return i, j


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

"""Headless Chromium for experiments.screenshots and the page tests: find it, open a page from disk
with a view (`?cell=I,J`), take a trimmed, re-encoded screenshot, or dump the DOM after the page's
scripts ran.

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
import tempfile
import urllib.parse

from experiments import _cli

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

"""Every picture rfspec draws: matplotlib figures (Figure objects, no pyplot state) and the
paper-style image grids (a uint8 canvas drawn with PIL, pixel-exact so tests can check it).

Nothing here touches the disk: `rfspec.files.write_png` / `rfspec.files.save_figure` write the results.

Image grids (`render_grid`): rows x columns of visualizations, each image inside a white margin.
The image's own pixels are never drawn over (they may be shown enlarged, each pixel an s x s
block, so a small image still makes a readable panel). What the margin shows about the node's
receptive field (RF) box, in image pixel coordinates (y, x) = (row, col):
  * the RF outline (red, `RF_LINE_PX` wide, inside the box) wherever it lies in the margin, i.e.
    off the image: dashed (`DASH_PX` on, `DASH_PX` off, from the box's corner), because that part
    of the RF is clipped;
  * an RF edge that crosses the image is marked by a solid tick (`RF_TICK_PX` long) in the margin
    on each side where the box does not already reach into the margin, like crop marks;
  * the off-image share of the RF as thin diagonal hatching (every `HATCH_PERIOD`-th diagonal,
    light red) -- clipped to the margin; the caption carries the exact share.
Every image gets a 1 px grey border just outside it (in the margin), so a pale image still shows
where it ends; the RF outline and ticks are drawn over that border, the hatching is not.
With `insets=True`, a cell whose RF side is under `INSET_MAX_RF_SHARE` of the image side also shows
the RF box zoomed beside the image: nearest-neighbour (each image pixel a block of zoom x zoom
panel pixels), labelled with its zoom ("RF box x11"), its off-image part white and hatched, and
framed by the RF outline: solid where the box's edge lies on the image, dashed where it is clipped.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

from rfspec import geometry
from rfspec.errors import UserError
from rfspec.files import to_uint8

__all__ = ["BORDER_COLOUR", "DASH_PX", "DEFAULT_DPI", "HATCH_COLOUR", "HATCH_PERIOD", "INSET_MAX_RF_SHARE",
           "MIN_PANEL_PX", "RF_COLOUR", "RF_LINE_PX", "RF_TICK_PX", "atlas_mosaic", "atlas_psi_figure", "grid_geometry",
           "inset_label", "inset_zoom", "paper_figure", "plot_inside_fractions", "plot_pct_inside", "render_grid",
           "specificity_figure"]

RF_COLOUR = (220, 30, 30)
BORDER_COLOUR = (150, 150, 150)
HATCH_COLOUR = (240, 150, 150)
RF_LINE_PX = 2
RF_TICK_PX = 10
HATCH_PERIOD = 6  # a hatch pixel where (y + x) % HATCH_PERIOD == 0
DASH_PX = 6  # dashes of the clipped RF outline: DASH_PX on, DASH_PX off
INSET_GAP = 6  # px between an image's margin and its RF inset's outline
# An RF whose side is under this share of the image side is a speck in the full image (conv2/3x3:
# 19 px on 224): the figure adds a zoomed inset of its box.
INSET_MAX_RF_SHARE = 0.25
# Panels at least 3 cm wide at matplotlib's default 100 dpi (119 px): smaller images are shown
# enlarged by a whole factor (nearest neighbour).
DEFAULT_DPI = 100
MIN_PANEL_PX = math.ceil(3.0 / 2.54 * DEFAULT_DPI)

_SMALL, _BIG = 13, 17  # font sizes (px) of labels and of the title
_PAD = 6
_CAPTION_GAP = 4  # px between a cell's frame (its RF drawing may reach its edge) and its caption


# ----------------------------------------------------------------------------- image grids


def _font(size: int):
  from PIL import ImageFont

  try:
    return ImageFont.load_default(size=size)
  except TypeError:  # Pillow < 10.1 has one bitmap size
    return ImageFont.load_default()


def _text_hw(text: str, size: int) -> tuple[int, int]:
  """(height, width) in px of `text` (may be multi-line) in the default font at `size`; (0, 0) if empty."""
  from PIL import Image, ImageDraw

  if not text:
    return 0, 0
  left, top, right, bottom = ImageDraw.Draw(Image.new("RGB", (1, 1))).multiline_textbbox(
      (0, 0), str(text), font=_font(size))
  return bottom, right  # from the anchor (0, 0), so the ascender gap counts


def inset_zoom(box, image_hw: tuple[int, int]) -> int:
  """The zoom of a cell's RF inset: 0 (no inset) unless the box's side is under
  `INSET_MAX_RF_SHARE` of the image's shorter side; then min(H, W) // side (at least 2), so the
  inset is about as large as the image. A box with bottom <= top is no box (0)."""
  t, l, b, r = (int(v) for v in box)
  side, short = b - t, min(int(v) for v in image_hw)
  if side <= 0 or side >= INSET_MAX_RF_SHARE * short:
    return 0
  return max(2, short // side)


def _display_scale(image_hw: tuple[int, int], min_panel_px: int) -> int:
  return max(1, -(-int(min_panel_px) // min(int(v) for v in image_hw))) if min_panel_px else 1


def inset_label(zoom: int) -> str:
  """The words beside an RF inset: its zoom, e.g. "RF box x11" (each image pixel is zoom x zoom)."""
  return f"RF box x{zoom}"


def grid_geometry(rows: int, cols: int, image_hw: tuple[int, int], *, title: str = "", row_labels=(),
                  col_labels=(), captions=None, margin: int | None = None, gap: int = 8, boxes=None,
                  insets: bool = False, min_panel_px: int = 0) -> dict:
  """Pixel layout of `render_grid`'s canvas for the same arguments, so callers and tests can find
  each cell.

  The canvas is, top to bottom: the title band [0, title_h), the column-label band
  [title_h, title_h + header_h), then `rows` cells of height `cell_h`; left to right: the
  row-label band [0, label_w), then column c's cells from `col_left[c]`, `col_w[c]` wide. Bands
  are sized from the text they hold, so the title, the column labels and the captions never
  overlap each other or an image. Each image is shown `scale` times enlarged (Hs, Ws = H * scale,
  W * scale). Cell (r, c)'s image occupies canvas rows [top, top + Hs) and columns
  [left, left + Ws), with `top = title_h + header_h + r * cell_h + margin` and
  `left = col_left[c] + margin`; its column label starts at column `left - margin`, its caption
  band [top - margin + frame_h, + caption_h). Its RF inset, if `zoom[r][c]` > 0, occupies rows
  [top, top + side * zoom * scale) and columns from `left + Ws + margin + INSET_GAP + RF_LINE_PX`,
  with its label below it (side = the box's side in image px).

  Args:
    rows, cols: grid shape.
    image_hw: (H, W) of every image.
    title, row_labels, col_labels, captions: the texts `render_grid` draws (they size the bands).
    margin: px of margin around each shown image (default 20 % of its longer side, at least 8).
    gap: px between columns (rows: 3 gaps).
    boxes, insets: as in `render_grid` (they decide which cells have an inset).
    min_panel_px: show images enlarged by the smallest whole factor that makes them at least
      this many px on their shorter side (0: as they are).

  Returns:
    dict with scale, margin, gap, title_h, header_h, label_w, caption_h, frame_h, cell_h, col_w,
    col_left, cell_w (the widest column), zoom [rows][cols], inset_w [cols], height, width.
  """
  h, w = (int(v) for v in image_hw)
  s = _display_scale((h, w), min_panel_px)
  hs, ws = h * s, w * s
  margin = max(8, round(0.2 * max(hs, ws))) if margin is None else int(margin)
  zoom = [[inset_zoom(np.asarray(boxes)[r, c], (h, w)) if insets and boxes is not None else 0 for c in range(cols)]
          for r in range(rows)]
  side = lambda r, c: int(np.asarray(boxes)[r, c][2] - np.asarray(boxes)[r, c][0])  # noqa: E731
  inset_px = [[side(r, c) * zoom[r][c] * s if zoom[r][c] else 0 for c in range(cols)] for r in range(rows)]
  label_h = _text_hw(inset_label(10), _SMALL)[0]
  inset_w = []
  for c in range(cols):
    widest = max([inset_px[r][c] + 2 * RF_LINE_PX for r in range(rows) if zoom[r][c]]
                 + [_text_hw(inset_label(zoom[r][c]), _SMALL)[1] for r in range(rows) if zoom[r][c]] + [0])
    inset_w.append(INSET_GAP + widest if widest else 0)
  title_h = _text_hw(title, _BIG)[0] + 2 * _PAD if title else 0
  header_h = max([_text_hw(str(t), _SMALL)[0] for t in col_labels] + [0]) + _PAD
  label_w = max([_text_hw(str(t), _SMALL)[1] for t in row_labels] + [0]) + 2 * _PAD
  caption_h = max([_text_hw(str(t), _SMALL)[0] for row in (captions or ()) for t in row] + [0]) + 2 + _CAPTION_GAP
  tallest_inset = max([v for row in inset_px for v in row] + [0])
  # The inset, its outline and its label must end above the caption band.
  frame_h = max(hs + 2 * margin, margin + tallest_inset + RF_LINE_PX + 2 + label_h if tallest_inset else 0)
  cell_h = frame_h + caption_h + 3 * gap  # rows further apart than columns: a caption reads with its own row
  col_w = []
  for c in range(cols):
    texts = ([str(col_labels[c])] if c < len(col_labels) else []) + [str(row[c]) for row in (captions or ())]
    col_w.append(max([ws + 2 * margin + inset_w[c]] + [_text_hw(t, _SMALL)[1] for t in texts]) + gap)
  col_left = [label_w + sum(col_w[:c]) for c in range(cols)]
  width = max(label_w + sum(col_w), _text_hw(title, _BIG)[1] + 2 * _PAD)
  return dict(scale=s, margin=margin, gap=gap, title_h=title_h, header_h=header_h, label_w=label_w,
              caption_h=caption_h, frame_h=frame_h, cell_h=cell_h, col_w=col_w, col_left=col_left,
              cell_w=max(col_w + [0]), zoom=zoom, inset_w=inset_w, height=title_h + header_h + rows * cell_h,
              width=width)


def _image_border(image_hw: tuple[int, int], margin: int) -> np.ndarray:
  """Boolean mask over one cell's frame [H + 2m, W + 2m]: the 1 px ring just outside the image."""
  h, w = image_hw
  ring = np.zeros((h + 2 * margin, w + 2 * margin), bool)
  ring[margin - 1:margin + h + 1, margin - 1:margin + w + 1] = True
  ring[margin:margin + h, margin:margin + w] = False
  return ring


def _dash_on(coord, origin) -> np.ndarray:
  return ((coord - origin) // DASH_PX) % 2 == 0


def _rf_layers(box, image_hw: tuple[int, int], margin: int) -> tuple[np.ndarray, np.ndarray]:
  """Boolean (hatch, line) masks over one cell's margin frame [H + 2m, W + 2m] (image at [m, m]).

  `box` = (top, left, bottom, right), half-open, in the shown image's pixels; may extend past the
  image. line = the dashed outline where it lies in the margin (off the image: clipped) plus the
  solid ticks where an edge crosses the image; hatch = the rest of the off-image RF on every
  `HATCH_PERIOD`-th diagonal. Both masks are False on the image itself.
  """
  h, w = image_hw
  m = margin
  t, l, b, r = (int(v) for v in box)
  y = np.arange(-m, h + m)[:, None]
  x = np.arange(-m, w + m)[None, :]
  in_image = (y >= 0) & (y < h) & (x >= 0) & (x < w)
  in_box = (y >= t) & (y < b) & (x >= l) & (x < r)
  k = RF_LINE_PX
  row_edge = ((y >= t) & (y < t + k)) | ((y >= b - k) & (y < b))
  col_edge = ((x >= l) & (x < l + k)) | ((x >= r - k) & (x < r))
  band = in_box & (row_edge | col_edge)
  # Dashes run along each edge from the box's corner: top and bottom edges by x, sides by y.
  dashed = in_box & ((row_edge & _dash_on(x, l)) | (col_edge & _dash_on(y, t)))
  # Ticks: an edge band that crosses the image's rows (cols) is continued RF_TICK_PX into a side
  # margin that the box itself does not reach.
  rows_in, cols_in = (y >= 0) & (y < h), (x >= 0) & (x < w)
  ticks = (row_edge & rows_in & (((x >= -RF_TICK_PX) & (x < 0) & (l >= 0))
                                 | ((x >= w) & (x < w + RF_TICK_PX) & (r <= w))))
  ticks |= (col_edge & cols_in & (((y >= -RF_TICK_PX) & (y < 0) & (t >= 0))
                                  | ((y >= h) & (y < h + RF_TICK_PX) & (b <= h))))
  line = (dashed | ticks) & ~in_image
  hatch = (in_box & ~in_image & ((y + x) % HATCH_PERIOD == 0) & ~band & ~ticks
           & ~_image_border(image_hw, m))
  return hatch, line


def _inset(image: np.ndarray, box, zoom: int, scale: int) -> tuple[np.ndarray, np.ndarray]:
  """The RF box of image [H, W, 3] uint8, zoomed: (pixels [n, n, 3] uint8, outline bool
  [n + 2k, n + 2k]) with n = side * zoom * scale and k = RF_LINE_PX.

  Each image pixel of the box becomes a block of (zoom * scale)^2 pixels (nearest neighbour); the
  box's off-image part is white, hatched on every `HATCH_PERIOD`-th diagonal. The outline rings the
  pixels: solid beside box pixels on the image, dashed (by `DASH_PX`) beside clipped ones.
  """
  h, w = image.shape[:2]
  t, l, b, r = (int(v) for v in box)
  side, f, k = b - t, zoom * scale, RF_LINE_PX
  u = np.arange(side)
  ys, xs = t + u, l + u
  on = ((ys >= 0) & (ys < h))[:, None] & ((xs >= 0) & (xs < w))[None, :]
  crop = np.full((side, side, 3), 255, np.uint8)
  crop[on] = image[np.clip(ys, 0, h - 1)][:, np.clip(xs, 0, w - 1)][on]
  pixels = np.repeat(np.repeat(crop, f, axis=0), f, axis=1)
  n = side * f
  big_on = np.repeat(np.repeat(on, f, axis=0), f, axis=1)
  yy, xx = np.mgrid[0:n, 0:n]
  pixels[~big_on & ((yy + xx) % HATCH_PERIOD == 0)] = HATCH_COLOUR
  fy, fx = np.mgrid[-k:n + k, -k:n + k]
  ring = ~((fy >= 0) & (fy < n) & (fx >= 0) & (fx < n))
  beside = big_on[np.clip(fy, 0, n - 1), np.clip(fx, 0, n - 1)]
  along_x = (fy < 0) | (fy >= n)  # top and bottom sides: dashes run along x
  dash = np.where(along_x, _dash_on(fx, -k), False) | np.where((fx < 0) | (fx >= n), _dash_on(fy, -k), False)
  return pixels, ring & (beside | dash)


def render_grid(images, *, boxes=None, row_labels=(), col_labels=(), captions=None, title: str = "",
                margin: int | None = None, insets: bool = False, min_panel_px: int = 0) -> np.ndarray:
  """Lays out a grid of visualizations, each with its node's RF box, as one uint8 image.

  The image pixels are pasted untouched (enlarged by a whole factor with `min_panel_px`); the RF
  box is drawn only in the margin around each image, and beside it zoomed when small (see the
  module docstring for the exact rules). RF beyond the margin is not drawn.

  Args:
    images: [R, C, H, W, 3] RGB in [0, 1] (or uint8).
    boxes: optional int [R, C, 4] RF boxes (top, left, bottom, right), half-open, in the image's
      pixel coordinates (y, x); may extend past the image. None draws no boxes (e.g. tiled); a
      box with bottom <= top draws nothing for its cell.
    row_labels: R strings, drawn left of each row (e.g. the position and its RF share inside).
    col_labels: C strings, drawn above each column (e.g. node type and seed).
    captions: optional [R][C] strings under each image (e.g. its final activation).
    title: text at the top left, in its own band.
    margin: px of margin around each shown image (default 20 % of its side).
    insets: add a zoomed RF inset to every cell whose RF side is under `INSET_MAX_RF_SHARE` of
      the image side (`inset_zoom`).
    min_panel_px: show the images enlarged (nearest neighbour, a whole factor) to at least this
      many px on their shorter side; boxes are scaled alike. `MIN_PANEL_PX` makes 3 cm panels.

  Returns:
    uint8 [height, width, 3] canvas; `grid_geometry` with the same arguments says where each
    cell lies.
  """
  from PIL import Image, ImageDraw

  images = np.asarray(images)
  if images.ndim != 5 or images.shape[-1] != 3:
    raise UserError(f"images must be [R, C, H, W, 3] (rows x columns of RGB images); got shape {images.shape}. "
                    "Stack a single image as images[None, None].")
  rows, cols, h, w, _ = images.shape
  g = grid_geometry(rows, cols, (h, w), title=title, row_labels=row_labels, col_labels=col_labels,
                    captions=captions, margin=margin, boxes=boxes, insets=insets, min_panel_px=min_panel_px)
  m, s, k = g["margin"], g["scale"], RF_LINE_PX
  hs, ws = h * s, w * s
  canvas = np.full((g["height"], g["width"], 3), 255, np.uint8)
  labels = []
  for r in range(rows):
    for c in range(cols):
      top = g["title_h"] + g["header_h"] + r * g["cell_h"] + m
      left = g["col_left"][c] + m
      image = images[r, c] if images.dtype == np.uint8 else to_uint8(images[r, c])
      canvas[top:top + hs, left:left + ws] = np.repeat(np.repeat(image, s, axis=0), s, axis=1)
      frame = canvas[top - m:top + hs + m, left - m:left + ws + m]
      frame[_image_border((hs, ws), m)] = BORDER_COLOUR
      box = None if boxes is None else np.asarray(boxes)[r, c]
      if box is None or box[2] <= box[0]:
        continue
      hatch, line = _rf_layers(np.asarray(box, np.int64) * s, (hs, ws), m)
      frame[hatch] = HATCH_COLOUR
      frame[line] = RF_COLOUR
      zoom = g["zoom"][r][c]
      if zoom:
        pixels, outline = _inset(image, box, zoom, s)
        n = len(pixels)
        il = left + ws + m + INSET_GAP + k
        canvas[top:top + n, il:il + n] = pixels
        canvas[top - k:top + n + k, il - k:il + n + k][outline] = RF_COLOUR
        labels.append(((il - k, top + n + k + 2), inset_label(zoom)))
  pil = Image.fromarray(canvas)
  draw = ImageDraw.Draw(pil)
  small, big = _font(_SMALL), _font(_BIG)
  if title:
    draw.multiline_text((_PAD, _PAD), str(title), fill=(0, 0, 0), font=big)
  for c, label in enumerate(col_labels):
    draw.multiline_text((g["col_left"][c], g["title_h"]), str(label), fill=(0, 0, 0), font=small)
  for r in range(rows):
    row_top = g["title_h"] + g["header_h"] + r * g["cell_h"]
    if r < len(row_labels):
      text_h = _text_hw(str(row_labels[r]), _SMALL)[0]
      draw.multiline_text((_PAD, row_top + max(0, m + hs // 2 - text_h // 2)), str(row_labels[r]), fill=(0, 0, 0),
                          font=small)
    for c in range(cols):
      if captions is not None:
        draw.multiline_text((g["col_left"][c], row_top + g["frame_h"] + _CAPTION_GAP), str(captions[r][c]),
                            fill=(0, 0, 0), font=small)
  for xy, text in labels:
    draw.text(xy, text, fill=(0, 0, 0), font=small)
  return np.asarray(pil)


def _number(v: float) -> str:
  return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.3g}"


def _short_tap(tap: str) -> str:
  return tap.replace("/output", "").replace("inception_", "")


def paper_figure(figure, *, note: str = "") -> tuple[np.ndarray, dict]:
  """One of the paper's figures as a readable grid (`render_grid`).

  Rows are the figure's positions (one row when tiled); columns its panels x seeds. Each row is
  labelled with its position's name, its node's (i, j) = (row, col) and the share of the RF inside
  the image (per panel when the panels' taps differ); each column with the node type, its RF side
  and the seed; each image with its final activation. Images are shown at least `MIN_PANEL_PX`
  px (3 cm at `DEFAULT_DPI`); every node whose RF side is under a quarter of the image side gets
  a zoomed inset of its RF box (tiled: the centre node's, marked in the margin).

  Args:
    figure: a `rfspec.runs.figures.FigureResult`.
    note: a line under the title (e.g. `rfspec.report.SMOKE_TEST` for a quick run).

  Returns:
    (uint8 [height, width, 3], layout): `grid_geometry(R, C, **layout)` says where each cell lies.
  """
  from rfspec import geometry, masks

  panels = figure.panels
  n_rows = panels[0].images.shape[0]
  n_seeds = len(panels[0].seeds)
  hw = panels[0].images.shape[2:4]
  images = np.concatenate([p.images for p in panels], axis=1)
  boxes = np.zeros((n_rows, len(panels) * n_seeds, 4), np.int64)
  captions = [[""] * (len(panels) * n_seeds) for _ in range(n_rows)]
  col_labels = []
  for k, p in enumerate(panels):
    cols = slice(k * n_seeds, (k + 1) * n_seeds)
    col_labels += [f"{p.tap} ch{p.channel}\nRF {p.rf_size} px\nseed {int(s)}" for s in p.seeds]
    if figure.tiled:
      centre = masks.named_positions(p.tap, hw)["centre"]
      box = np.asarray(geometry.receptive_field(p.tap, hw).box(*centre))
      shown = inset_zoom(box, hw) > 0  # a small RF: show one node's box zoomed, so its scale is visible
      boxes[0, cols] = box if shown else 0
      for n, s in enumerate(p.seeds):
        captions[0][k * n_seeds + n] = (f"sum over all {p.grid[0]} x {p.grid[1]} nodes: "
                                        f"{_number(float(p.final_activation[0, n]))}"
                                        + (f"\ninset: centre node {tuple(int(v) for v in centre)}" if shown else ""))
    else:
      boxes[:, cols] = p.boxes[:, None]
      for r in range(n_rows):
        for n in range(n_seeds):
          captions[r][k * n_seeds + n] = f"activation {_number(float(p.final_activation[r, n]))}"
  if figure.tiled:
    row_labels = ["tiled:\nevery position\nat once"]
  else:
    row_labels = []
    for r in range(n_rows):
      lines = [panels[0].position_names[r]]
      by_tap = {p.tap: p for p in panels}  # panels of one tap share their nodes' positions
      for p in by_tap.values():
        i, j = (int(v) for v in p.positions[r])
        head = "" if len(by_tap) == 1 else f"{_short_tap(p.tap)}: "
        lines += [f"{head}(i, j) = ({i}, {j})", f"{'  ' if head else ''}RF {p.inside[r]:.0%} inside"]
      row_labels.append("\n".join(lines))
  title = figure.title + (f"\n{note}" if note else "")
  layout = dict(title=title, row_labels=row_labels, col_labels=col_labels, captions=captions, boxes=boxes,
                insets=True, min_panel_px=MIN_PANEL_PX)
  return render_grid(images, **layout), dict(layout, image_hw=tuple(hw))


# ----------------------------------------------------------------------------- position atlas

ATLAS_DASH_PX = (6, 4)  # dash and gap of the RF box's off-image part in the mosaic
# Under the mosaic's title: how to read the RF box, which the margin cuts (the caption has the exact share).
ATLAS_LEGEND = ("red: each tile's RF box, a thin line where its edge crosses the image, dashed off the image, "
                "cut at the margin's edge;\nunder each tile: its position (i, j) = (row, col){seed} and the share of "
                "its RF inside the image")
ATLAS_INSIDE_ALPHA = 0.7  # opacity of the RF edge where it crosses the image (the pattern stays visible)


def _dashed(draw, p0, p1, colour, width: int) -> None:
  """A dashed straight line from p0 to p1 (x, y), axis-aligned."""
  (x0, y0), (x1, y1) = p0, p1
  length = abs(x1 - x0) + abs(y1 - y0)
  dx, dy = np.sign(x1 - x0), np.sign(y1 - y0)
  dash, gap = ATLAS_DASH_PX
  t = 0
  while t < length:
    e = min(t + dash, length)
    draw.line([(x0 + dx * t, y0 + dy * t), (x0 + dx * e, y0 + dy * e)], fill=colour, width=width)
    t += dash + gap


def _split_segment(a: float, b: float, lo: float, hi: float) -> tuple[list, list]:
  """The parts of the interval [a, b] inside [lo, hi] and outside it: (inside, outside) lists."""
  inside = [(max(a, lo), min(b, hi))] if min(b, hi) > max(a, lo) else []
  outside = [(s, e) for s, e in ((a, min(b, lo)), (max(a, hi), b)) if e > s]
  return inside, outside


def atlas_layout(n_rows: int, n_cols: int, tile_hw: tuple[int, int], margin: int, *, title: str = "",
                 legend: str = "") -> dict:
  """Pixel layout of `atlas_mosaic`'s canvas: where each tile's image lies.

  Returns:
    dict(title_h, header_h, label_w, caption_h, cell_h, cell_w, margin, height, width, tile_hw); tile
    (r, c)'s image occupies rows [top, top + h) and cols [left, left + w) with
    top = title_h + header_h + r * cell_h + margin and left = label_w + c * cell_w + margin. The title
    band holds the title (large) and under it the legend (small).
  """
  h, w = tile_hw
  legend_hw = _text_hw(legend, _SMALL)
  title_h = (_text_hw(title, _BIG)[0] + legend_hw[0] + (_PAD if title and legend else 0) + 2 * _PAD
             if title or legend else 0)
  header_h = _text_hw("j = 0", _SMALL)[0] + _PAD
  label_w = _text_hw("i = 000", _SMALL)[1] + 2 * _PAD
  caption_h = 2 * (_text_hw("(0, 0)", _SMALL)[0] + 2)
  cell_h = h + 2 * margin + caption_h + _PAD
  cell_w = w + 2 * margin + _PAD
  return dict(title_h=title_h, header_h=header_h, label_w=label_w, caption_h=caption_h, cell_h=cell_h,
              cell_w=cell_w, margin=margin, tile_hw=(h, w), height=title_h + header_h + n_rows * cell_h,
              width=max(label_w + n_cols * cell_w, _text_hw(title, _BIG)[1] + 2 * _PAD, legend_hw[1] + 2 * _PAD))


def atlas_mosaic(images, boxes, inside, rows, cols, *, title: str = "", tile: int = 160, note: str = "",
                 legend: str | None = None, seeds=None) -> tuple[np.ndarray, dict]:
  """The position atlas as one picture: tile (r, c) at its place on the grid, each with its RF box.

  Rows are labelled "i = ..." and columns "j = ..." (positions (i, j) = (row, col) of the tap's
  grid); under each tile its (i, j) and the share of its RF inside the image. The RF box (red) is
  drawn solid where its edges cross the image (at `ATLAS_INSIDE_ALPHA`, so the pattern under it
  stays visible) and dashed where it lies off the image, in a white margin around the tile; a box
  that runs past the margin is cut at the margin's edge (the caption gives the exact share).

  Args:
    images: [R, C, H, W, 3] RGB in [0, 1] (one start per tile), tile (r, c) = node (rows[r], cols[c]).
    boxes: int [R, C, 4] full RF boxes (top, left, bottom, right), half-open, image px (y, x).
    inside: [R, C] share of each RF inside the image.
    rows, cols: the grid's i of each tile row and j of each tile column.
    title: drawn above the mosaic.
    tile: px of each tile's longer side (images resized with Lanczos; boxes scaled alike).
    note: a line under the title (e.g. `rfspec.report.SMOKE_TEST` for a quick run).
    legend: small text under the title; default `ATLAS_LEGEND` (how to read the RF box and the
      captions); "" for none.
    seeds: optional int [R, C], each tile's start seed, named in its caption.

  Returns:
    (uint8 [height, width, 3], layout): `atlas_layout`'s dict plus title, scale and tile_hw.
  """
  from PIL import Image, ImageDraw

  images = np.asarray(images)
  n_r, n_c, h, w, _ = images.shape
  scale = tile / max(h, w)
  th, tw = max(1, round(h * scale)), max(1, round(w * scale))
  b = np.asarray(boxes, np.float64) * scale
  # The margin holds the box's overhang, up to 40 % of the tile side (then the box is cut there).
  over = max(0.0, float(np.max(np.maximum.reduce([-b[..., 0], -b[..., 1], b[..., 2] - th, b[..., 3] - tw]))))
  margin = int(np.clip(np.ceil(over) + 4, 12, round(0.4 * max(th, tw))))
  title = str(title) + (f"\n{note}" if note else "") if title or note else ""
  if legend is None:
    legend = ATLAS_LEGEND.format(seed="" if seeds is None else ", its start seed")
  g = atlas_layout(n_r, n_c, (th, tw), margin, title=title, legend=legend)
  pil = Image.new("RGB", (g["width"], g["height"]), (255, 255, 255))
  draw = ImageDraw.Draw(pil)
  small, big = _font(_SMALL), _font(_BIG)
  if title:
    draw.multiline_text((_PAD, _PAD), title, fill=(0, 0, 0), font=big)
  if legend:
    below = _PAD + (_text_hw(title, _BIG)[0] + _PAD if title else 0)
    draw.multiline_text((_PAD, below), str(legend), fill=(60, 60, 60), font=small)
  overlay = Image.new("RGBA", pil.size, (0, 0, 0, 0))
  over_draw = ImageDraw.Draw(overlay)
  alpha = int(round(255 * ATLAS_INSIDE_ALPHA))
  for c, j in enumerate(cols):
    draw.text((g["label_w"] + c * g["cell_w"] + margin, g["title_h"]), f"j = {j}", fill=(0, 0, 0), font=small)
  for r, i in enumerate(rows):
    top = g["title_h"] + g["header_h"] + r * g["cell_h"] + margin
    draw.text((_PAD, top + th // 2 - _SMALL // 2), f"i = {i}", fill=(0, 0, 0), font=small)
    for c, j in enumerate(cols):
      left = g["label_w"] + c * g["cell_w"] + margin
      im = images[r, c] if images.dtype == np.uint8 else to_uint8(images[r, c])
      if (th, tw) != (h, w):
        im = np.asarray(Image.fromarray(im).resize((tw, th), Image.LANCZOS))
      pil.paste(Image.fromarray(im), (left, top))
      draw.rectangle([left - 1, top - 1, left + tw, top + th], outline=BORDER_COLOUR)
      t, l, bt, rt = (float(v) for v in b[r, c])
      # Each edge is cut to the cell (image + margin) and split into its on-image and off-image parts.
      lo_y, hi_y, lo_x, hi_x = -margin, th + margin - 1, -margin, tw + margin - 1
      edges = [("h", t, l, rt - 1), ("h", bt - 1, l, rt - 1), ("v", l, t, bt - 1), ("v", rt - 1, t, bt - 1)]
      for kind, at, a, e in edges:
        fixed_lo, fixed_hi, run_lo, run_hi = (lo_y, hi_y, lo_x, hi_x) if kind == "h" else (lo_x, hi_x, lo_y, hi_y)
        if not fixed_lo <= at <= fixed_hi:
          continue
        a, e = max(a, run_lo), min(e, run_hi)
        if e < a:
          continue
        on_image = 0 <= at < (th if kind == "h" else tw)
        span = (0, (tw if kind == "h" else th) - 1)
        ins, outs = _split_segment(a, e, *span) if on_image else ([], [(a, e)])
        point = (lambda v: (left + v, top + at)) if kind == "h" else (lambda v: (left + at, top + v))
        for s0, s1 in ins:
          over_draw.line([point(s0), point(s1)], fill=(*RF_COLOUR, alpha), width=1)
        for s0, s1 in outs:
          _dashed(draw, point(s0), point(s1), RF_COLOUR, RF_LINE_PX)
      seed = "" if seeds is None else f", seed {int(np.asarray(seeds)[r, c])}"
      cap = f"({i}, {j}){seed}\nRF {100 * float(inside[r][c]):.0f}% inside"
      draw.multiline_text((left, top + th + margin), cap, fill=(0, 0, 0), font=small)
  pil = Image.alpha_composite(pil.convert("RGBA"), overlay).convert("RGB")
  return np.asarray(pil), dict(g, title=title, legend=legend, scale=scale)


def _psi_cell_text(value, ci, reason: str, share: float, degenerate: bool = False, n_starts: int | None = None) -> str:
  if reason == "the reference itself":
    return "centre"
  if value is None or not np.isfinite(value):
    return f"n/a\nwindow {share:.0%}" if "window" in reason else "n/a"
  lo, hi = ci
  if degenerate:  # every draw agreed: no interval to show (the exact bound is in atlas.json and on the page)
    return f"{value:.2f}\n" + (f"n = {n_starts}, " if n_starts else "") + "no\ninterval*"
  return f"{value:.2f}\n[{lo:.2f}, {hi:.2f}]"


def atlas_psi_figure(psi, psi_ci, reasons, share, rows, cols, reference, *, title: str = "", degenerate=None,
                     note: str = "", n_starts: int | None = None):
  """Heat maps of the atlas's measure, on the (i, j) = (row, col) grid of the tiles.

  Left: psi_auc of each tile against the centre tile on their common RF-frame window (diverging,
  -1..1, 0 white = indistinguishable), each cell with its value and 95 % interval; "n/a" (grey) where
  undefined, with the window's share when it is too small; the centre tile framed in black and
  marked "centre". Right: the common window's share of the RF area (what the measure compares).

  Args:
    psi: [R, C] psi_auc (NaN where undefined); psi_ci: [R, C, 2]; reasons: [R][C] str ("" if defined).
    share: [R, C] the common window's area / the RF's area.
    rows, cols: the grid's i of each row and j of each column.
    reference: (r, c) of the centre tile.
    title: suptitle.
    degenerate: optional bool [R, C]: every bootstrap draw gave the same value, so there is no
      interval to show (only `metrics.interval`'s exact bound for that many starts): the cell reads
      "n = S, no interval*", explained under the panel.
    note: a line above the title (e.g. `rfspec.report.SMOKE_TEST` for a quick run).
    n_starts: starts per position (S), said in a cell without an interval.

  Returns:
    A matplotlib `Figure` (no pyplot state); its psi axes has the label "psi".
  """
  from matplotlib.figure import Figure
  from matplotlib.patches import Rectangle

  psi, share = np.asarray(psi, np.float64), np.asarray(share, np.float64)
  ci = np.asarray(psi_ci, np.float64)
  n_r, n_c = psi.shape
  degenerate = np.zeros((n_r, n_c), bool) if degenerate is None else np.asarray(degenerate, bool)
  cell = 0.72 if max(n_r, n_c) <= 6 else 0.42
  fig = Figure(figsize=(2.6 + 2 * cell * n_c + 1.6, 1.5 + cell * n_r), layout="constrained")
  ax_psi, ax_share = fig.subplots(1, 2)
  ax_psi.set_label("psi")
  size = 8 if max(n_r, n_c) <= 6 else 6
  for ax, values, name, cmap, (lo, hi) in (
      (ax_psi, psi, "psi_auc vs the centre tile\n(common RF-frame window, 95 % CI)", "RdBu_r", (-1.0, 1.0)),
      (ax_share, share, "common window / RF area", "cividis", (0.0, 1.0))):
    im = ax.imshow(np.ma.masked_invalid(values), cmap=cmap, vmin=lo, vmax=hi)
    ax.set_facecolor("#d0d0d0")
    for r in range(n_r):
      for c in range(n_c):
        v = values[r, c]
        if ax is ax_psi:
          text = _psi_cell_text(v, ci[r, c], reasons[r][c], share[r, c], degenerate[r, c], n_starts)
          dark = np.isfinite(v) and abs(v) > 0.6
        else:
          text, dark = f"{v:.0%}", v < 0.5
        ax.text(c, r, text, ha="center", va="center", fontsize=size, color="white" if dark else "black")
    r0, c0 = reference
    ax.add_patch(Rectangle((c0 - 0.5, r0 - 0.5), 1, 1, fill=False, edgecolor="black", linewidth=2.5))
    ax.set_xticks(range(n_c), [str(j) for j in cols], fontsize=8)
    ax.set_yticks(range(n_r), [str(i) for i in rows], fontsize=8)
    ax.set_xlabel("j (col)")
    ax.set_ylabel("i (row)")
    ax.set_title(name, fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8)
  if np.any(degenerate & np.isfinite(psi)):
    fig.supxlabel("* no interval: every bootstrap draw gave the same value, too few starts to say how precise "
                  "it is (the exact bound is on the page and in atlas.json)", fontsize=8)
  if title or note:
    fig.suptitle("\n".join(t for t in (note, title) if t), fontsize=10)
  return fig


def atlas_psi_heatmap(fig, *, dpi: int = 110) -> tuple[np.ndarray, np.ndarray]:
  """`atlas_psi_figure`'s figure as pixels, and where each psi cell lies in them (for a clickable page).

  Returns:
    (uint8 [height, width, 3], cells float [R, C, 4]): cell (r, c) of the psi panel as (left, top,
    right, bottom) fractions of the image's width and height.
  """
  from matplotlib.backends.backend_agg import FigureCanvasAgg

  fig.set_dpi(dpi)
  canvas = FigureCanvasAgg(fig)
  canvas.draw()
  width, height = canvas.get_width_height()
  pixels = np.asarray(canvas.buffer_rgba())[..., :3].copy()
  ax = next(a for a in fig.axes if a.get_label() == "psi")
  n_r, n_c = ax.get_images()[0].get_array().shape
  cells = np.zeros((n_r, n_c, 4))
  for r in range(n_r):
    for c in range(n_c):
      (x0, y0), (x1, y1) = ax.transData.transform([(c - 0.5, r - 0.5), (c + 0.5, r + 0.5)])
      # Display coordinates grow upwards; image rows grow downwards.
      cells[r, c] = (min(x0, x1) / width, 1 - max(y0, y1) / height, max(x0, x1) / width, 1 - min(y0, y1) / height)
  return pixels, cells


# ----------------------------------------------------------------------------- specificity sweep


def _tap_label(tap: str) -> str:
  return tap.replace("/output", "").replace("inception_", "")


def specificity_figure(summary):
  """The sweep at a glance: per tap, each position's (a) psi_auc against the centre on their common
  RF-frame window and (b) transfer T, against the RF's off-image share at that position; 95 %
  intervals; dashed, the truncation null (what truncation alone gives: the centre's pattern cut to
  the window).

  Args:
    summary: `rfspec.runs.sweep.summary(...)`.

  Returns:
    A matplotlib `Figure` (no pyplot state).
  """
  from matplotlib import colormaps
  from matplotlib.figure import Figure

  taps = sorted(summary["taps"], key=lambda t: t["rf_size"])
  fig = Figure(figsize=(13, 5.2), layout="constrained")
  axes = fig.subplots(1, 2)
  cmap = colormaps["viridis"]
  for ax, key, null_key, ylabel in (
      (axes[0], "psi_vs_centre", "psi_truncation_null", "psi_auc(p, centre): 0 = same pattern, 1 = separable"),
      (axes[1], "transfer", "transfer_truncation_null", "transfer T: node's response to the other's pattern / own")):
    for n, t in enumerate(taps):
      colour = cmap(0.85 * n / max(len(taps) - 1, 1))  # viridis' light yellow end is unreadable on white
      off = 1.0 - np.asarray(t["inside"], np.float64)
      y = np.asarray([np.nan if v is None else v for v in t[key]], np.float64)
      cis = t[key + "_ci"]
      lo = np.asarray([np.nan if c["ci"] is None or c["ci"][0] is None else c["ci"][0] for c in cis])
      hi = np.asarray([np.nan if c["ci"] is None or c["ci"][1] is None else c["ci"][1] for c in cis])
      ok = np.flatnonzero(np.isfinite(y))
      ok = ok[np.argsort(off[ok], kind="stable")]  # drawn left to right (the mirror sits among the corners)
      ax.errorbar(off[ok] + 0.004 * n, y[ok], yerr=[y[ok] - lo[ok], hi[ok] - y[ok]], fmt="o-", color=colour, capsize=3,
                  lw=1, label=f"{_tap_label(t['tap'])} (RF {t['rf_size']} px)")
      null = np.asarray([np.nan if v is None else v for v in t[null_key]], np.float64)
      ax.plot(off[ok], null[ok], ls="--", color=colour, lw=0.8)
    ax.axhline(0 if key == "psi_vs_centre" else 1, color="grey", lw=0.7)
    ax.grid(alpha=0.3)
    ax.set_xlabel("share of the position's RF that lies off the image")
    ax.set_ylabel(ylabel)
    ax.legend(fontsize=8)
  st = summary["settings"]
  title = (f"Position specificity on the common RF-frame window, {st['image_hw'][0]} px, {st['steps']} steps "
           "(95 % intervals over channels and starts; dashed: truncation null)")
  if st.get("smoke_test"):
    title = "SMOKE TEST (tiny size and steps): checks the pipeline, not the science\n" + title
  fig.suptitle(title, fontsize=10)
  return fig


# ----------------------------------------------------------------------------- RF census


def _census_hw_label(hw) -> str:
  return f"{hw[0]}" if hw[0] == hw[1] else f"{hw[0]}x{hw[1]}"


def plot_pct_inside(rows: Sequence[dict[str, Any]], taps: Sequence[str] | None = None):
  """Figure: % of positions whose RF lies fully inside the image vs. depth, one line per input size.

  Depth is the tap's rank among `taps` (default: the trunk taps present in `rows`), labelled by name.
  Returns a matplotlib `Figure` (no pyplot state, no display).
  """
  from matplotlib.figure import Figure

  present = {r["tap"] for r in rows}
  taps = [t for t in (geometry.trunk_taps() if taps is None else taps) if t in present]
  fig = Figure(figsize=(9, 4.5), layout="constrained")
  ax = fig.add_subplot()
  for hw in dict.fromkeys(tuple(r["image_hw"]) for r in rows):
    by_tap = {r["tap"]: r for r in rows if tuple(r["image_hw"]) == hw}
    ax.plot(range(len(taps)), [by_tap[t]["pct_fully_inside"] for t in taps], marker="o", label=f"{_census_hw_label(hw)} px")
  ax.set_xticks(range(len(taps)))
  ax.set_xticklabels(taps, rotation=60, ha="right", fontsize=7)
  ax.set_ylabel("% of positions with RF fully inside")
  ax.set_xlabel("depth")
  ax.set_ylim(-3, 103)
  ax.grid(alpha=0.3)
  ax.legend(title="input")
  ax.set_title("Share of nodes whose receptive field lies wholly inside the image")
  return fig


def plot_inside_fractions(tap: str, sizes: Sequence[int | Sequence[int]]):
  """Figure: heatmaps of every node's inside fraction for `tap`, one panel per input size.

  Panel axes are the tap's grid, j (column) across and i (row) down. Returns a `Figure`.
  """
  from matplotlib.figure import Figure

  fig = Figure(figsize=(3.2 * len(sizes) + 1.0, 3.6), layout="constrained")
  axes = fig.subplots(1, len(sizes), squeeze=False)[0]
  for n, (ax, size) in enumerate(zip(axes, sizes)):
    rf = geometry.receptive_field(tap, size)
    im = ax.imshow(rf.inside_fractions(), vmin=0, vmax=1, cmap="viridis", interpolation="nearest")
    ax.set_title(f"{_census_hw_label(rf.image_hw)} px: grid {rf.grid[0]}x{rf.grid[1]}, RF {rf.size}", fontsize=8)
    ax.set_xlabel("j (column)")
    if n == 0:
      ax.set_ylabel("i (row)")
  fig.colorbar(im, ax=list(axes), shrink=0.8, label="inside fraction")
  fig.suptitle(f"{tap}: share of each node's RF inside the image")
  return fig

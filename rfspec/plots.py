"""Every picture rfspec draws: matplotlib figures (Figure objects, no pyplot state) and the
paper-style image grids (a uint8 canvas drawn with PIL, pixel-exact so tests can check it).

Nothing here touches the disk: `rfspec.files.write_png` / `rfspec.files.save_figure` write the results.

Image grids (`render_grid`): rows x columns of visualizations, each image inside a white margin.
The image's own pixels are never drawn over. What the margin shows about the node's receptive
field (RF) box, in image pixel coordinates (y, x) = (row, col):
  * the RF outline (red, `RF_LINE_PX` wide, inside the box) wherever it lies in the margin;
  * an RF edge that crosses the image is marked by a tick (`RF_TICK_PX` long, same red) in the
    margin on each side where the box does not already reach into the margin, like crop marks;
  * the off-image share of the RF as thin diagonal hatching (every `HATCH_PERIOD`-th diagonal,
    light red) -- clipped to the margin; the caption carries the exact share.
Every image gets a 1 px grey border just outside it (in the margin), so a pale image still shows
where it ends; the RF outline and ticks are drawn over that border, the hatching is not.
"""

from __future__ import annotations

import numpy as np

from rfspec.errors import UserError
from rfspec.files import to_uint8

__all__ = ["BORDER_COLOUR", "HATCH_COLOUR", "HATCH_PERIOD", "RF_COLOUR", "RF_LINE_PX", "RF_TICK_PX", "atlas_mosaic",
           "atlas_psi_figure", "grid_geometry", "render_grid", "specificity_figure"]

RF_COLOUR = (220, 30, 30)
BORDER_COLOUR = (150, 150, 150)
HATCH_COLOUR = (240, 150, 150)
RF_LINE_PX = 2
RF_TICK_PX = 10
HATCH_PERIOD = 6  # a hatch pixel where (y + x) % HATCH_PERIOD == 0

_SMALL, _BIG = 12, 16  # font sizes (px) of labels and of the title
_PAD = 6


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


def grid_geometry(rows: int, cols: int, image_hw: tuple[int, int], *, title: str = "", row_labels=(),
                  col_labels=(), captions=None, margin: int | None = None, gap: int = 8) -> dict:
  """Pixel layout of `render_grid`'s canvas for the same arguments, so callers and tests can find
  each cell.

  The canvas is, top to bottom: the title band [0, title_h), the column-label band
  [title_h, title_h + header_h), then `rows` cells of height `cell_h`; left to right: the
  row-label band [0, label_w), then `cols` cells of width `cell_w`. Bands are sized from the text
  they hold, so the title, the column labels and the captions never overlap each other or an image.
  A cell is as wide as its image with margins or its widest label, whichever is wider. Cell
  (r, c)'s image occupies canvas rows [top, top + H) and columns [left, left + W), with
  `top = title_h + header_h + r * cell_h + margin` and `left = label_w + c * cell_w + margin`; its
  column label and caption start at column `left - margin`, the caption at row `top + H + margin`.

  Args:
    rows, cols: grid shape.
    image_hw: (H, W) of every image.
    title, row_labels, col_labels, captions: the texts `render_grid` draws (they size the bands).
    margin: px of margin around each image (default 20 % of the longer image side, at least 8).
    gap: px between cells.

  Returns:
    dict with margin, gap, title_h, header_h, label_w, caption_h, cell_h, cell_w, height, width.
  """
  h, w = image_hw
  margin = max(8, round(0.2 * max(h, w))) if margin is None else int(margin)
  title_h = _text_hw(title, _BIG)[0] + 2 * _PAD if title else 0
  header_h = max([_text_hw(str(t), _SMALL)[0] for t in col_labels] + [0]) + _PAD
  label_w = max([_text_hw(str(t), _SMALL)[1] for t in row_labels] + [0]) + 2 * _PAD
  texts = [str(t) for t in col_labels] + [str(t) for row in (captions or ()) for t in row]
  caption_h = max([_text_hw(str(t), _SMALL)[0] for row in (captions or ()) for t in row] + [0]) + 2
  cell_h = h + 2 * margin + caption_h + gap
  cell_w = max([w + 2 * margin] + [_text_hw(t, _SMALL)[1] for t in texts]) + gap
  width = max(label_w + cols * cell_w, _text_hw(title, _BIG)[1] + 2 * _PAD)
  return dict(margin=margin, gap=gap, title_h=title_h, header_h=header_h, label_w=label_w,
              caption_h=caption_h, cell_h=cell_h, cell_w=cell_w,
              height=title_h + header_h + rows * cell_h, width=width)


def _image_border(image_hw: tuple[int, int], margin: int) -> np.ndarray:
  """Boolean mask over one cell's frame [H + 2m, W + 2m]: the 1 px ring just outside the image."""
  h, w = image_hw
  ring = np.zeros((h + 2 * margin, w + 2 * margin), bool)
  ring[margin - 1:margin + h + 1, margin - 1:margin + w + 1] = True
  ring[margin:margin + h, margin:margin + w] = False
  return ring


def _rf_layers(box, image_hw: tuple[int, int], margin: int) -> tuple[np.ndarray, np.ndarray]:
  """Boolean (hatch, line) masks over one cell's margin frame [H + 2m, W + 2m] (image at [m, m]).

  `box` = (top, left, bottom, right), half-open, in image pixels; may extend past the image.
  Both masks are False on the image itself.
  """
  h, w = image_hw
  m = margin
  t, l, b, r = (int(v) for v in box)
  y = np.arange(-m, h + m)[:, None]
  x = np.arange(-m, w + m)[None, :]
  in_image = (y >= 0) & (y < h) & (x >= 0) & (x < w)
  in_box = (y >= t) & (y < b) & (x >= l) & (x < r)
  k = RF_LINE_PX
  border = in_box & ~((y >= t + k) & (y < b - k) & (x >= l + k) & (x < r - k))
  # Ticks: an edge band that crosses the image's rows (cols) is continued RF_TICK_PX into a side
  # margin that the box itself does not reach.
  row_edge = ((y >= t) & (y < t + k)) | ((y >= b - k) & (y < b))
  col_edge = ((x >= l) & (x < l + k)) | ((x >= r - k) & (x < r))
  rows_in, cols_in = (y >= 0) & (y < h), (x >= 0) & (x < w)
  ticks = (row_edge & rows_in & (((x >= -RF_TICK_PX) & (x < 0) & (l >= 0))
                                 | ((x >= w) & (x < w + RF_TICK_PX) & (r <= w))))
  ticks |= (col_edge & cols_in & (((y >= -RF_TICK_PX) & (y < 0) & (t >= 0))
                                  | ((y >= h) & (y < h + RF_TICK_PX) & (b <= h))))
  line = (border | ticks) & ~in_image
  hatch = in_box & ~in_image & ((y + x) % HATCH_PERIOD == 0) & ~line & ~_image_border(image_hw, m)
  return hatch, line


def render_grid(images, *, boxes=None, row_labels=(), col_labels=(), captions=None, title: str = "",
                margin: int | None = None) -> np.ndarray:
  """Lays out a grid of visualizations, each with its node's RF box, as one uint8 image.

  The image pixels are pasted untouched; the RF box is drawn only in the margin around each image
  (see the module docstring for the exact rules). RF beyond the margin is not drawn.

  Args:
    images: [R, C, H, W, 3] RGB in [0, 1] (or uint8).
    boxes: optional int [R, C, 4] RF boxes (top, left, bottom, right), half-open, in the image's
      pixel coordinates (y, x); may extend past the image. None draws no boxes (e.g. tiled).
    row_labels: R strings, drawn left of each row (e.g. the position's name).
    col_labels: C strings, drawn above each column (e.g. node type and seed).
    captions: optional [R][C] strings under each image (e.g. its (i, j) and objective).
    title: text at the top left, in its own band.
    margin: px of margin around each image (default 20 % of the image side).

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
                    captions=captions, margin=margin)
  m = g["margin"]
  canvas = np.full((g["height"], g["width"], 3), 255, np.uint8)
  for r in range(rows):
    for c in range(cols):
      top = g["title_h"] + g["header_h"] + r * g["cell_h"] + m
      left = g["label_w"] + c * g["cell_w"] + m
      canvas[top:top + h, left:left + w] = images[r, c] if images.dtype == np.uint8 else to_uint8(images[r, c])
      frame = canvas[top - m:top + h + m, left - m:left + w + m]
      frame[_image_border((h, w), m)] = BORDER_COLOUR
      if boxes is not None:
        hatch, line = _rf_layers(np.asarray(boxes)[r, c], (h, w), m)
        frame[hatch] = HATCH_COLOUR
        frame[line] = RF_COLOUR
  pil = Image.fromarray(canvas)
  draw = ImageDraw.Draw(pil)
  small, big = _font(_SMALL), _font(_BIG)
  if title:
    draw.multiline_text((_PAD, _PAD), str(title), fill=(0, 0, 0), font=big)
  for c, label in enumerate(col_labels):
    draw.multiline_text((g["label_w"] + c * g["cell_w"], g["title_h"]), str(label), fill=(0, 0, 0), font=small)
  for r in range(rows):
    top = g["title_h"] + g["header_h"] + r * g["cell_h"] + m
    if r < len(row_labels):
      draw.multiline_text((_PAD, top + h // 2 - _SMALL), str(row_labels[r]), fill=(0, 0, 0), font=small)
    for c in range(cols):
      if captions is not None:
        draw.multiline_text((g["label_w"] + c * g["cell_w"], top + h + m), str(captions[r][c]),
                            fill=(0, 0, 0), font=small)
  return np.asarray(pil)


# ----------------------------------------------------------------------------- position atlas


def atlas_mosaic(images, boxes, inside, rows, cols, *, title: str = "", tile: int = 0) -> tuple[np.ndarray, dict]:
  """The position atlas as one picture: tile (r, c) at its grid position, via `render_grid`.

  Each tile keeps its own pixels; its RF outline, ticks and the hatched off-image share of the RF
  are drawn in the margin around it (see the module docstring), and its caption gives the share
  of the RF inside the image ("in 0.42").

  Args:
    images: [R, C, H, W, 3] RGB in [0, 1] (one seed), tile (r, c) = node (rows[r], cols[c]).
    boxes: int [R, C, 4] RF boxes (top, left, bottom, right), half-open, image pixels (y, x).
    inside: [R, C] share of each RF inside the image.
    rows, cols: the grid's i (row) of each tile row and j (col) of each tile column.
    title: drawn above the mosaic.
    tile: resize each image so its longer side is `tile` px (boxes scaled alike); 0 keeps it.

  Returns:
    (uint8 [height, width, 3], layout): layout = dict(title, row_labels, col_labels, captions,
    margin, image_hw) -- with it, `grid_geometry(R, C, **layout)` says where each tile lies.
  """
  from PIL import Image

  images = np.asarray(images)
  n_r, n_c, h, w, _ = images.shape
  boxes = np.asarray(boxes, np.float64)
  if tile and tile != max(h, w):
    scale = tile / max(h, w)
    nh, nw = max(1, round(h * scale)), max(1, round(w * scale))
    small = np.empty((n_r, n_c, nh, nw, 3), np.uint8)
    for r in range(n_r):
      for c in range(n_c):
        small[r, c] = np.asarray(Image.fromarray(to_uint8(images[r, c])).resize((nw, nh), Image.LANCZOS))
    images, boxes, h, w = small, boxes * scale, nh, nw
  layout = dict(title=title, row_labels=[f"i={i}" for i in rows], col_labels=[f"j={j}" for j in cols],
                captions=[[f"in {float(inside[r][c]):.2f}" for c in range(n_c)] for r in range(n_r)],
                margin=max(8, round(0.15 * max(h, w))))
  canvas = render_grid(images, boxes=np.round(boxes).astype(np.int64), **layout)
  return canvas, dict(layout, image_hw=(h, w))


def atlas_psi_figure(psi, inside, rows, cols, reference, *, title: str = "", space: str = ""):
  """Heat maps of the position atlas: PSI of each position against the reference, and the share of
  each position's RF inside the image, side by side on the (i, j) = (row, col) grid.

  Args:
    psi: [R, C] PSI vs the reference position (NaN: undefined, drawn grey with "n/a").
    inside: [R, C] inside fraction of each RF.
    rows, cols: the grid's i of each row and j of each column.
    reference: (r, c) index of the reference tile (marked with a star).
    title: suptitle; space: the similarity space PSI was measured in (shown in the panel title).

  Returns:
    A matplotlib `Figure` (no pyplot state).
  """
  from matplotlib.figure import Figure

  psi, inside = np.asarray(psi, np.float64), np.asarray(inside, np.float64)
  n_r, n_c = psi.shape
  fig = Figure(figsize=(4.2 + 0.45 * 2 * n_c, 1.6 + 0.45 * n_r), layout="constrained")
  axes = fig.subplots(1, 2)
  panels = ((psi, f"PSI vs centre ({space or 'pixel'})", "viridis", (0.0, max(1.0, np.nanmax(psi, initial=1.0)))),
            (inside, "RF share inside the image", "cividis", (0.0, 1.0)))
  for ax, (values, name, cmap, (lo, hi)) in zip(axes, panels):
    masked = np.ma.masked_invalid(values)
    im = ax.imshow(masked, cmap=cmap, vmin=min(lo, np.nanmin(values, initial=0.0)), vmax=hi)
    ax.set_facecolor("#cccccc")
    for r in range(n_r):
      for c in range(n_c):
        v = values[r, c]
        ax.text(c, r, "n/a" if not np.isfinite(v) else f"{v:.2f}", ha="center", va="center", fontsize=7,
                color="white" if np.isfinite(v) and v < (lo + hi) / 2 else "black")
    ax.plot([reference[1]], [reference[0]], marker="*", color="red", markersize=9, linestyle="none")
    ax.set_xticks(range(n_c), [str(j) for j in cols], fontsize=7)
    ax.set_yticks(range(n_r), [str(i) for i in rows], fontsize=7)
    ax.set_xlabel("j (col)")
    ax.set_ylabel("i (row)")
    ax.set_title(name, fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8)
  if title:
    fig.suptitle(title, fontsize=10)
  return fig


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
      colour = cmap(n / max(len(taps) - 1, 1))
      off = 1.0 - np.asarray(t["inside"], np.float64)
      y = np.asarray([np.nan if v is None else v for v in t[key]], np.float64)
      cis = t[key + "_ci"]
      lo = np.asarray([np.nan if c["ci"] is None or c["ci"][0] is None else c["ci"][0] for c in cis])
      hi = np.asarray([np.nan if c["ci"] is None or c["ci"][1] is None else c["ci"][1] for c in cis])
      ok = np.isfinite(y)
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


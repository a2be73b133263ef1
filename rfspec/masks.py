"""Node masks: which nodes of a tap an objective pushes, and helpers to name positions.

A node mask for a tap is a float32 array shaped like one image's blob, [h, w, C]. The objective
is `Σ mask · act(tap)`, so its gradient with respect to the blob is the mask itself: exactly the
paper's "gradient of the chosen nodes set to one, all others zero". One node at (i, j), a whole
channel at every position ("tiled"), or any set of positions are all just masks.

Conventions: positions are `(i, j)` = (row, col) on the tap's output grid, 0-based; pixels are
`(y, x)` = (row, col) of the input image. Classifier taps ("loss3/classifier", "prob") have no
spatial extent and are treated as a 1x1 grid.
"""

from __future__ import annotations

import numbers
from typing import Iterable

import numpy as np

from rfspec.errors import UserError
from rfspec.models import googlenet

__all__ = ["check_mask", "lattice", "named_positions", "node_mask", "node_masks", "tap_shape"]

Position = tuple[int, int]


def tap_shape(tap: str, image_hw: tuple[int, int]) -> tuple[int, int, int]:
  """Shape (h, w, C) of one image's blob at `tap` for an (H, W) input.

  Args:
    tap: a name from `rfspec.TAPS`.
    image_hw: input size (H, W) in pixels.

  Returns:
    (h, w, C): the tap's grid (rows, cols) and channel count; (1, 1, C) for classifier taps.

  Raises:
    UserError: unknown tap, or an input too small (or, for classifier taps, of the wrong size).
  """
  layer = googlenet.check_tap(tap)
  image_hw = _check_hw(image_hw)
  googlenet.check_input_hw((tap,), image_hw)
  h, w = googlenet.blob_hw(tap, image_hw)
  return h, w, layer.channels


def _check_hw(image_hw) -> tuple[int, int]:
  try:
    hw = tuple(int(v) for v in image_hw)
  except (TypeError, ValueError):
    hw = ()
  if len(hw) != 2 or min(hw) < 1:
    raise UserError(f"image_hw must be (H, W), two positive ints in pixels; got {image_hw!r}.")
  return hw  # type: ignore[return-value]


def _is_position(p) -> bool:
  return (isinstance(p, (tuple, list, np.ndarray)) and len(p) == 2
          and all(isinstance(v, numbers.Integral) for v in p))


def _check_position(p, tap: str, grid: tuple[int, int]) -> Position:
  """Validates one (i, j) = (row, col) position on `tap`'s grid of `grid` = (h, w) nodes."""
  if not _is_position(p):
    raise UserError(f"A position is (i, j) = (row, col), two ints on the tap's grid; got {p!r}.")
  i, j = int(p[0]), int(p[1])
  h, w = grid
  if not (0 <= i < h and 0 <= j < w):
    raise UserError(f"Position (i, j) = ({i}, {j}) is outside {tap!r}'s grid of {h}x{w} nodes "
                     f"(rows 0..{h - 1}, cols 0..{w - 1}; positions are (row, col), 0-based).")
  return i, j


def _positions(position, tap: str, grid: tuple[int, int]) -> list[Position]:
  """None -> every node; (i, j) -> [(i, j)]; an iterable of (i, j) -> that list (validated)."""
  if position is None:
    return [(i, j) for i in range(grid[0]) for j in range(grid[1])]
  if _is_position(position):
    return [_check_position(position, tap, grid)]
  if isinstance(position, np.ndarray) and position.ndim == 2 and position.shape[1] == 2:
    position = position.tolist()
  try:
    positions = [_check_position(p, tap, grid) for p in position]
  except TypeError:
    raise UserError(f"position must be None (every node), (i, j) = (row, col), or a list of "
                     f"(i, j); got {position!r}.") from None
  if not positions:
    raise UserError("position is an empty list; give at least one (i, j) = (row, col), or None "
                     "for every position of the channel.")
  return positions


def node_mask(tap: str, channel: int, image_hw: tuple[int, int],
              position: Position | Iterable[Position] | None = None) -> np.ndarray:
  """A one-hot node mask: ones at the chosen nodes of one channel, zeros elsewhere.

  Args:
    tap: a name from `rfspec.TAPS`, e.g. "inception_4c/output".
    channel: channel (node type) index, 0 <= channel < C.
    image_hw: input size (H, W) in pixels the mask is meant for; it fixes the tap's grid.
    position: which nodes of the channel, on the tap's grid, as (i, j) = (row, col), 0-based:
      None for every position (the paper's "tiling"), one (i, j), or a list of (i, j).

  Returns:
    float32 [h, w, C], 1 at (i, j, channel) for each chosen position, 0 elsewhere.

  Raises:
    UserError: unknown tap, input too small for it, channel or position out of range.
  """
  h, w, c = tap_shape(tap, image_hw)
  if not isinstance(channel, numbers.Integral) or not 0 <= int(channel) < c:
    raise UserError(f"channel must be an int in 0..{c - 1}: {tap!r} has {c} channels; got {channel!r}.")
  mask = np.zeros((h, w, c), np.float32)
  for i, j in _positions(position, tap, (h, w)):
    mask[i, j, int(channel)] = 1.0
  return mask


def node_masks(tap: str, channel: int, image_hw: tuple[int, int],
               positions: Iterable[Position]) -> np.ndarray:
  """Single-node masks stacked for `visualize_grid`: one per (i, j) = (row, col) in `positions`.

  Args:
    tap: a name from `rfspec.TAPS`.
    channel: channel index, 0 <= channel < C.
    image_hw: input size (H, W) in pixels.
    positions: (i, j) = (row, col) positions on the tap's grid, 0-based, e.g. from `lattice` or
      `named_positions(...).values()`.

  Returns:
    float32 [P, h, w, C], element p one-hot at (positions[p], channel).
  """
  positions = list(positions)
  if not positions:
    raise UserError("positions is empty; give at least one (i, j) = (row, col).")
  return np.stack([node_mask(tap, channel, image_hw, tuple(p)) for p in positions])


def named_positions(tap: str, image_hw: tuple[int, int]) -> dict[str, Position]:
  """Named positions on a tap's grid: centre, corners, edge midpoints, the paper's column.

  Args:
    tap: a name from `rfspec.TAPS`.
    image_hw: input size (H, W) in pixels.

  Returns:
    {name: (i, j)}, (row, col) on the tap's grid, 0-based. Names: "centre" (for an even side,
    the upper/left of the two middle nodes), "top_left", "top_right", "bottom_left",
    "bottom_right", the edge midpoints "top", "bottom", "left", "right", and "middle" (= centre).
    The paper's Figures 1 (right column) and 2 use "top", "middle" and "bottom".
  """
  h, w, _ = tap_shape(tap, image_hw)
  ci, cj = (h - 1) // 2, (w - 1) // 2
  return {
      "centre": (ci, cj),
      "middle": (ci, cj),
      "top": (0, cj),
      "bottom": (h - 1, cj),
      "left": (ci, 0),
      "right": (ci, w - 1),
      "top_left": (0, 0),
      "top_right": (0, w - 1),
      "bottom_left": (h - 1, 0),
      "bottom_right": (h - 1, w - 1),
  }


def lattice(tap: str, image_hw: tuple[int, int], n: int | tuple[int, int]) -> list[Position]:
  """A regular n x n (or nh x nw) lattice of positions over a tap's grid, borders included.

  Rows and cols are evenly spaced from the first to the last node (rounded); a side of 1 takes
  the middle node. With n equal to the grid side this is every node.

  Args:
    tap: a name from `rfspec.TAPS`.
    image_hw: input size (H, W) in pixels.
    n: lattice side, or (nh, nw) for rows x cols.

  Returns:
    [(i, j), ...] (row, col) on the tap's grid, row-major, nh * nw distinct positions.
  """
  h, w, _ = tap_shape(tap, image_hw)
  nh, nw = (n, n) if isinstance(n, numbers.Integral) else tuple(n)

  def axis(k, size, name):
    if not isinstance(k, numbers.Integral) or not 1 <= k <= size:
      raise UserError(f"lattice {name} must be an int in 1..{size} ({tap!r} at {image_hw[0]}x"
                       f"{image_hw[1]} px has {size} {name}); got {k!r}.")
    if k == 1:
      return [(size - 1) // 2]
    return [int(v) for v in np.round(np.linspace(0, size - 1, int(k)))]

  rows, cols = axis(nh, h, "rows"), axis(nw, w, "cols")
  return [(i, j) for i in rows for j in cols]


def check_mask(mask, tap: str, image_hw: tuple[int, int], *, batched: bool = False) -> np.ndarray:
  """Validates a node mask (or a stack of them) against a tap, on the host.

  Args:
    mask: [h, w, C] (or [P, h, w, C] with batched=True) matching `tap` at `image_hw`.
    tap: a name from `rfspec.TAPS`.
    image_hw: input size (H, W) in pixels.
    batched: whether `mask` has a leading axis of masks.

  Returns:
    The mask as a float32 numpy array.

  Raises:
    UserError: wrong shape (with the expected one and how to build it), non-finite values, or
      a mask with no nonzero entry (it would give a zero gradient and leave the image untouched).
  """
  want = tap_shape(tap, image_hw)
  mask = np.asarray(mask, np.float32)
  lead = mask.shape[:1] if batched else ()
  if mask.shape[len(lead):] != want or (batched and mask.ndim != 4):
    form, dims = ("[P, h, w, C]", "(P, {}, {}, {})") if batched else ("[h, w, C]", "({}, {}, {})")
    raise UserError(
        f"Node mask shape {tuple(mask.shape)} does not match tap {tap!r} at {image_hw[0]}x"
        f"{image_hw[1]} px: expected {form} = {dims.format(*want)}. Build it with "
        f"rfspec.node_mask({tap!r}, channel, image_hw={tuple(image_hw)}, position=...)"
        f"{' and stack along axis 0' if batched else ''}.")
  if not np.all(np.isfinite(mask)):
    raise UserError("Node mask has non-finite values; use 0/1 (or finite weights).")
  flat = mask.reshape(len(mask), -1) if batched else mask.reshape(1, -1)
  empty = np.flatnonzero(~np.any(flat != 0, axis=1))
  if empty.size:
    which = f"masks {empty.tolist()} are" if batched else "the mask is"
    raise UserError(f"Node mask: {which} all zero, so there is nothing to maximise. Pick nodes "
                     "with rfspec.node_mask(tap, channel, image_hw, position).")
  return mask

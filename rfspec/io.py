"""The only disk I/O in rfspec: atomic writes of JSON, text and PNG files.

Every writer goes through `atomic_write`: the bytes land in a temporary file in the target's
directory and are renamed into place, so a crash or Ctrl-C never leaves a half-written output.
"""

from __future__ import annotations

import io as _io
import json
import os
import tempfile
from typing import Any

import numpy as np


def atomic_write(path: str | os.PathLike, data: bytes) -> str:
  """Writes `data` to `path` via a temporary file + rename; creates parent dirs. Returns path."""
  path = os.fspath(path)
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=parent, prefix="." + os.path.basename(path) + ".", suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
  return path


def _to_jsonable(obj: Any):
  if isinstance(obj, dict):
    return {str(k): _to_jsonable(v) for k, v in obj.items()}
  if isinstance(obj, (list, tuple)):
    return [_to_jsonable(v) for v in obj]
  if hasattr(obj, "to_dict"):  # ml_collections.ConfigDict
    return _to_jsonable(obj.to_dict())
  if isinstance(obj, (np.generic,)) or (hasattr(obj, "shape") and hasattr(obj, "dtype")):
    arr = np.asarray(obj)
    return arr.item() if arr.ndim == 0 else arr.tolist()
  if isinstance(obj, float) and not np.isfinite(obj):
    return None if np.isnan(obj) else (1e308 if obj > 0 else -1e308)
  return obj


def write_json(path, obj: Any) -> str:
  """Atomically writes `obj` as indented JSON (numpy / jax arrays become lists)."""
  return atomic_write(path, (json.dumps(_to_jsonable(obj), indent=2, sort_keys=False) + "\n").encode())


def read_json(path) -> Any:
  with open(path) as f:
    return json.load(f)


def write_text(path, text: str) -> str:
  """Atomically writes a UTF-8 text file (markdown, HTML)."""
  return atomic_write(path, text.encode("utf-8"))


def to_uint8(image) -> np.ndarray:
  """float [..., 3] in [0, 1] -> uint8 (clipped)."""
  return (np.clip(np.asarray(image, np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)


def write_png(path, image) -> str:
  """Atomically writes an image: float [H, W, 3] in [0, 1] or uint8 [H, W, 3|4]."""
  from PIL import Image

  arr = np.asarray(image)
  if arr.dtype != np.uint8:
    arr = to_uint8(arr)
  buf = _io.BytesIO()
  Image.fromarray(arr).save(buf, format="PNG")
  return atomic_write(path, buf.getvalue())


def save_figure(path, fig) -> str:
  """Atomically saves a matplotlib figure as PNG and closes it."""
  import matplotlib.pyplot as plt

  buf = _io.BytesIO()
  fig.savefig(buf, format="png", dpi=110, bbox_inches="tight")
  plt.close(fig)
  return atomic_write(path, buf.getvalue())


def load_image(path, size: tuple[int, int] | None = None) -> np.ndarray:
  """Reads an image file as float32 [H, W, 3] RGB in [0, 1], optionally resized bilinearly to (H, W)."""
  from PIL import Image

  with Image.open(path) as im:
    im = im.convert("RGB")
    if size is not None:
      im = im.resize((size[1], size[0]), Image.BILINEAR)
    return np.asarray(im, np.float32) / 255.0

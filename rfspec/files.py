"""The only disk I/O in rfspec: atomic writes of JSON, text and PNG files, and completion manifests.

Every writer goes through `atomic_write`: the bytes land in a temporary file in the target's
directory (named `.<name>.<pid>.<random>.tmp`) and are renamed into place, so a crash or Ctrl-C
never leaves a half-written output. A kill can still leave the temporary file; the next run
removes it with `clean_stale_temps`.

Resumable binaries mark a finished unit of work with a manifest (`write_manifest`, written last):
JSON that records the size and sha256 of every file it vouches for. `check_manifest` trusts a
unit only if the manifest parses, matches the wanted config and every listed file is intact, so a
truncated or swapped output is redone rather than loaded. Before rewriting a unit, call
`invalidate_manifest` first: a crash part-way through then leaves no marker beside a mix of old
and new files.
"""

from __future__ import annotations

import hashlib
import io as _io
import json
import math
import os
import re
import tempfile
import time
import zipfile
from typing import Any, Mapping

import numpy as np


def atomic_write(path: str | os.PathLike, data: bytes) -> str:
  """Writes `data` to `path` via a temporary file + rename; creates parent dirs. Returns path."""
  path = os.fspath(path)
  parent = os.path.dirname(os.path.abspath(path))
  os.makedirs(parent, exist_ok=True)
  fd, tmp = tempfile.mkstemp(dir=parent, prefix=_temp_prefix(path), suffix=".tmp")
  try:
    with os.fdopen(fd, "wb") as f:
      f.write(data)
      f.flush()
      os.fsync(f.fileno())
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600; outputs should read like any file
    os.replace(tmp, path)
  except BaseException:
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
  return path


def _umask() -> int:
  mask = os.umask(0)
  os.umask(mask)
  return mask


# ----------------------------------------------------------------------------- temporary files

# `.<name>.<pid>.<random>.tmp` (atomic_write, checkpoint staging) and `.<name>.<pid>.<random>.part`
# (downloads). The pid lets the next run tell a dead writer's leftovers from a live one's.
_TEMP_RE = re.compile(r"^\.(?P<name>.+)\.(?P<pid>\d+)\.[A-Za-z0-9_]{8}\.(?:tmp|part)$")


def _temp_prefix(path) -> str:
  """mkstemp/mkdtemp prefix for a temporary sibling of `path` (see `_TEMP_RE`)."""
  return f".{os.path.basename(os.fspath(path))}.{os.getpid()}."


def _pid_alive(pid: int) -> bool:
  if pid == os.getpid():
    return True
  try:
    os.kill(pid, 0)
  except ProcessLookupError:
    return False
  except PermissionError:  # exists, owned by someone else
    return True
  except OverflowError:
    return False
  return True


def clean_stale_temps(directory: str | os.PathLike, *, max_age_s: float = 24 * 3600.0) -> list[str]:
  """Removes temporary files and directories that rfspec's own writers left behind in `directory`.

  Only names of rfspec's temporary-file pattern (`.<name>.<pid>.<random>.tmp` or `.part`, made
  by `atomic_write`, `rfspec.weights.store.download` and `save_checkpoint`) are considered, and only
  when the process that made them is gone or they are older than `max_age_s` (a writer on another
  host sharing the directory). Not recursive. A missing directory is fine.

  Returns:
    The paths removed.
  """
  directory = os.fspath(directory)
  try:
    names = os.listdir(directory)
  except (FileNotFoundError, NotADirectoryError):
    return []
  removed, now = [], time.time()
  for name in names:
    m = _TEMP_RE.match(name)
    if not m:
      continue
    path = os.path.join(directory, name)
    try:
      age = now - os.lstat(path).st_mtime
    except FileNotFoundError:
      continue
    if _pid_alive(int(m["pid"])) and age < max_age_s:
      continue
    try:
      if os.path.isdir(path) and not os.path.islink(path):
        import shutil

        shutil.rmtree(path)
      else:
        os.unlink(path)
      removed.append(path)
    except FileNotFoundError:
      pass
  return removed


# ----------------------------------------------------------------------------- completion manifests

MANIFEST_VERSION = 1


def file_digest(path: str | os.PathLike) -> dict:
  """{"size": bytes, "sha256": hex} of a file, read in 1 MiB chunks."""
  h, size = hashlib.sha256(), 0
  with open(path, "rb") as f:
    while chunk := f.read(1 << 20):
      h.update(chunk)
      size += len(chunk)
  return {"size": size, "sha256": h.hexdigest()}


def write_manifest(path: str | os.PathLike, files: Mapping[str, str | os.PathLike],
                   extra: Mapping[str, Any] | None = None) -> str:
  """Atomically writes a completion manifest vouching for `files`; call it LAST.

  Args:
    path: the manifest file (JSON), e.g. DIR/fig2.done.json.
    files: {name: path} of the finished outputs. Paths are stored relative to the manifest's
      directory when they lie under it (so a workdir can be moved), else absolute.
    extra: JSON-able fields to record and later match with `check_manifest(want=...)`, e.g.
      {"config_hash": ...}. Keys "files" and "manifest_version" are reserved.

  Returns:
    `path`.
  """
  extra = dict(extra or {})
  reserved = {"files", "manifest_version"} & set(extra)
  if reserved:
    raise ValueError(f"extra may not use the reserved keys {sorted(reserved)}.")
  base = os.path.dirname(os.path.abspath(os.fspath(path)))
  entries = {}
  for name, fpath in files.items():
    fpath = os.path.abspath(os.fspath(fpath))
    rel = os.path.relpath(fpath, base)
    entries[str(name)] = dict(path=fpath if rel.startswith(os.pardir) else rel, **file_digest(fpath))
  return write_json(path, dict(extra, manifest_version=MANIFEST_VERSION, files=entries))


def _file_intact(path: str, entry: Mapping[str, Any]) -> bool:
  try:
    if os.path.getsize(path) != entry["size"] or file_digest(path)["sha256"] != entry["sha256"]:
      return False
    if path.endswith(".npz"):  # the hash vouches for the bytes; this for the zip inside
      with zipfile.ZipFile(path) as z:
        return z.testzip() is None
  except (OSError, KeyError, TypeError, zipfile.BadZipFile):
    return False
  return True


def check_manifest(path: str | os.PathLike, want: Mapping[str, Any] | None = None) -> dict | None:
  """The manifest at `path` if it vouches for intact outputs, else None (redo the work).

  None when the manifest is missing or unreadable, any `want` item differs from the recorded one
  (e.g. another config hash), or any listed file is missing or has another size or sha256 (an
  `.npz` must also open as a zip with intact members).

  Returns:
    The manifest dict; `m["files"][name]["path"]` is made absolute.
  """
  path = os.fspath(path)
  try:
    manifest = read_json(path)
    if not isinstance(manifest, dict) or manifest.get("manifest_version") != MANIFEST_VERSION:
      return None
    if any(manifest.get(k) != _to_jsonable(v) for k, v in (want or {}).items()):
      return None
    base = os.path.dirname(os.path.abspath(path))
    for entry in manifest["files"].values():
      entry["path"] = os.path.join(base, entry["path"])
      if not _file_intact(entry["path"], entry):
        return None
  except (OSError, ValueError, KeyError, TypeError, AttributeError):
    return None
  return manifest


def invalidate_manifest(path: str | os.PathLike) -> None:
  """Removes a manifest before its outputs are rewritten (no-op if absent)."""
  try:
    os.unlink(path)
  except FileNotFoundError:
    pass


def plain_numbers(x):
  """A number or array -> a float or nested lists of floats for JSON; NaN and inf -> None."""
  arr = np.asarray(x, np.float64)
  if arr.ndim == 0:
    v = float(arr)
    return v if math.isfinite(v) else None
  return [plain_numbers(v) for v in arr]


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


def write_npz(path, arrays: Mapping[str, Any]) -> str:
  """Atomically writes a compressed .npz of `arrays` (name -> array)."""
  buf = _io.BytesIO()
  np.savez_compressed(buf, **{k: np.asarray(v) for k, v in arrays.items()})
  return atomic_write(path, buf.getvalue())


def read_npz(path) -> dict[str, np.ndarray]:
  """Every array of an .npz (loaded; the file is closed). Object arrays are refused (no pickle)."""
  with np.load(path, allow_pickle=False) as z:
    return {k: z[k] for k in z.files}


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


# ----------------------------------------------------------------------------- HTML report


def html_escape(text) -> str:
  import html

  return html.escape(str(text))


def html_table(header, rows) -> str:
  """A plain HTML table; cells are escaped, floats shown with 4 significant digits."""
  fmt = lambda v: f"{v:.4g}" if isinstance(v, float) else html_escape(v)
  head = "".join(f"<th>{html_escape(h)}</th>" for h in header)
  body = "".join("<tr>" + "".join(f"<td>{fmt(v)}</td>" for v in row) + "</tr>" for row in rows)
  return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_CSS = """body{font-family:system-ui,sans-serif;max-width:1200px;margin:2em auto;padding:0 1em;color:#222}
img{max-width:100%;border:1px solid #ddd}table{border-collapse:collapse;margin:.5em 0;font-size:.9em}
td,th{border:1px solid #ccc;padding:2px 6px;text-align:right}th{background:#f4f4f4}
section{margin-bottom:2.5em}.claim{background:#f6f8ff;padding:.5em 1em;border-left:4px solid #88f}
.seen{background:#f8fff6;padding:.5em 1em;border-left:4px solid #6b6}code{background:#f4f4f4}"""


def write_html_report(path, title: str, sections, intro: str = "") -> str:
  """Atomically writes a self-contained HTML report.

  Args:
    path: output file (e.g. DIR/report.html); image paths in sections are relative to it.
    title: page title.
    sections: iterable of dicts with "title" and "html" (trusted HTML built by the caller with
      `html_escape` / `html_table`).
    intro: trusted HTML placed under the title.
  """
  parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html_escape(title)}</title>",
           f"<style>{_CSS}</style></head><body><h1>{html_escape(title)}</h1>{intro}"]
  for s in sections:
    anchor = html_escape(s.get("id", s["title"])).replace(" ", "-")
    parts.append(f"<section id='{anchor}'><h2>{html_escape(s['title'])}</h2>{s['html']}</section>")
  parts.append("</body></html>")
  return write_text(path, "\n".join(parts))

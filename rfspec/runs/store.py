"""One `Store` for every resumable artefact of a run: units of arrays + numbers, verified on reuse.

A run (figures, atlas, sweep) is cut into units of work (a figure, an atlas batch, a sweep tap's
visual batch or its measurements). Each unit is saved as `<unit>.npz` (arrays) and `<unit>.json`
(numbers and text), then a manifest `<unit>.done.json` LAST, which records the size and sha256 of
both files and the unit's key hash. `load` returns a unit only if its manifest parses, its key
hash matches and both files are intact; anything else is recomputed. The key hash covers the
unit's own settings, the run's schema and the weights' sha256, so replacing the file at
`--weights` invalidates everything it made.

The final outputs (report, JSON, figures) are vouched for the same way by `seal`: a rerun checks
them with `sealed` and rewrites what fails the check (a truncated report.html or a hand-edited
JSON is redone, not kept).

A Store holds the workdir's advisory lock (`fcntl.flock`) while it is open: a second run in the
same workdir stops at once with a message naming the holder.

The library never writes outside the Store it is given; `Store(None)` keeps nothing (a notebook
run that needs no resume).
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any, Mapping

import numpy as np

from rfspec import files
from rfspec.errors import UserError

__all__ = ["Store", "key_hash"]


def key_hash(key: Any) -> str:
  """A short, stable hash of JSON-able settings (sorted keys; numpy values become lists)."""
  text = json.dumps(files._to_jsonable(key), sort_keys=True, separators=(",", ":"))
  return hashlib.sha256(text.encode()).hexdigest()[:16]


class Store:
  """Resumable units and sealed outputs under `workdir` (None: nothing is kept).

  Args:
    workdir: the run's directory (created), or None.
    weights_sha256: the weights' content digest; part of every unit's key.
    schema: bump when a unit's format changes; part of every key.
    overwrite: recompute every unit even if a valid one is stored.
  """

  def __init__(self, workdir: str | os.PathLike | None, *, weights_sha256: str = "", schema: int = 1,
               overwrite: bool = False):
    self.workdir = None if workdir is None else os.fspath(workdir)
    self.weights_sha256 = str(weights_sha256)
    self.schema = int(schema)
    self.overwrite = bool(overwrite)
    self._lock = None

  # -- the lock
  def __enter__(self) -> "Store":
    if self.workdir is not None:
      from rfspec import locking

      os.makedirs(self.workdir, exist_ok=True)
      self._lock = locking.workdir_lock(self.workdir)
      self._lock.__enter__()
      files.clean_stale_temps(self.workdir)
    return self

  def __exit__(self, *exc) -> None:
    if self._lock is not None:
      self._lock.__exit__(*exc)
      self._lock = None

  # -- paths and keys
  def path(self, name: str) -> str | None:
    """The path of `name` (a unit file or an output) under the workdir, or None without one."""
    return None if self.workdir is None else os.path.join(self.workdir, name)

  def _hash(self, key: Any) -> str:
    return key_hash(dict(key=key, schema=self.schema, weights_sha256=self.weights_sha256))

  # -- units
  def load(self, unit: str, key: Any) -> tuple[dict[str, np.ndarray], dict] | None:
    """(arrays, meta) of a stored unit whose manifest vouches for it under `key`, else None."""
    if self.workdir is None or self.overwrite:
      return None
    base = self.path(unit)
    if files.check_manifest(base + ".done.json", want={"key_hash": self._hash(key)}) is None:
      return None
    try:
      return files.read_npz(base + ".npz"), files.read_json(base + ".json")
    except (OSError, ValueError):
      return None

  def save(self, unit: str, key: Any, arrays: Mapping[str, Any], meta: Mapping[str, Any]) -> None:
    """Writes the unit's arrays and meta, then its manifest last (no-op without a workdir)."""
    if self.workdir is None:
      return
    base = self.path(unit)
    files.invalidate_manifest(base + ".done.json")
    files.write_npz(base + ".npz", arrays)
    files.write_json(base + ".json", dict(meta))
    files.write_manifest(base + ".done.json", {"npz": base + ".npz", "json": base + ".json"},
                         extra={"key_hash": self._hash(key), "unit": unit})

  # -- final outputs
  def sealed(self, name: str, key: Any) -> dict | None:
    """The seal `name` if every output it lists is intact and its key matches, else None."""
    if self.workdir is None or self.overwrite:
      return None
    return files.check_manifest(self.path(name + ".done.json"), want={"key_hash": self._hash(key)})

  def seal(self, name: str, key: Any, outputs: Mapping[str, str]) -> None:
    """Vouches for `outputs` ({label: path}) by checksum under `key`; call it after writing them."""
    if self.workdir is None:
      return
    missing = [p for p in outputs.values() if not os.path.isfile(p)]
    if missing:
      raise UserError(f"Cannot seal {name}: outputs {missing} are missing.")
    files.write_manifest(self.path(name + ".done.json"), outputs, extra={"key_hash": self._hash(key)})

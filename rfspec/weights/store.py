"""Where GoogLeNet weights come from: the cache, the sha1-checked download, orbax checkpoints.

`load_params(src)` is the one entry point. `src` is a `.caffemodel` file, an orbax checkpoint
directory (as written by `save_checkpoint` or `python -m experiments.convert_weights`), or
"bvlc_googlenet". The last is `$RFSPEC_WEIGHTS` when that names a path (a file or checkpoint the
user points at), else it resolves through the cache directory (`$RFSPEC_CACHE`, default
`~/.cache/rfspec`):

  <cache>/bvlc_googlenet/              the converted orbax checkpoint, used when present;
  <cache>/bvlc_googlenet.caffemodel    else this file, sha1-checked against the official download
                                       and converted once into the checkpoint;
                                       else downloaded from the BVLC model zoo (sha1-checked).

A file or directory the user names (a path, or `$RFSPEC_WEIGHTS`) is loaded as given, with no sha1
requirement: any GoogLeNet caffemodel works, e.g. a re-packed one without the auxiliary heads.

Results are keyed on what the weights hold, not where they lie: `weights_sha256(src)` (or
`load_params(src, with_digest=True)`) gives a file's sha256, or for a checkpoint the sha256 of the
file it was converted from (recorded at conversion), else a digest of its per-array sha256s. A
file's digest is computed once and cached by (path, size, mtime, inode) in `<cache>/digests.json`.

Every write is atomic (temporary name in the same directory, renamed into place when complete
and verified), so an interrupted download or save leaves at most a temporary file of rfspec's
naming, which the next use of the cache removes. A checkpoint records the sha256 of every array
(`rfspec_checksums.json`); a restore that does not reproduce them, or finds a non-finite value,
raises `CheckpointError` instead of returning damaged weights.
"""

from __future__ import annotations

import contextlib
import hashlib
import http.client
import json
import logging
import os
import shutil
import socket
import sys
import tempfile
import time
import urllib.error
import urllib.request

import jax
import numpy as np

from rfspec import files
from rfspec.errors import UserError
from rfspec.models import googlenet
from rfspec.weights import caffe

log = logging.getLogger(__name__)

NAME = "bvlc_googlenet"
URL = "http://dl.caffe.berkeleyvision.org/bvlc_googlenet.caffemodel"
SHA1 = "405fc5acd08a3bb12de8ee5e23a96bec22f08204"
CAFFEMODEL_FILE = f"{NAME}.caffemodel"
CHECKPOINT_DIR = NAME
CHECKSUMS_FILE = "rfspec_checksums.json"  # written by save_checkpoint into every checkpoint
DIGESTS_FILE = "digests.json"  # <cache>/digests.json: file sha256s keyed by path and stat
ENV_WEIGHTS = "RFSPEC_WEIGHTS"  # a path that "bvlc_googlenet" (and every binary's --weights) means

# Files orbax writes into every checkpoint directory; one of them marks a directory as one.
_ORBAX_MARKERS = ("_CHECKPOINT_METADATA", "_METADATA")


class WeightsUnavailableError(UserError, ConnectionError):
  """The weights are not cached and cannot be downloaded; the message says where to put them."""


class ChecksumError(UserError):
  """A downloaded or cached file does not have the official sha1 (nothing was converted)."""


class CheckpointError(UserError):
  """A directory that is not a GoogLeNet orbax checkpoint, one with the wrong params, or a damaged one.

  Attributes:
    problems: one line per missing, unexpected or mis-shaped parameter.
  """

  def __init__(self, message: str, problems: list[str] | None = None):
    super().__init__(message)
    self.problems = list(problems or [])


# ----------------------------------------------------------------------------- cache


def resolve_cache_dir(cache_dir: str | os.PathLike | None = None) -> str:
  """The cache directory: `cache_dir` if given, else `$RFSPEC_CACHE`, else ~/.cache/rfspec."""
  if cache_dir is None:
    cache_dir = os.environ.get("RFSPEC_CACHE") or os.path.join("~", ".cache", "rfspec")
  return os.path.abspath(os.path.expanduser(os.fspath(cache_dir)))


def _unavailable_message(reason: str, url: str, sha1: str, caffemodel_path: str) -> str:
  return (f"The BVLC GoogLeNet weights are not cached and cannot be downloaded from {url} "
          f"({reason}). Either download {CAFFEMODEL_FILE} (about 53.5 MB, sha1 {sha1}) from {URL} on a "
          f"machine with internet access and put it at {caffemodel_path}; or point rfspec at a GoogLeNet "
          f".caffemodel you have: {ENV_WEIGHTS}=/path/to/{CAFFEMODEL_FILE} (then "
          f"rfspec.load_params('bvlc_googlenet') and every binary use it), "
          f"--weights=/path/to/{CAFFEMODEL_FILE} for one binary, or "
          f"rfspec.load_params('/path/to/{CAFFEMODEL_FILE}') in Python (or set RFSPEC_CACHE to a "
          "directory that holds it).")


def _check_cache_writable(root: str) -> None:
  """Raises UserError unless `root` is (or can be made) a directory this process can write to."""
  try:
    os.makedirs(root, exist_ok=True)
    fd, probe = tempfile.mkstemp(dir=root, prefix=files._temp_prefix(os.path.join(root, "probe")), suffix=".tmp")
    os.close(fd)
    os.unlink(probe)
  except OSError as e:
    what = "is a file, not a directory" if os.path.isfile(root) else f"is not writable ({e.strerror or e})"
    raise UserError(
        f"The weights cache {root} (RFSPEC_CACHE, default ~/.cache/rfspec) {what}, so "
        f"{CAFFEMODEL_FILE} cannot be downloaded into it. Set RFSPEC_CACHE to a directory you can "
        f"write to, or load the file from where it is: --weights=/path/to/{CAFFEMODEL_FILE} (or "
        f"RFSPEC_WEIGHTS) for the binaries, rfspec.load_params('/path/to/{CAFFEMODEL_FILE}') in "
        "Python.") from None


# ----------------------------------------------------------------------------- download


class _Progress:
  """A single self-overwriting progress line on stderr, redrawn at most twice a second."""

  def __init__(self, label: str, total: int | None):
    self.label, self.total, self.last, self.open = label, total, 0.0, False

  def close(self) -> None:
    """Ends a line left open by an interruption, so the next message starts on its own line."""
    if self.open:
      sys.stderr.write("\n")
      sys.stderr.flush()
      self.open = False

  def update(self, done: int, final: bool = False) -> None:
    now = time.monotonic()
    if not final and now - self.last < 0.5:
      return
    self.last = now
    mb = done / 1e6
    if self.total:
      line = f"{self.label}: {mb:.1f}/{self.total / 1e6:.1f} MB ({100 * done // self.total}%)"
    else:
      line = f"{self.label}: {mb:.1f} MB"
    sys.stderr.write(f"\r{line}" + ("\n" if final else ""))
    sys.stderr.flush()
    self.open = not final


def download(url: str, path: str | os.PathLike, *, sha1: str, timeout: float = 60.0,
             progress: bool = True) -> str:
  """Streams `url` into `path`, verifying its sha1; the file appears only once it is verified.

  The bytes go to a temporary file beside `path` that is renamed into place after the checksum
  matches; on any failure (connection refused or dropped, timeout, bad checksum, Ctrl-C) the
  temporary file is removed and nothing is left behind.

  Args:
    url: http(s) or file URL.
    path: destination file; its directory is created if needed.
    sha1: expected hex sha1 of the file.
    timeout: seconds to wait for the connection and for each read.
    progress: draw a progress line on stderr.

  Returns:
    `path`.

  Raises:
    WeightsUnavailableError: the server cannot be reached, answers with an HTTP error, or the
      transfer ends early (shorter than its Content-Length, or, without one, with the wrong sha1).
    ChecksumError: the downloaded bytes have another sha1.
  """
  path = os.path.abspath(os.fspath(path))
  parent = os.path.dirname(path)
  os.makedirs(parent, exist_ok=True)
  unavailable = lambda reason: WeightsUnavailableError(_unavailable_message(reason, url, sha1, path))
  fd, tmp = tempfile.mkstemp(dir=parent, prefix=files._temp_prefix(path), suffix=".part")
  bar = None
  try:
    digest, done = hashlib.sha1(), 0
    try:
      with os.fdopen(fd, "wb") as out, urllib.request.urlopen(url, timeout=timeout) as response:
        total = response.headers.get("Content-Length")
        total = int(total) if total and total.isdigit() else None
        bar = _Progress(f"downloading {os.path.basename(path)}", total) if progress else None
        while chunk := response.read(1 << 20):
          out.write(chunk)
          digest.update(chunk)
          done += len(chunk)
          if bar:
            bar.update(done)
        if bar:
          bar.update(done, final=True)
        if total is not None and done != total:
          raise unavailable(f"the transfer broke off after {done:,} of {total:,} bytes")
        out.flush()
        os.fsync(out.fileno())
    except WeightsUnavailableError:  # ours, from above: not a connection error to wrap again
      raise
    except urllib.error.HTTPError as e:
      raise unavailable(f"HTTP {e.code} {e.reason}") from None
    except urllib.error.URLError as e:  # refused, DNS failure, timeout while connecting
      raise unavailable(f"{getattr(e.reason, 'strerror', None) or e.reason}") from None
    except (http.client.HTTPException, socket.timeout, ConnectionError) as e:
      raise unavailable(f"the transfer broke off after {done:,} bytes ({type(e).__name__}: {e})") from None
    if digest.hexdigest() != sha1.lower() and total is None:
      # Without a Content-Length a connection that closes early looks like the end of the file.
      raise unavailable(f"the server sent no Content-Length and the {done:,} bytes received do not have "
                        f"the expected sha1: the transfer was probably cut short")
    if digest.hexdigest() != sha1.lower():
      raise ChecksumError(
          f"The file downloaded from {url} ({done:,} bytes) has sha1 {digest.hexdigest()}, expected "
          f"{sha1}; it was discarded. Retry later, or download {CAFFEMODEL_FILE} yourself, check its "
          f"sha1 and put it at {path}.")
    os.chmod(tmp, 0o666 & ~files._umask())  # mkstemp makes 0600; the cache should read like any file
    os.replace(tmp, path)
  except BaseException:  # includes KeyboardInterrupt: never leave a partial file
    if bar:
      bar.close()
    if os.path.exists(tmp):
      os.unlink(tmp)
    raise
  return path


# ----------------------------------------------------------------------------- orbax


def _checkpointer():
  import orbax.checkpoint as ocp  # heavy import; only paid when checkpoints are used

  return ocp.Checkpointer(ocp.StandardCheckpointHandler())


def is_checkpoint(directory: str | os.PathLike) -> bool:
  """Whether `directory` looks like an orbax checkpoint (has orbax's metadata files)."""
  directory = os.fspath(directory)
  return os.path.isdir(directory) and any(
      os.path.exists(os.path.join(directory, m)) for m in _ORBAX_MARKERS)


def save_checkpoint(params, directory: str | os.PathLike, *, overwrite: bool = False,
                    source_sha256: str | None = None) -> str:
  """Writes GoogLeNet params as an orbax checkpoint, atomically.

  The checkpoint is written into a temporary directory beside `directory` and renamed into place
  when complete, so an interrupted save leaves no half-written checkpoint. Keys are the Caffe
  layer names as they are ("conv1/7x7_s2"); orbax's default OCDBT storage keeps "/" inside
  parameter names, so no nesting is needed.

  Args:
    params: {caffe layer name: {"kernel", "bias"}} arrays (see `rfspec.load_params`).
    directory: the checkpoint directory to create. Besides orbax's files it holds
      `rfspec_checksums.json`, the sha256 of every array, which `restore_checkpoint` checks.
    overwrite: replace `directory` if it is an existing orbax checkpoint (never any other
      directory).
    source_sha256: the sha256 of the file the params were read from (`weights_sha256(file)`),
      recorded so that the checkpoint keys results as that file does (see `weights_sha256`).

  Returns:
    The absolute checkpoint directory.

  Raises:
    FileExistsError: `directory` exists and `overwrite` is False, or it is not a checkpoint.
  """
  directory = os.path.abspath(os.fspath(directory))
  if os.path.lexists(directory):
    if not overwrite:
      raise FileExistsError(f"{directory} already exists; pass overwrite=True (--overwrite) to "
                            "replace the checkpoint, or choose another directory.")
    if not is_checkpoint(directory):
      raise FileExistsError(f"{directory} exists and is not an orbax checkpoint; refusing to "
                            "replace it. Choose another directory.")
  parent = os.path.dirname(directory)
  os.makedirs(parent, exist_ok=True)
  staging = tempfile.mkdtemp(dir=parent, prefix=files._temp_prefix(directory), suffix=".tmp")
  try:
    tree = jax.tree.map(lambda x: np.asarray(x, np.float32), params)
    target = os.path.join(staging, "checkpoint")
    _checkpointer().save(target, tree)
    record = {"format": 1, "sha256": _checksums(tree)}
    if source_sha256:
      record["source_sha256"] = source_sha256
    files.write_json(os.path.join(target, CHECKSUMS_FILE), record)
    if os.path.lexists(directory):  # overwrite: move the old one aside, then swap
      os.replace(directory, os.path.join(staging, "old"))
    try:
      os.replace(target, directory)
    except OSError:
      if not is_checkpoint(directory):  # a concurrent writer that won the race is fine
        raise
  finally:
    shutil.rmtree(staging, ignore_errors=True)
  return directory


def _array_sha256(x) -> str:
  """sha256 of an array's float32 little-endian C-order bytes, prefixed by its shape."""
  a = np.ascontiguousarray(np.asarray(x, "<f4"))
  return hashlib.sha256(repr(a.shape).encode() + a.tobytes()).hexdigest()


def _checksums(tree) -> dict:
  return {name: {k: _array_sha256(v) for k, v in layer.items()} for name, layer in tree.items()}


def _checkpoint_problems(metadata: dict) -> list[str]:
  """vit_jax-style comparison of a checkpoint's tree with `googlenet.param_shapes()`."""
  expected = googlenet.param_shapes()
  flat = lambda tree: {(k, sub): v for k, d in tree.items() if isinstance(d, dict) for sub, v in d.items()}
  want, have = flat(expected), flat(metadata)
  problems = [f"missing {k[0]!r} {k[1]}" for k in want if k not in have]
  problems += [f"unexpected {k[0]!r} {k[1]}" for k in have if k not in want]
  problems += [f"unexpected {k!r}" for k, v in metadata.items() if not isinstance(v, dict)]
  for key, shape in want.items():
    if key in have:
      got = tuple(getattr(have[key], "shape", None) or ())
      if got != tuple(shape):
        problems.append(f"{key[0]!r} {key[1]}: shape {got}, expected {tuple(shape)}")
  return problems


_REWRITE = ("Rewrite it with `python -m experiments.convert_weights --weights=PATH.caffemodel "
            "--workdir={dir} --overwrite`.")


def _first_line(e: BaseException) -> str:
  text = str(e).strip().splitlines()
  return f"{type(e).__name__}: {text[0][:300] if text else ''}"


def restore_checkpoint(directory: str | os.PathLike):
  """Reads GoogLeNet params from an orbax checkpoint written by `save_checkpoint`, verified.

  The checkpoint's tree is first compared with `googlenet.param_shapes()`; the arrays are then
  restored into that abstract tree (float32, default device), and each must be finite and have the
  sha256 recorded in the checkpoint's `rfspec_checksums.json` when it was written.

  Returns:
    {caffe layer name: {"kernel", "bias"}} float32 jax arrays.

  Raises:
    FileNotFoundError: `directory` does not exist.
    CheckpointError: it is not an orbax checkpoint; its params do not fit GoogLeNet (every
      missing, unexpected and mis-shaped parameter listed in one message); or it is damaged:
      metadata or data files missing or unreadable, no checksums, an array that differs from its
      checksum or holds non-finite values. The message names the directory and the fix.
  """
  directory = os.path.abspath(os.fspath(directory))
  rewrite = _REWRITE.format(dir=directory)
  if not os.path.exists(directory):
    raise FileNotFoundError(f"No such checkpoint directory: {directory}")
  if not is_checkpoint(directory):
    raise CheckpointError(f"{directory} is not an orbax checkpoint (it has none of "
                          f"{', '.join(_ORBAX_MARKERS)}). Pass a directory written by "
                          "`python -m experiments.convert_weights`, or a .caffemodel file.")
  checksums_path = os.path.join(directory, CHECKSUMS_FILE)
  try:
    recorded = files.read_json(checksums_path)["sha256"]
  except (OSError, ValueError, KeyError, TypeError) as e:
    raise CheckpointError(f"The checkpoint {directory} has no readable {CHECKSUMS_FILE} ({_first_line(e)}), "
                          f"so its arrays cannot be verified; it is damaged or was written by an older "
                          f"rfspec. {rewrite}") from None
  checkpointer = _checkpointer()
  try:
    with _quiet_orbax():
      metadata = checkpointer.metadata(directory)
    tree = getattr(getattr(metadata, "item_metadata", metadata), "tree", None)
    if tree is None:
      tree = metadata
    tree = dict(tree)
  except Exception as e:  # orbax raises assorted types for missing or unreadable metadata
    raise CheckpointError(f"Cannot read the metadata of the orbax checkpoint {directory} (its _METADATA "
                          f"file is missing or damaged: {_first_line(e)}). {rewrite}") from None
  problems = _checkpoint_problems(tree)
  if problems:
    raise CheckpointError(
        f"The checkpoint {directory} does not hold BVLC GoogLeNet params "
        f"({len(problems)} problem(s)):\n  " + "\n  ".join(problems) + f"\n{rewrite}", problems)
  abstract = jax.tree.map(lambda s: jax.ShapeDtypeStruct(s, np.float32), googlenet.param_shapes(),
                          is_leaf=lambda x: isinstance(x, tuple))
  try:
    with _quiet_orbax():
      restored = checkpointer.restore(directory, abstract)
  except Exception as e:  # tensorstore: a missing or truncated data file under ocdbt.process_*/d/
    raise CheckpointError(f"Cannot read the arrays of the orbax checkpoint {directory}: a data file "
                          f"under it is missing or damaged ({_first_line(e)}). {rewrite}") from None
  bad = []
  for name, layer in restored.items():
    for key, value in layer.items():
      value = np.asarray(value)
      if not np.isfinite(value).all():
        bad.append(f"{name!r} {key}: {np.size(value) - np.isfinite(value).sum():,} non-finite values")
      elif _array_sha256(value) != recorded.get(name, {}).get(key):
        bad.append(f"{name!r} {key}: sha256 differs from the one recorded at conversion")
  if bad:
    raise CheckpointError(
        f"The checkpoint {directory} is damaged: {len(bad)} array(s) differ from {CHECKSUMS_FILE} "
        f"(in its data files):\n  " + "\n  ".join(bad) + f"\n{rewrite}", bad)
  # Saved as numpy (no device or sharding baked into the file), so restored as numpy.
  return caffe.on_device(restored)


@contextlib.contextmanager
def _quiet_orbax():
  """Silences orbax's logging, and the dozens of "Event loop is closed" tracebacks that
  tensorstore's callbacks print when a read fails, for a call whose failure we report ourselves."""
  loggers = [logging.getLogger(n) for n in ("absl", "asyncio", "orbax", "jax")]
  levels = [l.level for l in loggers]
  for l in loggers:
    l.setLevel(logging.CRITICAL)
  previous_hook = sys.unraisablehook

  def hook(unraisable):
    if not (isinstance(unraisable.exc_value, RuntimeError) and "Event loop is closed" in str(unraisable.exc_value)):
      previous_hook(unraisable)

  sys.unraisablehook = hook
  try:
    yield
  except BaseException:
    # The failed read's pending futures keep reporting after we return; leave the (narrow)
    # filter in place for the rest of the process.
    raise
  else:
    sys.unraisablehook = previous_hook
  finally:
    for l, level in zip(loggers, levels):
      l.setLevel(level)


# ----------------------------------------------------------------------------- digests


def _file_hashes(path: str, *algorithms: str) -> dict[str, str]:
  """{algorithm: hex digest} of a file, all in one read (1 MiB chunks)."""
  hashes = {a: hashlib.new(a) for a in algorithms}
  with open(path, "rb") as f:
    while chunk := f.read(1 << 20):
      for h in hashes.values():
        h.update(chunk)
  return {a: h.hexdigest() for a, h in hashes.items()}


# A file modified this recently may change again within the same mtime tick without changing its
# size, so its digest is not cached (git's "racy" index entries, same cure).
_RACY_S = 2.0
_DIGESTS_KEPT = 256  # entries in <cache>/digests.json; the oldest go first


def _stat_key(st: os.stat_result) -> list:
  return [st.st_size, st.st_mtime_ns, st.st_ino, st.st_dev]


def file_sha256(path: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None) -> str:
  """sha256 of a file, cached in `<cache>/digests.json` by (real path, size, mtime_ns, inode).

  The cache is best effort: an unreadable, damaged or unwritable cache only means the file is
  hashed again (53.5 MB take about 0.2 s).
  """
  path = os.path.realpath(os.fspath(path))
  st = os.stat(path)
  record_path = os.path.join(resolve_cache_dir(cache_dir), DIGESTS_FILE)
  try:
    record = files.read_json(record_path)
    if not isinstance(record, dict):
      record = {}
  except (OSError, ValueError):
    record = {}
  entry = record.get(path)
  if isinstance(entry, dict) and entry.get("stat") == _stat_key(st) and isinstance(entry.get("sha256"), str):
    return entry["sha256"]
  digest = _file_hashes(path, "sha256")["sha256"]
  if time.time() - st.st_mtime_ns / 1e9 > _RACY_S and os.stat(path).st_mtime_ns == st.st_mtime_ns:
    record.pop(path, None)
    record[path] = {"stat": _stat_key(st), "sha256": digest}  # last = newest
    for old in list(record)[:-_DIGESTS_KEPT]:
      del record[old]
    try:
      files.write_json(record_path, record)
    except OSError as e:  # a read-only or misplaced cache: hash again next time
      log.debug("Not caching the digest of %s in %s: %s", path, record_path, e)
  return digest


def _checkpoint_digest(directory: str) -> str:
  """The digest `weights_sha256` gives a checkpoint directory (see there)."""
  checksums_path = os.path.join(directory, CHECKSUMS_FILE)
  if not is_checkpoint(directory):
    raise CheckpointError(f"{directory} is not an orbax checkpoint (it has none of "
                          f"{', '.join(_ORBAX_MARKERS)}). Pass a directory written by "
                          "`python -m experiments.convert_weights`, or a .caffemodel file.")
  try:
    record = files.read_json(checksums_path)
    arrays = record["sha256"]
    source = record.get("source_sha256")
  except (OSError, ValueError, KeyError, TypeError, AttributeError) as e:
    raise CheckpointError(f"The checkpoint {directory} has no readable {CHECKSUMS_FILE} ({_first_line(e)}), "
                          f"so its arrays cannot be verified; it is damaged or was written by an older "
                          f"rfspec. {_REWRITE.format(dir=directory)}") from None
  if isinstance(source, str) and source:
    return source
  canonical = json.dumps(arrays, sort_keys=True, separators=(",", ":"))
  return hashlib.sha256(canonical.encode()).hexdigest()


def weights_sha256(src: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None,
                   url: str | None = None, sha1: str = SHA1, progress: bool = True) -> str:
  """What identifies the weights `load_params(src)` loads: a hex sha256, for keying results.

  * a file (.caffemodel): its sha256 (`sha256sum FILE`), cached by (path, size, mtime_ns, inode)
    in `<cache>/digests.json`, so a 53.5 MB file is hashed once;
  * an orbax checkpoint directory: the sha256 of the file it was converted from, when its
    `rfspec_checksums.json` records one (the cache's checkpoint always does), so a file and its
    checkpoint key results alike; else the sha256 of its recorded per-array sha256s (canonical
    JSON), which `load_params` verifies the arrays against;
  * "bvlc_googlenet": the same for what it resolves to (`resolve_weights`): `$RFSPEC_WEIGHTS`,
    else the cache's checkpoint, else the cached caffemodel.

  It may be called before `load_params` (to find finished results without loading anything):
  for "bvlc_googlenet" with nothing cached yet it first fetches the weights into the cache as
  `load_params` would (download, sha1 check, conversion; `url`, `sha1`, `progress` as there), since
  weights that are not there have no digest. `load_params(src, with_digest=True)` gives both at once.

  Raises:
    UserError: `src` does not exist (or `$RFSPEC_WEIGHTS` names a missing path); for
      "bvlc_googlenet" with nothing cached, whatever `load_params` raises when it cannot fetch it;
      CheckpointError: a directory that is not a checkpoint, or has no readable checksums.
  """
  path = resolve_weights(src, cache_dir=cache_dir)
  if os.fspath(src) == NAME and not os.path.exists(path):
    if _env_weights():
      raise _env_missing(cache_dir)
    _, path = _load_cached(cache_dir=cache_dir, url=url or os.environ.get("RFSPEC_WEIGHTS_URL") or URL,
                           sha1=sha1, progress=progress)
  if os.path.isfile(path):
    return file_sha256(path, cache_dir=cache_dir)
  if os.path.isdir(path):
    return _checkpoint_digest(os.path.abspath(path))
  raise _no_such_weights(os.fspath(src), cache_dir)


# ----------------------------------------------------------------------------- entry point


def _env_weights() -> str | None:
  """`$RFSPEC_WEIGHTS` when it names a path (not unset, empty or "bvlc_googlenet" itself)."""
  value = os.environ.get(ENV_WEIGHTS, "").strip()
  return os.path.expanduser(value) if value and value != NAME else None


def resolve_weights(src: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None) -> str:
  """The file or directory `load_params(src)` reads.

  `src` itself, except "bvlc_googlenet": `$RFSPEC_WEIGHTS` if that names a path; else the
  cache's converted checkpoint if there is one; else the cached caffemodel's path (which does not
  exist before the first download).
  """
  src = os.fspath(src)
  if src != NAME:
    return src
  explicit = _env_weights()
  if explicit:
    return explicit
  root = resolve_cache_dir(cache_dir)
  checkpoint = os.path.join(root, CHECKPOINT_DIR)
  return checkpoint if is_checkpoint(checkpoint) else os.path.join(root, CAFFEMODEL_FILE)


def _env_missing(cache_dir) -> UserError:
  return UserError(f"{ENV_WEIGHTS}={os.environ.get(ENV_WEIGHTS)!r}, which {NAME!r} resolves to, is no "
                   f"such file or directory. Point {ENV_WEIGHTS} at a GoogLeNet .caffemodel or an orbax "
                   f"checkpoint directory, or unset it to use the cache ({resolve_cache_dir(cache_dir)}).")


def _no_such_weights(src: str, cache_dir) -> UserError:
  return UserError(f"Weights {src!r}: no such file or directory. Weights may be a .caffemodel "
                   f"file, an orbax checkpoint directory (from `python -m experiments.convert_weights`), "
                   f"or {NAME!r} (cached in {resolve_cache_dir(cache_dir)}, downloaded if missing).")


def load_params(src: str | os.PathLike, *, cache_dir: str | os.PathLike | None = None,
                url: str | None = None, sha1: str = SHA1, progress: bool = True,
                with_digest: bool = False):
  """Loads GoogLeNet params from a `.caffemodel`, an orbax checkpoint, or the cache.

  Args:
    src: a `.caffemodel` file or an orbax checkpoint directory, loaded as given (no sha1
      requirement: any GoogLeNet caffemodel, e.g. one re-packed without the auxiliary heads); or
      "bvlc_googlenet": `$RFSPEC_WEIGHTS` when that names a path (loaded as given), else the
      converted checkpoint in the cache if there is one, else `<cache>/bvlc_googlenet.caffemodel`
      (downloaded from `url` if missing; its sha1 must be `sha1`), converted once and saved as the
      checkpoint.
    cache_dir: overrides `$RFSPEC_CACHE` (default ~/.cache/rfspec).
    url: where to download from; default `$RFSPEC_WEIGHTS_URL` (e.g. a mirror), else `URL`.
    sha1: expected sha1 of the download and of a cached caffemodel before it is converted.
    progress: draw a download progress line on stderr.
    with_digest: also return `weights_sha256` of what was loaded.

  Returns:
    params: {caffe layer name: {"kernel": HWIO or (K, N), "bias": (N,)}} float32 jax arrays,
    exactly the tree `googlenet.param_shapes()` describes; with `with_digest`, the pair
    (params, sha256 hex string).

  Raises (all `rfspec.errors.UserError`, one paragraph that names the fix):
    UserError: `src` is none of the above (or `$RFSPEC_WEIGHTS` names a missing path), or the
      cache directory cannot be written to when a download is needed.
    caffe.CaffeModelError / CheckpointError: the file or directory is not GoogLeNet weights, or
      the checkpoint is damaged.
    WeightsUnavailableError: "bvlc_googlenet" is not cached and cannot be downloaded; the message
      says where to put the file.
    ChecksumError: the download, or the caffemodel found in the cache, has the wrong sha1.
  """
  src = os.fspath(src)
  if src == NAME and not _env_weights():
    params, path = _load_cached(cache_dir=cache_dir, url=url or os.environ.get("RFSPEC_WEIGHTS_URL") or URL,
                                sha1=sha1, progress=progress)
  else:
    path = resolve_weights(src, cache_dir=cache_dir)
    if os.path.isfile(path):
      params = caffe.load_caffemodel(path)
    elif os.path.isdir(path):
      params = restore_checkpoint(path)
    elif src == NAME:
      raise _env_missing(cache_dir)
    else:
      raise _no_such_weights(src, cache_dir)
  if not with_digest:
    return params
  return params, weights_sha256(path, cache_dir=cache_dir)


def _load_cached(*, cache_dir, url: str, sha1: str, progress: bool):
  """The cache's params, and the path they came from (the checkpoint, or the caffemodel if the
  checkpoint could not be written)."""
  root = resolve_cache_dir(cache_dir)
  checkpoint = os.path.join(root, CHECKPOINT_DIR)
  files.clean_stale_temps(root)  # .part / .tmp left by a killed download or conversion
  if is_checkpoint(checkpoint):
    try:
      return restore_checkpoint(checkpoint), checkpoint
    except CheckpointError as e:
      raise CheckpointError(f"{e}\nThis is rfspec's cache: delete {checkpoint} to rebuild it (from "
                            f"{CAFFEMODEL_FILE} in the cache, or a fresh download).", e.problems) from None
  caffemodel_path = os.path.join(root, CAFFEMODEL_FILE)
  if not os.path.isfile(caffemodel_path):
    _check_cache_writable(root)
    log.info("%s is not cached; downloading %s", CAFFEMODEL_FILE, url)
    download(url, caffemodel_path, sha1=sha1, progress=progress)
  # A file found in the cache may be a damaged copy, or anything put there by hand: it must be the
  # official download before it becomes the checkpoint every later run trusts (as keras'
  # get_file checks its cache). One read gives the sha256 the checkpoint records as its source.
  hashes = _file_hashes(caffemodel_path, "sha1", "sha256")
  if hashes["sha1"] != sha1.lower():
    raise ChecksumError(
        f"The cached weights file {caffemodel_path} has sha1 {hashes['sha1']}, not the official {sha1} of "
        f"{URL}: it is damaged or another file, so it was not used. Delete it (rm {caffemodel_path}) and "
        f"the next load downloads the official file again (offline: put a good copy there); or, if it "
        f"is a GoogLeNet caffemodel you mean to use (e.g. a re-packed one), name it explicitly: "
        f"--weights={caffemodel_path} (or {ENV_WEIGHTS}={caffemodel_path}) for the binaries, "
        f"rfspec.load_params('{caffemodel_path}') in Python; a file named explicitly is loaded as given "
        "and results record its sha256.")
  params = caffe.load_caffemodel(caffemodel_path)
  try:
    save_checkpoint(params, checkpoint, overwrite=True, source_sha256=hashes["sha256"])
  except OSError as e:  # a read-only cache still gives the params
    log.warning("Could not cache the converted checkpoint at %s: %s", checkpoint, e)
    return params, caffemodel_path
  return params, checkpoint

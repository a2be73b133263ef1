"""Tests for rfspec.weights.store (cache, download, orbax) and experiments/convert_weights.py.

The download is tested against an http.server on 127.0.0.1 serving the shared caffemodel, with
its actual sha1 passed in (the official URL is unreachable here).
"""

import contextlib
import functools
import glob
import hashlib
import http.server
import io
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
from unittest import mock

import pytest
from absl.testing import absltest, parameterized
import jax
import numpy as np

from rfspec import files as rfspec_files
from rfspec.errors import UserError
from rfspec.models import googlenet
from rfspec.weights import caffe, store
from tests.conftest import CAFFEMODEL, REPO, real_params, shared_file
from tests.weights.caffe_test import assert_params_equal


@functools.lru_cache(maxsize=None)
def caffemodel_bytes() -> bytes:
  return shared_file(CAFFEMODEL).read_bytes()


@functools.lru_cache(maxsize=None)
def caffemodel_sha1() -> str:
  return hashlib.sha1(caffemodel_bytes()).hexdigest()


class _Handler(http.server.BaseHTTPRequestHandler):
  """Serves the caffemodel at any path; `server.mode` selects a failure to simulate."""

  def do_GET(self):
    server = self.server
    server.requests.append(self.path)
    body = caffemodel_bytes()
    if server.mode == "404":
      self.send_error(404, "Not Found")
      return
    self.send_response(200)
    self.send_header("Content-Type", "application/octet-stream")
    if server.mode == "drop_no_length":  # no Content-Length: the close looks like the end of the file
      self.send_header("Connection", "close")
      self.end_headers()
      self.wfile.write(body[:len(body) // 2])
      self.wfile.flush()
      self.close_connection = True
      return
    self.send_header("Content-Length", str(len(body)))
    self.end_headers()
    if server.mode == "drop":  # announce the whole file, send half, hang up
      self.wfile.write(body[:len(body) // 2])
      self.wfile.flush()
      self.connection.shutdown(socket.SHUT_RDWR)
      return
    self.wfile.write(body)

  def log_message(self, *args):  # keep test output quiet
    pass


def unused_port() -> int:
  """A localhost port that nothing listens on (bound, then released)."""
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


class StoreTestCase(parameterized.TestCase):
  """RFSPEC_CACHE points at a fresh temporary directory for every test."""

  def setUp(self):
    super().setUp()
    self.cache = os.path.join(self.create_tempdir().full_path, "cache")
    env = {"RFSPEC_CACHE": self.cache}
    self.enter_context(mock.patch.dict(os.environ, env))
    os.environ.pop("RFSPEC_WEIGHTS_URL", None)
    os.environ.pop("RFSPEC_WEIGHTS", None)

  def start_server(self, mode: str = "ok") -> str:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    server.requests, server.mode = [], mode
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    self.addCleanup(thread.join)
    self.addCleanup(server.server_close)
    self.addCleanup(server.shutdown)
    self.server = server
    return f"http://127.0.0.1:{server.server_address[1]}/bvlc_googlenet.caffemodel"

  def cache_files(self) -> list[str]:
    """Everything under the cache dir, hidden temporary files included."""
    out = []
    for root, dirs, files in os.walk(self.cache):
      out += [os.path.relpath(os.path.join(root, n), self.cache) for n in dirs + files]
    return sorted(out)


class DownloadTest(StoreTestCase):

  def test_download_converts_and_caches(self):
    url = self.start_server()
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr):
      params = store.load_params("bvlc_googlenet", url=url, sha1=caffemodel_sha1())
    assert_params_equal(self, params, real_params())
    self.assertLen(self.server.requests, 1)
    self.assertIn("100%", stderr.getvalue())  # the progress line
    cached = os.path.join(self.cache, store.CAFFEMODEL_FILE)
    with open(cached, "rb") as f:
      self.assertEqual(hashlib.sha1(f.read()).hexdigest(), caffemodel_sha1())
    umask = os.umask(0)
    os.umask(umask)
    self.assertEqual(os.stat(cached).st_mode & 0o777, 0o666 & ~umask)  # not mkstemp's 0600
    self.assertTrue(store.is_checkpoint(os.path.join(self.cache, store.CHECKPOINT_DIR)))
    self.assertFalse([n for n in os.listdir(self.cache) if n.startswith(".")])  # no temp files

    # Second call: the converted checkpoint, no request.
    with mock.patch.object(caffe, "load_caffemodel", side_effect=AssertionError("re-parsed")):
      again = store.load_params("bvlc_googlenet", url=url, sha1=caffemodel_sha1())
    self.assertLen(self.server.requests, 1)
    assert_params_equal(self, again, real_params())

  def test_wrong_checksum_leaves_nothing(self):
    url = self.start_server()
    with self.assertRaises(store.ChecksumError) as cm:
      store.load_params("bvlc_googlenet", url=url, sha1="0" * 40, progress=False)
    self.assertIn(caffemodel_sha1(), str(cm.exception))
    self.assertIn("0" * 40, str(cm.exception))
    self.assertLen(self.server.requests, 1)
    self.assertEqual(self.cache_files(), [])

  def test_server_down_says_where_to_put_the_file(self):
    url = f"http://127.0.0.1:{unused_port()}/bvlc_googlenet.caffemodel"
    with self.assertRaises(store.WeightsUnavailableError) as cm:
      store.load_params("bvlc_googlenet", url=url, progress=False)
    self.assertIsInstance(cm.exception, ConnectionError)
    message = str(cm.exception)
    for part in (os.path.join(self.cache, "bvlc_googlenet.caffemodel"), store.URL, store.SHA1,
                 "--weights=/path/to/bvlc_googlenet.caffemodel", "RFSPEC_WEIGHTS", "RFSPEC_CACHE",
                 "rfspec.load_params('/path/to/bvlc_googlenet.caffemodel')"):  # the Tour's fix, offline
      self.assertIn(part, message)
    self.assertNotIn("\n", message)  # one paragraph
    self.assertEqual(self.cache_files(), [])

  def test_weights_url_env_var(self):
    url = f"http://127.0.0.1:{unused_port()}/mirror/bvlc_googlenet.caffemodel"
    with mock.patch.dict(os.environ, {"RFSPEC_WEIGHTS_URL": url}):
      with self.assertRaisesRegex(store.WeightsUnavailableError, "/mirror/"):
        store.load_params("bvlc_googlenet", progress=False)

  @parameterized.named_parameters(("dropped_connection", "drop", "broke off after"),
                                  ("dropped_without_length", "drop_no_length", "no Content-Length.*cut short"),
                                  ("http_404", "404", "HTTP 404"))
  def test_failed_transfer_leaves_nothing(self, mode, reason):
    url = self.start_server(mode)
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), self.assertRaisesRegex(store.WeightsUnavailableError, reason) as cm:
      store.download(url, os.path.join(self.cache, "x.caffemodel"), sha1=caffemodel_sha1())
    self.assertNotIn("WeightsUnavailableError", str(cm.exception))  # not wrapped in itself
    self.assertNotIsInstance(cm.exception, store.ChecksumError)
    self.assertTrue(stderr.getvalue() == "" or stderr.getvalue().endswith("\n"), repr(stderr.getvalue()[-80:]))
    self.assertEqual(self.cache_files(), [])


  def test_ctrl_c_leaves_nothing(self):
    url = self.start_server()
    with mock.patch.object(store._Progress, "update", side_effect=KeyboardInterrupt):
      with self.assertRaises(KeyboardInterrupt):
        store.download(url, os.path.join(self.cache, "x.caffemodel"), sha1=caffemodel_sha1())
    self.assertEqual(self.cache_files(), [])

  def test_caffemodel_already_in_cache_is_converted_without_download(self):
    os.makedirs(self.cache)
    shutil.copy(shared_file(CAFFEMODEL), os.path.join(self.cache, store.CAFFEMODEL_FILE))
    url = f"http://127.0.0.1:{unused_port()}/unreachable"
    # The shared file is re-packed (another sha1 than the official download): pass its own.
    params = store.load_params("bvlc_googlenet", url=url, sha1=caffemodel_sha1())
    assert_params_equal(self, params, real_params())
    self.assertTrue(store.is_checkpoint(os.path.join(self.cache, store.CHECKPOINT_DIR)))

  def test_cache_dir_resolution(self):
    self.assertEqual(store.resolve_cache_dir(), self.cache)
    self.assertEqual(store.resolve_cache_dir("/tmp/x"), "/tmp/x")
    with mock.patch.dict(os.environ, {"RFSPEC_CACHE": ""}):
      self.assertEqual(store.resolve_cache_dir(), os.path.expanduser("~/.cache/rfspec"))


class CheckpointTest(StoreTestCase):

  def test_round_trip_equals_original(self):
    parent = self.create_tempdir().full_path
    directory = store.save_checkpoint(real_params(), os.path.join(parent, "ckpt"))
    self.assertEqual(os.listdir(parent), ["ckpt"])  # no staging directory left behind
    restored = store.restore_checkpoint(directory)
    assert_params_equal(self, restored, real_params())
    self.assertIsInstance(restored["conv1/7x7_s2"]["kernel"], jax.Array)
    # load_params dispatches a directory to the same restore.
    assert_params_equal(self, store.load_params(directory), real_params())

  def test_mismatched_checkpoint_lists_every_problem(self):
    shapes = googlenet.param_shapes()
    tree = {name: {k: np.zeros(s, np.float32) for k, s in p.items()} for name, p in shapes.items()}
    del tree["inception_4c/5x5"]
    tree["conv1/7x7_s2"]["kernel"] = np.zeros((5, 5, 3, 64), np.float32)
    tree["extra/layer"] = {"kernel": np.zeros(3, np.float32)}
    directory = store.save_checkpoint(tree, os.path.join(self.create_tempdir().full_path, "bad"))
    with self.assertRaises(store.CheckpointError) as cm:
      store.restore_checkpoint(directory)
    message = str(cm.exception)
    self.assertIsInstance(cm.exception, ValueError)
    self.assertLen(cm.exception.problems, 4)  # 2 missing, 1 unexpected, 1 mis-shaped
    self.assertIn("missing 'inception_4c/5x5' kernel", message)
    self.assertIn("unexpected 'extra/layer' kernel", message)
    self.assertIn("'conv1/7x7_s2' kernel: shape (5, 5, 3, 64), expected (7, 7, 3, 64)", message)

  def test_directory_that_is_not_a_checkpoint(self):
    directory = self.create_tempdir().full_path
    with self.assertRaisesRegex(store.CheckpointError, "not an orbax checkpoint"):
      store.load_params(directory)

  def test_save_refuses_to_clobber(self):
    tree = {"a": {"kernel": np.ones(2, np.float32)}}
    parent = self.create_tempdir()
    other = parent.mkdir("not_a_checkpoint")
    other.create_file("keep.txt", "precious")
    with self.assertRaisesRegex(FileExistsError, "not an orbax checkpoint"):
      store.save_checkpoint(tree, other.full_path, overwrite=True)
    self.assertEqual(os.listdir(other.full_path), ["keep.txt"])
    directory = store.save_checkpoint(tree, os.path.join(parent.full_path, "ckpt"))
    with self.assertRaisesRegex(FileExistsError, "overwrite"):
      store.save_checkpoint(tree, directory)
    store.save_checkpoint({"a": {"kernel": np.zeros(2, np.float32)}}, directory, overwrite=True)
    self.assertEqual(sorted(os.listdir(parent.full_path)), ["ckpt", "not_a_checkpoint"])


def _flip_bytes(path: str, n: int = 64) -> None:
  """Inverts n bytes in the middle of a file (same size, different content)."""
  size = os.path.getsize(path)
  with open(path, "r+b") as f:
    f.seek(size // 2)
    data = f.read(n)
    f.seek(size // 2)
    f.write(bytes(b ^ 0xFF for b in data))


class DamagedCheckpointTest(StoreTestCase):
  """Every kind of damage is a CheckpointError naming the directory and the fix; nothing loads."""

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    parent = tempfile.mkdtemp(prefix="pristine_ckpt_")
    cls.addClassCleanup(shutil.rmtree, parent, ignore_errors=True)
    cls.pristine = store.save_checkpoint(real_params(), os.path.join(parent, "ckpt"))

  def damaged_copy(self, damage) -> str:
    directory = os.path.join(self.create_tempdir().full_path, "ckpt")
    shutil.copytree(self.pristine, directory)
    damage(directory)
    return directory

  def largest_data_file(self, directory: str) -> str:
    return max(glob.glob(os.path.join(directory, "ocdbt.process_*", "d", "*")), key=os.path.getsize)

  def assert_refused(self, directory: str, pattern: str):
    stderr = io.StringIO()
    with contextlib.redirect_stderr(stderr), self.assertRaisesRegex(store.CheckpointError, pattern) as cm:
      store.restore_checkpoint(directory)
    message = str(cm.exception)
    self.assertIn(directory, message)
    self.assertIn("convert_weights", message)
    self.assertIsInstance(cm.exception, UserError)
    self.assertLess(stderr.getvalue().count("\n"), 3, stderr.getvalue()[:2000])  # no asyncio dump
    return cm.exception

  def test_records_an_independent_sha256_per_array(self):
    recorded = rfspec_files.read_json(os.path.join(self.pristine, store.CHECKSUMS_FILE))["sha256"]
    self.assertEqual(set(recorded), set(googlenet.param_shapes()))
    bias = np.asarray(real_params()["conv1/7x7_s2"]["bias"], "<f4")
    self.assertEqual(recorded["conv1/7x7_s2"]["bias"],
                     hashlib.sha256(repr(bias.shape).encode() + bias.tobytes()).hexdigest())

  def test_flipped_bytes_in_a_data_file(self):
    directory = self.damaged_copy(lambda d: _flip_bytes(self.largest_data_file(d)))
    error = self.assert_refused(directory, "damaged")
    self.assertTrue(error.problems)

  def test_values_that_differ_from_the_recorded_checksum(self):
    def tamper(d):  # the arrays are intact, the record says otherwise: the comparison must notice
      path = os.path.join(d, store.CHECKSUMS_FILE)
      record = rfspec_files.read_json(path)
      record["sha256"]["inception_4b/3x3"]["kernel"] = "0" * 64
      rfspec_files.write_json(path, record)

    error = self.assert_refused(self.damaged_copy(tamper), "inception_4b/3x3' kernel: sha256 differs")
    self.assertLen(error.problems, 1)

  @parameterized.named_parameters(
      ("metadata_deleted", lambda d: os.unlink(os.path.join(d, "_METADATA")), "_METADATA"),
      ("metadata_truncated", lambda d: os.truncate(os.path.join(d, "_METADATA"), 100), "_METADATA"),
      ("checksums_deleted", lambda d: os.unlink(os.path.join(d, store.CHECKSUMS_FILE)), store.CHECKSUMS_FILE),
  )
  def test_missing_or_truncated_metadata(self, damage, pattern):
    self.assert_refused(self.damaged_copy(damage), pattern)

  def test_deleted_and_truncated_data_files(self):
    self.assert_refused(self.damaged_copy(lambda d: os.unlink(self.largest_data_file(d))), "data file")
    self.assert_refused(self.damaged_copy(lambda d: os.truncate(self.largest_data_file(d), 1000)), "data file")

  def test_damaged_cache_says_delete_to_rebuild(self):
    os.makedirs(self.cache)
    shutil.copytree(self.pristine, os.path.join(self.cache, store.CHECKPOINT_DIR))
    _flip_bytes(self.largest_data_file(os.path.join(self.cache, store.CHECKPOINT_DIR)))
    with self.assertRaisesRegex(store.CheckpointError,
                                f"delete {os.path.join(self.cache, store.CHECKPOINT_DIR)} to rebuild it"):
      store.load_params("bvlc_googlenet", url=f"http://127.0.0.1:{unused_port()}/x", progress=False)


class CacheDirectoryTest(StoreTestCase):

  def assert_names_the_fixes(self, error):
    message = str(error)
    self.assertIsInstance(error, UserError)
    for part in (self.cache, "RFSPEC_CACHE", "--weights=/path/to/bvlc_googlenet.caffemodel"):
      self.assertIn(part, message)

  def test_cache_that_is_a_file(self):
    os.makedirs(os.path.dirname(self.cache), exist_ok=True)
    with open(self.cache, "w") as f:
      f.write("not a directory")
    with self.assertRaisesRegex(UserError, "is a file, not a directory") as cm:
      store.load_params("bvlc_googlenet", url=f"http://127.0.0.1:{unused_port()}/x", progress=False)
    self.assert_names_the_fixes(cm.exception)

  def test_read_only_cache(self):
    os.makedirs(self.cache)
    denied = PermissionError(13, "Permission denied")  # root ignores chmod, so the OS answer is simulated
    with mock.patch.object(store.tempfile, "mkstemp", side_effect=denied):
      with self.assertRaisesRegex(UserError, "is not writable \\(Permission denied\\)") as cm:
        store.load_params("bvlc_googlenet", url=f"http://127.0.0.1:{unused_port()}/x", progress=False)
    self.assert_names_the_fixes(cm.exception)

  def test_stale_part_and_staging_of_a_killed_run_are_removed(self):
    os.makedirs(self.cache)
    shutil.copy(shared_file(CAFFEMODEL), os.path.join(self.cache, store.CAFFEMODEL_FILE))
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    part = os.path.join(self.cache, f".bvlc_googlenet.caffemodel.{dead}.a1b2c3d4.part")
    staging = os.path.join(self.cache, f".bvlc_googlenet.{dead}.e5f6g7h8.tmp")
    with open(part, "wb") as f:
      f.write(b"half a download")
    os.makedirs(os.path.join(staging, "checkpoint"))
    store.load_params("bvlc_googlenet", url=f"http://127.0.0.1:{unused_port()}/x", sha1=caffemodel_sha1(),
                      progress=False)
    self.assertEqual([f for f in self.cache_files() if f != store.DIGESTS_FILE], sorted([store.CAFFEMODEL_FILE, store.CHECKPOINT_DIR]
                                                + [os.path.relpath(p, self.cache) for p in glob.glob(
                                                    os.path.join(self.cache, store.CHECKPOINT_DIR, "**"),
                                                    recursive=True)][1:]))
    self.assertFalse(os.path.exists(part))
    self.assertFalse(os.path.exists(staging))

  def test_download_temp_names_match_the_cleaner(self):
    # A .part of a killed download is recognised by rfspec.files.clean_stale_temps.
    url = self.start_server()
    seen = []
    real_replace = os.replace

    def spy(src, dst):
      seen.append(os.path.basename(src))
      return real_replace(src, dst)

    with mock.patch.object(store.os, "replace", side_effect=spy):
      store.download(url, os.path.join(self.cache, "x.caffemodel"), sha1=caffemodel_sha1(), progress=False)
    self.assertRegex(seen[0], rfspec_files._TEMP_RE)
    self.assertTrue(seen[0].endswith(".part"))


class LoadParamsTest(StoreTestCase):

  def test_caffemodel_path(self):
    assert_params_equal(self, store.load_params(shared_file(CAFFEMODEL)), real_params())

  def test_unknown_src(self):
    with self.assertRaises(ValueError) as cm:
      store.load_params("googlenet_v3")
    message = str(cm.exception)
    for part in ("'googlenet_v3'", ".caffemodel", "orbax checkpoint", "'bvlc_googlenet'"):
      self.assertIn(part, message)


def _copy_with_old_mtime(src, dst) -> str:
  """A copy whose mtime lies an hour back, so its digest may be cached (not "racy")."""
  shutil.copy(src, dst)
  old = os.stat(dst).st_mtime_ns - 3600 * 10**9
  os.utime(dst, ns=(old, old))
  return dst


class WeightsDigestTest(StoreTestCase):
  """weights_sha256 / load_params(with_digest=True): results are keyed on content, not path."""

  def test_file_digest_is_its_sha256_whatever_its_path(self):
    a = _copy_with_old_mtime(shared_file(CAFFEMODEL), os.path.join(self.create_tempdir().full_path, "a.caffemodel"))
    b = _copy_with_old_mtime(shared_file(CAFFEMODEL), os.path.join(self.create_tempdir().full_path, "b.bin"))
    want = hashlib.sha256(caffemodel_bytes()).hexdigest()
    self.assertEqual(store.weights_sha256(a), want)
    self.assertEqual(store.weights_sha256(b), want)
    params, digest = store.load_params(a, with_digest=True)
    self.assertEqual(digest, want)
    assert_params_equal(self, params, real_params())

  def test_shared_repacked_file_has_the_documented_sha256(self):
    # ../shared/README.md records this sha256 for the re-packed file.
    self.assertEqual(store.weights_sha256(shared_file(CAFFEMODEL)),
                     "27b6f275d2be77e4a3556d67ce5689315fb1e0a41a01b6f8092954451d345bbd")

  def test_file_digest_is_computed_once_per_size_mtime(self):
    path = _copy_with_old_mtime(shared_file(CAFFEMODEL), os.path.join(self.create_tempdir().full_path, "w.caffemodel"))
    want = store.weights_sha256(path)
    self.assertIn(os.path.realpath(path), rfspec_files.read_json(os.path.join(self.cache, store.DIGESTS_FILE)))
    with mock.patch.object(store, "_file_hashes", side_effect=AssertionError("hashed again")):
      self.assertEqual(store.weights_sha256(path), want)
    # Same size, other content, other mtime: hashed again, new digest.
    _flip_bytes(path)
    old = os.stat(path).st_mtime_ns - 7200 * 10**9
    os.utime(path, ns=(old, old))
    self.assertNotEqual(store.weights_sha256(path), want)
    with open(path, "rb") as f:
      self.assertEqual(store.weights_sha256(path), hashlib.sha256(f.read()).hexdigest())

  def test_damaged_or_unwritable_digest_cache_only_costs_a_rehash(self):
    path = _copy_with_old_mtime(shared_file(CAFFEMODEL), os.path.join(self.create_tempdir().full_path, "w.caffemodel"))
    want = hashlib.sha256(caffemodel_bytes()).hexdigest()
    os.makedirs(self.cache)
    with open(os.path.join(self.cache, store.DIGESTS_FILE), "w") as f:
      f.write("{not json")
    self.assertEqual(store.weights_sha256(path), want)
    cache_file = os.path.join(self.create_tempdir().full_path, "cache_is_a_file")
    with open(cache_file, "w") as f:
      f.write("x")
    self.assertEqual(store.weights_sha256(path, cache_dir=cache_file), want)

  def test_checkpoint_digest_from_its_recorded_array_sha256s(self):
    shapes = googlenet.param_shapes()
    tree = {name: {k: np.full(s, 0.5, np.float32) for k, s in p.items()} for name, p in shapes.items()}
    parent = self.create_tempdir().full_path
    one = store.save_checkpoint(tree, os.path.join(parent, "one"))
    two = store.save_checkpoint(tree, os.path.join(parent, "two"))
    self.assertEqual(store.weights_sha256(one), store.weights_sha256(two))  # same arrays, other path
    self.assertRegex(store.weights_sha256(one), "^[0-9a-f]{64}$")
    tree["inception_4c/5x5"]["bias"] = tree["inception_4c/5x5"]["bias"] + 1
    three = store.save_checkpoint(tree, os.path.join(parent, "three"))
    self.assertNotEqual(store.weights_sha256(three), store.weights_sha256(one))
    # A checkpoint converted from a file is keyed as that file is.
    four = store.save_checkpoint(tree, os.path.join(parent, "four"), source_sha256="ab" * 32)
    self.assertEqual(store.weights_sha256(four), "ab" * 32)
    with self.assertRaises(store.CheckpointError):
      store.weights_sha256(parent)

  def test_cache_file_and_its_checkpoint_give_the_same_digest(self):
    os.makedirs(self.cache)
    cached = os.path.join(self.cache, store.CAFFEMODEL_FILE)
    shutil.copy(shared_file(CAFFEMODEL), cached)
    want = hashlib.sha256(caffemodel_bytes()).hexdigest()
    url = f"http://127.0.0.1:{unused_port()}/unreachable"
    _, first = store.load_params("bvlc_googlenet", url=url, sha1=caffemodel_sha1(), with_digest=True)
    self.assertTrue(store.is_checkpoint(os.path.join(self.cache, store.CHECKPOINT_DIR)))
    _, second = store.load_params("bvlc_googlenet", url=url, sha1=caffemodel_sha1(), with_digest=True)
    self.assertEqual((first, second), (want, want))  # converting on the first run changes nothing
    self.assertEqual(store.weights_sha256("bvlc_googlenet"), want)
    self.assertEqual(store.weights_sha256(os.path.join(self.cache, store.CHECKPOINT_DIR)), want)
    self.assertEqual(store.load_params(shared_file(CAFFEMODEL), with_digest=True)[1], want)

  def test_digest_before_the_first_load_fetches_the_weights(self):
    # A run asks for the digest first, to find finished results before loading anything.
    with self.assertRaises(store.WeightsUnavailableError):  # offline: load_params's own message
      store.weights_sha256("bvlc_googlenet", url=f"http://127.0.0.1:{unused_port()}/x", progress=False)
    url = self.start_server()
    digest = store.weights_sha256("bvlc_googlenet", url=url, sha1=caffemodel_sha1(), progress=False)
    self.assertEqual(digest, hashlib.sha256(caffemodel_bytes()).hexdigest())
    self.assertLen(self.server.requests, 1)
    _, again = store.load_params("bvlc_googlenet", url=url, sha1=caffemodel_sha1(), with_digest=True)
    self.assertEqual(again, digest)
    self.assertLen(self.server.requests, 1)  # the load found what the digest fetched
    with self.assertRaisesRegex(UserError, "no such file or directory"):
      store.weights_sha256("/nonexistent/w.caffemodel")


class CachedFileChecksumTest(StoreTestCase):
  """A caffemodel found in the cache must have the official sha1 before it is converted."""

  def put_in_cache(self, damage=None) -> str:
    os.makedirs(self.cache, exist_ok=True)
    path = os.path.join(self.cache, store.CAFFEMODEL_FILE)
    shutil.copy(shared_file(CAFFEMODEL), path)
    if damage:
      damage(path)
    return path

  def assert_refused(self, path, **kwargs):
    url = f"http://127.0.0.1:{unused_port()}/unreachable"
    with mock.patch.object(caffe, "load_caffemodel", side_effect=AssertionError("converted")), \
        self.assertRaises(store.ChecksumError) as cm:
      store.load_params("bvlc_googlenet", url=url, progress=False, **kwargs)
    message = str(cm.exception)
    with open(path, "rb") as f:
      found = hashlib.sha1(f.read()).hexdigest()
    for part in (path, found, kwargs.get("sha1", store.SHA1), "Delete it", f"--weights={path}",
                 f"rfspec.load_params('{path}')"):
      self.assertIn(part, message)
    self.assertNotIn("\n", message)  # one paragraph
    self.assertIsInstance(cm.exception, UserError)
    self.assertFalse(os.path.exists(os.path.join(self.cache, store.CHECKPOINT_DIR)))  # nothing converted

  def test_corrupted_cached_download_is_refused(self):
    path = self.put_in_cache(_flip_bytes)
    self.assert_refused(path, sha1=caffemodel_sha1())  # the sha1 the intact file would have

  def test_file_that_is_not_the_official_download_is_refused_from_the_cache(self):
    self.assert_refused(self.put_in_cache())  # the re-packed file has another sha1 than the official

  def test_the_same_file_named_explicitly_is_loaded_as_given(self):
    path = self.put_in_cache()
    params, digest = store.load_params(path, with_digest=True)
    assert_params_equal(self, params, real_params())
    self.assertEqual(digest, hashlib.sha256(caffemodel_bytes()).hexdigest())


class WeightsEnvTest(StoreTestCase):
  """"bvlc_googlenet" honours $RFSPEC_WEIGHTS: the README Tour works offline with it set."""

  def test_tour_offline_with_rfspec_weights(self):
    url = f"http://127.0.0.1:{unused_port()}/unreachable"
    with mock.patch.dict(os.environ, {"RFSPEC_WEIGHTS": str(shared_file(CAFFEMODEL)), "RFSPEC_WEIGHTS_URL": url}):
      params = store.load_params("bvlc_googlenet")
      _, digest = store.load_params("bvlc_googlenet", with_digest=True)
      self.assertEqual(store.resolve_weights("bvlc_googlenet"), str(shared_file(CAFFEMODEL)))
      self.assertEqual(store.weights_sha256("bvlc_googlenet"), digest)
    assert_params_equal(self, params, real_params())
    self.assertEqual(digest, hashlib.sha256(caffemodel_bytes()).hexdigest())
    self.assertFalse(os.path.exists(os.path.join(self.cache, store.CHECKPOINT_DIR)))  # loaded as given

  def test_rfspec_weights_naming_a_checkpoint(self):
    directory = store.save_checkpoint(real_params(), os.path.join(self.create_tempdir().full_path, "ckpt"))
    with mock.patch.dict(os.environ, {"RFSPEC_WEIGHTS": directory}):
      assert_params_equal(self, store.load_params("bvlc_googlenet"), real_params())

  def test_rfspec_weights_naming_a_missing_path(self):
    with mock.patch.dict(os.environ, {"RFSPEC_WEIGHTS": "/nonexistent/w.caffemodel"}):
      with self.assertRaisesRegex(UserError, "RFSPEC_WEIGHTS='/nonexistent/w.caffemodel'.*unset it") as cm:
        store.load_params("bvlc_googlenet")
      with self.assertRaisesRegex(UserError, "RFSPEC_WEIGHTS"):
        store.weights_sha256("bvlc_googlenet")
    self.assertNotIn("\n", str(cm.exception))

  def test_empty_rfspec_weights_means_the_cache(self):
    url = f"http://127.0.0.1:{unused_port()}/unreachable"
    with mock.patch.dict(os.environ, {"RFSPEC_WEIGHTS": ""}):
      with self.assertRaises(store.WeightsUnavailableError):
        store.load_params("bvlc_googlenet", url=url, progress=False)


@pytest.mark.slow
class ConvertWeightsBinaryTest(absltest.TestCase):

  def run_binary(self, *args):
    env = {**os.environ, "RFSPEC_CACHE": self.create_tempdir().full_path, "JAX_PLATFORMS": "cpu"}
    return subprocess.run([sys.executable, "-m", "experiments.convert_weights", *args], cwd=REPO,
                          env=env, capture_output=True, text=True, timeout=300)

  def test_converts(self):
    out = os.path.join(self.create_tempdir().full_path, "ckpt")
    result = self.run_binary(f"--weights={shared_file(CAFFEMODEL)}", f"--workdir={out}")
    self.assertEqual(result.returncode, 0, result.stderr)
    lines = result.stdout.strip().splitlines()
    self.assertLen(lines, 1)
    self.assertIn(out, lines[0])
    self.assertIn(f"{googlenet.num_params():,} parameters", lines[0])
    assert_params_equal(self, store.restore_checkpoint(out), real_params())

  def test_bad_path_is_a_user_error(self):
    out = os.path.join(self.create_tempdir().full_path, "ckpt")
    # The old flag names still work.
    result = self.run_binary("--caffemodel=/nonexistent/bvlc_googlenet.caffemodel", f"--out={out}")
    self.assertEqual(result.returncode, 1)
    self.assertNotIn("Traceback", result.stderr)
    self.assertIn("/nonexistent/bvlc_googlenet.caffemodel", result.stderr)
    self.assertFalse(os.path.exists(out))


if __name__ == "__main__":
  absltest.main()

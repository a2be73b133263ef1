"""rfspec.files: atomic writes, completion manifests that vouch only for intact files, stale temps."""

import hashlib
import io as _io
import json
import os
import subprocess
import sys
import time

import numpy as np
from absl.testing import absltest

from rfspec import files


def _npz_bytes(**arrays) -> bytes:
  buf = _io.BytesIO()
  np.savez_compressed(buf, **arrays)
  return buf.getvalue()


class AtomicWriteTest(absltest.TestCase):

  def test_writes_bytes_with_normal_permissions_and_no_leftovers(self):
    d = self.create_tempdir().full_path
    path = files.atomic_write(os.path.join(d, "sub", "a.bin"), b"abc")
    with open(path, "rb") as f:
      self.assertEqual(f.read(), b"abc")
    self.assertEqual(os.listdir(os.path.join(d, "sub")), ["a.bin"])
    umask = os.umask(0)
    os.umask(umask)
    self.assertEqual(os.stat(path).st_mode & 0o777, 0o666 & ~umask)

  def test_json_round_trip_of_numpy_and_non_finite(self):
    d = self.create_tempdir().full_path
    path = files.write_json(os.path.join(d, "x.json"), {"a": np.arange(3), "b": np.float32(2.5), "c": float("nan")})
    self.assertEqual(files.read_json(path), {"a": [0, 1, 2], "b": 2.5, "c": None})


class ImageTest(absltest.TestCase):

  def test_to_uint8_rounds_and_clips(self):
    np.testing.assert_array_equal(files.to_uint8(np.array([-0.5, 0.0, 0.5, 1.0, 2.0, 1 / 255 * 0.49])),
                                  [0, 0, 128, 255, 255, 0])

  def test_png_round_trip_and_load_image_convention(self):
    d = self.create_tempdir().full_path
    image = np.zeros((4, 6, 3), np.float32)
    image[0, 5] = (1.0, 0.0, 0.0)  # (y, x) = (row 0, col 5) is red
    path = files.write_png(os.path.join(d, "x.png"), image)
    loaded = files.load_image(path)
    self.assertEqual(loaded.shape, (4, 6, 3))  # [H, W, 3]
    self.assertEqual(loaded.dtype, np.float32)
    np.testing.assert_array_equal(loaded, image)
    self.assertEqual(files.load_image(path, (2, 3)).shape, (2, 3, 3))  # size is (H, W)


class ManifestTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.create_tempdir().full_path
    self.png = files.atomic_write(os.path.join(self.dir, "f.png"), b"\x89PNG fake image bytes")
    self.npz = files.atomic_write(os.path.join(self.dir, "f.npz"), _npz_bytes(images=np.ones((2, 4, 4, 3))))
    self.marker = os.path.join(self.dir, "f.done.json")
    files.write_manifest(self.marker, {"png": self.png, "npz": self.npz}, {"config_hash": "abc", "n": [1, 2]})

  def test_records_size_and_sha256_from_an_independent_hash(self):
    m = files.read_json(self.marker)
    with open(self.npz, "rb") as f:
      data = f.read()
    self.assertEqual(m["files"]["npz"], {"path": "f.npz", "size": len(data),
                                         "sha256": hashlib.sha256(data).hexdigest()})
    self.assertEqual(m["config_hash"], "abc")

  def test_intact_outputs_and_matching_want_pass(self):
    m = files.check_manifest(self.marker, {"config_hash": "abc", "n": (1, 2)})
    self.assertIsNotNone(m)
    self.assertEqual(m["files"]["png"]["path"], self.png)

  def test_other_config_is_not_done(self):
    self.assertIsNone(files.check_manifest(self.marker, {"config_hash": "other"}))
    self.assertIsNone(files.check_manifest(self.marker, {"missing_key": 1}))

  def test_truncated_npz_is_not_done(self):
    with open(self.npz, "rb") as f:
      data = f.read()
    with open(self.npz, "wb") as f:
      f.write(data[: len(data) // 2])
    self.assertIsNone(files.check_manifest(self.marker))

  def test_same_size_flipped_bytes_is_not_done(self):
    with open(self.png, "r+b") as f:
      f.seek(3)
      f.write(b"X")
    self.assertIsNone(files.check_manifest(self.marker))

  def test_a_new_file_beside_an_old_marker_is_not_done(self):
    # The mixed-config case: a rerun wrote a new PNG, then crashed before its marker.
    files.atomic_write(self.png, b"\x89PNG the NEW config's image")
    self.assertIsNone(files.check_manifest(self.marker, {"config_hash": "abc"}))

  def test_missing_file_missing_marker_and_garbage_marker(self):
    os.unlink(self.png)
    self.assertIsNone(files.check_manifest(self.marker))
    self.assertIsNone(files.check_manifest(os.path.join(self.dir, "nope.json")))
    with open(self.marker, "w") as f:
      f.write('{"files": {"png": ')
    self.assertIsNone(files.check_manifest(self.marker))
    with open(self.marker, "w") as f:
      json.dump(["not", "a", "manifest"], f)
    self.assertIsNone(files.check_manifest(self.marker))

  def test_invalid_zip_with_matching_hash_is_not_done(self):
    # A manifest written over a non-zip .npz (hash matches) still does not vouch for it.
    bad = files.atomic_write(os.path.join(self.dir, "g.npz"), b"PK\x03\x04 not really a zip")
    files.write_manifest(self.marker, {"npz": bad})
    self.assertIsNone(files.check_manifest(self.marker))

  def test_invalidate_removes_marker_and_is_idempotent(self):
    files.invalidate_manifest(self.marker)
    self.assertFalse(os.path.exists(self.marker))
    files.invalidate_manifest(self.marker)
    self.assertIsNone(files.check_manifest(self.marker))

  def test_reserved_keys_are_refused(self):
    with self.assertRaisesRegex(ValueError, "reserved"):
      files.write_manifest(self.marker, {}, {"files": 1})

  def test_workdir_can_move(self):
    moved = self.dir + "-moved"
    os.rename(self.dir, moved)
    self.addCleanup(lambda: os.rename(moved, self.dir))
    self.assertIsNotNone(files.check_manifest(os.path.join(moved, "f.done.json"), {"config_hash": "abc"}))


class CleanStaleTempsTest(absltest.TestCase):

  def _dead_pid(self) -> int:
    p = subprocess.Popen([sys.executable, "-c", "pass"])
    p.wait()
    return p.pid

  def test_removes_only_our_leftovers_of_dead_or_old_writers(self):
    d = self.create_tempdir().full_path
    dead = self._dead_pid()
    names = {
        f".fig2.png.{dead}.ab_cd123.tmp": True,            # atomic_write of a killed run
        f".bvlc_googlenet.caffemodel.{dead}.x1y2z3w4.part": True,  # killed download
        f".fig2.npz.{os.getpid()}.abcdefgh.tmp": False,   # our own, in flight
        ".fig2.png.abcdefgh.tmp": False,                  # not our naming (no pid)
        "notes.tmp": False,
        "fig2.png": False,
    }
    for name in names:
      with open(os.path.join(d, name), "w") as f:
        f.write("x")
    os.mkdir(os.path.join(d, f".bvlc_googlenet.{dead}.qwertyui.tmp"))  # checkpoint staging dir
    old = os.path.join(d, f".old.json.{os.getpid()}.zzzzzzzz.tmp")  # live pid but a day old
    open(old, "w").close()
    os.utime(old, (time.time() - 2 * 86400,) * 2)

    removed = files.clean_stale_temps(d)

    expect_gone = sorted([n for n, gone in names.items() if gone]
                         + [f".bvlc_googlenet.{dead}.qwertyui.tmp", os.path.basename(old)])
    self.assertEqual(sorted(os.path.basename(p) for p in removed), expect_gone)
    self.assertEqual(sorted(os.listdir(d)), sorted(n for n, gone in names.items() if not gone))

  def test_missing_directory_is_fine(self):
    self.assertEqual(files.clean_stale_temps(os.path.join(self.create_tempdir().full_path, "nope")), [])

  def test_atomic_write_names_its_temp_for_the_cleaner(self):
    # A temp left by a killed atomic_write must match the cleaner's pattern.
    d = self.create_tempdir().full_path
    code = ("import os, sys; from rfspec import files\n"
            "os.replace = lambda a, b: os._exit(9)\n"  # die between write and rename
            f"files.atomic_write({os.path.join(d, 'out.json')!r}, b'{{}}')\n")
    subprocess.run([sys.executable, "-c", code], check=False)
    left = os.listdir(d)
    self.assertLen(left, 1)
    self.assertEqual(files.clean_stale_temps(d), [os.path.join(d, left[0])])
    self.assertEqual(os.listdir(d), [])


if __name__ == "__main__":
  absltest.main()

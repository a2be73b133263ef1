"""rfspec.runs.Store: units vouched for by checksum and key, sealed outputs, the workdir lock."""

import json
import os
import subprocess
import sys

import numpy as np
from absl.testing import absltest

from rfspec.errors import UserError
from rfspec.runs.store import Store
from tests.conftest import REPO


class StoreTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.dir = self.create_tempdir().full_path

  def test_round_trip_and_key(self):
    with Store(self.dir, weights_sha256="a") as st:
      st.save("u/one", {"k": 1}, {"x": np.arange(5.0)}, {"note": "hi"})
      arrays, meta = st.load("u/one", {"k": 1})
      np.testing.assert_array_equal(arrays["x"], np.arange(5.0))
      self.assertEqual(meta, {"note": "hi"})
      self.assertIsNone(st.load("u/one", {"k": 2}))  # another setting
    with Store(self.dir, weights_sha256="b") as st:
      self.assertIsNone(st.load("u/one", {"k": 1}))  # other weights, same path
    with Store(self.dir, weights_sha256="a", overwrite=True) as st:
      self.assertIsNone(st.load("u/one", {"k": 1}))

  def test_damaged_units_are_recomputed_not_loaded(self):
    with Store(self.dir) as st:
      st.save("u", 0, {"x": np.ones(100)}, {"m": 1})
    npz = os.path.join(self.dir, "u.npz")
    data = bytearray(open(npz, "rb").read())
    data[len(data) // 2] ^= 0xFF
    open(npz, "wb").write(bytes(data))
    with Store(self.dir) as st:
      self.assertIsNone(st.load("u", 0))
    with Store(self.dir) as st:
      st.save("v", 0, {"x": np.ones(3)}, {"m": 1})
    with open(os.path.join(self.dir, "v.json"), "w") as f:
      json.dump({"m": 2}, f)  # hand-edited
    with Store(self.dir) as st:
      self.assertIsNone(st.load("v", 0))

  def test_seal_vouches_for_outputs(self):
    out = os.path.join(self.dir, "report.html")
    with open(out, "w") as f:
      f.write("<html>whole</html>")
    with Store(self.dir) as st:
      st.seal("report", {"v": 1}, {"report.html": out})
      self.assertIsNotNone(st.sealed("report", {"v": 1}))
      self.assertIsNone(st.sealed("report", {"v": 2}))
    with open(out, "w") as f:
      f.write("<html>tru")  # truncated
    with Store(self.dir) as st:
      self.assertIsNone(st.sealed("report", {"v": 1}))
      with self.assertRaisesRegex(UserError, "missing"):
        st.seal("other", 0, {"x": os.path.join(self.dir, "nope")})

  def test_no_workdir_keeps_nothing(self):
    with Store(None) as st:
      st.save("u", 0, {"x": np.ones(2)}, {})
      self.assertIsNone(st.load("u", 0))

  def test_a_second_process_is_told_who_holds_the_workdir(self):
    code = ("import sys; from rfspec.runs.store import Store\n"
            "try:\n  Store(sys.argv[1]).__enter__()\nexcept Exception as e:\n  print(e)\n")
    with Store(self.dir):
      out = subprocess.run([sys.executable, "-c", code, self.dir], cwd=REPO, capture_output=True, text=True,
                           timeout=120).stdout
    self.assertIn("in use by another rfspec run", out)
    self.assertIn(str(os.getpid()), out)


if __name__ == "__main__":
  absltest.main()

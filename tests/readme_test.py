"""README.md tells the truth: its tour runs, and the values it shows in comments are what it gets."""

import os
import re
from unittest import mock

import numpy as np
from absl.testing import absltest

from tests.conftest import CAFFEMODEL, REPO, shared_file


def tour_code() -> str:
  text = (REPO / "README.md").read_text()
  block = re.search(r"## Tour\n\n```python\n(.*?)```", text, re.S)
  assert block, "README.md lost its Tour code block"
  return block.group(1)


class ReadmeTourTest(absltest.TestCase):

  def test_tour_runs_and_its_comments_hold(self):
    code = tour_code()
    self.assertIn("steps=60)", code)
    # Same code, fewer steps, and the shared weights instead of a download.
    code = code.replace("steps=60)", "steps=2, chunk=2)")
    self.assertIn('rfspec.load_params("bvlc_googlenet")', code)
    scope = {}
    # Offline, as a newcomer without internet runs it: RFSPEC_WEIGHTS names the caffemodel.
    with mock.patch.dict(os.environ, {"RFSPEC_WEIGHTS": str(shared_file(CAFFEMODEL))}):
      exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 -- our own README
    self.assertEqual(scope["acts"]["inception_4c/output"].shape, (2, 14, 14, 512))
    self.assertEqual(scope["grads"].shape, (2, 224, 224, 3))
    rf = scope["rf"]
    self.assertEqual((rf.size, rf.stride, rf.offset, rf.grid), (299, 16, 14.0, (14, 14)))
    self.assertEqual(rf.box(0, 7), (-135, -23, 164, 276))
    self.assertEqual(scope["img"].shape, (224, 224, 3))
    self.assertEqual(scope["grid"].shape, (3, 3, 224, 224, 3))
    self.assertEqual(scope["x0"].shape, (224, 224, 3))
    self.assertEqual(scope["tiled"].shape, (224, 224, 3))
    spec = scope["spec"]
    self.assertEqual(spec.psi_auc.shape, (3, 3))
    self.assertEqual(spec.psi_auc_ci.shape, (3, 3, 2))
    np.testing.assert_allclose(np.diag(spec.psi_auc), 0.0, atol=1e-6)
    self.assertTrue(np.all((spec.window_share >= 0) & (spec.window_share <= 1)))


if __name__ == "__main__":
  absltest.main()

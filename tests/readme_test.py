"""README.md tells the truth: its tour runs, and the values it shows in comments are what it gets."""

import re

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
    code = code.replace("steps=60)", "steps=2, chunk=2)").replace(
        'rfspec.load_params("bvlc_googlenet")', f'rfspec.load_params({str(shared_file(CAFFEMODEL))!r})')
    scope = {}
    exec(compile(code, "README.md", "exec"), scope)  # noqa: S102 -- our own README
    self.assertEqual(scope["acts"]["inception_4c/output"].shape, (2, 14, 14, 512))
    rf = scope["rf"]
    self.assertEqual((rf.size, rf.stride, rf.offset, rf.grid), (299, 16, 14.0, (14, 14)))
    self.assertEqual(rf.box(0, 7), (-135, -23, 164, 276))
    self.assertEqual(scope["img"].shape, (224, 224, 3))
    self.assertEqual(scope["grid"].shape, (3, 3, 224, 224, 3))
    self.assertEqual(scope["x0"].shape, (224, 224, 3))
    self.assertEqual(scope["tiled"].shape, (224, 224, 3))
    psi = np.asarray(scope["spec"].psi)
    self.assertEqual(psi.shape, (3, 3))
    np.testing.assert_allclose(np.diag(psi), 0.0, atol=1e-6)


if __name__ == "__main__":
  absltest.main()

"""README.md tells the truth: its tour runs, and the values it shows in comments are what it gets."""

import os
import re
from unittest import mock

import numpy as np
import pytest
from absl.testing import absltest

from tests.conftest import REPO, tiny_weights


def tour_code() -> str:
  text = (REPO / "README.md").read_text()
  block = re.search(r"## Tour\n\n```python\n(.*?)```", text, re.S)
  assert block, "README.md lost its Tour code block"
  return block.group(1)


@pytest.mark.slow
class ReadmeTourTest(absltest.TestCase):

  def test_tour_runs_and_its_comments_hold(self):
    code = tour_code()
    self.assertIn("steps=60)", code)
    # Same code, fewer steps, and local weights instead of a download (the comments hold shapes and
    # geometry, not the net's numbers: random weights of the real shapes do).
    code = code.replace("steps=60)", "steps=1, chunk=1)")
    self.assertIn('rfspec.load_params("bvlc_googlenet")', code)
    scope = {}
    # Offline, as a newcomer without internet runs it: RFSPEC_WEIGHTS names the weights.
    with mock.patch.dict(os.environ, {"RFSPEC_WEIGHTS": tiny_weights()}):
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
    prob = np.asarray(scope["acts"]["prob"])
    self.assertEqual(prob.shape, (2, 1000))
    np.testing.assert_allclose(prob.sum(axis=1), 1.0, rtol=1e-5)  # "prob" is the softmax
    # rf.inside_fraction is the share of rf.box inside the image.
    top, left, bottom, right = rf.box(0, 7)
    inside = (min(bottom, 224) - max(top, 0)) * (min(right, 224) - max(left, 0)) / rf.size ** 2
    self.assertAlmostEqual(rf.inside_fraction(0, 7), inside, places=6)
    # The one-node call is the same computation as its element of the grid (seed 0, "middle").
    np.testing.assert_allclose(scope["img"], scope["grid"][1, 0], atol=1e-5)
    for name in ("img", "grid", "tiled"):  # RGB in [0, 1] (the start x0 may lie above: the recipe's unclipped dots)
      self.assertTrue(0 <= scope[name].min() and scope[name].max() <= 1, name)
    self.assertGreater(np.abs(scope["grid"][1, 0] - scope["grid"][1, 1]).max(), 1e-3)  # each seed its own start
    spec = scope["spec"]
    self.assertEqual(spec.psi_auc.shape, (3, 3))
    self.assertEqual(spec.psi_auc_ci.shape, (3, 3, 2))
    # Each pair is one number, on its common window: symmetric; the window of a position with itself
    # is the part of its RF inside the image, and a pair's window is no larger than either's.
    np.testing.assert_array_equal(spec.psi_auc, spec.psi_auc.T)
    np.testing.assert_array_equal(spec.window_share, spec.window_share.T)
    node_rf = scope["node_rf"]
    for p, name in enumerate(("top", "middle", "bottom")):
      self.assertAlmostEqual(spec.window_share[p, p], node_rf.inside_fraction(*scope["named"][name]), places=6)
    self.assertTrue(np.all(spec.window_share <= np.minimum.outer(np.diag(spec.window_share),
                                                                 np.diag(spec.window_share)) + 1e-9))
    # Off the diagonal: a value in [-1, 1] with an interval in [-1, 1], or NaN with the reason why.
    for p in range(3):
      for q in range(3):
        if p == q:
          continue
        value, (lo, hi), why = spec.psi_auc[p, q], spec.psi_auc_ci[p, q], spec.undefined[p][q]
        if np.isnan(value):
          self.assertTrue(why, (p, q))
        else:
          self.assertEqual(why, "", (p, q))
          self.assertTrue(-1 <= value <= 1 and -1 <= lo <= hi <= 1, (p, q, value, lo, hi))


if __name__ == "__main__":
  absltest.main()

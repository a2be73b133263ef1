"""reproduce_paper's done-marker: it vouches only for intact outputs of the same config.

The figure computation is replaced by a tiny fake `figures.make_figure`, so these tests exercise
only the write order and the completion check (no weights, no optimisation).
"""

import os
from unittest import mock

import numpy as np
from absl.testing import absltest

from experiments import reproduce_paper
from rfspec import figures, files

FIG = dict(title="t", claim="c", panels=[dict(tap="conv2/3x3", channel=1)], positions=["center"], seeds=[0])
VIS = dict(recipe="deepdream", image_hw=(8, 8), steps=2)
WEIGHTS = "w.caffemodel"


def fake_figure(value: float):
  images = np.full((1, 1, 8, 8, 3), value, np.float32)
  return figures.Figure(images=images, boxes=np.array([[[0, 0, 4, 4]]]), objectives=np.array([[value]], np.float32),
                        row_labels=["center"], col_labels=["seed 0"], records=[[{"seed": 0}]],
                        panels=[figures.Panel("conv2/3x3", 1, 0)], captions=[["(1, 1)"]])


class DoneMarkerTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.workdir = self.create_tempdir().full_path

  def run_figure(self, fig, value):
    with mock.patch.object(figures, "make_figure", return_value=fake_figure(value)):
      return reproduce_paper.run_figure(None, "fig2", fig, dict(VIS), WEIGHTS, self.workdir)

  def hash_of(self, fig):
    return reproduce_paper.config_hash(fig, VIS, WEIGHTS)

  def test_finished_figure_is_done_only_for_its_config(self):
    self.run_figure(FIG, 0.25)
    self.assertTrue(reproduce_paper.is_done(self.workdir, "fig2", self.hash_of(FIG)))
    self.assertFalse(reproduce_paper.is_done(self.workdir, "fig2", self.hash_of(dict(FIG, seeds=[1]))))
    # The manifest is still the figure's JSON (the report and regeneration read it).
    meta = files.read_json(os.path.join(self.workdir, "fig2.json"))
    self.assertEqual(meta["figure"], "fig2")
    self.assertEqual(sorted(meta["files"]), ["npz", "png"])

  def test_truncated_npz_is_redone(self):
    self.run_figure(FIG, 0.25)
    npz = os.path.join(self.workdir, "fig2.npz")
    with open(npz, "rb") as f:
      data = f.read()
    with open(npz, "wb") as f:
      f.write(data[:-40])
    self.assertFalse(reproduce_paper.is_done(self.workdir, "fig2", self.hash_of(FIG)))

  def test_crash_after_new_png_leaves_no_done_marker(self):
    self.run_figure(FIG, 0.25)
    changed = dict(FIG, seeds=[7])
    real_atomic_write = files.atomic_write

    def crash_on_npz(path, data):
      if path.endswith(".npz"):
        raise KeyboardInterrupt  # the new PNG is on disk, the NPZ and JSON are not
      return real_atomic_write(path, data)

    with mock.patch.object(files, "atomic_write", side_effect=crash_on_npz):
      with self.assertRaises(KeyboardInterrupt):
        self.run_figure(changed, 0.75)
    # Neither the old nor the new config may count as done beside the mixed files.
    self.assertFalse(reproduce_paper.is_done(self.workdir, "fig2", self.hash_of(FIG)))
    self.assertFalse(reproduce_paper.is_done(self.workdir, "fig2", self.hash_of(changed)))
    self.run_figure(changed, 0.75)
    self.assertTrue(reproduce_paper.is_done(self.workdir, "fig2", self.hash_of(changed)))
    np.testing.assert_array_equal(np.load(os.path.join(self.workdir, "fig2.npz"))["objectives"], [[0.75]])


if __name__ == "__main__":
  absltest.main()

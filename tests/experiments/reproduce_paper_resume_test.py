"""The figures run resumes through its Store: a run killed mid-way redoes only the panel it lost, and
its images are bit for bit those of a run that was never killed; a finished run redoes nothing; a
damaged unit is redone alone. Random params of the real shapes (tests/conftest.py), 96 px, 2 steps."""

import os
from unittest import mock

import numpy as np
import pytest
from absl.testing import absltest

from rfspec import progress
from rfspec.runs import figures
from rfspec.runs.store import Store
from tests.conftest import tiny_params
from tests.figures_test import LOW0, config, fig

# Grids of 2 positions x 2 seeds and 1 x 4, the shape tests/figures_test.py compiles too.
SETTINGS = figures.settings_from_config(config({"a": fig([LOW0], seeds=(0, 1)),
                                                "b": fig([LOW0], positions=(), seeds=(0, 1, 2, 3))}))


class Killed(Exception):
  pass


class KillAt(progress.RunProgress):
  """A run's progress that dies (like a SIGKILL, nothing after it runs) at the first chunk of the
  first grid whose name starts with `prefix`."""

  def __init__(self, prefix: str):
    super().__init__(quiet=True)
    self.prefix = prefix

  def callback(self, name, tap=""):
    report = super().callback(name, tap)

    def kill(info):
      report(info)
      if name.startswith(self.prefix):
        raise Killed
    return kill


@pytest.mark.slow
class ResumeTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.params = tiny_params()

  def run_figures(self, workdir, *, kill_at=None):
    """(result, the seeds of each grid call made); kill_at: see `KillAt`."""
    calls = []
    real = figures.visualize_grid

    def grid(params, seeds, masks, cfg, **kw):
      calls.append(len(seeds))
      return real(params, seeds, masks, cfg, **kw)

    run = KillAt(kill_at) if kill_at else progress.RunProgress(quiet=True)
    with Store(workdir, weights_sha256="test", schema=figures.SCHEMA) as store, \
        mock.patch.object(figures, "visualize_grid", grid):
      return figures.run_figures(self.params, SETTINGS, store, progress=run), calls

  def images(self, result):
    return [p.images for f in result.figures for p in f.panels]

  def unit_mtimes(self, workdir):
    root = os.path.join(workdir, "figures")
    return {os.path.join(d, f): os.path.getmtime(os.path.join(d, f)) for d, _, fs in os.walk(root) for f in fs}

  def test_killed_run_resumes_bit_identical_and_redoes_nothing_after(self):
    never_killed, calls = self.run_figures(self.create_tempdir().full_path)
    self.assertEqual(calls, [2, 4])  # one grid call per panel
    workdir = self.create_tempdir().full_path
    with self.assertRaises(Killed):
      self.run_figures(workdir, kill_at="[b]")
    resumed, calls = self.run_figures(workdir)
    self.assertEqual(calls, [4])  # only b's panel, which the kill lost
    self.assertEqual([f.resumed for f in resumed.figures], [True, False])
    for a, b in zip(self.images(never_killed), self.images(resumed)):
      np.testing.assert_array_equal(a, b)
    before = self.unit_mtimes(workdir)
    again, calls = self.run_figures(workdir)
    self.assertEqual(calls, [])
    self.assertEqual(self.unit_mtimes(workdir), before)  # nothing rewritten
    self.assertTrue(all(f.resumed for f in again.figures))
    for a, b in zip(self.images(never_killed), self.images(again)):
      np.testing.assert_array_equal(a, b)
    # A truncated unit fails its checksum and is redone alone, to the same pixels.
    npz = os.path.join(workdir, "figures", "a", "panel_0.npz")
    with open(npz, "r+b") as f:
      f.truncate(os.path.getsize(npz) // 2)
    fixed, calls = self.run_figures(workdir)
    self.assertEqual(calls, [2])
    np.testing.assert_array_equal(fixed.figures[0].panels[0].images, never_killed.figures[0].panels[0].images)


if __name__ == "__main__":
  absltest.main()

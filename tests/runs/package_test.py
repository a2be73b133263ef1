"""rfspec.runs exposes every run with a typed result, as a notebook would call it."""

import inspect
import typing

from absl.testing import absltest

from rfspec import runs


class RunsPackageTest(absltest.TestCase):

  def test_each_run_returns_its_named_tuple(self):
    for run, result in ((runs.run_figures, runs.FiguresResult), (runs.run_atlas, runs.AtlasResult),
                        (runs.run_sweep, runs.SweepResult), (runs.run_census, runs.CensusResult)):
      hints = typing.get_type_hints(run)
      self.assertIs(hints["return"], result, run.__name__)
      self.assertTrue(issubclass(result, tuple) and hasattr(result, "_fields"), result)  # a NamedTuple
      self.assertIn("store", inspect.signature(run).parameters, run.__name__)
      self.assertGreater(len(result.__doc__ or ""), 40, result)  # shapes and conventions are documented

  def test_the_store_is_the_runs_store(self):
    self.assertIs(runs.Store, runs.store.Store)


if __name__ == "__main__":
  absltest.main()

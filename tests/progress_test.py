"""rfspec.progress: the whole run's ETA arithmetic, with a fake clock."""

import contextlib
import io

from absl.testing import absltest

from rfspec.errors import UserError
from rfspec.progress import Progress, RunProgress, check_run_progress, format_seconds


class Clock:
  def __init__(self):
    self.t = 0.0

  def __call__(self):
    return self.t


class RunProgressTest(absltest.TestCase):

  def test_eta_prices_each_tap_at_its_own_rate(self):
    clock = Clock()
    run = RunProgress([("a0", "conv2", 100), ("a1", "conv2", 100), ("b0", "4c", 400)], clock=clock, quiet=True)
    self.assertIsNone(run.eta_s())  # nothing measured, no prior
    clock.t = 10.0
    run.update("a0", 100)  # conv2: 0.1 s per image-step
    self.assertAlmostEqual(run.eta_s(), 100 * 0.1 + 400 * 0.1)  # 4c unmeasured: priced at the run's rate
    clock.t = 15.0
    run.update("a1", 100)
    clock.t = 55.0
    run.update("b0", 100)  # 4c: 40 s for 100
    self.assertAlmostEqual(run.eta_s(), 300 * 0.4)

  def test_prior_and_cost(self):
    run = RunProgress([("x", "4c", 1000)], prior_s=lambda tap: 0.02, clock=Clock(), quiet=True)
    self.assertAlmostEqual(run.eta_s(), 20.0)
    clock = Clock()
    run = RunProgress([("a", "conv2", 100), ("b", "4c", 100)], cost={"conv2": 1.0, "4c": 3.0}.get, clock=clock,
                      quiet=True)
    clock.t = 10.0
    run.update("a", 100)
    self.assertAlmostEqual(run.eta_s(), 100 * 0.1 * 3)

  def test_resumed_work_is_done_but_never_a_rate(self):
    clock = Clock()
    run = RunProgress([("a", "t", 100), ("b", "t", 100)], clock=clock, quiet=True)
    clock.t = 1000.0
    run.skip("a")
    self.assertEqual(run.done, 100)
    self.assertIsNone(run.eta_s())
    clock.t = 1010.0
    run.update("b", 50)  # 10 s for 50 since the skip
    self.assertAlmostEqual(run.eta_s(), 50 * 0.2)

  def test_callback_lines_and_unplanned_grids(self):
    out = io.StringIO()
    clock = Clock()
    run = RunProgress([("a", "t", 40)], label="sweep", clock=clock, stream=out)
    clock.t = 4.0
    run.callback("a", "t")(Progress(step=10, total=10, images=4, image_steps_per_s=10.0, elapsed_s=4.0, eta_s=0.0))
    run.callback("extra", "t")(Progress(step=5, total=10, images=2, image_steps_per_s=5.0, elapsed_s=1.0, eta_s=1.0))
    self.assertEqual(run.total, 60)  # the unplanned grid joined the plan
    self.assertIn("sweep: a step 10/10", out.getvalue())
    self.assertIn("ETA", out.getvalue())

  def test_format_seconds(self):
    self.assertEqual([format_seconds(s) for s in (45, 125, 3725, None)], ["45s", "2m05s", "1h02m", "?"])



class CheckRunProgressTest(absltest.TestCase):
  """A run's progress argument (run_figures, run_atlas, run_sweep, position_atlas): False is silence,
  not a crash deep in the run (issue 20 item 7); anything else that is no RunProgress is one paragraph."""

  def test_none_false_and_a_run_progress(self):
    default = RunProgress(label="default")
    self.assertIs(check_run_progress(None, lambda: default), default)
    quiet = check_run_progress(False, lambda: default)
    self.assertIsNot(quiet, default)
    stream = io.StringIO()
    with contextlib.redirect_stderr(stream):
      quiet.note("nothing")
    self.assertEqual(stream.getvalue(), "")
    mine = RunProgress(quiet=True)
    self.assertIs(check_run_progress(mine, lambda: default), mine)

  def test_anything_else_names_what_to_pass(self):
    for bad in (True, "yes", print):
      with self.assertRaisesRegex(UserError, r"progress must be a rfspec.progress.RunProgress .*None for the default "
                                             r"lines on stderr, or False for silence"):
        check_run_progress(bad, RunProgress)


if __name__ == "__main__":
  absltest.main()

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


def simulate(run, plan, *, step_s, overhead_s, chunk):
  """Drives `run` through `plan` [(name, tap, images, steps)] on a fake clock: each grid call's first
  chunk costs `overhead_s(name)` more, every image-step `step_s[tap]`. Returns the ETA before the
  first step and [(ETA, true seconds left)] after every chunk."""
  clock = run._clock
  t, marks = 0.0, []
  before = run.eta_s()
  for name, tap, images, steps in plan:
    report = run.callback(name, tap)
    for step in range(chunk, steps + 1, chunk):
      t += (overhead_s(name) if step == chunk else 0.0) + chunk * images * step_s[tap]
      clock.t = t
      report(Progress(step=step, total=steps, images=images, image_steps_per_s=0.0, elapsed_s=0.0, eta_s=0.0))
      marks.append((name, step, run.eta_s(), t))
  log = [(name, step, eta, t - now) for name, step, eta, now in marks]
  return before, log


class EtaArithmeticTest(absltest.TestCase):
  """The ETA against a known cost model (fake clock): within 30 % of the time left once it has measured."""

  # A figures-like run on a machine 2.5x slower than the prior's idle cores: every call compiles
  # (12 s of overhead in the prior, 30 s here).
  PLAN = [("fig1 conv2", "conv2", 3, 300), ("fig1 4c", "4c", 3, 300), ("fig2 4c", "4c", 9, 300),
          ("fig3 4e", "4e", 9, 300), ("fig4 conv2", "conv2", 3, 300), ("fig5 4c", "4c", 3, 300),
          ("fig6 4e", "4e", 3, 300)]
  PRIOR_STEP = {"conv2": 0.01, "4c": 0.02, "4e": 0.025}

  def _prior(self, plan, overhead):
    work = {}
    calls = {}
    for _, tap, images, steps in plan:
      work[tap] = work.get(tap, 0) + images * steps
      calls[tap] = calls.get(tap, 0) + 1
    return lambda tap: self.PRIOR_STEP[tap] + overhead * calls[tap] / work[tap]

  def test_before_the_first_step_it_is_the_prior(self):
    prior = self._prior(self.PLAN, 12.0)
    run = RunProgress([(n, t, i * s) for n, t, i, s in self.PLAN], prior_s=prior, clock=Clock(), quiet=True)
    self.assertAlmostEqual(run.eta_s(), sum(i * s * prior(t) for _, t, i, s in self.PLAN))

  def test_a_slow_machine_is_priced_after_the_first_call(self):
    prior = self._prior(self.PLAN, 12.0)
    run = RunProgress([(n, t, i * s) for n, t, i, s in self.PLAN], prior_s=prior, clock=Clock(), quiet=True)
    before, log = simulate(run, self.PLAN, step_s={k: 2.5 * v for k, v in self.PRIOR_STEP.items()},
                           overhead_s=lambda name: 30.0, chunk=50)
    true_total = sum(30.0 + i * s * 2.5 * self.PRIOR_STEP[t] for _, t, i, s in self.PLAN)
    self.assertAlmostEqual(before * 2.5, true_total, delta=1e-6)  # the idle prior: 2.5x short here
    first_done = next(k for k, (name, step, _, _) in enumerate(log) if name == "fig1 4c") - 1
    for name, step, eta, left in log[first_done:-1]:
      self.assertLessEqual(abs(eta - left), 0.3 * left, (name, step, eta, left))
    self.assertEqual(log[-1][2], 0.0)

  def test_equal_batches_pay_their_compile_once(self):
    # An atlas-like run: 5 batches of one shape; only the first compiles (60 s), the others start at once.
    plan = [(f"batch_{k}", "4c", 27, 60) for k in range(5)]
    run = RunProgress([(n, t, i * s) for n, t, i, s in plan], clock=Clock(), quiet=True)
    _, log = simulate(run, plan, step_s={"4c": 0.05}, overhead_s=lambda name: 60.0 if name == "batch_0" else 0.0,
                      chunk=10)
    for name, step, eta, left in log[1:-1]:  # from the second chunk on: the compile is known to be paid
      self.assertAlmostEqual(eta, left, delta=1e-6, msg=(name, step))

  def test_each_new_shape_pays_a_compile(self):
    # Two taps, calls of new shapes: each compiles (20 s); the step rate is known after two chunks.
    plan = [("a", "conv2", 4, 40), ("b", "conv2", 8, 40), ("c", "conv2", 4, 40)]
    run = RunProgress([(n, t, i * s) for n, t, i, s in plan], clock=Clock(), quiet=True)
    _, log = simulate(run, plan, step_s={"conv2": 0.1}, overhead_s=lambda name: 20.0 if name != "c" else 0.0, chunk=10)
    a2 = log[1]  # after a's second chunk: b pays a compile, c (a's shape again) none
    self.assertAlmostEqual(a2[2], a2[3], delta=1e-6)


if __name__ == "__main__":
  absltest.main()

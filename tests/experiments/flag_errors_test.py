"""Issue 20 item 7: every bad flag or config field of a binary is ONE paragraph that names the fix,
exit status 1, no traceback, and it comes before any weights load or compile.

--weights names a file that does not exist: a config that got past validation would fail on the
weights instead, with another message, so each case also shows that the whole config is checked
first. Each case is its own process running the binary as `python -m` does (`runpy`, as __main__),
all from setUpClass (quick configs; nothing is computed). They are forked from one runner process
that has already imported JAX, rfspec and the binaries' libraries (not the binaries themselves, so
every case defines and parses its flags afresh): 22 interpreter starts cost 25 s of the suite.
"""

import json
import os
import shutil
import subprocess
import sys
import tempfile

from absl.testing import absltest

from tests.conftest import REPO

NO_WEIGHTS = "--weights=/nonexistent/flag_errors_test.caffemodel"
QUICK = {name: f"--config=experiments/configs/{name}.py:quick" for name in ("position_atlas", "specificity")}
QUICK["reproduce_paper"] = "--config=experiments/configs/reproduce_paper.py:quick"
QUICK["rf_census"] = "--config=experiments/configs/rf_census.py:quick"

# name: (binary, overrides, needles the one error paragraph must hold)
CASES = {
    # An int field given 1e12 (ml_collections' int() ValueError): name the override and the form it takes.
    "steps_exponent_atlas": ("position_atlas", ["--config.vis.steps=1e12"],
                             ["--config.vis.steps=1e12: the field holds a whole number", "--config.vis.steps=500"]),
    "steps_exponent_paper": ("reproduce_paper", ["--config.vis.steps=1e12"],
                             ["--config.vis.steps=1e12: the field holds a whole number"]),
    # 10**12 as digits parses, and the engine's int32 step counter would overflow: refused up front.
    "steps_too_many": ("position_atlas", ["--config.vis.steps=1000000000000"],
                       ["config.vis does not work", "steps must be a whole number in [1, 2**31 - 1]"]),
    "steps_too_many_sweep": ("specificity", ["--config.vis.steps=1000000000000"],
                             ["steps must be a whole number in [1, 2**31 - 1]"]),
    "text_for_a_number": ("specificity", ["--config.seed_pool=abc"],
                          ["--config.seed_pool=abc: the field holds a whole number, and 'abc' is not one"]),
    "text_for_a_bool": ("position_atlas", ["--config.smoke_test=maybe"],
                        ["--config.smoke_test=maybe: the field holds True or False", "--config.smoke_test=False"]),
    # A VisConfig field that the config leaves to its recipe: not a typo, say how to set it.
    "recipe_field": ("specificity", ["--config.vis.learning_rate=-1"],
                     ["'learning_rate' is a VisConfig field that this config leaves to its recipe",
                      "add learning_rate=... to its vis"]),
    "unknown_variant": ("position_atlas", ["--config=experiments/configs/position_atlas.py:nope"],
                        ["--config: Unknown position_atlas config variant 'nope'; use one of: full, cpu, quick."]),
    # Claim 3's auc_id needs another channel: one channel per tap ran to the end with auc_id NaN
    # everywhere and no reason (an IndexError after 33 s before that).
    "one_channel_per_tap": ("specificity", ["--config.channels_per_tap=1"],
                            ["config.channels_per_tap must be a whole number in [2, ", "auc_id", "got 1"]),
    # The sweep names every bad field at once, as the atlas does.
    "every_bad_sweep_field": ("specificity", ["--config.channels_per_tap=1", "--config.n_boot=0", "--config.batch=-1",
                                              "--config.n_positions=1"],
                              ["4 bad field(s)", "config.channels_per_tap", "config.n_boot", "config.batch",
                               "config.n_positions"]),
    "sweep_snapshot_steps": ("specificity", ["--config.snapshot_steps=(3,)"],
                             ["config.snapshot_steps", "multiple of cfg.chunk = 4"]),
    "sweep_n_boot": ("specificity", ["--config.n_boot=0"], ["config.n_boot must be a whole number in [20, 100000]"]),
    "atlas_n_boot": ("position_atlas", ["--config.n_boot=0"], ["config.n_boot must be a whole number in [20, 100000]"]),
    "paper_n_boot": ("reproduce_paper", ["--config.n_boot=0"], ["config.n_boot must be a whole number in [20, 100000]"]),
    # int('abc') raised a plain ValueError: a traceback.
    "paper_image_hw_text": ("reproduce_paper", ["--config.vis.image_hw=abc"],
                            ["config.vis.image_hw must be (H, W), two whole numbers of pixels"]),
    "paper_every_bad_field": ("reproduce_paper", ["--config.n_boot=0", "--config.n_perm=0", "--config.analysis_seed=-1"],
                              ["3 bad field(s)", "config.n_boot", "config.n_perm", "config.analysis_seed"]),
    "atlas_seeds_text": ("position_atlas", ["--config.seeds=abc"], ["config.seeds must be a list of whole numbers"]),
    "atlas_seeds_fraction": ("position_atlas", ["--config.seeds=(0, 1.5)"],
                             ["config.seeds must be a list of whole numbers", "(0, 1.5)"]),
    "atlas_one_seed": ("position_atlas", ["--config.seeds=(5,)"],
                       ["config.seeds holds 1 seed(s) [5], fewer than config.seeds_per_position = 3"]),
    "atlas_batch_positions": ("position_atlas", ["--config.batch_positions=-1"],
                              ["config.batch_positions must be a whole number in [0, "]),
    "atlas_mosaic_tile": ("position_atlas", ["--config.mosaic_tile=-5"],
                          ["config.mosaic_tile must be a whole number in [160, 2048]"]),
    "sweep_no_channels": ("specificity", ["--config.channels_per_tap=0"], ["channels_per_tap"]),
    "sweep_seeds_per_position": ("specificity", ["--config.seeds_per_position=2"], ["seeds_per_position"]),
    "sweep_judge_layer_as_tap": ("specificity", ["--config.taps=('inception_3a/output',)"], ["judge layer"]),
    "sweep_unknown_vis_field": ("specificity", ["--config.vis.stepz=3"], ["stepz"]),
    # rf_census: a tap's typo gets the name it meant; sizes too small for a tap's RF, or not sizes.
    "census_heatmap_tap": ("rf_census", ["--config.erf=False", "--config.heatmap_taps=('inception_4c/outptu',)"],
                           ["Did you mean 'inception_4c/output'"]),
    "census_erf_tap": ("rf_census", ["--config.erf_taps=('conv2/3x4',)"], ["Did you mean 'conv2/3x3'"]),
    "census_size_too_small": ("rf_census", ["--config.erf=False", "--config.sizes=(100,)"], ["needs at least 223 px"]),
    "census_erf_size_too_small": ("rf_census", ["--config.erf_image_size=5"], ["needs at least 7 px"]),
    "census_bad_size_value": ("rf_census", ["--config.erf=False", "--config.sizes=(0,)"], ["config.sizes"]),
}


# The runner: argv[1] is a JSON list of [name, binary, argv, folder]; it prints a JSON dict name ->
# [exit status, stdout, stderr]. A child that does not finish in 120 s is killed (status None).
_RUNNER = r"""
import json, os, runpy, signal, sys, time
import jax, ml_collections  # noqa: F401  (what every binary imports, once)
import experiments._cli  # noqa: F401
import rfspec.runs.atlas, rfspec.runs.figures, rfspec.runs.sweep  # noqa: F401
cases, children = json.loads(sys.argv[1]), {}
for name, binary, argv, folder in cases:
  os.makedirs(folder, exist_ok=True)
  out, err = os.path.join(folder, "stdout"), os.path.join(folder, "stderr")
  pid = os.fork()
  if pid == 0:
    code = 0
    try:
      os.dup2(os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
      os.dup2(os.open(err, os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
      sys.argv = argv
      runpy.run_module(binary, run_name="__main__", alter_sys=True)
    except SystemExit as e:
      code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
    except BaseException:
      import traceback
      traceback.print_exc()
      code = 2
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)
  children[pid] = (name, out, err)
results, deadline = {}, time.monotonic() + 120
while children:
  pid, status = os.waitpid(-1, os.WNOHANG)
  if pid == 0:
    if time.monotonic() > deadline:
      for p in children:
        os.kill(p, signal.SIGKILL)
      deadline = float("inf")
    time.sleep(0.02)
    continue
  name, out, err = children.pop(pid)
  code = os.waitstatus_to_exitcode(status)
  results[name] = [code if code >= 0 else None, open(out).read(), open(err).read()]
print(json.dumps(results))
"""


def _run_all(tmp):
  """{case: (exit status, stdout, stderr)} of every case, from one runner process."""
  cases = [[name, f"experiments.{binary}",
            [f"experiments/{binary}.py", f"--workdir={os.path.join(tmp, name, 'workdir')}", QUICK[binary], NO_WEIGHTS,
             *overrides], os.path.join(tmp, name)]
           for name, (binary, overrides, _) in CASES.items()]
  proc = subprocess.run([sys.executable, "-c", _RUNNER, json.dumps(cases)], cwd=REPO,
                        env=dict(os.environ, RFSPEC_WEIGHTS=""), capture_output=True, text=True, timeout=600)
  if proc.returncode:
    raise RuntimeError(f"the flag-error runner failed ({proc.returncode}): {proc.stderr[-3000:]}")
  return {name: tuple(r) for name, r in json.loads(proc.stdout.strip().splitlines()[-1]).items()}


class FlagErrorsTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    tmp = tempfile.mkdtemp(prefix="flag_errors_")
    cls.addClassCleanup(shutil.rmtree, tmp, ignore_errors=True)
    cls.tmp = tmp
    cls.results = _run_all(tmp)

  def check(self, name):
    code, out, err = self.results[name]
    needles = CASES[name][2]
    self.assertEqual(code, 1, err[-3000:])
    self.assertNotIn("Traceback", err)
    self.assertNotIn("loading weights", err)  # refused before the weights load
    self.assertNotIn("nonexistent", err)  # ... so the missing weights file is never reached
    errors = [line for line in err.splitlines() if line.startswith("error: ")]
    self.assertLen(errors, 1, err[-3000:])  # one paragraph
    for needle in needles:
      self.assertIn(needle, errors[0])
    self.assertEqual(out, "")
    workdir = os.path.join(self.tmp, name, "workdir")  # nothing written but the run's lock
    self.assertEqual([f for f in (os.listdir(workdir) if os.path.isdir(workdir) else []) if f != ".rfspec.lock"], [])


for _name in CASES:
  setattr(FlagErrorsTest, f"test_{_name}", lambda self, _n=_name: self.check(_n))


if __name__ == "__main__":
  absltest.main()

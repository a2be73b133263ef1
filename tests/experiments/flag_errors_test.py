"""Issue 20 item 7: every bad flag or config field of a binary is ONE paragraph that names the fix,
exit status 1, no traceback, and it comes before any weights load or compile.

--weights names a file that does not exist: a config that got past validation would fail on the
weights instead, with another message, so each case also shows that the whole config is checked
first. Each case is a real subprocess, four at a time, all from setUpClass (quick configs; nothing is
computed).
"""

import concurrent.futures
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
}


def _run(binary, workdir, overrides):
  cmd = [sys.executable, "-m", f"experiments.{binary}", f"--workdir={workdir}", QUICK[binary], NO_WEIGHTS, *overrides]
  try:
    proc = subprocess.run(cmd, cwd=REPO, env=dict(os.environ, RFSPEC_WEIGHTS=""), capture_output=True, text=True,
                          timeout=300)
  except subprocess.TimeoutExpired as e:
    return None, e.stdout or "", (e.stderr or "") + "\n<<timed out>>"
  return proc.returncode, proc.stdout, proc.stderr


class FlagErrorsTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    tmp = tempfile.mkdtemp(prefix="flag_errors_")
    cls.addClassCleanup(shutil.rmtree, tmp, ignore_errors=True)
    with concurrent.futures.ThreadPoolExecutor(max_workers=4) as pool:  # a few at a time: each imports JAX
      futures = {name: pool.submit(_run, binary, os.path.join(tmp, name), overrides)
                 for name, (binary, overrides, _) in CASES.items()}
      cls.results = {name: f.result() for name, f in futures.items()}

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


for _name in CASES:
  setattr(FlagErrorsTest, f"test_{_name}", lambda self, _n=_name: self.check(_n))


if __name__ == "__main__":
  absltest.main()

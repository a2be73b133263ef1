"""The suite's end-to-end runs of the binaries that write HTML, each made once per test session.

reproduce_paper, position_atlas and specificity each run their quick config (shrunk further) once
per session, on `tiny_weights()` (random params of the real shapes: these tests check the
pipeline, not the net's numbers), into a workdir in the session's folder (`session_once`: the
first xdist worker to need a run makes it, the other waits for it and reads the same files). The
binaries' own tests (tests/experiments/*_test.py) and the page check
(tests/experiments/html_pages_test.py) read these workdirs and never change them: a test that
reruns a binary or damages an output works on its own copy (`copy_workdir`; the Store's manifests
hold relative paths).
"""

import functools
import json
import os
import shutil
import subprocess
import tempfile

from tests.conftest import session_once, smoke_env, tiny_weights
from tests.experiments import launcher

PAPER_ARGS = ("--config=experiments/configs/reproduce_paper.py:quick", "--figures=fig4", "--config.vis.steps=2",
              "--config.vis.chunk=2")
ATLAS_ARGS = ("--config=experiments/configs/position_atlas.py:quick", "--config.tap=conv2/3x3",
              "--config.vis.image_hw=(32, 32)", "--config.lattice=2")
SPEC_ARGS = ("--config=experiments/configs/specificity.py:quick",)


def start_binary(name, *args, env=None):
  """The binary `name` with `args` in a smoke-test process (`smoke_env`), plus `env`, forked from
  this test process's fork server (tests/experiments/launcher.py)."""
  return launcher.start(name, args, dict(os.environ, **smoke_env(), **(env or {})))


def finish(proc, timeout=900):
  out, err = proc.communicate(timeout=timeout)
  return subprocess.CompletedProcess(proc.args, proc.returncode, out, err)


def run_binary(name, *args, env=None, timeout=900):
  return finish(start_binary(name, *args, env=env), timeout=timeout)


def weights_flag():
  return f"--weights={tiny_weights()}"


def copy_workdir(workdir, prefix="copy_"):
  """A copy of a run's workdir (without its lock, mtimes kept), for a test that changes it."""
  parent = tempfile.mkdtemp(prefix=prefix)
  import atexit

  atexit.register(shutil.rmtree, parent, ignore_errors=True)
  dest = os.path.join(parent, "w")
  shutil.copytree(workdir, dest, ignore=shutil.ignore_patterns(".rfspec.lock"))
  return dest


@functools.lru_cache(maxsize=None)
def _session_run(binary, *args):
  """(workdir, CompletedProcess) of `binary` with `args` and the tiny weights, run once per session."""
  with session_once(f"run_{binary}") as workdir:
    record = workdir + ".json"
    if not os.path.isfile(record):
      proc = run_binary(binary, f"--workdir={workdir}", *args, weights_flag())
      with open(record + ".tmp", "w") as f:
        json.dump(dict(args=proc.args, returncode=proc.returncode, stdout=proc.stdout, stderr=proc.stderr), f)
      os.replace(record + ".tmp", record)
    with open(record) as f:
      r = json.load(f)
  return workdir, subprocess.CompletedProcess(r["args"], r["returncode"], r["stdout"], r["stderr"])


def paper():
  """(workdir, first run) of reproduce_paper: Figure 4 of the quick variant, 2 steps."""
  return _session_run("reproduce_paper", *PAPER_ARGS)


def atlas():
  """(workdir, first run) of position_atlas: conv2/3x3 at 32 px on a 2 x 2 lattice (two psi_auc
  values and one undefined)."""
  return _session_run("position_atlas", *ATLAS_ARGS)


def specificity():
  """(workdir, first run) of specificity's quick variant (64 px, 2 taps, 4 steps)."""
  return _session_run("specificity", *SPEC_ARGS)


def html_pages():
  """{binary: the HTML pages its quick run wrote}, making any run not made yet."""
  pages = {}
  for name, run in (("reproduce_paper", paper), ("position_atlas", atlas), ("specificity", specificity)):
    workdir, _ = run()
    pages[name] = sorted(os.path.join(workdir, f) for f in os.listdir(workdir) if f.endswith(".html"))
  return pages

"""Shared test fixtures: where ../shared lives, the real BVLC weights, and random weights of the
real shapes (`tiny_params`), each made once per test process; `session_once` for what the whole
session (all xdist workers) makes once.

`RFSPEC_SHARED` points at the shared data folder (default: ../shared from the repo root). CI has
it, so tests that need it fail loudly rather than skip when it is missing.

Weights: `tiny_params()` (random, He-scaled, from jax.random.key(0)) for every test that checks
the code rather than the net's numbers; `tiny_weights()` is the same params as an orbax
checkpoint directory, for the binaries' --weights. `real_params()` (the 28 MB BVLC file) only where
exactness is the point: the Caffe port, the recipe transcription, calibration on photos.

Tests that run a binary end to end or an expensive computation are marked `slow` (pytest.ini);
`-m "not slow"` gives a fast inner loop, and CI runs everything.
"""

import atexit
import contextlib
import fcntl
import functools
import os
import pathlib
import shutil
import tempfile

import pytest
from absl import flags

# absltest helpers (create_tempdir, ...) read absl flags, which pytest never parses.
if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()

# No test may reach the internet: any accidental download goes to a closed port on this machine.
os.environ.setdefault("RFSPEC_WEIGHTS_URL", "http://127.0.0.1:9/bvlc_googlenet.caffemodel")

# One folder per pytest session, shared by the xdist workers and every process a test starts (they
# inherit the environment). The main pytest process imports this file before the workers start;
# it makes the folder and removes it at exit. It holds what the session makes once for all its
# processes (`session_once`): the tiny weights' checkpoint, the binaries' quick runs
# (tests/experiments/quick_runs.py), and JAX's persistent compilation cache, so the same
# computation at the same shapes is compiled once per session, not once per process (a cache the
# caller names is kept as it is).
if "RFSPEC_TESTS_SESSION_DIR" not in os.environ:
  os.environ["RFSPEC_TESTS_SESSION_DIR"] = tempfile.mkdtemp(prefix="rfspec_tests_")
  atexit.register(shutil.rmtree, os.environ["RFSPEC_TESTS_SESSION_DIR"], ignore_errors=True)
SESSION_DIR = os.environ["RFSPEC_TESTS_SESSION_DIR"]
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR", os.path.join(SESSION_DIR, "jax_cache"))
# The binaries turn the cache on themselves (experiments/_cli.py): the same folder, not the user's.
os.environ.setdefault("RFSPEC_COMPILE_CACHE", os.environ["JAX_COMPILATION_CACHE_DIR"])
# Every program, not only those over JAX's default 1 s: the sweep's quick run alone compiles about
# 470 small ones (eager ops at each new shape), which its reruns in other processes then reuse.
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# The suite's cost is mostly XLA compiling small programs that then run for milliseconds: LLVM at
# -O0 compiles them faster and changes no result (no fast-math, so no float reassociation; the
# convolutions and matmuls are precompiled library calls). Measured on 4 heavy test files: 110 ->
# 80 CPU-s. Set by default in every process of the session (workers and binaries inherit it); a
# caller's own optimisation level wins.
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
  os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()


def smoke_env() -> dict[str, str]:
  """Environment overrides for a process that runs a binary or notebook end to end as a smoke test
  (random weights; it checks the pipeline and compares numbers only with other processes run the
  same way, never with this process's). XLA's legacy CPU fusion emitter compiles such a run's
  programs 2.5x faster than the default one (a 48 px grid: 0.4 s vs 1.1 s), but it rounds fused
  elementwise ops differently (a 64 px inception_4a forward: 3e-4 apart), so the tests of numbers
  and exactness (they run in this process) keep XLA's default."""
  flags = os.environ.get("XLA_FLAGS", "")
  if "xla_cpu_use_fusion_emitters" not in flags:
    flags = (flags + " --xla_cpu_use_fusion_emitters=false").strip()
  return {"XLA_FLAGS": flags}


@contextlib.contextmanager
def session_once(name: str):
  """Holds the session's lock `name` across processes; yields the path SESSION_DIR/name, for what
  is made once per session (the first holder makes it, later ones find it)."""
  with open(os.path.join(SESSION_DIR, name + ".lock"), "a") as lock:
    fcntl.flock(lock, fcntl.LOCK_EX)
    try:
      yield os.path.join(SESSION_DIR, name)
    finally:
      fcntl.flock(lock, fcntl.LOCK_UN)


REPO = pathlib.Path(__file__).resolve().parent.parent
SHARED = pathlib.Path(os.environ.get("RFSPEC_SHARED", REPO.parent / "shared"))
CAFFEMODEL = SHARED / "weights" / "bvlc_googlenet.caffemodel"
DEPLOY = SHARED / "reference" / "bvlc_googlenet" / "deploy.prototxt"
IMAGES = SHARED / "images"


def shared_file(path: pathlib.Path) -> pathlib.Path:
  if not path.exists():
    pytest.fail(f"{path} is missing: set RFSPEC_SHARED to the folder holding rfspec's shared data.")
  return path


@pytest.fixture(scope="session")
def caffemodel_path():
  return shared_file(CAFFEMODEL)


@pytest.fixture(scope="session")
def deploy_path():
  return shared_file(DEPLOY)


@functools.lru_cache(maxsize=None)
def real_params():
  """The real BVLC GoogLeNet params, read from ../shared once per test process."""
  from rfspec.weights import caffe

  return caffe.load_caffemodel(str(shared_file(CAFFEMODEL)))


@pytest.fixture(scope="session")
def bvlc_params():
  """The real BVLC GoogLeNet params (pytest fixture form of `real_params`)."""
  return real_params()


@functools.lru_cache(maxsize=None)
def tiny_params():
  """Random GoogLeNet params of the real shapes from jax.random.key(0): He-scaled kernels, biases
  0.01 (so ReLUs start on). The same numbers in every process; made once per process."""
  import jax
  import jax.numpy as jnp
  import numpy as np

  from rfspec.models import googlenet
  from rfspec.weights import caffe

  shapes = googlenet.param_shapes()
  sizes = [int(np.prod(s["kernel"])) for s in shapes.values()]
  flat = np.asarray(jax.random.normal(jax.random.key(0), (sum(sizes),), jnp.float32))  # one draw, one compile
  params, start = {}, 0
  for (name, s), n in zip(shapes.items(), sizes):
    fan_in = int(np.prod(s["kernel"][:-1]))
    params[name] = dict(kernel=flat[start:start + n].reshape(s["kernel"]) * np.sqrt(2.0 / fan_in),
                        bias=np.full(s["bias"], 0.01, np.float32))
    start += n
  return caffe.on_device(params)  # numpy built, then float32 on the device without a compile per shape


@pytest.fixture(name="tiny_params", scope="session")
def _tiny_params_fixture():
  """Random params of the real shapes (pytest fixture form of `tiny_params`)."""
  return tiny_params()


@functools.lru_cache(maxsize=None)
def tiny_weights() -> str:
  """`tiny_params()` as an orbax checkpoint directory (what a binary's --weights accepts), written
  once per session into SESSION_DIR (the same path in every process, so runs keyed on the weights
  agree)."""
  from rfspec.weights import store

  with session_once("tiny_weights") as path:
    if not store.is_checkpoint(path):
      store.save_checkpoint(tiny_params(), path)
    return path


# Slow modules whose files are not this suite's to edit (benchmark_test.py is maintained with the
# benchmark): marked here rather than in the file.
_SLOW_MODULES = ("tests/experiments/benchmark_test.py",)


# The longest scopes (what `--dist loadscope` keeps on one worker: a test class, else a module),
# with their seconds on a worker in a 185 s run. They are handed out first, longest first, so that
# no long one starts near the end while the other worker has nothing left to do (xdist's default
# order, most tests first, left the one-test README tour for last: 17 s of one worker alone). The
# quick runs' own tests make the session's runs, so they are among the first too; the page check
# reads all three runs, so it comes last. Every other scope keeps its collection order. A stale
# number only changes the order, never a result.
_LONGEST_FIRST = {
    "tests/experiments/specificity_test.py::QuickRunTest": 34,
    "tests/engine_test.py::VisualizeTest": 32,
    "tests/experiments/benchmark_test.py::BenchmarkSmokeTest": 32,
    "tests/metrics_test.py::NaturalPhotoCalibrationTest": 17,
    "tests/readme_test.py::ReadmeTourTest": 16,
    "tests/multihost_test.py::MultiHostTest": 9,
    "tests/models/googlenet_grad_test.py::ForwardGradTest": 9,
    "tests/recipes_test.py::Zipser2015RecipeTest": 9,
    "tests/experiments/position_atlas_test.py::QuickRunTest": 8.5,
    "tests/experiments/notebook_test.py::ColabNotebookTest": 8,
    "tests/experiments/cli_test.py::CliTest": 7,
    "tests/experiments/rf_census_test.py::WithWeightsTest": 7,
    "tests/sharding_test.py::ShardingTest": 7,
    "tests/transforms_test.py::TransformsTest": 7,
    "tests/geometry_test.py::ExactnessByGradientTest": 6.5,
    "tests/geometry_test.py::EffectiveRFTest": 6.5,
    "tests/atlas_test.py::RunAtlasTest": 6,
    "tests/models/googlenet_grad_test.py::ConvGradTest": 6,
    "tests/experiments/reproduce_paper_test.py::SmallRunTest": 5,
}
_LAST = ("tests/experiments/html_pages_test.py",)


def _scope(nodeid: str) -> str:
  """The scope xdist's loadscope gives a test (its class, else its module)."""
  return nodeid.rsplit("::", 1)[0]


def pytest_collection_modifyitems(config, items):
  del config
  for item in items:
    if item.nodeid.split("::")[0] in _SLOW_MODULES:
      item.add_marker(pytest.mark.slow)
  first_seen = {}
  for i, item in enumerate(items):
    first_seen.setdefault(_scope(item.nodeid), i)

  def rank(item):
    scope = _scope(item.nodeid)
    last = scope.split("::")[0] in _LAST
    return (last, -_LONGEST_FIRST.get(scope, 0), first_seen[scope])

  items.sort(key=rank)  # stable: a scope's tests keep their order

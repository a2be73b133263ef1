"""Shared test fixtures: where ../shared lives, and the real BVLC weights loaded once per session.

`RFSPEC_SHARED` points at the shared data folder (default: ../shared from the repo root). CI has
it, so tests that need it fail loudly rather than skip when it is missing.
"""

import functools
import os
import pathlib

import pytest
from absl import flags

# absltest helpers (create_tempdir, ...) read absl flags, which pytest never parses.
if not flags.FLAGS.is_parsed():
  flags.FLAGS.mark_as_parsed()

# No test may reach the internet: any accidental download goes to a closed port on this machine.
os.environ.setdefault("RFSPEC_WEIGHTS_URL", "http://127.0.0.1:9/bvlc_googlenet.caffemodel")

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

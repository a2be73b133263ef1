"""What every experiment binary shares: the common flags, and user errors as one paragraph.

Binaries stay thin: they parse flags, call the library and write through `rfspec.io`. A user
error (bad flag, missing weights, unwritable workdir) prints one paragraph and exits 1, with no
traceback; a bug still shows its traceback.
"""

from __future__ import annotations

import os
import sys
from typing import Callable

from absl import app, flags

_CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")


class UserError(Exception):
  """An error the user can fix; its message says how."""


# Exceptions whose message is meant for the user (the library raises these for bad input).
USER_ERRORS = (UserError, ValueError, FileNotFoundError, PermissionError, NotADirectoryError,
               IsADirectoryError, ConnectionError)


def define_workdir_flag(required: bool = True):
  return flags.DEFINE_string("workdir", None, "Directory for outputs; created if missing; reruns resume.",
                             required=required)


def define_weights_flag():
  return flags.DEFINE_string(
      "weights", os.environ.get("RFSPEC_WEIGHTS", "bvlc_googlenet"),
      "Weights: a .caffemodel path, an orbax checkpoint dir, or 'bvlc_googlenet' (cached, "
      "downloaded if missing). Default from $RFSPEC_WEIGHTS.")


def define_config_flag(name: str):
  """`--config=experiments/configs/NAME.py[:VARIANT]`, defaulting to the binary's own config."""
  from ml_collections import config_flags

  return config_flags.DEFINE_config_file("config", os.path.join(_CONFIG_DIR, f"{name}.py"),
                                         f"Config file, e.g. experiments/configs/{name}.py:quick",
                                         lock_config=False)


def ensure_workdir(path: str) -> str:
  """Creates `path` if needed and checks it is writable; raises UserError otherwise."""
  try:
    os.makedirs(path, exist_ok=True)
    probe = os.path.join(path, ".rfspec-write-test")
    with open(probe, "w"):
      pass
    os.unlink(probe)
  except OSError as e:
    raise UserError(f"Cannot write to --workdir={path!r} ({e.strerror or e}). "
                    "Pass a directory you can write to.") from None
  return path


def run(main: Callable[[list[str]], None]) -> None:
  """absl `app.run(main)`, turning user errors into one paragraph on stderr and exit status 1."""

  def wrapped(argv):
    try:
      main(argv)
    except USER_ERRORS as e:
      print(f"error: {e}", file=sys.stderr)
      sys.exit(1)
    except KeyboardInterrupt:
      print("interrupted; rerun the same command to resume.", file=sys.stderr)
      sys.exit(130)

  app.run(wrapped, flags_parser=_parse_flags)


def _parse_flags(argv):
  """absl's flag parsing, but a bad flag or config is one paragraph and exit 1, not a traceback."""
  try:
    return flags.FLAGS(argv)
  except flags.Error as e:
    lines = [l.strip() for l in str(e).splitlines() if l.strip()]
    # Config-file errors carry the loader's traceback; its last line is the actual message.
    msg = lines[-1] if any(l.startswith("Traceback") for l in lines) else " ".join(lines)
    print(f"error: {msg}\nPass --helpshort to see the flags.", file=sys.stderr)
    sys.exit(1)

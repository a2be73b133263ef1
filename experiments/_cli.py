"""What every experiment binary shares: the common flags, and user errors as one paragraph.

Binaries stay thin: they parse flags, call the library and write through `rfspec.files`. A user
error (bad flag or config, missing weights, unwritable workdir) prints one paragraph and exits 1,
with no traceback; a bug (any other exception, e.g. a JAX shape error) keeps its traceback.
Ctrl-C flushes the output and leaves at once with status 130. JAX's notice that a machine has no
TPU is dropped in every binary (importing this module installs the filter).
"""

from __future__ import annotations

import logging
import os
import re
import sys
from typing import Callable

from absl import app, flags

from rfspec.errors import UserError

# Flags defined by the helpers below belong to the binary that calls them, so --help and
# --helpshort list them with the binary's own flags.
flags.disclaim_key_flags()


class _NoTpuNotice(logging.Filter):
  """Drops JAX's INFO line that it could not start a TPU backend ("Unable to initialize backend
  'tpu': ... libtpu.so ..."), which every run on a machine without a TPU prints; its warnings
  (e.g. a TPU or GPU present but unusable) and every other message pass."""

  def filter(self, record):
    return not (record.levelno <= logging.INFO
                and record.getMessage().startswith("Unable to initialize backend 'tpu'"))


def silence_no_tpu_notice() -> None:
  """Installs `_NoTpuNotice` on JAX's backend logger (idempotent). Done when this module is
  imported, before any binary's flags are defined: a default config may ask JAX for its backend."""
  logger = logging.getLogger("jax._src.xla_bridge")
  if not any(isinstance(f, _NoTpuNotice) for f in logger.filters):
    logger.addFilter(_NoTpuNotice())


silence_no_tpu_notice()

# ----------------------------------------------------------------------------- compile cache
# JAX's persistent compilation cache: a grid compiled once on a machine is read back by every
# later process (a second process's first grid call costs a fraction of a cold compile; see
# experiments/benchmark.py --sections=compile). It lives under the rfspec cache dir
# ($RFSPEC_CACHE, default ~/.cache/rfspec) in `jax_compile_cache/`. Opt out with
# --nocompile_cache or RFSPEC_COMPILE_CACHE=0; RFSPEC_COMPILE_CACHE=DIR puts it elsewhere.
_COMPILE_CACHE = flags.DEFINE_boolean(
    "compile_cache", os.environ.get("RFSPEC_COMPILE_CACHE", "1").lower() not in ("0", "false", "no", "off"),
    "Keep compiled XLA programs in JAX's persistent cache under the rfspec cache dir (default "
    "~/.cache/rfspec/jax_compile_cache; RFSPEC_COMPILE_CACHE=0 turns it off, =DIR moves it).")


def compile_cache_dir() -> str:
  """Where the binaries keep JAX's persistent compilation cache."""
  env = os.environ.get("RFSPEC_COMPILE_CACHE", "")
  if env and env.lower() not in ("0", "1", "false", "true", "no", "yes", "off", "on"):
    return os.path.expanduser(env)
  from rfspec.weights.store import resolve_cache_dir

  return os.path.join(resolve_cache_dir(), "jax_compile_cache")


def enable_compile_cache(directory: str | None = None) -> str | None:
  """Turns on JAX's persistent compilation cache in `directory` (default `compile_cache_dir()`);
  returns it, or None when the nearest existing folder on its path is not a writable directory
  (then nothing is cached, and nothing fails). Nothing is created until JAX first compiles, so a
  run that stops early (e.g. missing weights) leaves the cache dir as it was."""
  import jax

  directory = directory or compile_cache_dir()
  existing = directory
  while not os.path.exists(existing) and os.path.dirname(existing) != existing:
    existing = os.path.dirname(existing)
  if not (os.path.isdir(existing) and os.access(existing, os.W_OK | os.X_OK)):
    return None
  jax.config.update("jax_compilation_cache_dir", directory)
  # Every program: a grid call also runs dozens of small ones (its init, the masks, the checks) that
  # compile in well under a second each but together cost as much as the big one on a second run.
  jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
  return directory


_CONFIG_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "configs")

# What a binary prints as one paragraph: the library's `UserError` (raised where it meets user
# input), and the OS's complaints about paths the user named. Anything else is a bug.
USER_ERRORS = (UserError, FileNotFoundError, FileExistsError, PermissionError, NotADirectoryError,
               IsADirectoryError)


def define_workdir_flag(required: bool = True,
                        help: str = "Directory for outputs; created if missing; reruns resume."):
  return flags.DEFINE_string("workdir", None, help, required=required)


def define_weights_flag(help: str = "Weights: a .caffemodel path, an orbax checkpoint dir, or "
                        "'bvlc_googlenet' (cached, downloaded if missing). Default from $RFSPEC_WEIGHTS."):
  # An empty RFSPEC_WEIGHTS means unset, as rfspec.load_params reads it.
  return flags.DEFINE_string("weights", os.environ.get("RFSPEC_WEIGHTS") or "bvlc_googlenet", help)


_CONFIG_FLAGS: list[str] = []


def define_config_flag(name: str):
  """`--config=experiments/configs/NAME.py[:VARIANT]`, defaulting to the binary's own config.

  The config is locked: `--config.vis.stepz=3` (a typo) is an error, not a new field.
  """
  from ml_collections import config_flags

  try:
    holder = config_flags.DEFINE_config_file("config", os.path.join(_CONFIG_DIR, f"{name}.py"),
                                             f"Config file, e.g. experiments/configs/{name}.py:quick",
                                             lock_config=True)
  except Exception as e:  # the default config is parsed now, with any --config.X overrides in argv
    _exit_bad_flag(_config_message(e))
  _CONFIG_FLAGS.append("config")
  return holder


def _config_message(e: BaseException) -> str:
  """One paragraph for a config that does not load or an override that does not fit it."""
  text = str(e)
  lines = [l.strip() for l in text.splitlines() if l.strip()]
  if "No such file" in text or "Failed loading config file" in text:
    found = sorted(f for f in os.listdir(_CONFIG_DIR) if f.endswith(".py") and not f.startswith("_"))
    path = next((l for l in lines if l.endswith(".py")), "")
    return (f"--config: cannot load the config file {path!r}. Pass --config=experiments/configs/NAME.py"
            f"[:VARIANT] with NAME.py one of {', '.join(found)} (or a path to your own).")
  if isinstance(e, (AttributeError, KeyError)):
    # ml_collections's KeyError text is a repr with an embedded "Did you mean ...".
    msg = " ".join(" ".join(lines).replace("\\n", " ").replace("\\", "").replace("'", "").split())
    field = msg.split()[0].strip("\"") if msg else "?"
    override = next((a.split("=")[0] for a in sys.argv if a.startswith("--config.") and
                     a.split("=")[0].split(".")[-1] == field), "--config.FIELD")
    hint = re.search(r'Did you mean "([^"]+)"', msg)
    hint = f"; did you mean {hint.group(1)!r}?" if hint else "."
    if override.startswith("--config.vis.") and not hint.startswith(";") and field in _vis_fields():
      return (f"{override}: {field!r} is a VisConfig field that this config leaves to its recipe, so config.vis "
              f"has no {field!r} entry and the locked config cannot take it from the command line. Copy the "
              f"config file, add {field}=... to its vis, and pass --config=YOUR_COPY.py[:VARIANT].")
    return (f"{override}: the config has no field {field!r}{hint} Its fields are fixed by the "
            "config file (locked), so a mistyped override is an error rather than a new field.")
  msg = lines[-1] if lines else type(e).__name__
  bad = _bad_override(text)
  if bad is not None:
    return bad
  if type(e) is ValueError:  # a config file's own refusal (e.g. an unknown variant) is already a sentence
    return f"--config: {msg.removeprefix('ValueError: ')}"
  return f"--config: {msg}" if msg.startswith(type(e).__name__) else f"--config: {type(e).__name__}: {msg}"


def _vis_fields() -> set[str]:
  import dataclasses

  from rfspec.engine import VisConfig

  return {f.name for f in dataclasses.fields(VisConfig)}


_KINDS = (("invalid literal for int()", "a whole number", "500"),
          ("could not convert string to float", "a number", "0.5"),
          ("int too large", "a whole number that fits", "500"),
          ("cannot convert float", "a finite whole number", "500"),
          ("Non-boolean argument", "True or False", "False"))


def _bad_override(text: str) -> str | None:
  """One paragraph for a --config.FIELD=VALUE whose value does not parse as the field's type (e.g.
  --config.vis.steps=1e12 on an int field), naming the override and what it takes; None when the
  error names no override on the command line."""
  for arg in sys.argv[1:]:
    if not arg.startswith("--config.") or "=" not in arg:
      continue
    name, value = arg.split("=", 1)
    if f"'{value}'" not in text and f'"{value}"' not in text:
      continue
    for needle, kind, example in _KINDS:
      if needle in text:
        how = "write True or False" if kind == "True or False" else "write it in digits without an exponent or quotes"
        return f"{name}={value}: the field holds {kind}, and {value!r} is not one; {how}, e.g. {name}={example}."
    return (f"{name}={value}: the value does not fit the field ({' '.join(text.split())}); give a value of the "
            "type the config file sets for it.")
  return None


def ensure_workdir(path: str) -> str:
  """Creates `path` if needed, checks it is writable (else UserError), and removes the temporary
  files a killed run left in it (`rfspec.files.clean_stale_temps`; subdirectories are the binary's)."""
  from rfspec import files

  try:
    os.makedirs(path, exist_ok=True)
    probe = os.path.join(path, ".rfspec-write-test")
    with open(probe, "w"):
      pass
    os.unlink(probe)
  except OSError as e:
    raise UserError(f"Cannot write to --workdir={path!r} ({e.strerror or e}). "
                    "Pass a directory you can write to.") from None
  files.clean_stale_temps(path)
  return path


def run(main: Callable[[list[str]], None]) -> None:
  """absl `app.run(main)`, turning user errors into one paragraph on stderr and exit status 1.

  Ctrl-C flushes stdout and stderr and leaves with `os._exit(130)`: a normal interpreter exit can
  segfault while XLA is compiling on another thread, and finished work is already on disk.
  """

  silence_no_tpu_notice()  # already done at import; kept here so a binary cannot miss it

  def wrapped(argv):
    if _COMPILE_CACHE.value:
      enable_compile_cache()
    try:
      main(argv)
    except USER_ERRORS as e:
      print(f"error: {_user_message(e)}", file=sys.stderr)
      sys.exit(1)
    except KeyboardInterrupt:
      print("\ninterrupted; rerun the same command to resume.", file=sys.stderr)
      _flush_and_exit(130)

  app.run(wrapped, flags_parser=_parse_flags)


def _user_message(e: BaseException) -> str:
  if isinstance(e, OSError) and not isinstance(e, UserError) and e.filename is not None:
    # The OS's own words plus the path; say what to do about it.
    return f"{e.strerror or e}: {e.filename!r}. Check the path and its permissions."
  return str(e)


def _flush_and_exit(status: int) -> None:
  for stream in (sys.stdout, sys.stderr):
    try:
      stream.flush()
    except Exception:  # a closed pipe must not stop the exit
      pass
  os._exit(status)


def _exit_bad_flag(message: str) -> None:
  print(f"error: {' '.join(message.split())}\nPass --helpshort to see the flags.", file=sys.stderr)
  sys.exit(1)


def _parse_flags(argv):
  """absl's flag parsing, but a bad flag or config is one paragraph and exit 1, not a traceback."""
  try:
    rest = flags.FLAGS(argv)
  except flags.Error as e:
    cause = e.__cause__ or e.__context__
    _exit_bad_flag(_config_message(cause) if "config" in str(e) and cause else str(e))
  except Exception as e:  # config_flags parses --config.X overrides with plain exceptions
    if not _CONFIG_FLAGS:
      raise
    _exit_bad_flag(_config_message(e))
  for name in _CONFIG_FLAGS:
    try:  # config_flags defers load errors (a missing file, a variant) to first use
      flags.FLAGS[name].value.keys()
    except Exception as e:
      _exit_bad_flag(_config_message(e.__cause__ or e))
  return rest


def weights_digest(src: str) -> str:
  """The sha256 of the weights `--weights` names (results are keyed on content, not path)."""
  from rfspec.weights.store import weights_sha256

  return weights_sha256(src)


def load_params(src: str):
  """`rfspec.load_params(src)`, saying so on stderr."""
  import rfspec

  print(f"loading weights {src}", file=sys.stderr, flush=True)
  return rfspec.load_params(src)

"""Traced programs kept on disk beside JAX's persistent compilation cache: compile once per machine.

JAX's persistent cache (`jax_compilation_cache_dir`) saves the compiled program, but a new process
still traces and lowers the Python function before it can look the program up: for a grid's step
(GoogLeNet forward, custom VJPs, the recipe) that is most of a warm first call. `cached` keeps the
traced program itself (`jax.export`, StableHLO) under `<compilation cache dir>/rfspec_programs/`,
keyed on the caller's key, the arguments' shapes, dtypes and shardings, the installed jax and
jaxlib, and a digest of rfspec's own source: a later process loads it instead of tracing, and its
compile is then a read from JAX's cache. Any change to rfspec's code is a new key.

It is on exactly when the compilation cache is (every `experiments/` binary turns it on; opt out
with `--nocompile_cache`), and off for multi-process runs. Each file starts with its payload's
sha256: a file that fails the check or fails to load is traced afresh and rewritten atomically.
"""

from __future__ import annotations

import functools
import hashlib
import logging
import os
import pathlib
from typing import Callable

import jax

from rfspec import files

__all__ = ["cached", "compiled", "directory"]

_log = logging.getLogger(__name__)
_LOADED: dict[str, tuple[str, Callable, Callable]] = {}  # digest -> (key, function, its jit)


@functools.lru_cache(maxsize=1)
def _source_digest() -> str:
  """sha256 of every rfspec .py file (path and bytes), jax's and jaxlib's versions."""
  import jaxlib

  root = pathlib.Path(__file__).resolve().parent
  h = hashlib.sha256(f"jax {jax.__version__} jaxlib {jaxlib.__version__}".encode())
  for path in sorted(root.rglob("*.py")):
    h.update(str(path.relative_to(root)).encode())
    h.update(path.read_bytes())
  return h.hexdigest()


def directory() -> str | None:
  """Where traced programs go, or None when they are not kept (no compilation cache; multi-process)."""
  base = jax.config.jax_compilation_cache_dir
  if not base or jax.process_count() > 1:
    return None
  return os.path.join(base, "rfspec_programs")


def _describe(x) -> str:
  sharding = getattr(x, "sharding", None)
  return f"{jax.numpy.shape(x)}:{jax.numpy.result_type(x)}:{sharding}"


def cached(jitted: Callable, key: str, args: tuple, out_tree, *, donate_argnums: tuple = (), **static) -> Callable:
  """A function of `args` (same pytree, shapes, dtypes and shardings) that computes
  `jitted(*args, **static)`: traced here once per machine, then loaded from disk.

  `jitted` is a `jax.jit` function; `static` its static keyword arguments; `key` names everything
  else the trace depends on (e.g. the `VisConfig`); `out_tree` is the result's pytree structure
  (the program on disk holds flat arrays only: optax's state types have no serialization).
  Without a compilation cache dir this returns `functools.partial(jitted, **static)` unchanged.
  """
  folder = directory()
  try:
    import flatbuffers  # noqa: F401  (jax.export's serialization; a dependency of rfspec)
  except ImportError:
    folder = None
  if folder is None:
    return functools.partial(jitted, **static)
  leaves, in_tree = jax.tree.flatten(args)
  digest = hashlib.sha256(repr((key, sorted(static.items()), jax.default_backend(), jax.device_count(), in_tree,
                                out_tree, [_describe(x) for x in leaves], donate_argnums,
                                _source_digest())).encode()).hexdigest()[:32]
  if digest in _LOADED:
    return _LOADED[digest][1]
  path = os.path.join(folder, digest + ".stablehlo")
  exported = None
  if os.path.isfile(path):
    try:
      with open(path, "rb") as f:
        head, payload = f.read().split(b"\n", 1)
      if hashlib.sha256(payload).hexdigest().encode() != head:
        raise ValueError("its checksum does not match")
      exported = jax.export.deserialize(bytearray(payload))
    except Exception as e:  # a damaged file is detected, not loaded: trace afresh and replace it
      _log.warning("rfspec: could not load the traced program %s (%s); tracing it again", path, e)
  if exported is None:
    def flat(*flat_args):
      out = jitted(*jax.tree.unflatten(in_tree, flat_args), **static)
      out_leaves, tree = jax.tree.flatten(out)
      if tree != out_tree:
        raise AssertionError(f"program_cache: {key} returned {tree}, not the declared {out_tree}")
      return out_leaves

    exported = jax.export.export(jax.jit(flat))(*leaves)
    payload = bytes(exported.serialize())
    files.atomic_write(path, hashlib.sha256(payload).hexdigest().encode() + b"\n" + payload)
  counts = [len(jax.tree.leaves(a)) for a in args]
  starts = [sum(counts[:i]) for i in range(len(args))]
  donated = tuple(starts[i] + j for i in donate_argnums for j in range(counts[i]))
  call = jax.jit(exported.call, donate_argnums=donated)

  def fn(*a):
    return jax.tree.unflatten(out_tree, call(*jax.tree.leaves(a)))

  _LOADED[digest] = (key, fn, call)
  return fn


def compiled(key: str) -> int:
  """How many programs this process has compiled for `key` through `cached` (e.g. to check that a
  run compiles once whatever its seeds)."""
  return sum(call._cache_size() for k, _, call in _LOADED.values() if k == key)

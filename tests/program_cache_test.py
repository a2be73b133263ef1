"""rfspec.program_cache: a traced program saved, loaded back in place of tracing, the same numbers;
damaged files are traced again; off without a compilation cache dir."""

import functools
import os
from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
import optax
from absl.testing import absltest

from rfspec import program_cache

TRACED = []


@functools.partial(jax.jit, donate_argnums=(1,), static_argnames=("scale",))
def _step(x, state, *, scale):
  TRACED.append(1)  # runs only when JAX traces the function
  updates, state = optax.adam(0.1).update(x * scale, state)
  return state, jnp.sum(updates), updates


class ProgramCacheTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.folder = self.create_tempdir().full_path
    # Where programs go (JAX's own cache dir is fixed at the process's first compile).
    self.enter_context(mock.patch.object(program_cache, "directory",
                                         lambda: os.path.join(self.folder, "rfspec_programs")))
    self._new_process()

  def _new_process(self):
    program_cache._LOADED.clear()
    jax.clear_caches()  # JAX's in-memory traces too: a trace now is one the cache did not save
    TRACED.clear()

  def _args(self):
    x = jnp.arange(6.0).reshape(2, 3)
    return x, optax.adam(0.1).init(x)

  def _run(self):
    x, state = self._args()
    out_tree = jax.tree.structure((state, 0, 0))
    fn = program_cache.cached(_step, "test step", (x, state), out_tree, donate_argnums=(1,), scale=2.0)
    return fn(x, state)

  def test_saved_then_loaded_without_tracing_and_equal_to_the_jit(self):
    first = self._run()
    self.assertLen(TRACED, 1)
    self.assertLen(os.listdir(os.path.join(self.folder, "rfspec_programs")), 1)
    self.assertEqual(program_cache.compiled("test step"), 1)
    self._new_process()
    second = self._run()
    self.assertEmpty(TRACED)  # loaded from disk, not traced
    want = _step(*self._args(), scale=2.0)
    for got in (first, second):
      self.assertEqual(jax.tree.structure(got), jax.tree.structure(want))  # optax's state types come back
      for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
        np.testing.assert_array_equal(a, b)

  def test_a_damaged_file_is_traced_again_and_replaced(self):
    self._run()
    folder = os.path.join(self.folder, "rfspec_programs")
    (name,) = os.listdir(folder)
    path = os.path.join(folder, name)
    good = open(path, "rb").read()
    flipped = bytearray(good)
    flipped[-40] ^= 1  # one bit inside the program: caught by the checksum, never deserialized
    for damaged in (b"not a program", bytes(flipped), good[: len(good) // 2]):
      with open(path, "wb") as f:
        f.write(damaged)
      self._new_process()
      with self.assertLogs(program_cache._log, "WARNING") as logs:
        got = self._run()
      self.assertIn("tracing it again", logs.output[0])
      self.assertLen(TRACED, 1)
      np.testing.assert_allclose(got[1], _step(*self._args(), scale=2.0)[1])
      self._new_process()  # the rewritten file loads without a trace
      self._run()
      self.assertEmpty(TRACED)

  def test_off_without_a_compilation_cache(self):
    with mock.patch.object(program_cache, "directory", lambda: None):
      fn = program_cache.cached(_step, "test step", self._args(), None, scale=2.0)
    self.assertIsInstance(fn, functools.partial)
    self.assertEmpty(os.listdir(self.folder))


if __name__ == "__main__":
  absltest.main()

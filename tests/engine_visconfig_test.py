"""VisConfig's unknown keywords: one UserError with the nearest field, and nothing else changes
(dataclasses.replace, hashing, jit static-ness, pickling, VisConfig(**cfg.fields()))."""

import copy
import dataclasses
import pickle

import jax
import jax.numpy as jnp
from absl.testing import absltest, parameterized

from rfspec.engine import VisConfig
from rfspec.errors import UserError

TAP = "conv2/3x3"


class UnknownFieldTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("constructor", lambda: VisConfig(tap=TAP, stepz=3)),
      ("from_recipe", lambda: VisConfig.from_recipe("zipser2015", tap=TAP, stepz=3)),
      ("deepdream", lambda: VisConfig.deepdream(TAP, stepz=3)),
      ("replace", lambda: dataclasses.replace(VisConfig(tap=TAP), stepz=3)),
  )
  def test_typo_names_the_nearest_field(self, make):
    with self.assertRaises(UserError) as cm:
      make()
    message = str(cm.exception)
    self.assertIn("VisConfig has no field 'stepz' (did you mean 'steps'?)", message)
    self.assertIn("image_hw", message)  # lists the fields
    self.assertNotIn("\n", message)

  def test_several_unknown_and_one_without_a_near_field(self):
    with self.assertRaisesRegex(UserError, r"no field 'lerning_rate' \(did you mean 'learning_rate'\?\), "
                                           r"'banana'\. Its fields"):
      VisConfig(tap=TAP, lerning_rate=0.1, banana=1)


class StepCountTest(parameterized.TestCase):
  """Issue 20 item 7: steps=1e12 was accepted as an int and overflowed the compiled loop's int32 step
  counter late (OverflowError); a bool or a fraction is no step count either."""

  @parameterized.parameters(("steps", 10 ** 12), ("steps", 2 ** 31), ("chunk", 10 ** 12), ("steps", True),
                            ("steps", 2.5), ("steps", 0))
  def test_refused_with_the_range(self, field, value):
    with self.assertRaisesRegex(UserError, rf"{field} must be a whole number in \[1, 2\*\*31 - 1\].*got {value!r}"):
      VisConfig(tap=TAP, **{field: value})

  def test_the_largest_int32_count_is_accepted(self):
    self.assertEqual(VisConfig(tap=TAP, steps=2 ** 31 - 1).steps, 2 ** 31 - 1)


class StillADataclassTest(absltest.TestCase):

  def test_replace_hash_equality_and_fields_round_trip(self):
    cfg = VisConfig(tap=TAP, image_hw=(64, 64), steps=3)
    self.assertEqual(dataclasses.replace(cfg, steps=4).steps, 4)
    self.assertEqual(VisConfig(**cfg.fields()), cfg)
    self.assertEqual(hash(VisConfig(**cfg.fields())), hash(cfg))
    self.assertEqual(pickle.loads(pickle.dumps(cfg)), cfg)
    self.assertEqual(copy.deepcopy(cfg), cfg)
    self.assertEqual(VisConfig(TAP, (64, 64)), VisConfig(tap=TAP, image_hw=(64, 64)))  # positional
    with self.assertRaises(dataclasses.FrozenInstanceError):
      cfg.steps = 5

  def test_jit_treats_it_as_static(self):
    traces = []

    def f(x, cfg):
      traces.append(cfg)
      return x * cfg.steps

    g = jax.jit(f, static_argnums=1)
    a = VisConfig(tap=TAP, image_hw=(64, 64), steps=3)
    self.assertEqual(float(g(jnp.float32(2), a)), 6.0)
    self.assertEqual(float(g(jnp.float32(2), VisConfig(**a.fields()))), 6.0)  # equal: no retrace
    self.assertLen(traces, 1)
    self.assertEqual(float(g(jnp.float32(2), dataclasses.replace(a, steps=4))), 8.0)
    self.assertLen(traces, 2)


if __name__ == "__main__":
  absltest.main()

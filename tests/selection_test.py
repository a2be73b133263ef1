"""The channel rule that decides every figure: active on the start image at every position shown.

Random weights of the real shapes (tests/conftest.py: tiny_params), 96 px. The activations are recomputed here from the data blob itself (the
Flax net applied to Caffe's data space), not through `rfspec.selection`.
"""

from unittest import mock

import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest

import rfspec
from rfspec import selection
from rfspec.errors import UserError
from rfspec.models import googlenet
from tests.conftest import tiny_params

TAP, HW = "inception_4c/5x5", (96, 96)  # grid 6 x 6; the paper's tap
POSITIONS = [(0, 2), (2, 2), (5, 2)]  # the column: top, middle, bottom
SEEDS = (0, 1, 2)


def _blob_at_start(params, cfg, seed):
  """The tap's blob on the start image, from the data blob the script would set."""
  rgb = np.asarray(rfspec.initial_image(seed, cfg), np.float64)
  data = rgb[..., ::-1] * 255.0 - np.asarray(cfg.caffe_mean)
  return np.asarray(_data_blob(params, jnp.asarray(data, jnp.float32)))


@jax.jit  # one program (eagerly, each of the net's ops is dispatched on its own, for every seed)
def _data_blob(params, data):
  return googlenet.GoogLeNet().apply({"params": params}, data[None], taps=(TAP,))[TAP][0]


class ChannelRuleTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.params = tiny_params()
    cls.cfg = rfspec.VisConfig.from_recipe("zipser2015", tap=TAP, image_hw=HW)
    blobs = [_blob_at_start(cls.params, cls.cfg, s) for s in SEEDS]
    cls.weakest = np.min([[b[i, j] for i, j in POSITIONS] for b in blobs], axis=(0, 1))  # [C]

  def test_picks_the_channel_whose_weakest_start_activation_is_largest(self):
    chosen = selection.resolve_channel(self.params, self.cfg, -1, 0, positions=POSITIONS, seeds=SEEDS)
    self.assertEqual(chosen, int(np.argmax(self.weakest)))
    self.assertGreater(self.weakest[chosen], 0)  # active at every position and seed shown
    second = selection.resolve_channel(self.params, self.cfg, -1, 1, positions=POSITIONS, seeds=SEEDS)
    self.assertEqual(second, int(np.argsort(-self.weakest, kind="stable")[1]))

  def test_ranked_choice_is_every_eligible_channel_by_the_weakest_activation(self):
    choice = selection.choose_channels(self.params, self.cfg, POSITIONS, n_channels=64, n_seeds=3, seed_pool=SEEDS)
    eligible = np.flatnonzero(self.weakest > 0)
    np.testing.assert_array_equal(choice.eligible, eligible)
    np.testing.assert_array_equal(choice.channels, eligible[np.argsort(-self.weakest[eligible], kind="stable")])
    self.assertEqual(choice.seeds.shape, (len(eligible), 3, 3))
    np.testing.assert_array_equal(choice.seeds, np.broadcast_to(SEEDS, choice.seeds.shape))

  def test_a_pool_gives_each_channel_and_position_its_own_driving_starts(self):
    pool = range(12)
    blobs = [_blob_at_start(self.params, self.cfg, s) for s in pool]
    on = np.array([[b[i, j] > 0 for i, j in POSITIONS] for b in blobs])  # [M, P, C]
    choice = selection.choose_channels(self.params, self.cfg, POSITIONS, n_channels=5, n_seeds=4, seed_pool=pool,
                                       key=jax.random.key(3))
    np.testing.assert_array_equal(choice.eligible, np.flatnonzero(on.sum(0).min(0) >= 4))
    for k, c in enumerate(choice.channels):
      self.assertIn(c, choice.eligible)
      for p in range(len(POSITIONS)):
        np.testing.assert_array_equal(choice.seeds[k, p], np.flatnonzero(on[:, p, c])[:4])  # the first 4 that drive it
        self.assertTrue(np.all(choice.start_activation[k, p] > 0))
    again = selection.choose_channels(self.params, self.cfg, POSITIONS, n_channels=5, n_seeds=4, seed_pool=pool,
                                      key=jax.random.key(3))
    np.testing.assert_array_equal(again.channels, choice.channels)  # the draw comes from the key alone
    other = selection.choose_channels(self.params, self.cfg, POSITIONS, n_channels=len(choice.eligible), n_seeds=4,
                                      seed_pool=pool, key=jax.random.key(4))
    self.assertEqual(sorted(other.channels.tolist()), choice.eligible.tolist())

  def test_too_few_active_channels_is_a_user_error(self):
    active = int((self.weakest > 0).sum())
    with self.assertRaisesRegex(UserError, f"Only {active} channel"):
      selection.resolve_channel(self.params, self.cfg, -1, active, positions=POSITIONS, seeds=SEEDS)
    with mock.patch.object(selection, "start_activations", return_value=np.zeros((3, 3, 64), np.float32)):
      with self.assertRaisesRegex(UserError, "No channel"):  # every node off at the start
        selection.choose_channels(self.params, self.cfg, POSITIONS, n_channels=1, n_seeds=3, seed_pool=SEEDS)
    # pre_relu moves nodes that are off, so any rank is allowed there.
    pre = rfspec.VisConfig(tap=TAP, image_hw=HW, recipe="zipser2015", objective="pre_relu")
    self.assertIsInstance(selection.resolve_channel(self.params, pre, -1, active, positions=POSITIONS,
                                                    seeds=SEEDS), int)

  def test_an_explicit_channel_is_kept(self):
    self.assertEqual(selection.resolve_channel(self.params, self.cfg, 5), 5)
    n = self.weakest.size  # 64 channels in inception_4c/5x5
    with self.assertRaisesRegex(UserError, f"0 .. {n - 1}"):
      selection.resolve_channel(self.params, self.cfg, n)


if __name__ == "__main__":
  absltest.main()

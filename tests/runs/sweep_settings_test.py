"""rfspec.runs.sweep.settings_from_config: a sweep config is validated as a whole, before any weights
load or compile, and every bad field is named in ONE UserError paragraph (issue 20 item 7)."""

import os
from unittest import mock

from absl.testing import absltest, parameterized

from experiments.configs import specificity as configs
from rfspec.errors import UserError
from rfspec.runs import sweep


def quick(**overrides):
  d = configs.get_config("quick").to_dict()
  vis = overrides.pop("vis", None)
  if vis:
    d["vis"] = dict(d["vis"], **vis)
  return dict(d, **overrides)


class SweepSettingsTest(parameterized.TestCase):

  @parameterized.named_parameters(
      # Claim 3's auc_id compares a node's starts with another channel's: one channel per tap ran to
      # the end with auc_id NaN everywhere and no reason.
      ("one_channel", dict(channels_per_tap=1), r"config.channels_per_tap must be a whole number in \[2, 192\] "
                                                r"\(claim 3's auc_id .*got 1\."),
      ("too_many_channels", dict(channels_per_tap=200), r"config.channels_per_tap .*in \[2, 192\].*got 200"),
      ("fraction", dict(n_positions=2.5), r"config.n_positions must be a whole number in \[2, 64\].*got 2.5"),
      ("n_boot", dict(n_boot=0), r"config.n_boot must be a whole number in \[20, 100000\]; got 0"),
      ("seed_pool", dict(seed_pool=2), r"config.seed_pool must be a whole number in \[3, .*got 2"),
      ("bool", dict(batch=True), r"config.batch must be a whole number .*got True"),
      ("judge", dict(taps=("inception_3a/output",)), r"config.taps: 'inception_3a/output' is the judge layer"),
      ("not_spatial", dict(taps=("prob",)), r"config.taps: 'prob' has no spatial grid"),
      ("empty", dict(taps=()), r"config.taps is empty"),
      ("text_taps", dict(taps="conv2/3x3"), r"config.taps must be a list of tap names"),
      ("ablation_tap", dict(padding_taps=("inception_4c/5x5",)), r"config.padding_taps: \['inception_4c/5x5'\] are "
                                                                 r"not in config.taps"),
      ("snapshots", dict(snapshot_steps=(3,)), r"config.snapshot_steps: .*multiple of cfg.chunk = 4"),
      ("snapshot_text", dict(snapshot_steps=("x",)), r"config.snapshot_steps must be whole step counts"),
      ("steps", dict(vis=dict(steps=10 ** 12)), r"config.vis does not work for tap 'conv2/3x3': .*2\*\*31 - 1"),
      ("vis_typo", dict(vis=dict(stepz=3)), r"config.vis does not work .*did you mean 'steps'"),
  )
  def test_one_paragraph_that_names_the_field(self, overrides, pattern):
    with self.assertRaisesRegex(UserError, pattern) as e:
      sweep.settings_from_config(quick(**overrides))
    self.assertNotIn("\n", str(e.exception))
    self.assertIn("bad field(s):", str(e.exception))

  def test_every_bad_field_in_one_paragraph(self):
    with self.assertRaises(UserError) as e:
      sweep.settings_from_config(quick(channels_per_tap=1, n_boot=0, batch=-1, taps=("conv2/3x3", "prob", "nope")))
    text = str(e.exception)
    self.assertIn("The sweep config has 5 bad field(s):", text)
    for needle in ("'prob' has no spatial grid", "Unknown tap 'nope'", "config.channels_per_tap", "config.n_boot",
                   "config.batch"):
      self.assertIn(needle, text)
    self.assertNotIn("\n", text)

  def test_a_size_that_cannot_fit_is_refused_before_the_weights_load(self):
    with mock.patch.dict(os.environ, {"RFSPEC_MEMORY_LIMIT": "1G"}):
      with self.assertRaisesRegex(UserError, r"config.vis.image_hw / config.batch: VisConfig\(tap='conv2/3x3', "
                                             r"image_hw=\(6000, 6000\)\) on a batch of 6 image\(s\) needs about"):
        sweep.settings_from_config(quick(vis=dict(image_hw=(6000, 6000))))

  def test_the_configs_variants_are_valid(self):
    for variant in ("full", "cpu224", "pilot224", "quick"):
      with mock.patch.dict(os.environ, {"RFSPEC_MEMORY_LIMIT": "1T"}):  # full's batch of 256 is for a GPU
        s = sweep.settings_from_config(configs.get_config(variant))
      self.assertGreaterEqual(s.channels_per_tap, 2, variant)


if __name__ == "__main__":
  absltest.main()

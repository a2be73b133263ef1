"""Config of the specificity sweep (`experiments/specificity.py`): one verdict per claim of the paper.

  # full: 224 px, 6 taps conv2 -> 5b, K=3, S=8, 5 positions + mirrors, the paper's recipe (a GPU/TPU)
  python -m experiments.specificity --workdir=/tmp/spec
  # cpu: the reduced sweep recorded in experiments/results/ (96 px, 100 steps; 2 CPU cores, ~40 min)
  python -m experiments.specificity --workdir=/tmp/spec_cpu --config=experiments/configs/specificity.py:cpu
  # quick: CI smoke run (64 px, 2 taps, K=3, S=3, 4 steps): the pipeline, not the science
  python -m experiments.specificity --workdir=/tmp/spec_quick --config=experiments/configs/specificity.py:quick

Add `--weights=../shared/weights/bvlc_googlenet.caffemodel` to read the weights from a file.
Override any field, e.g. `--config.taps='("conv2/3x3","inception_4c/output")' --config.seeds='(0,1,2)'`.

Fields:
  taps: spatial taps swept (not the judge layer, inception_3a/output), each one compiled grid call.
  channels_per_tap: K; each channel's floor is the other K - 1 (K >= 3 recommended). Chosen by
    `rfspec.specificity.choose_channels`, a rule that fits the recipe's objective.
  n_positions: positions from the centre node to the corner (inside fraction max -> min); the
    mirror of each off-centre one is added for the mirror ablation.
  seeds: S >= 3 distinct int32 seeds (the paper's Figure 2 shows 3; S >= 6 for usable intervals).
  n_boot: bootstrap draws for the 95 % intervals.
  vis: `VisConfig` fields plus "recipe".
  tiled_realism: also visualise each tap's first channel tiled and score realism (claim 5).
  input_size_taps: taps (of `taps`) whose centre node is also run at 2x the image side, where
    more of the RF fits (a second grid call per tap; choose taps whose RF fits at 2x).
  padding_taps: taps (of `taps`) rerun with reflect padding in every conv and pool (the padding
    ablation; its control, the classification change on the reference photos, is reported too).
  reference_images: natural photos for the realism references: comma-separated files or folders;
    "" = the JPEGs in $RFSPEC_SHARED/images, else ../shared/images next to the repo.
"""

import ml_collections

ALL_TAPS = ("conv2/3x3", "inception_3b/output", "inception_4a/output", "inception_4c/output",
            "inception_4e/output", "inception_5b/output")
# The paper's own procedure (reference/zipser2015/PROCEDURE.md) once rfspec.recipes has it.
RECIPE = "zipser2015"
FULL_VIS = dict(recipe=RECIPE, image_hw=(224, 224), steps=600, chunk=50, dtype="float32")
CPU_VIS = dict(FULL_VIS, image_hw=(96, 96), steps=100, chunk=25)
QUICK_VIS = dict(recipe="deepdream", image_hw=(64, 64), steps=4, chunk=4, dtype="float32",
                 learning_rate=16 / 255, jitter=2)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The sweep config; arg "quick" (CI) or "cpu" (the reduced CPU sweep), else the full sweep."""
  config = ml_collections.ConfigDict()
  config.variant = arg or "full"
  config.taps = ALL_TAPS
  config.channels_per_tap = 3
  config.n_positions = 5
  config.seeds = tuple(range(8))
  config.n_boot = 200
  config.vis = dict(FULL_VIS)
  config.tiled_realism = True
  config.input_size_taps = ("inception_4a/output", "inception_4c/output")  # RF 171 / 299 px fit at 448
  config.padding_taps = ("inception_4c/output", "inception_5b/output")
  config.reference_images = ""

  if arg == "cpu":
    # 96 px, 100 steps (the script runs 2,000: the start dots have decayed only to 0.995^100 = 61 %),
    # 5 taps, 3 positions + 2 mirrors, S = 6: about 40 minutes on 2 shared cores.
    config.taps = ("conv2/3x3", "inception_3b/output", "inception_4a/output", "inception_4c/output",
                   "inception_5b/output")
    config.n_positions = 3
    config.seeds = tuple(range(6))
    config.vis = dict(CPU_VIS)
    config.input_size_taps = ("inception_4a/output",)  # RF 171 px: 31 % inside at 96 px, all inside at 192
    config.padding_taps = ("inception_4c/output",)
  elif arg == "quick":
    config.taps = ("conv2/3x3", "inception_4c/output")
    config.n_positions = 3
    config.seeds = (0, 1, 2)
    config.n_boot = 50
    config.vis = dict(QUICK_VIS)
    config.input_size_taps = ()
    config.padding_taps = ()
  elif arg not in (None, "", "full"):
    raise ValueError(f"Unknown specificity config variant {arg!r}; use one of: full, cpu, quick.")
  return config

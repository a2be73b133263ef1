"""Config of the specificity sweep (`experiments/specificity.py`): PSI across taps, with and without
a padding canvas, and the realism of tiled visualisations.

  # full: 224 px, 10 taps, K=2, S=4, 128 steps, canvases zero/grey/reflect (a GPU or TPU)
  python -m experiments.specificity --workdir=/tmp/spec
  # cpu: the reduced sweep for 2 CPU cores (~15-25 min): 128 px, 6 taps, K=1, S=4, 24 steps, zero canvas
  python -m experiments.specificity --workdir=/tmp/spec_cpu --config=experiments/configs/specificity.py:cpu
  # quick: CI smoke run (~2 min on 2 cores): 64 px, 2 taps, K=1, S=2 (below the S>=4 of the
  # full sweep, so its PSIs are rough), 4 steps, zero canvas
  python -m experiments.specificity --workdir=/tmp/spec_quick --config=experiments/configs/specificity.py:quick

Add `--weights=../shared/weights/bvlc_googlenet.caffemodel` to read the weights from a file.
Override any field, e.g. `--config.taps='("conv2/3x3","inception_4c/output")' --config.seeds='(0,1,2)'`.

Fields:
  taps: spatial taps swept, in network order (each one compiled grid call per variant).
  channels_per_tap: K, channels per tap, picked by `rfspec.selection.rank_channels` (top-K by the
    centre node's activation on the seed-0 start image).
  positions: names from `rfspec.masks.named_positions`, centre -> edge -> corner; the first is
    the reference PSI is measured against.
  seeds: S >= 2 (the full sweep uses 4).
  vis: `VisConfig` fields plus "recipe".
  canvas_fills: the padding-ablation variants run besides "none" ("zero", "grey", "reflect").
  max_canvas_pad: the cap (px) on the canvas border; the pad per tap is the smallest multiple of
    its stride that puts every position's RF inside the canvas, but at most this (rounded down to
    the stride; "reflect" also needs it below the image side). The cap bounds the compute: the
    net sees (H + 2 pad)^2 px. Deep taps' RFs (inception_4e: 427 px, 5b: 715 px) need more than
    any affordable canvas, so their canvas runs are capped; the outputs report the share of each
    RF inside the canvas actually achieved.
  tiled_realism: also run each tap's first channel tiled and score it against the centre run.
  reference_images: natural images for the realism statistics: comma-separated files or folders;
    "" = the JPEGs in $RFSPEC_SHARED/images, else ../shared/images next to the repo.
"""

import ml_collections

ALL_TAPS = ("conv2/3x3", "inception_3a/output", "inception_3b/output", "inception_4a/output",
            "inception_4b/output", "inception_4c/output", "inception_4d/output", "inception_4e/output",
            "inception_5a/output", "inception_5b/output")
POSITIONS = ("centre", "top", "left", "top_left", "bottom_right")  # centre -> edge -> corner

# The paper's recipe at 224 px; pre-ReLU keeps a gradient for nodes that are off at the start
# (common where the RF lies mostly off the image). Jitter stays small next to conv2's 19 px RF.
FULL_VIS = dict(recipe="deepdream", image_hw=(224, 224), steps=128, chunk=32, dtype="float32",
                objective="pre_relu", learning_rate=1.5 / 255, jitter=8)
# Fewer steps need larger ones; jitter scaled with the image.
CPU_VIS = dict(FULL_VIS, image_hw=(128, 128), steps=24, chunk=8, learning_rate=6 / 255, jitter=4)
QUICK_VIS = dict(FULL_VIS, image_hw=(64, 64), steps=4, chunk=4, learning_rate=16 / 255, jitter=2)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The sweep config; arg "quick" (CI) or "cpu" (the reduced CPU sweep), else the full sweep."""
  config = ml_collections.ConfigDict()
  config.variant = arg or "full"
  config.taps = ALL_TAPS
  config.channels_per_tap = 2
  config.positions = POSITIONS
  config.seeds = (0, 1, 2, 3)
  config.vis = dict(FULL_VIS)
  config.canvas_fills = ("zero", "grey", "reflect")
  config.max_canvas_pad = 192  # 224 px image -> at most a 608 px canvas; < 224 for "reflect"
  config.tiled_realism = True
  config.reference_images = ""

  if arg == "cpu":
    # Reduced sweep for 2 CPU cores, stated as such in the outputs: 6 taps spanning RF 19-427 px.
    config.taps = ("conv2/3x3", "inception_3a/output", "inception_3b/output", "inception_4a/output",
                   "inception_4c/output", "inception_4e/output")
    config.channels_per_tap = 1
    config.vis = dict(CPU_VIS)
    config.canvas_fills = ("zero",)
    config.max_canvas_pad = 48  # RFs up to 3b fully inside; 4a-4e capped (224 px canvas)
  elif arg == "quick":
    # CI smoke run: S = 2 is below the S >= 4 of the full sweep, so the numbers are rough.
    config.taps = ("conv2/3x3", "inception_4c/output")
    config.channels_per_tap = 1
    config.seeds = (0, 1)
    config.vis = dict(QUICK_VIS)
    config.canvas_fills = ("zero",)
    config.max_canvas_pad = 32
  elif arg not in (None, "", "full"):
    raise ValueError(f"Unknown specificity config variant {arg!r}; use one of: full, cpu, quick.")
  return config

"""The six figures of Zipser (2015), as data; fig1.py ... fig6.py and reproduce_paper.py use it.

Node types. The paper's person-trained GoogLeNet is not public, so each figure uses BVLC
GoogLeNet node types chosen by rule (see `rfspec.selection`): the tap is fixed by the paper's
description of the node (small RF / RF spanning much of the image / larger RF still) and the
channel is the `rank`-th channel by centre-node activation on the seed-0 starting image.

  Fig 1 left   conv2/3x3            RF 19 px at 224: "low-level node type with a small RF"
  Fig 1 right  inception_4c/output  RF 299 px > 224: "high-level, RF spans much of the image"
  Fig 2        inception_4c/output  the same node type, 3 positions x 3 seeds
  Fig 3        inception_4e/output  a higher level with a larger RF (427 px), 3 x 3
  Fig 4-6      the node types of Fig 1 left, Fig 2 and Fig 3, tiled over every position, 3 seeds

Positions are the paper's column: top, middle, bottom of the tap grid's middle column.
"""

import ml_collections

LOW = dict(tap="conv2/3x3", channel=-1, rank=0)
MID = dict(tap="inception_4c/output", channel=-1, rank=0)
HIGH = dict(tap="inception_4e/output", channel=-1, rank=0)
COLUMN = ("top", "middle", "bottom")
SEEDS = (0, 1, 2)

FIGURES = {
    "fig1": dict(
        title="Figure 1: RF specificity vs RF position depends on RF size",
        claim="For nodes with small RFs there is no position-dependence for the vast majority of RF "
              "positions, but for nodes with large RFs, position can have a dramatic effect on RF "
              "specificity at most positions.",
        panels=(LOW, MID), positions=COLUMN, seeds=(0,)),
    "fig2": dict(
        title="Figure 2: each RF position has a distinct, seed-consistent preferred pattern",
        claim="Each RF position has a distinct preferred pattern which is largely consistent across "
              "visualization outcomes (rows: positions; columns: seeds).",
        panels=(MID,), positions=COLUMN, seeds=SEEDS),
    "fig3": dict(
        title="Figure 3: a higher-level node with a larger RF",
        claim="Higher level node with more complex preferred patterns, with more variability across "
              "visualization outcomes.",
        panels=(HIGH,), positions=COLUMN, seeds=SEEDS),
    "fig4": dict(
        title="Figure 4: tiled outcomes, low-level node of Figure 1 (left)",
        claim="Tiling a small, simple RF across all positions yields large-scale pattern structure that "
              "is highly consistent from outcome to outcome despite variation in local details.",
        panels=(LOW,), positions=(), seeds=SEEDS),
    "fig5": dict(
        title="Figure 5: tiled outcomes, mid-level node of Figure 2",
        claim="Tiling the node of Figure 2 generates large-scale structure, unmasks features not seen "
              "at single positions, and has a distinct, more realistic style.",
        panels=(MID,), positions=(), seeds=SEEDS),
    "fig6": dict(
        title="Figure 6: tiled outcomes, higher-level node of Figure 3",
        claim="Tiling the node of Figure 3 yields largely structured scenes, far more interpretable "
              "than its individual-position visualizations.",
        panels=(HIGH,), positions=(), seeds=SEEDS),
}

# The objective is pre-ReLU: its gradient equals the paper's (post-ReLU, "gradient of the node set
# to one") wherever the node is on, and unlike it does not vanish while the node is off -- which
# at start is common for nodes whose RF lies mostly off the image.
# Full quality (a GPU or TPU): the paper's 224 px and DeepDream-like step counts (1.5/255 per step).
# Jitter is DeepDream's random roll; it smears a single node's pattern over its RF grown by the
# jitter, so it stays small next to the smallest RF shown (19 px).
FULL_VIS = dict(recipe="deepdream", image_hw=(224, 224), steps=256, chunk=32, dtype="float32",
                objective="pre_relu", learning_rate=1.5 / 255, jitter=8)
# CPU-friendly: every figure in a couple of minutes on 2 cores; larger steps make up for fewer.
QUICK_VIS = dict(recipe="deepdream", image_hw=(96, 96), steps=12, chunk=6, dtype="float32",
                 objective="pre_relu", learning_rate=8 / 255, jitter=4)


# The paper's 224 px on a CPU: a third of the steps at twice the step size (~20 min on 2 cores).
CPU_VIS = dict(FULL_VIS, steps=96, chunk=16, learning_rate=3 / 255)


ACCELERATOR_BACKENDS = ("gpu", "cuda", "rocm", "tpu")


def variant_for_backend(backend: str) -> str:
  """The variant of a run whose --config names none: "full" on a GPU or TPU, else "cpu"."""
  return "full" if backend in ACCELERATOR_BACKENDS else "cpu"


def figure_config(names, arg=None) -> ml_collections.ConfigDict:
  """Config for the figures `names`; arg "full", "cpu" or "quick" picks the variant.

  Without arg the variant fits the machine: `variant_for_backend(jax.default_backend())`, and
  `config.picked_for_backend` records the backend it was picked for ("" when arg named it).
  """
  variants = {"full": FULL_VIS, "quick": QUICK_VIS, "cpu": CPU_VIS}
  backend = ""
  if not arg:
    import jax  # only a config without a variant asks what machine it runs on

    backend = jax.default_backend()
    arg = variant_for_backend(backend)
  if arg not in variants:
    raise ValueError(f"Unknown config variant {arg!r}; use one of: full, cpu, quick.")
  config = ml_collections.ConfigDict()
  config.variant = arg
  config.picked_for_backend = backend
  config.vis = dict(variants[arg])
  config.figures = {name: dict(FIGURES[name], panels=[dict(p) for p in FIGURES[name]["panels"]],
                               positions=list(FIGURES[name]["positions"]), seeds=list(FIGURES[name]["seeds"]))
                    for name in names}
  return config

"""The six figures of Zipser (2015), as data; fig1.py ... fig6.py and reproduce_paper.py use it.

  python -m experiments.reproduce_paper --workdir=/tmp/paper            # full on a GPU/TPU, else cpu
  python -m experiments.reproduce_paper --workdir=/tmp/paper \
      --config=experiments/configs/reproduce_paper.py:quick              # a smoke test, minutes

Procedure. Every variant uses the `zipser2015` recipe (`rfspec/recipes.py`): the paper's own
procedure, from its author's scripts (../shared/reference/zipser2015/PROCEDURE.md). The variants
differ only in size and step count:
  full   224 px, 2,000 steps (the script's 20 rounds x 100): for a GPU or TPU;
  cpu    224 px, 300 steps: the six figures in about 4 minutes on 2 idle CPU cores (measured; see
         the README). Fewer steps than the script: the start noise has decayed to 0.995^300 = 22 %
         of its contrast, not 0.995^2000 = 0.004 %, so the background is not yet clean grey;
  quick  96 px, 12 steps: a smoke test of the pipeline (every output says so), not the science.
No variant: the binary picks full on a GPU/TPU and cpu otherwise (this file asks nothing of JAX).
`--config.vis.recipe=deepdream` (or lucid) runs the same figures with another recipe.

Node types. The paper's person-trained GoogLeNet is not public; on BVLC GoogLeNet the taps follow
the script where it is known and a stated rule elsewhere:
  Fig 1 right, 2, 5  inception_4c/5x5  the script's own tap (RF 299 px > 224)
  Fig 1 left, 4      conv2/3x3         rule: the first layer above the stem whose RF (19 px) is
                                       small against the image ("low-level node, small RF")
  Fig 3, 6           inception_4e/5x5  rule: the script's branch (5x5) one module group up, so a
                                       "higher node with a larger RF" (427 px)
The channel is chosen by THE channel rule (`rfspec.selection.choose_channels`, ranked): the
`rank`-th channel ranked by its WEAKEST start-image activation over the paper's column and seeds
0-2 (plus the positions and seeds shown), and it must be > 0 everywhere, since zipser2015's L2
feedback never moves a node that is 0 at the start. So a node type is the same channel in every
figure that shows it, tiled ones included.

Positions are the paper's column: top, middle, bottom of the tap grid's middle column.
"""

import ml_collections

LOW = dict(tap="conv2/3x3", channel=-1, rank=0)
MID = dict(tap="inception_4c/5x5", channel=-1, rank=0)
HIGH = dict(tap="inception_4e/5x5", channel=-1, rank=0)
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

# The paper's procedure and size; chunk = the script's rounds of 100 steps.
FULL_VIS = dict(recipe="zipser2015", image_hw=(224, 224), steps=2000, chunk=100, dtype="float32")
# 224 px on 2 CPU cores: about 4 minutes for all six figures on idle cores (README, Run).
CPU_VIS = dict(FULL_VIS, steps=300, chunk=50)
# A smoke test of the pipeline: every output says so.
QUICK_VIS = dict(FULL_VIS, image_hw=(96, 96), steps=12, chunk=6)

VARIANTS = {"full": FULL_VIS, "cpu": CPU_VIS, "quick": QUICK_VIS}
# Analysis: bootstrap draws and permutations behind every number; the quick run needs only the pipeline.
ANALYSIS = {"full": dict(n_boot=1000, n_perm=1000), "cpu": dict(n_boot=1000, n_perm=1000),
            "quick": dict(n_boot=100, n_perm=100)}


def figure_config(names, arg=None) -> ml_collections.ConfigDict:
  """Config for the figures `names`; arg "full", "cpu" or "quick" picks the variant.

  Without arg the variant is left to the binary (`variant = "auto"`): `vis` holds the full
  variant, and experiments.reproduce_paper, when JAX's backend is no GPU or TPU, runs `cpu`
  instead: it takes from `by_machine.cpu` each field of `vis` still at its `by_machine.full` value
  (so a `--config.vis.steps=500` override stands), and says so on its first stderr line. Nothing
  here asks what machine it runs on.
  """
  if arg and arg not in VARIANTS:
    raise ValueError(f"Unknown config variant {arg!r}; use one of: full, cpu, quick (or none: the binary picks).")
  config = ml_collections.ConfigDict()
  config.variant = arg or "auto"
  config.vis = dict(VARIANTS[arg or "full"])
  if not arg:  # the fields in which the machine's variants differ
    differ = [k for k in FULL_VIS if CPU_VIS[k] != FULL_VIS[k]]  # steps and chunk
    config.by_machine = {name: {k: VARIANTS[name][k] for k in differ} for name in ("full", "cpu")}
  config.smoke_test = arg == "quick"
  config.update(ANALYSIS[arg or "full"])
  config.analysis_seed = 0
  config.figures = {name: dict(FIGURES[name], panels=[dict(p) for p in FIGURES[name]["panels"]],
                               positions=list(FIGURES[name]["positions"]), seeds=list(FIGURES[name]["seeds"]))
                    for name in names}
  return config

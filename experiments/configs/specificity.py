"""Config of the claims sweep (`experiments/specificity.py`): one verdict per claim of the paper.

  # cpu224: the decisive CPU run recorded in experiments/results/specificity_224.*
  python -m experiments.specificity --workdir=/tmp/spec224 --config=experiments/configs/specificity.py:cpu224
  # pilot224: when do the numbers settle? inception_4c/5x5, K=2, S=3, 2,000 steps scored at 300/600/1,000/2,000
  python -m experiments.specificity --workdir=/tmp/pilot --config=experiments/configs/specificity.py:pilot224
  # full (default): the paper's 2,000 steps, six taps, ablations at full size (a GPU)
  python -m experiments.specificity --workdir=/tmp/spec
  # quick: CI smoke run (64 px, 2 taps, 4 steps): checks the pipeline, not the science
  python -m experiments.specificity --workdir=/tmp/spec_quick --config=experiments/configs/specificity.py:quick

Fields (see `rfspec.runs.sweep.SweepSettings`):
  taps: spatial taps (not the judge layer, inception_3a/output).
  vis: `VisConfig` fields plus "recipe" (the paper's own procedure, zipser2015).
  channels_per_tap (K), seeds_per_position (S), seed_pool: K channels drawn at random among those
    whose node is on at the start for S of the first `seed_pool` seeds at every position
    (`rfspec.selection`), with `channel_key`.
  n_positions: positions along the diagonal from the centre node to the corner; mirror: add the
    corner's true mirror about the image; tiled: the first channel also tiled (claim 5);
    realism_steps: claim 5's single and tiled images are an arm of their own, run this many steps (0: vis.steps).
  batch: elements per compiled batch (16 suits 2 CPU cores; a GPU takes hundreds).
  n_boot, n_perm: bootstrap draws and permutations.
  snapshot_steps: also score the images after these steps (the pilot).
  input_size_taps, padding_taps, ablation_channels, ablation_seeds: the ablations and their K, S.
  reference_images: extra natural photos for claim 5 (comma-separated files); scikit-image's bundled
    photos are added when it is installed (the test extra).
  smoke_test: verdicts read "not evaluated" (a pipeline check).
"""

import ml_collections

ZIPSER = dict(recipe="zipser2015", image_hw=(224, 224), steps=2000, chunk=100, dtype="float32")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """arg: "cpu224", "pilot224", "quick", or None / "full"."""
  c = ml_collections.ConfigDict()
  c.variant = arg or "full"
  c.taps = ("conv2/3x3", "inception_3b/output", "inception_4a/output", "inception_4c/5x5", "inception_4e/5x5",
            "inception_5b/output")
  c.vis = dict(ZIPSER)
  c.channels_per_tap = 8
  c.seeds_per_position = 8
  c.seed_pool = 48
  c.channel_key = 0
  c.n_positions = 5
  c.mirror = True
  c.tiled = True
  c.realism_steps = 0
  c.batch = 256
  c.n_boot = 1000
  c.n_perm = 1000
  c.snapshot_steps = ()
  c.input_size_taps = ("inception_4c/5x5",)
  c.padding_taps = ("inception_4c/5x5",)
  c.ablation_channels = 6
  c.ablation_seeds = 8
  c.reference_images = ""
  c.smoke_test = False
  if arg == "cpu224":
    # About 3.5 hours on 2 idle CPU cores: 300 steps, where the pilot's numbers had settled
    # (experiments/results/specificity_224_pilot.md), and claim 5's images at 1,000 steps, where the
    # start noise has decayed (0.995^1000 = 0.7 % of its amplitude).
    c.taps = ("conv2/3x3", "inception_3b/output", "inception_4a/output", "inception_4c/5x5")
    c.vis = dict(ZIPSER, steps=300, chunk=50)
    c.realism_steps = 1000
    c.channels_per_tap = 6
    c.seed_pool = 32
    c.n_positions = 4
    c.batch = 16
    c.ablation_channels = 2
    c.ablation_seeds = 4
  elif arg == "pilot224":
    c.taps = ("inception_4c/5x5",)
    c.vis = dict(ZIPSER, steps=2000, chunk=50)
    c.channels_per_tap = 2
    c.seeds_per_position = 3
    c.seed_pool = 16
    c.n_positions = 4
    c.mirror = False
    c.batch = 24  # the whole pilot grid (2 x 4 x 3) in one compiled batch
    c.snapshot_steps = (300, 600, 1000)
    c.input_size_taps = ()
    c.padding_taps = ()
  elif arg == "quick":
    c.taps = ("conv2/3x3", "inception_3b/output")  # a small and a large RF at 64 px; 3b compiles faster than 4a
    c.vis = dict(recipe="zipser2015", image_hw=(64, 64), steps=4, chunk=4, dtype="float32")
    c.channels_per_tap = 2
    c.seeds_per_position = 3
    c.seed_pool = 12
    c.n_positions = 3
    c.batch = 6  # = 2 x seeds_per_position: the realism arm (single + tiled) reuses the grid's compiled program
    c.n_boot = 50
    c.n_perm = 50
    c.input_size_taps = ()
    c.padding_taps = ()
    c.smoke_test = True
  elif arg not in (None, "", "full"):
    raise ValueError(f"Unknown specificity config variant {arg!r}; use one of: full, cpu224, pilot224, quick.")
  return c

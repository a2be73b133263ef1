"""Config of the position atlas (`experiments/position_atlas.py`): one node type at every position.

  # full: the paper's driver -- inception_4c/5x5, all 14 x 14 positions, 2 seeds, 224 px,
  # zipser2015 at 2,000 steps (a GPU or TPU)
  python -m experiments.position_atlas --workdir=/tmp/atlas
  # cpu: a 3 x 3 lattice of positions (corners, edge midpoints, centre), 300 steps, ~30 min on 2 cores
  python -m experiments.position_atlas --workdir=/tmp/atlas_cpu --config=experiments/configs/position_atlas.py:cpu
  # quick: CI smoke run, 96 px, a 3 x 3 lattice of the 6 x 6 grid, a few steps (< 1 min)
  python -m experiments.position_atlas --workdir=/tmp/atlas_quick --config=experiments/configs/position_atlas.py:quick

Add `--weights=../shared/weights/bvlc_googlenet.caffemodel` to read the weights from a file.
Override any field, e.g. `--config.channel=7 --config.lattice=5 --config.vis.steps=600`.

Fields:
  tap: a spatial tap (the paper's driver: inception_4c/5x5, RF 299 px).
  channel: the node type; -1 picks it by rule (`rfspec.atlas.active_channel`, i.e.
    `rfspec.selection`'s rule: the channel whose weakest start activation over every seed's start
    image at every position shown is strongest; if none is active at all of them, the one active
    at the most). The zipser2015 objective (1/2 Σ mask · relu(z)^2) never moves a node that is 0
    at the start, so the rule keeps the tiles meaningful.
  seeds: S seeds; PSI (the heat map) compares pairs of different seeds, so S >= 2.
  lattice: 0 for every position of the grid, or n for an n x n lattice (`rfspec.masks.lattice`:
    evenly spaced, borders included; odd n contains the centre).
  batch_positions: positions per compiled batch; 0 sizes it from device memory and count
    (`rfspec.atlas.default_batch_positions`).
  mosaic_tile: px of each tile in atlas.png (images are resized; 0 keeps their size).
  vis: `VisConfig` fields, "recipe" included (any recipe works).
"""

import ml_collections

FULL_VIS = dict(recipe="zipser2015", image_hw=(224, 224), steps=2000, chunk=100)
# 224 px like the paper, a 3 x 3 lattice, 300 of the 2,000 steps: 9 x 2 x 300 = 5,400 image-steps,
# at the ~0.25 s per image-step of 2 idle cores about 25 min (PROCEDURE.md: 600 steps already give
# an RF-filling pattern at the centre, so 300 shows where the pattern forms, not its final detail).
CPU_VIS = dict(FULL_VIS, steps=300, chunk=25)
QUICK_VIS = dict(FULL_VIS, image_hw=(96, 96), steps=6, chunk=3)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The atlas config; arg "quick" (CI) or "cpu" (a lattice for 2 CPU cores), else the full atlas."""
  variants = {None: "full", "": "full", "full": "full", "cpu": "cpu", "quick": "quick"}
  if arg not in variants:
    raise ValueError(f"Unknown config variant {arg!r}; use one of: full, cpu, quick.")
  variant = variants[arg]
  config = ml_collections.ConfigDict()
  config.variant = variant
  config.tap = "inception_4c/5x5"
  config.channel = -1
  config.seeds = (0, 1)
  config.lattice = 0
  config.batch_positions = 0
  config.mosaic_tile = 112
  config.vis = dict(FULL_VIS)
  if variant == "cpu":
    config.lattice = 3
    config.batch_positions = 1
    config.mosaic_tile = 0
    config.vis = dict(CPU_VIS)
  elif variant == "quick":
    config.lattice = 3
    config.batch_positions = 3
    config.mosaic_tile = 0
    config.vis = dict(QUICK_VIS)
  return config

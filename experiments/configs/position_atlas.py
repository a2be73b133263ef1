"""Config of the position atlas (`experiments/position_atlas.py`): one node type at every position.

  # full (default): the paper's driver -- inception_4c/5x5, all 14 x 14 positions, 224 px, zipser2015
  # at 2,000 steps, 4 starts per position (a GPU or TPU)
  python -m experiments.position_atlas --workdir=/tmp/atlas
  # cpu: a 3 x 3 lattice (corners, edge midpoints, centre), 224 px, 4 starts, 600 steps (2 CPU cores)
  python -m experiments.position_atlas --workdir=/tmp/atlas_cpu --config=experiments/configs/position_atlas.py:cpu
  # quick: a smoke test (64 px, a shallow tap, 4 steps): checks the pipeline, not the science
  python -m experiments.position_atlas --workdir=/tmp/atlas_quick --config=experiments/configs/position_atlas.py:quick

Add `--weights=../shared/weights/bvlc_googlenet.caffemodel` to read the weights from a file.
Override any field, e.g. `--config.channel=7 --config.lattice=5 --config.vis.steps=1000`.

Fields (see `rfspec.runs.atlas.AtlasSettings`):
  tap: a spatial tap (the paper's driver: inception_4c/5x5, RF 299 px).
  channel: the node type; -1 lets THE channel rule pick it (`rfspec.selection.choose_channels`,
    ranked: the channel whose node is most robustly on at the start at every position).
  seeds: candidate start seeds, in order; each position takes the first `seeds_per_position` whose
    start image drives its node (zipser2015 never moves a node that is 0 at the start).
  seeds_per_position: S starts per position, at least 3 (psi_auc compares pairs of starts).
  lattice: 0 for every position of the grid, or n for an n x n lattice (`rfspec.masks.lattice`:
    evenly spaced, borders included; odd n contains the centre).
  batch_positions: positions per compiled batch; 0 sizes it from device memory and count.
  mosaic_tile: px of each tile in atlas.png and on the page (at least 160).
  n_boot, n_perm, psi_key: the bootstrap and permutation draws of psi_auc, and their key.
  vis: `VisConfig` fields, "recipe" included.
  smoke_test: the page and the summary line say the run checks the pipeline, not the science.
"""

import ml_collections

FULL_VIS = dict(recipe="zipser2015", image_hw=(224, 224), steps=2000, chunk=100)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """arg: "cpu", "quick", or None / "full"."""
  if arg not in (None, "", "full", "cpu", "quick"):
    raise ValueError(f"Unknown position_atlas config variant {arg!r}; use one of: full, cpu, quick.")
  c = ml_collections.ConfigDict()
  c.variant = arg or "full"
  c.tap = "inception_4c/5x5"
  c.channel = -1
  c.seeds = tuple(range(32))
  c.seeds_per_position = 4
  c.lattice = 0
  c.batch_positions = 0
  c.mosaic_tile = 160
  c.n_boot = 1000
  c.n_perm = 1000
  c.psi_key = 0
  c.vis = dict(FULL_VIS)
  c.smoke_test = False
  if arg == "cpu":
    # 9 positions x 4 starts x 600 steps = 21,600 image-steps, one position per batch.
    c.seeds = tuple(range(16))
    c.lattice = 3
    c.vis = dict(FULL_VIS, steps=600, chunk=50)
  elif arg == "quick":
    c.tap = "inception_3b/output"
    c.seeds = tuple(range(8))
    c.seeds_per_position = 3
    c.lattice = 3
    c.batch_positions = 3
    c.n_boot = 50
    c.n_perm = 50
    c.vis = dict(recipe="zipser2015", image_hw=(64, 64), steps=4, chunk=4)
    c.smoke_test = True
  return c

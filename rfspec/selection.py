"""Which node types (channels) to study: one documented, reproducible rule.

The paper's own network is not public, so rfspec picks BVLC GoogLeNet channels by rule rather
than by eye. The rule: rank a tap's channels by the activation of their centre node on the
seed-0 starting image of the visualisation (for `deepdream`, mid-grey random dots) and take the
top ones. Why this rule: the objective is a post-ReLU activation, whose gradient is zero while
the node is off; the channels most active on the starting image are the ones gradient ascent
can move from step one, and the rule needs no dataset, no labels and no human choice. It is
deterministic given the weights, the tap, the input size and the recipe.
"""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from rfspec import masks as masks_lib
from rfspec.models import googlenet


def rank_channels(params, cfg, *, k: int | None = None, seed: int = 0, position=None) -> list[int]:
  """Channels of `cfg.tap` ranked by their node's activation on the run's starting image.

  Args:
    params: GoogLeNet params.
    cfg: a `rfspec.VisConfig`; its tap, image size and parameterisation define the start image.
    k: how many to return (None: all, best first).
    seed: which seed's starting image to rank on (the rule uses 0).
    position: (i, j) = (row, col) on the tap's grid whose node is ranked; default the centre.

  Returns:
    Channel indices, most active first (ties broken by the lower index).
  """
  from rfspec.engine import initial_image

  image = initial_image(seed, cfg)
  act = np.asarray(googlenet.forward(params, image[None], taps=cfg.tap)[cfg.tap][0])  # [h, w, C]
  i, j = masks_lib.named_positions(cfg.tap, cfg.image_hw)["centre"] if position is None else position
  node = act[i, j]
  order = np.lexsort((np.arange(node.size), -node))  # descending activation, then index
  return [int(c) for c in order[: (k or node.size)]]


def resolve_channel(params, cfg, channel: int, rank: int = 0) -> int:
  """`channel` if >= 0, else the rank-th channel by `rank_channels` (the rule)."""
  if channel >= 0:
    googlenet.check_tap(cfg.tap)
    return int(channel)
  return rank_channels(params, cfg, k=rank + 1)[rank]

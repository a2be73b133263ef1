"""Which node types (channels) to study: one documented, reproducible rule.

The paper's own network is not public, so rfspec picks BVLC GoogLeNet channels by rule rather
than by eye. The rule: for each channel of the tap, take its node's activation (the post-ReLU
blob) on the run's start image at every position that will be shown, for every seed shown, and
rank channels by the WEAKEST of these, strongest first (ties to the lower index).

Why: zipser2015's objective feeds a node's own activation back as its gradient, so a node that
is 0 on its start image gets no gradient and never moves (PROCEDURE.md saw this); under
`post_relu` a node that is off has no gradient either. A channel whose weakest start activation
is > 0 can be driven at every position and seed of the figure. The rule needs no dataset, no
labels and no human choice, and is deterministic given the weights, the tap, the input size,
the recipe (its start image), the positions and the seeds.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

from rfspec import masks as masks_lib
from rfspec.errors import UserError
from rfspec.models import googlenet

__all__ = ["resolve_channel", "start_activations", "rank_channels"]


def start_activations(params, cfg, positions: Sequence[tuple[int, int]], seeds: Sequence[int] = (0,)) -> np.ndarray:
  """Each channel's node activation on each seed's start image at each position.

  Args:
    params: GoogLeNet params.
    cfg: a `rfspec.VisConfig`; its tap, image size and recipe define the start images.
    positions: (i, j) = (row, col) on the tap's grid.
    seeds: the seeds whose start images count.

  Returns:
    float32 [S, P, C]: the post-ReLU blob at each position, as the net sees the start image
    (with the recipe's `caffe_mean`).
  """
  from rfspec import objectives
  from rfspec.engine import initial_image

  images = np.stack([np.asarray(initial_image(int(s), cfg)) for s in seeds])
  act = np.asarray(objectives.tap_activation(params, images, cfg.tap, mean_bgr=cfg.caffe_mean))  # [S, h, w, C]
  return np.stack([act[:, i, j] for i, j in positions], axis=1)


def _centre(cfg):
  return [masks_lib.named_positions(cfg.tap, cfg.image_hw)["centre"]]


def rank_channels(params, cfg, *, positions: Sequence[tuple[int, int]] | None = None,
                  seeds: Sequence[int] = (0,), k: int | None = None) -> list[int]:
  """Channels of `cfg.tap`, strongest weakest-start-activation first (the rule above).

  Args:
    params: GoogLeNet params.
    cfg: a `rfspec.VisConfig`.
    positions: (i, j) = (row, col) on the tap's grid; default the centre node.
    seeds: seeds whose start images count (default (0,)).
    k: how many to return (None: all).

  Returns:
    Channel indices, best first.
  """
  weakest = start_activations(params, cfg, positions or _centre(cfg), seeds).min(axis=(0, 1))  # [C]
  order = np.lexsort((np.arange(weakest.size), -weakest))
  return [int(c) for c in order[: (k or weakest.size)]]


def resolve_channel(params, cfg, channel: int, rank: int = 0, *,
                    positions: Sequence[tuple[int, int]] | None = None, seeds: Sequence[int] = (0,)) -> int:
  """`channel` if >= 0, else the `rank`-th channel by `rank_channels` over `positions` x `seeds`.

  Raises:
    UserError: with an objective that cannot move a node that is off ("l2_feedback",
      "post_relu"), fewer than rank + 1 channels are active at every position and seed.
  """
  googlenet.check_tap(cfg.tap)
  n = cfg.tap_shape[-1]
  if channel >= n:
    raise UserError(f"Channel {channel} is out of range for {cfg.tap}, which has channels 0 .. {n - 1}.")
  if channel >= 0:
    return int(channel)
  positions = positions or _centre(cfg)
  weakest = start_activations(params, cfg, positions, seeds).min(axis=(0, 1))  # [C]
  order = np.lexsort((np.arange(weakest.size), -weakest))
  chosen = int(order[rank])
  if cfg.objective in ("l2_feedback", "post_relu") and not weakest[chosen] > 0:
    raise UserError(
        f"Only {int((weakest > 0).sum())} channel(s) of {cfg.tap} are active on the start image at "
        f"every position {[tuple(map(int, p)) for p in positions]} for seeds {list(seeds)}, so rank "
        f"{rank} has none: with objective {cfg.objective!r} a node that is 0 at the start never "
        "moves. Use a lower rank, fewer positions or seeds, or name a channel explicitly.")
  return chosen

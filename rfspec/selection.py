"""Which node types (channels) and which starts to study: THE rule, used by figures, atlas and sweep.

The paper's own network is not public, so rfspec picks BVLC GoogLeNet channels by rule rather than
by eye. Why a rule is needed at all: zipser2015's objective feeds a node's own activation back as
its gradient, so a node that is 0 on its start image gets no gradient and never moves
(reference/zipser2015/PROCEDURE.md saw this); under `post_relu` a node that is off has no
gradient either. A start (seed) can therefore visualize node (channel, position) only if the
node is on (> 0) on that seed's start image. With `pre_relu` every start can.

The rule (`choose_channels`):
  1. For each channel and each position used (mirrors and every other position included), the
     seeds of `seed_pool`, in order, whose start image leaves the node on; keep the first S.
  2. A channel is ELIGIBLE if it has S such seeds at every position.
  3. Order: with a `key`, the eligible channels in a random order drawn from that key (an unbiased
     sample of node types, for the claims); without, ranked by the weakest start activation over
     the kept seeds and positions, strongest first, ties to the lower index (the most robustly
     driven node type, for figures and the atlas).
With `seed_pool` equal to the S seeds shown (figures: seeds 0-2 in every column), step 1 keeps
them all or none. With a larger pool (the sweep draws S = 8 of the first 32 seeds) each
(channel, position) gets its own S starts: on BVLC GoogLeNet's zipser2015 start (bright grey
dots) only 3 of conv2/3x3's 192 channels are on at the centre, corner and middle positions for
all of seeds 0-7, but 12 are on for 8 of the first 32.

The rule needs no dataset, no labels and no human choice, and is deterministic given the weights,
the tap, the image size, the recipe (its start image), the positions, the seed pool and the key.
Positions are (i, j) = (row, col) on the tap's grid.
"""

from __future__ import annotations

from typing import NamedTuple, Sequence

import jax
import numpy as np

from rfspec import masks as masks_lib
from rfspec.errors import UserError
from rfspec.models import googlenet

__all__ = ["ChannelChoice", "choose_channels", "resolve_channel", "start_activations"]


class ChannelChoice(NamedTuple):
  """The channels and starts the rule chose, and why.

  Attributes:
    channels: int [K] chosen channels, in the rule's order (K may fall short of the number asked
      for when fewer are eligible: compare with `asked`).
    seeds: int [K, P, S] for each chosen channel and position, the S seeds whose start image drives
      the node (the same S at every position when the pool is the S seeds).
    start_activation: float32 [K, P, S] the node's value on each of those start images.
    eligible: int [E] every channel that passed, ascending.
    asked: the number of channels asked for.
    rule: the rule in words.
  """

  channels: np.ndarray
  seeds: np.ndarray
  start_activation: np.ndarray
  eligible: np.ndarray
  asked: int
  rule: str


def start_activations(params, cfg, positions: Sequence[tuple[int, int]], seeds: Sequence[int] = (0,)) -> np.ndarray:
  """Each channel's node activation on each seed's start image at each position.

  Args:
    params: GoogLeNet params.
    cfg: a `rfspec.VisConfig`; its tap, image size and recipe define the start images.
    positions: (i, j) = (row, col) on the tap's grid.
    seeds: the seeds whose start images count.

  Returns:
    float32 [S, P, C]: the post-ReLU blob at each position, as the run's net sees the start image
    (the recipe's `caffe_mean` and `pad_mode`).
  """
  from rfspec import objectives
  from rfspec.engine import initial_image

  images = np.stack([np.asarray(initial_image(int(s), cfg)) for s in seeds])
  act = np.asarray(objectives.tap_activation(params, images, cfg.tap, mean_bgr=cfg.caffe_mean, pad_mode=cfg.pad_mode))
  return np.stack([act[:, i, j] for i, j in positions], axis=1)


def _moves_from_zero(cfg) -> bool:
  """Whether the objective can move a node that is 0 at the start."""
  return cfg.objective == "pre_relu"


def choose_channels(params, cfg, positions: Sequence[tuple[int, int]], *, n_channels: int, n_seeds: int,
                    seed_pool: Sequence[int] | None = None, key: jax.Array | None = None) -> ChannelChoice:
  """THE channel rule (see the module docstring).

  Args:
    params: GoogLeNet params.
    cfg: the run's `rfspec.VisConfig` (tap, image size, recipe).
    positions: every position (i, j) = (row, col) the channels will be visualized at.
    n_channels: K, how many channels to return.
    n_seeds: S, starts per (channel, position).
    seed_pool: candidate seeds in order of preference; default range(S) (then every seed must
      drive the node at every position).
    key: `jax.random.key` for a random draw among the eligible channels; None ranks them.

  Returns:
    `ChannelChoice`.

  Raises:
    UserError: no channel is eligible (the message gives the counts and the fixes).
  """
  positions = [tuple(int(v) for v in p) for p in positions]
  n_channels, n_seeds = int(n_channels), int(n_seeds)
  if n_channels < 1 or n_seeds < 1:
    raise UserError(f"choose_channels needs n_channels >= 1 and n_seeds >= 1; got {n_channels} and {n_seeds}.")
  pool = np.asarray(list(range(n_seeds)) if seed_pool is None else [int(s) for s in seed_pool], np.int64)
  if len(set(pool.tolist())) != len(pool) or len(pool) < n_seeds:
    raise UserError(f"seed_pool must hold at least n_seeds = {n_seeds} distinct seeds; got {pool.tolist()}.")
  act = start_activations(params, cfg, positions, pool)  # [M, P, C]
  on = np.ones(act.shape, bool) if _moves_from_zero(cfg) else act > 0
  enough = on.sum(axis=0).min(axis=0) >= n_seeds  # [C]
  eligible = np.flatnonzero(enough)
  if eligible.size == 0:
    best = int(on.sum(axis=0).min(axis=0).max())
    raise UserError(
        f"No channel of {cfg.tap} can be visualized at all {len(positions)} positions {positions} with {n_seeds} "
        f"starts each: with objective {cfg.objective!r} a node that is 0 on its start image never moves, and the best "
        f"channel is on for only {best} of the {len(pool)} candidate seeds at its weakest position. Use fewer seeds, "
        "fewer or other positions, a larger seed pool, or a larger image.")
  # For each (eligible channel, position), the first S seeds of the pool that drive it.
  first = np.argsort(~on, axis=0, kind="stable")[:n_seeds]  # [S, P, C] indices into the pool
  if key is None:
    weakest = np.take_along_axis(act, first, axis=0).min(axis=(0, 1))  # [C]
    order = [int(c) for c in np.lexsort((np.arange(weakest.size), -weakest)) if enough[c]]
    how = "ranked by the weakest start activation over those seeds and positions, strongest first"
  else:
    order = [int(c) for c in np.asarray(jax.random.permutation(key, eligible))]
    how = "drawn in random order from the eligible ones (explicit jax.random key)"
  chosen = np.asarray(order[:n_channels], np.int64)
  idx = first[:, :, chosen].transpose(2, 1, 0)  # [K, P, S]
  seeds = pool[idx]
  start = np.take_along_axis(act[:, :, chosen].transpose(2, 1, 0), idx, axis=2).astype(np.float32)
  rule = (f"channels whose node is on (> 0) on the start image of at least {n_seeds} of the candidate seeds "
          f"{_seeds_text(pool)} at every one of the {len(positions)} positions used (objective {cfg.objective!r} "
          f"never moves a node that starts at 0), the first {n_seeds} such seeds per position; {how}")
  if _moves_from_zero(cfg):
    rule = f"every channel qualifies (objective 'pre_relu' moves a node that is off); {how}"
  return ChannelChoice(chosen, seeds.astype(np.int64), start, eligible.astype(np.int64), n_channels, rule)


def _seeds_text(pool: np.ndarray) -> str:
  if len(pool) > 3 and np.array_equal(pool, np.arange(pool[0], pool[0] + len(pool))):
    return f"{int(pool[0])}..{int(pool[-1])}"
  return str(pool.tolist())


def resolve_channel(params, cfg, channel: int, rank: int = 0, *,
                    positions: Sequence[tuple[int, int]] | None = None, seeds: Sequence[int] = (0,)) -> int:
  """`channel` if >= 0, else the `rank`-th channel of `choose_channels` (ranked, fixed seeds).

  Raises:
    UserError: channel out of range, or fewer than rank + 1 channels are eligible.
  """
  googlenet.check_tap(cfg.tap)
  n = cfg.tap_shape[-1]
  if channel >= n:
    raise UserError(f"Channel {channel} is out of range for {cfg.tap}, which has channels 0 .. {n - 1}.")
  if channel >= 0:
    return int(channel)
  positions = positions or [masks_lib.named_positions(cfg.tap, cfg.image_hw)["centre"]]
  choice = choose_channels(params, cfg, positions, n_channels=rank + 1, n_seeds=len(seeds), seed_pool=seeds)
  if len(choice.channels) <= rank:
    raise UserError(
        f"Only {len(choice.channels)} channel(s) of {cfg.tap} are on at the start at every position "
        f"{[tuple(map(int, p)) for p in positions]} for seeds {list(seeds)}, so rank {rank} has none: with objective "
        f"{cfg.objective!r} a node that is 0 at the start never moves. Use a lower rank, fewer positions or seeds, "
        "or name a channel explicitly.")
  return int(choice.channels[rank])

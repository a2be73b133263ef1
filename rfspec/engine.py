"""The visualisation engine: one pure function, vmapped over a positions x seeds grid.

`optimize(params, seed, node_mask, cfg)` is the pure core: `key = jax.random.key(seed)`, one
split for the initial image and one for the loop, `fold_in(loop_key, step)` per step, `lax.scan`
over steps, an optax optimiser, and the recipe's objective of the node mask at `cfg.tap`
(`Σ node_mask · act`, the "gradient of the chosen nodes set to one, all others zero"; or
zipser2015's `½ Σ node_mask · act²`, the node's activation fed back as its gradient), then the
recipe's per-pixel decay, desaturation and clip. The recipes are data in `rfspec.recipes`. It
can be jitted and vmapped over seeds and masks; every element then has its own key and so its
own start, jitter, scale and rotation.

`visualize` and `visualize_grid` wrap it for use: they validate on the host, run the flattened
grid (b = p * S + s) as ONE compiled function in chunks of `cfg.chunk` steps (compiled once; the
state is carried between chunks) so they can report progress and stop on non-finite values,
and shard the grid over every device. Inside a chunk one scan steps the whole batch (two steps
per loop iteration once a chunk has 8 or more: the same numbers, less loop overhead); on a lone
CPU device a batch of two or more runs as two independent halves, each a call of the same compiled
chunk from its own thread, on its own core (an odd batch gets a copy of element 0 to split evenly;
`batch_parts`).

Sharding and multi-host: the flattened grid is padded to a multiple of the device count (with
copies of element 0, dropped afterwards) and laid out with `NamedSharding(mesh, P("grid"))` on a
`jax.make_mesh((n,), ("grid",))` mesh over `jax.devices()`; params are replicated
(`NamedSharding(mesh, P())`). After `jax.distributed.initialize()`, `jax.devices()` spans every
host: call `visualize_grid` with the same arguments on every process; each feeds the shards its
devices own and all of them get the full result.

Conventions: node positions are (i, j) = (row, col) of the tap's grid; pixels (y, x) = (row,
col); images RGB in [0, 1].
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import difflib
import functools
import logging
import math
import time
from typing import Any, Callable, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
import optax
from jax.sharding import AxisType, NamedSharding
from jax.sharding import PartitionSpec as P

from rfspec import masks as masks_lib
from rfspec import memory, objectives, param, program_cache, recipes, transforms
from rfspec.progress import Progress, print_progress
from rfspec.errors import UserError
from rfspec.models import googlenet

__all__ = ["GridResult", "NonFiniteError", "VisConfig", "VisResult", "initial_image", "keep_freed_memory", "make_grid_fn",
           "optimize", "visualize", "visualize_batch", "visualize_grid"]

_log = logging.getLogger(__name__)

PARAMS = ("pixel", "fourier", "dots")
OPTIMIZERS = ("sgd", "adam")
DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}
CANVAS_FILLS = ("zero", "grey", "reflect")
# Parameterisations whose parameter is the image itself, so per-pixel operations (decay,
# desaturation, clipping) can act on it after each step.
_IMAGE_PARAMS = ("pixel", "dots")


class _FromRecipe:
  """Default of the recipe-controlled `VisConfig` fields: "take the recipe's value"."""

  def __repr__(self):
    return "<from recipe>"


FROM_RECIPE: Any = _FromRecipe()


# ----------------------------------------------------------------------------- config


@dataclasses.dataclass(frozen=True)
class VisConfig:
  """Everything static about a visualisation; frozen and hashable, so jit treats it as static.

  `recipe` names a set of field values in `rfspec.recipes.RECIPES` ("zipser2015", the paper's
  own procedure; "deepdream", the default; "lucid"). Every field left out takes the recipe's
  value and every field given wins: `VisConfig(tap="inception_4c/5x5", recipe="zipser2015",
  steps=600)`, or the same with `VisConfig.from_recipe("zipser2015", tap=..., steps=600)`.
  `dataclasses.replace` works, but keeps the other fields as they are (use `from_recipe` to
  switch recipes).

  Attributes:
    tap: the blob whose nodes are maximised, a name from `rfspec.TAPS`.
    image_hw: (H, W) of the optimised image in pixels; it fixes the tap's grid and so the mask.
    recipe: the recipe the other fields default from.
    steps: optimisation steps.
    param: image parameterisation: "pixel" (random dots around grey), "dots" (zipser2015's
      start: one plane of `init_scale` · U[0, 1) in Caffe data space, the same in all three
      channels, brighter than the mean colour and unclipped at the first forward) or "fourier"
      (1/f spectrum).
    init_scale: start amplitude; pixel: half-width of the noise around grey; dots: the range of
      the dots in Caffe's 0-255 units; fourier: spectrum std.
    decorrelate: fourier only: optimise in decorrelated colour space.
    optimizer: "sgd" or "adam" (optax), used for ascent on the objective.
    learning_rate: optimiser step size, in RGB [0, 1] units for "pixel" and "dots".
    normalize_grad: divide the gradient by its mean |g| per image first (DeepDream's and
      zipser2015's step). The mean is taken over the entries g != 0, as the paper's script does:
      for a single node that is its RF, so the step per RF pixel does not shrink by (image area /
      RF area). An all-zero gradient gives a zero step.
    pad: grey border (px) added before jitter/scale/rotate and cropped off afterwards.
    jitter: largest random shift (px) along y and along x per step.
    jitter_wrap: roll (DeepDream's and zipser2015's jitter) instead of shifting in the net's zero
      input. A roll shows a node at the top edge the bottom rows too, by `jitter` px.
    scales: candidate random zoom factors per step (() for none).
    rotate_degrees: largest random rotation per step (0 for none).
    objective: what is maximised, for the node mask m and the tap's pre-ReLU values z:
      "post_relu" Σ m · relu(z) (the blob Caffe stores; "gradient of the node set to one"),
      "pre_relu" Σ m · z (keeps a gradient where the node is off), or "l2_feedback"
      ½ Σ m · relu(z)^2 (zipser2015: the node's own activation fed back as its gradient; a node
      that is 0 gets no gradient, and a node that is 0 on the start image never moves).
      For concat taps z is each branch's pre-ReLU output.
    decay: image-space params: after each step the image moves this fraction of the way to
      the mean colour (`caffe_mean`), i.e. data-space values are multiplied by 1 - decay
      (zipser2015: 0.005). Pixels the gradient cannot reach fade to the mean colour.
    desaturate: image-space params: after the decay, each channel moves this fraction of the way
      to the pixel's mean over channels, measured from the mean colour (zipser2015: 0.01).
    clip: image-space params: (lo, hi) in RGB [0, 1] units the image is clipped to after each
      step, or None. (0, 1) is Caffe's [-mean, 255 - mean]. Must be None for "fourier", whose
      sigmoid already bounds the image.
    caffe_mean: the BGR mean subtracted from 0-255 BGR pixels to make the net's input (Caffe's
      data space). The deploy net's is (104, 117, 123); zipser2015's script used (104, 116, 122).
    l2: weight of the L2 penalty (distance from grey) subtracted from the objective.
    tv: weight of the total-variation penalty subtracted from the objective.
    canvas_pad: embed the image in a canvas this many px wider on every side before the net
      sees it (after the transforms), so large RFs no longer fall off the image (the padding
      ablation). Masks then index the canvas's grid, `net_hw`. Use a multiple of the tap's
      stride to keep node (i, j) of the image grid at (i + pad/stride, j + pad/stride).
    canvas_fill: what fills the canvas: "zero" (the net's zero input, i.e. the mean colour, as
      zero padding would give), "grey" (0.5) or "reflect" (mirror of the image).
    pad_mode: the net's padding: "zero" (Caffe's) or "reflect" (every conv and pool mirrors the
      blob instead: the padding ablation).
    dtype: the net's compute dtype, "float32" or "bfloat16" (for GPU/TPU); the image and the
      optimiser state stay float32.
    chunk: steps per compiled chunk; progress is reported and finiteness checked between chunks.
  """

  tap: str
  image_hw: tuple[int, int] = (224, 224)
  recipe: str = recipes.DEFAULT_RECIPE
  steps: int = FROM_RECIPE
  param: str = FROM_RECIPE
  init_scale: float = FROM_RECIPE
  decorrelate: bool = FROM_RECIPE
  optimizer: str = FROM_RECIPE
  learning_rate: float = FROM_RECIPE
  normalize_grad: bool = FROM_RECIPE
  pad: int = FROM_RECIPE
  jitter: int = FROM_RECIPE
  jitter_wrap: bool = FROM_RECIPE
  scales: tuple[float, ...] = FROM_RECIPE
  rotate_degrees: float = FROM_RECIPE
  objective: str = FROM_RECIPE
  decay: float = FROM_RECIPE
  desaturate: float = FROM_RECIPE
  clip: tuple[float, float] | None = FROM_RECIPE
  caffe_mean: tuple[float, float, float] = FROM_RECIPE
  l2: float = 0.0
  tv: float = 0.0
  canvas_pad: int = 0
  canvas_fill: str = "zero"
  pad_mode: str = "zero"
  dtype: str = "float32"
  chunk: int = 32

  def __new__(cls, *args, **kwargs):
    # The dataclass __init__ would raise a bare TypeError for a mistyped field. Checked here, not
    # in a wrapper, so that every way in (the constructor, from_recipe, dataclasses.replace)
    # gets the one-paragraph error; pickle and copy call __new__ without arguments.
    names = [f.name for f in dataclasses.fields(cls)]
    unknown = [k for k in kwargs if k not in names]
    if unknown:
      hints = []
      for k in unknown:
        close = difflib.get_close_matches(k, names, n=1, cutoff=0.6)
        hints.append(f"{k!r}" + (f" (did you mean {close[0]!r}?)" if close else ""))
      raise UserError(f"{cls.__name__} has no field {', '.join(hints)}. Its fields are "
                      f"{', '.join(names)}; see help(rfspec.VisConfig).")
    return super().__new__(cls)

  def __post_init__(self):
    setattr_ = functools.partial(object.__setattr__, self)

    def need(ok, msg):
      if not ok:
        raise UserError(f"VisConfig: {msg}")

    need(self.recipe in recipes.RECIPES,
         f"unknown recipe {self.recipe!r}; choose one of {tuple(recipes.RECIPES)}.")
    for name, value in recipes.RECIPES[self.recipe].items():
      if getattr(self, name) is FROM_RECIPE:
        setattr_(name, value)
    googlenet.check_tap(self.tap)
    hw = self.image_hw
    need(isinstance(hw, (tuple, list)) and len(hw) == 2
         and all(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and v >= 1 for v in hw),
         f"image_hw must be (H, W), two whole numbers of pixels, e.g. (224, 224); got {hw!r}.")
    setattr_("image_hw", tuple(int(v) for v in hw))
    googlenet.check_input_hw((self.tap,), self.net_hw)  # too small -> error with the minimum
    setattr_("scales", tuple(float(s) for s in self.scales))
    if self.clip is not None:
      need(len(self.clip) == 2, f"clip must be (lo, hi) or None; got {self.clip!r}.")
      setattr_("clip", (float(self.clip[0]), float(self.clip[1])))
    need(len(self.caffe_mean) == 3, f"caffe_mean must be 3 numbers (B, G, R); got {self.caffe_mean!r}.")
    setattr_("caffe_mean", tuple(float(v) for v in self.caffe_mean))
    finite = lambda v: isinstance(v, (int, float, np.number)) and math.isfinite(v)

    for name in ("steps", "chunk"):  # the step index is an int32 inside the compiled loop
      v = getattr(self, name)
      need(isinstance(v, (int, np.integer)) and not isinstance(v, bool) and 1 <= v < 2 ** 31,
           f"{name} must be a whole number in [1, 2**31 - 1] (the loop counts steps in int32); got {v!r}.")
    need(self.param in PARAMS, f"param must be one of {PARAMS}; got {self.param!r}.")
    need(self.optimizer in OPTIMIZERS, f"optimizer must be one of {OPTIMIZERS}; got {self.optimizer!r}.")
    need(self.objective in objectives.OBJECTIVES,
         f"objective must be one of {objectives.OBJECTIVES}; got {self.objective!r}.")
    need(self.dtype in DTYPES, f"dtype must be one of {tuple(DTYPES)}; got {self.dtype!r}.")
    need(self.pad_mode in googlenet.PAD_MODES,
         f"pad_mode must be one of {googlenet.PAD_MODES}; got {self.pad_mode!r}.")
    need(finite(self.learning_rate) and self.learning_rate > 0,
         f"learning_rate must be a finite number > 0; got {self.learning_rate!r}.")
    need(finite(self.init_scale) and self.init_scale >= 0,
         f"init_scale must be a finite number >= 0; got {self.init_scale!r}.")
    need(self.canvas_fill in CANVAS_FILLS, f"canvas_fill must be one of {CANVAS_FILLS}; got {self.canvas_fill!r}.")
    need(self.canvas_fill != "reflect" or self.canvas_pad < min(self.image_hw),
         f"canvas_fill='reflect' needs canvas_pad < the image side ({min(self.image_hw)} px); got {self.canvas_pad}.")
    for name in ("pad", "jitter", "canvas_pad"):
      v = getattr(self, name)
      need(isinstance(v, (int, np.integer)) and v >= 0, f"{name} must be an int >= 0 (px); got {v!r}.")
    need(all(finite(s) and s > 0 for s in self.scales),
         f"scales must all be finite and > 0, e.g. (0.9, 1.0, 1.1); got {self.scales!r}.")
    need(finite(self.rotate_degrees) and 0 <= self.rotate_degrees <= 180,
         f"rotate_degrees must be in [0, 180]; got {self.rotate_degrees!r}.")
    need(finite(self.l2) and finite(self.tv) and self.l2 >= 0 and self.tv >= 0,
         f"l2 and tv are penalty weights, finite and >= 0; got {self.l2!r}, {self.tv!r}.")
    need(finite(self.decay) and 0 <= self.decay < 1, f"decay must be in [0, 1); got {self.decay!r}.")
    need(finite(self.desaturate) and 0 <= self.desaturate <= 1,
         f"desaturate must be in [0, 1]; got {self.desaturate!r}.")
    need(self.clip is None or (all(finite(v) for v in self.clip) and self.clip[0] < self.clip[1]),
         f"clip must be None or (lo, hi) with lo < hi, in RGB [0, 1] units; got {self.clip!r}.")
    need(all(finite(v) for v in self.caffe_mean), f"caffe_mean must be finite; got {self.caffe_mean!r}.")
    need(self.param in _IMAGE_PARAMS or (not self.decay and not self.desaturate and self.clip is None),
         f"decay, desaturate and clip act on pixels, so they need param 'pixel' or 'dots'; with "
         f"param={self.param!r} set decay=0, desaturate=0 and clip=None (got {self.decay!r}, "
         f"{self.desaturate!r}, {self.clip!r}).")

  @classmethod
  def deepdream(cls, tap: str, **overrides) -> "VisConfig":
    """The `deepdream` recipe (see `rfspec.recipes`) with `overrides`."""
    return cls.from_recipe("deepdream", tap=tap, **overrides)

  @classmethod
  def lucid(cls, tap: str, **overrides) -> "VisConfig":
    """The `lucid` recipe (see `rfspec.recipes`) with `overrides`."""
    return cls.from_recipe("lucid", tap=tap, **overrides)

  @classmethod
  def from_recipe(cls, recipe: str, **fields) -> "VisConfig":
    """The named recipe ("zipser2015", "deepdream" or "lucid"), with `fields` (tap, image_hw,
    steps, ...) overriding its values; see `rfspec.recipes`."""
    return cls(recipe=recipe, **fields)

  @property
  def net_hw(self) -> tuple[int, int]:
    """(H, W) the net sees: `image_hw` plus the canvas on every side."""
    return (int(self.image_hw[0]) + 2 * self.canvas_pad, int(self.image_hw[1]) + 2 * self.canvas_pad)

  @property
  def tap_shape(self) -> tuple[int, int, int]:
    """(h, w, C) of the tap's blob at `net_hw`: the shape a node mask must have."""
    return masks_lib.tap_shape(self.tap, self.net_hw)

  def fields(self) -> dict[str, Any]:
    """Every field as plain data (JSON-able); `VisConfig(**cfg.fields())` rebuilds it."""
    return {f.name: (list(v) if isinstance(v, tuple) else v)
            for f in dataclasses.fields(self) for v in [getattr(self, f.name)]}


# ----------------------------------------------------------------------------- the pure core


class VisResult(NamedTuple):
  """Output of `optimize` (or, batched, of `make_grid_fn`).

  Attributes:
    image: float32 [H, W, 3] RGB in [0, 1] ([B, H, W, 3] batched).
    trace: float32 [steps], Σ mask · act at each step, measured on that step's (transformed)
      image before its update ([B, steps] batched).
  """

  image: jax.Array
  trace: jax.Array


class _State(NamedTuple):
  z: jax.Array
  opt_state: Any


class _Parts(NamedTuple):
  param: param.Param
  transform: transforms.Transform
  optimizer: optax.GradientTransformation


def scale_by_mean_abs_nonzero() -> optax.GradientTransformation:
  """optax transform: g -> g / mean(|g| over the entries where g != 0); all-zero g stays 0.

  DeepDream's and the paper's step normalisation (`1.5 / mean(|g|) * g` in the script, with the
  mean over the non-zero entries). Chain it before the optimiser; stateless.
  """

  def update_fn(updates, state, params=None):
    del params

    def scale(g):
      a = jnp.abs(g)
      n = jnp.sum(a > 0)
      mean = jnp.sum(a) / jnp.maximum(n, 1)
      return jnp.where(n > 0, g / jnp.where(n > 0, mean, 1), jnp.zeros_like(g))

    return jax.tree.map(scale, updates), state

  return optax.GradientTransformation(lambda params: optax.EmptyState(), update_fn)


@functools.lru_cache(maxsize=None)
def _parts(cfg: VisConfig) -> _Parts:
  if cfg.param == "pixel":
    p = param.pixel(cfg.image_hw, init_scale=cfg.init_scale)
  elif cfg.param == "dots":
    p = param.data_dots(cfg.image_hw, amplitude=cfg.init_scale, mean_bgr=cfg.caffe_mean)
  else:
    p = param.fourier(cfg.image_hw, init_scale=cfg.init_scale, decorrelate=cfg.decorrelate)
  t = transforms.standard(cfg.image_hw, pad_width=cfg.pad, max_shift=cfg.jitter, wrap=cfg.jitter_wrap, scales=cfg.scales,
                          rotate_degrees=cfg.rotate_degrees)
  opt = {"sgd": optax.sgd, "adam": optax.adam}[cfg.optimizer](cfg.learning_rate)
  if cfg.normalize_grad:
    opt = optax.chain(scale_by_mean_abs_nonzero(), opt)
  return _Parts(p, t, opt)


def _mean_rgb(cfg: VisConfig) -> np.ndarray:
  """The mean colour (Caffe data-space zero) in RGB [0, 1] units, float32 [3]."""
  return np.asarray(cfg.caffe_mean[::-1], np.float32) / 255.0


def after_step(image, cfg: VisConfig):
  """The per-pixel operations after each step, for image-space params: decay towards the mean
  colour, desaturation, clip (zipser2015's steps 4, 5 and 7). image: [..., H, W, 3] RGB."""
  if cfg.decay or cfg.desaturate:
    m = jnp.asarray(_mean_rgb(cfg), image.dtype)
    d = image - m  # the data-space value, in units of 1/255
    if cfg.decay:
      d = d * (1.0 - cfg.decay)
    if cfg.desaturate:
      d = (1.0 - cfg.desaturate) * d + cfg.desaturate * jnp.mean(d, axis=-1, keepdims=True)
    image = d + m
  if cfg.clip is not None:
    image = jnp.clip(image, cfg.clip[0], cfg.clip[1])
  return image


def embed_canvas(images, cfg: VisConfig):
  """Puts images [..., H, W, 3] in the centre of the `cfg.canvas_pad` canvas the net sees."""
  m = cfg.canvas_pad
  if not m:
    return images
  widths = [(0, 0)] * (images.ndim - 3) + [(m, m), (m, m), (0, 0)]
  if cfg.canvas_fill == "reflect":
    return jnp.pad(images, widths, mode="reflect")
  fill = 0.5 if cfg.canvas_fill == "grey" else _mean_rgb(cfg)
  # Pad with 0, then paint the border with the (per-channel) fill.
  inside = jnp.pad(jnp.ones(images.shape[-3:-1], images.dtype), ((m, m), (m, m)))[..., None]
  return jnp.pad(images, widths) + (1 - inside) * jnp.asarray(fill, images.dtype)


def _keys(seed):
  """seed -> (init_key, loop_key)."""
  init_key, loop_key = jax.random.split(jax.random.key(seed))
  return init_key, loop_key


def _init_state(seed, cfg: VisConfig) -> _State:
  parts = _parts(cfg)
  z = parts.param.init(_keys(seed)[0])
  return _State(z, parts.optimizer.init(z))


def initial_image(seed, cfg: VisConfig) -> jax.Array:
  """The image a run with `seed` starts from (jittable).

  Args:
    seed: int (may be traced); the start comes from the first half of `jax.random.key(seed)`.
    cfg: the run's `VisConfig`.

  Returns:
    float32 [H, W, 3] RGB, indexed (y, x). In [0, 1], except for param "dots" (zipser2015),
    whose start is unclipped as in the paper's script: up to (init_scale + mean) / 255 > 1.
  """
  return _parts(cfg).param.to_image(_parts(cfg).param.init(_keys(seed)[0]))


def _step(params, seed, node_mask, state: _State, step, cfg: VisConfig):
  """One optimiser step of one element at step index `step`; an index >= cfg.steps is a no-op.

  Returns (state, objective before the step).
  """
  parts = _parts(cfg)
  loop_key = _keys(seed)[1]
  dtype = DTYPES[cfg.dtype]
  mask = jnp.asarray(node_mask, jnp.float32)

  def loss_fn(z, key):
    image = parts.param.to_image(z)
    seen = embed_canvas(parts.transform.apply(key, image), cfg)
    act = objectives.tap_activation(params, seen[None], cfg.tap, pre_relu=cfg.objective == "pre_relu",
                                    dtype=dtype, mean_bgr=cfg.caffe_mean, pad_mode=cfg.pad_mode)[0]
    if cfg.objective == "l2_feedback":
      obj = objectives.l2_feedback(act, mask)
    else:
      obj = objectives.node_objective(act, mask)
    loss = -obj
    if cfg.l2:
      loss += cfg.l2 * objectives.l2(image)
    if cfg.tv:
      loss += cfg.tv * objectives.total_variation(image)
    return loss, obj

  (_, obj), g = jax.value_and_grad(loss_fn, has_aux=True)(state.z, jax.random.fold_in(loop_key, step))
  updates, opt_state = parts.optimizer.update(g, state.opt_state, state.z)
  z = parts.param.project(optax.apply_updates(state.z, updates))
  if cfg.param in _IMAGE_PARAMS:
    z = after_step(z, cfg)
  new = _State(z, opt_state)
  # Padding steps of the last chunk leave the state alone (one compiled chunk size for all).
  active = step < cfg.steps
  return jax.tree.map(lambda a, b: jnp.where(active, a, b), new, state), obj


def _run_steps(params, seed, node_mask, state: _State, steps, cfg: VisConfig):
  """Runs the optimiser for the step indices `steps` [n] on one element. Returns (state, trace [n])."""
  return jax.lax.scan(lambda st, step: _step(params, seed, node_mask, st, step, cfg), state, steps)


def batch_parts(devices: Sequence[jax.Device]) -> int:
  """How many independent pieces `visualize_grid` cuts its batch into on `devices`.

  2 on a lone CPU device, else 1. XLA's CPU runtime runs a YNNPACK convolution on one core (a
  [2, 56, 56, 192] -> 64 3x3 convolution: 95 GFLOP/s, where a 2048² matmul reaches 190 on both
  cores) and hands ready work to a second core only when more than 8 operations are ready at
  once, so one call that steps a whole batch, or even two halves of it, leaves a core idle through
  the net's long single-branch stretches (conv1, conv2). `visualize_grid` therefore runs a batch
  of two or more as one call of the same compiled chunk per half, each from its own thread: the
  two calls run on separate cores and give the same numbers bit for bit as one call that cuts the
  batch in two inside. An odd batch gets one more element (a copy of its first, dropped
  afterwards): its longer half is as long as before, and the compiled program is the half
  batch's, uncut (one copy of the step, where one call cut in two inside holds two). Measured on
  2 cores at 224 px (`experiments/benchmark.py --sections=flops`: `threaded_over_one_call`): a
  2 x 2 zipser2015 grid at inception_4c/5x5 takes 0.85-0.94 of the time of one call cut inside
  (three runs; 0.94 in experiments/results/benchmark_cpu.json), which was itself 13-15 % faster
  than an uncut step. Several CPU devices (`--xla_force_host_platform_device_count`) already run
  concurrently, and on a GPU or TPU a smaller batch only leaves the chip idler.
  """
  return googlenet.default_grad_parts(devices)  # the same rule as a user's jax.grad of rfspec.forward


_M_TRIM_THRESHOLD, _M_MMAP_MAX, _M_ARENA_MAX = -1, -4, -8  # glibc's mallopt parameters


def keep_freed_memory(enable: bool = True) -> bool:
  """Lets this process reuse the memory XLA's CPU runtime frees instead of handing it back to the
  OS: the fast path for single jitted calls on a CPU (opt-in; glibc only).

  Every call of a compiled function on XLA's CPU runtime allocates a fresh temporary buffer; a
  gradient's is large (every blob the backward needs: ~160 MB for 4 images at 224 px up to
  inception_4c), so glibc maps it anew and each call takes ~40,000 page faults. With this on,
  freed memory stays in one heap and the next call reuses it (no page faults): at 224 px, batch
  4, up to inception_4c/output, a `jax.jit(jax.grad(...))` call of `rfspec.forward` took 2.25
  forwards instead of 2.55 in the recorded benchmark (`experiments/results/benchmark_cpu.json`,
  section grad, on a shared 2-core machine; 2.46 vs 2.52 in a run at a higher load). The engine
  runs `cfg.chunk` steps per call and pays the faults once per chunk, so it gains less.

  Call it once, before JAX's first computation (worker threads choose their heap on their first
  allocation): `rfspec.engine.keep_freed_memory()` right after the imports. The cost: the
  process keeps up to 2 GiB of freed memory (reported as used, e.g. by `rfspec.memory`'s check
  of available memory). `enable=False` restores glibc's defaults for allocations made after it.

  Returns:
    True if glibc took the setting; False elsewhere (then nothing changed).
  """
  import ctypes

  try:
    libc = ctypes.CDLL("libc.so.6")
    mallopt = libc.mallopt
  except (OSError, AttributeError):
    return False
  if enable:
    ok = mallopt(_M_ARENA_MAX, 1) and mallopt(_M_MMAP_MAX, 0) and mallopt(_M_TRIM_THRESHOLD, 2 ** 31 - 1)
  else:
    ok = mallopt(_M_MMAP_MAX, 65536) and mallopt(_M_TRIM_THRESHOLD, 128 * 1024)
  return bool(ok)


def apply_in_parts(fn: Callable, parts: int, *batched):
  """`fn(*batched)` computed on `parts` contiguous pieces of the leading (batch) axis, concatenated.

  Every output leaf must have the batch as its leading axis. The pieces share nothing, so XLA
  may run them concurrently (see `batch_parts`); each element's result is the same computation
  whatever the piece it falls in.
  """
  size = jax.tree.leaves(batched)[0].shape[0]
  parts = max(1, min(parts, size))
  if parts == 1:
    return fn(*batched)
  bounds = np.linspace(0, size, parts + 1).round().astype(int)
  outs = [fn(*jax.tree.map(lambda a, lo=lo, hi=hi: a[lo:hi], batched)) for lo, hi in zip(bounds[:-1], bounds[1:])]
  return jax.tree.map(lambda *xs: jnp.concatenate(xs), *outs)


def _check_mask_shape(node_mask, cfg: VisConfig):
  want = cfg.tap_shape
  if tuple(node_mask.shape) != want:
    raise ValueError(f"Node mask shape {tuple(node_mask.shape)} does not match tap {cfg.tap!r} at "
                     f"{cfg.net_hw[0]}x{cfg.net_hw[1]} px: expected [h, w, C] = {want}. Build it "
                     f"with rfspec.node_mask({cfg.tap!r}, channel, image_hw={cfg.net_hw}, position=...).")


def optimize(params, seed, node_mask, cfg: VisConfig) -> VisResult:
  """The pure core of `visualize`: jit- and vmap-able over `seed` and `node_mask`.

  Args:
    params: GoogLeNet params (see `rfspec.load_params`).
    seed: int scalar (may be traced); the run's randomness is `jax.random.key(seed)`.
    node_mask: float [h, w, C] for `cfg.tap` at `cfg.image_hw`; nodes at (i, j) = (row, col)
      of the tap's grid (see `rfspec.node_mask`).
    cfg: static `VisConfig`.

  Returns:
    VisResult(image float32 [H, W, 3] RGB in [0, 1], trace float32 [cfg.steps]).
  """
  _check_mask_shape(node_mask, cfg)
  state = _init_state(seed, cfg)
  state, trace = _run_steps(params, seed, node_mask, state, jnp.arange(cfg.steps), cfg)
  return VisResult(_parts(cfg).param.to_image(state.z), trace)


def make_grid_fn(cfg: VisConfig) -> Callable[..., VisResult]:
  """The whole run for a flat batch as one jitted function, e.g. to time compile and run apart.

  Returns:
    jitted `fn(params, seeds int32 [B], masks float32 [B, h, w, C]) -> VisResult(images
    [B, H, W, 3], traces [B, steps])`: `optimize` vmapped over the batch, all steps in one scan.
    Use `fn.lower(...).compile()` to compile separately. `visualize_grid` computes the same thing
    in chunks, with sharding, progress and finiteness checks, and on a lone CPU device with each
    step's batch cut in pieces (`batch_parts`): equal up to float rounding.
  """
  return _make_grid_fn(cfg)


@functools.lru_cache(maxsize=64)
def _make_grid_fn(cfg: VisConfig):
  return jax.jit(jax.vmap(functools.partial(optimize, cfg=cfg), in_axes=(None, 0, 0)))


# ----------------------------------------------------------------------------- chunked runner


class _ChunkFns(NamedTuple):
  init: Callable
  chunk: Callable


# Steps per loop iteration of a chunk's scan, once a chunk has at least _UNROLL_MIN_STEPS steps.
# Each iteration has a fixed cost, and at its end the batch's pieces (`batch_parts`) wait for each
# other; two steps per iteration pay it half as often: the same numbers bit for bit, and 0.89-0.93
# of the time at inception_4c/5x5, 224 px, on 2 CPU cores in four runs (`unrolled_over_one_step`,
# 0.93 in experiments/results/benchmark_cpu.json; about 0.97 at conv2/3x3). Shorter chunks (tests,
# smoke runs) keep one step per iteration: the doubled loop body would cost more compile time than
# it saves.
_UNROLL = 2
_UNROLL_MIN_STEPS = 8


def _chunk_unroll(n: int) -> int:
  """Steps per scan iteration for a chunk of `n` steps (_UNROLL when it divides a long chunk, else 1)."""
  return _UNROLL if n >= _UNROLL_MIN_STEPS and n % _UNROLL == 0 else 1


def _chunk_fns(cfg: VisConfig, unroll: int | None = None) -> _ChunkFns:
  """The chunk's jitted functions; `unroll` (steps per scan iteration) defaults to `_chunk_unroll`,
  and the default and its explicit value share one cached set (one compile, not two)."""
  return _chunk_fns_unrolled(cfg, _chunk_unroll(min(cfg.chunk, cfg.steps)) if unroll is None else unroll)


@functools.lru_cache(maxsize=64)
def _chunk_fns_unrolled(cfg: VisConfig, unroll: int) -> _ChunkFns:
  n = min(cfg.chunk, cfg.steps)
  # Build (and cache) the parameterisation eagerly: built first inside a trace, its cached
  # arrays (e.g. the Fourier spectrum scale) would be tracers that leak into later calls.
  _parts(cfg)

  def init(seeds):
    return jax.vmap(lambda s: _init_state(s, cfg))(seeds)

  # Its own jit, so that the batch's equal pieces share one trace and one lowering: the step is
  # most of a grid's first-call time, paid again by every process (issue 23: compile once).
  step_all = jax.jit(jax.vmap(functools.partial(_step, cfg=cfg), in_axes=(None, 0, 0, 0, None)))

  def chunk(params, seeds, masks, state, step0, parts=1):
    def body(state, step):
      return apply_in_parts(lambda s, m, st: step_all(params, s, m, st, step), parts, seeds, masks, state)

    # The scan runs the whole batch step by step (not one scan per element, vmapped), so that
    # a step can be cut into independent pieces (`batch_parts`).
    state, trace = jax.lax.scan(body, state, step0 + jnp.arange(n), unroll=unroll)
    trace = trace.T
    images = jax.vmap(_parts(cfg).param.to_image)(state.z)
    finite = (jnp.all(jnp.isfinite(state.z.reshape(len(seeds), -1)), axis=1)
              & jnp.all(jnp.isfinite(trace), axis=1))
    return state, trace, images, finite

  return _ChunkFns(jax.jit(init), jax.jit(chunk, donate_argnums=(3,), static_argnames=("parts",)))


def _chunk_key(cfg: VisConfig) -> str:
  return f"engine.chunk {cfg!r}"


def chunk_compiles(cfg: VisConfig) -> int:
  """How many chunk programs of `cfg` this process has compiled, directly or through
  `rfspec.program_cache` (one per batch shape and device set, whatever the seeds and masks)."""
  return _chunk_fns(cfg).chunk._cache_size() + program_cache.compiled(_chunk_key(cfg))


class NonFiniteError(FloatingPointError, ValueError):
  """Raised when an element's image or objective went NaN or inf; names the elements."""


class GridResult(NamedTuple):
  """`visualize_batch`'s result: B (seed, mask) elements on a flat leading axis.

  Attributes:
    images: float32 [B, H, W, 3] RGB in [0, 1].
    traces: float32 [B, steps], Σ mask · act per step (see `VisResult`).
    snapshots: float32 [K, B, H, W, 3], the images after each of `snapshot_steps` (K = 0
      without them): the same run seen part-way, e.g. to see when a result settles.
  """

  images: np.ndarray
  traces: np.ndarray
  snapshots: np.ndarray = np.zeros((0,), np.float32)


def grid_mesh(devices: Sequence[jax.Device] | None = None) -> jax.sharding.Mesh:
  """A 1-D mesh with axis "grid" over `devices` (default: `jax.devices()`, all hosts')."""
  devices = list(jax.devices() if devices is None else devices)
  return jax.make_mesh((len(devices),), ("grid",), axis_types=(AxisType.Auto,), devices=devices)


def _put(x, sharding: NamedSharding):
  """A host array -> a global jax.Array with `sharding`; every process passes the same `x`."""
  if sharding.is_fully_addressable:
    return jax.device_put(x, sharding)
  x = np.asarray(x)
  return jax.make_array_from_callback(x.shape, sharding, lambda idx: x[idx])


def _get(x) -> np.ndarray:
  """A global jax.Array -> the full numpy array on every process."""
  if x.is_fully_addressable:
    return np.asarray(x)
  from jax.experimental import multihost_utils
  return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def check_seeds(seeds) -> np.ndarray:
  """seeds -> int32 [S]; a UserError names the bad value and the allowed range."""
  arr = np.asarray(seeds)
  if arr.ndim != 1 or arr.size == 0 or not np.issubdtype(arr.dtype, np.integer):
    raise UserError(f"seeds must be a non-empty 1-D sequence of ints, e.g. [0, 1, 2]; got {seeds!r}.")
  info = np.iinfo(np.int32)
  bad = arr[(arr < info.min) | (arr > info.max)]
  if bad.size:
    raise UserError(f"seeds must fit in int32 ({info.min} .. {info.max}); got {bad[0]}. "
                    "Use smaller seed values.")
  return arr.astype(np.int32)


def check_progress(progress) -> Callable[[Progress], None]:
  """`progress` -> a callable; None -> silence. Anything else is a UserError naming the fix."""
  if progress is None:
    return lambda info: None
  if not callable(progress):
    raise UserError(f"progress must be a function of one `rfspec.progress.Progress` (default: print a line on stderr) "
                    f"or None for silence; got {progress!r}.")
  return progress


def _run_grid(params, seeds: np.ndarray, masks: np.ndarray, cfg: VisConfig, progress, devices,
              describe: Callable[[int], str], snapshot_steps: Sequence[int] = ()):
  """Runs the flat batch (seeds [B], masks [B, h, w, C]) chunk by chunk; returns numpy
  (images [B, H, W, 3], traces [B, steps], snapshots [len(snapshot_steps), B, H, W, 3])."""
  fns = _chunk_fns(cfg)
  mesh = grid_mesh(devices)
  memory.check_fits(cfg, len(seeds), list(mesh.devices.flat))  # refuse before compiling or allocating
  batch = len(seeds)
  # On a lone CPU device a batch of two or more runs as `batch_parts` equal pieces, each a call of
  # one compiled program from its own thread, so that XLA's CPU runtime runs them on separate cores
  # (see `batch_parts`). An odd batch gets one more element (a copy of its first, dropped at the
  # end): its longer half is no longer than it was, and the program is the half batch's, uncut.
  pieces = batch_parts(mesh.devices.flat) if batch > 1 else 1
  padded = -(-batch // (mesh.size * pieces)) * mesh.size * pieces  # and a multiple of the devices
  idx = np.concatenate([np.arange(batch), np.zeros(padded - batch, np.int64)])
  along, replicated = NamedSharding(mesh, P("grid")), NamedSharding(mesh, P())
  params_d = jax.tree.map(lambda a: _put(a, replicated), params)
  progress = check_progress(progress)

  n = min(cfg.chunk, cfg.steps)
  size = padded // pieces
  seeds_p = [_put(seeds[idx[i * size:(i + 1) * size]], along) for i in range(pieces)]
  masks_p = [_put(masks[idx[i * size:(i + 1) * size]], along) for i in range(pieces)]
  states = [fns.init(s) for s in seeds_p]
  # Traced once per machine when the compilation cache is on (rfspec.program_cache).
  chunk = program_cache.cached(fns.chunk, _chunk_key(cfg), (params_d, seeds_p[0], masks_p[0], states[0], np.int32(0)),
                               jax.tree.structure((states[0], 0, 0, 0)), donate_argnums=(3,))

  def run_piece(i, step0):
    return jax.block_until_ready(chunk(params_d, seeds_p[i], masks_p[i], states[i], np.int32(step0)))

  join = (lambda xs: xs[0]) if pieces == 1 else (lambda xs: jnp.concatenate(xs))
  with concurrent.futures.ThreadPoolExecutor(pieces) as pool:
    traces, snaps, start, first_done, first_step = [], {}, time.perf_counter(), None, 0
    for step0 in range(0, cfg.steps, n):
      outs = list(pool.map(run_piece, range(pieces), [step0] * pieces)) if pieces > 1 else [run_piece(0, step0)]
      states = [o[0] for o in outs]
      trace, images, finite = (join([o[k] for o in outs]) for k in (1, 2, 3))
      traces.append(trace)
      finite = _get(finite)[:batch]
      done = min(step0 + n, cfg.steps)
      if not finite.all():
        bad = np.flatnonzero(~finite)
        raise NonFiniteError(
            f"Non-finite image or objective by step {done} of {cfg.steps} in {len(bad)} of {batch} "
            f"elements: {', '.join(describe(b) for b in bad[:10])}{' ...' if len(bad) > 10 else ''}. "
            "Lower cfg.learning_rate, use dtype='float32', or set normalize_grad=True.")
      if done in snapshot_steps:
        snaps[done] = _get(images)[:batch]
      now = time.perf_counter()
      if first_done is None:  # the first chunk's time includes compilation
        first_done, first_step = now, done
        rate = batch * done / max(now - start, 1e-9)
      else:
        rate = batch * (done - first_step) / max(now - first_done, 1e-9)
      eta = (cfg.steps - done) * batch / max(rate, 1e-9)
      progress(Progress(done, cfg.steps, batch, rate, now - start, eta))
  traces = _get(jnp.concatenate(traces, axis=1))[:batch, :cfg.steps]
  final = _get(images)[:batch]
  snapshots = (np.stack([snaps[k] for k in snapshot_steps]) if snapshot_steps
               else np.zeros((0, *final.shape), final.dtype))
  return final, traces, snapshots


def visualize_grid(params, seeds, masks, cfg: VisConfig, *,
                   progress: Callable[[Progress], None] | None = print_progress,
                   devices: Sequence[jax.Device] | None = None, return_trace: bool = False) -> np.ndarray:
  """Visualises every (mask, seed) pair of a grid in one compiled, sharded computation.

  Element (p, s) is `visualize(params, seeds[s], masks[p], cfg)`. The flattened grid
  (b = p * S + s) is padded to a multiple of the device count and sharded over a 1-D "grid"
  mesh; params are replicated. The steps run as compiled chunks of `cfg.chunk` steps (one
  compilation whatever the seed values), with `progress` called after each chunk. On a lone CPU
  device a batch of two or more runs as its two halves (an odd one with a copy of element 0 added),
  each a call of that compiled chunk from its own thread so that both cores work (`batch_parts`);
  the numbers are those of one call.

  Multi-host: after `jax.distributed.initialize()`, call it on every process with the same
  arguments; the grid is spread over all hosts' devices and every process returns the result.

  Compile once per machine: the first call of a config compiles it (seconds to a minute on a
  CPU). Every `experiments/` binary turns on JAX's persistent compilation cache under the rfspec
  cache dir (`~/.cache/rfspec/jax_compile_cache`, or `$RFSPEC_CACHE/jax_compile_cache`; opt out
  with `--nocompile_cache` or `RFSPEC_COMPILE_CACHE=0`), so a later process reads the compiled
  program back instead. In your own Python, do the same before the first call:
  `jax.config.update("jax_compilation_cache_dir", os.path.expanduser("~/.cache/rfspec/jax_compile_cache"))`.

  Args:
    params: GoogLeNet params (see `rfspec.load_params`).
    seeds: int [S]; each element's randomness comes from `jax.random.key(seed)` alone.
    masks: float [P, h, w, C] node masks for `cfg.tap` at `cfg.image_hw`, nodes at
      (i, j) = (row, col) of the tap's grid (see `rfspec.node_mask`, `rfspec.masks.node_masks`).
    cfg: `VisConfig`.
    progress: called with a `rfspec.progress.Progress` after each chunk; default
      `print_progress` (a line on stderr); None for silence; `rfspec.progress.log_progress` logs.
    devices: devices to shard over; default `jax.devices()`.
    return_trace: removed (a UserError if true): the objective per step and snapshots come from
      `visualize_batch`, which returns a `GridResult`; this function always returns the images.

  Returns:
    float32 [P, S, H, W, 3] RGB in [0, 1], element (p, s) indexed (y, x).

  Raises:
    ValueError: masks of the wrong shape, an all-zero mask, bad seeds.
    NonFiniteError: an element went NaN/inf; the message names its (p, s).
  """
  _refuse_trace("visualize_grid", return_trace)
  seeds = check_seeds(seeds)
  masks = masks_lib.check_mask(masks, cfg.tap, cfg.net_hw, batched=True)
  n_p, n_s = len(masks), len(seeds)
  flat_seeds = np.tile(seeds, n_p)
  flat_masks = np.repeat(masks, n_s, axis=0)
  describe = lambda b: f"(p, s) = ({b // n_s}, {b % n_s}) [seed {seeds[b % n_s]}]"
  images, _, _ = _run_grid(params, flat_seeds, flat_masks, cfg, progress, devices, describe)
  return images.reshape(n_p, n_s, *images.shape[1:])


def _refuse_trace(name: str, return_trace) -> None:
  """visualize / visualize_grid return images only (one type); traces come from elsewhere."""
  if return_trace:
    raise UserError(
        f"{name} returns the images only (return_trace was removed so that it always returns one type). "
        "For the objective per step (and snapshots) call rfspec.engine.visualize_batch(params, seeds, masks, cfg), "
        "which returns GridResult(images, traces, snapshots) for B (seed, mask) pairs (for a grid pass "
        "np.tile(seeds, P) and np.repeat(masks, S, axis=0)), or rfspec.engine.optimize(...) under jit for "
        "VisResult(image, trace).")


def visualize_batch(params, seeds, masks, cfg: VisConfig, *,
                    progress: Callable[[Progress], None] | None = print_progress,
                    devices: Sequence[jax.Device] | None = None,
                    snapshot_steps: Sequence[int] = ()) -> GridResult:
  """Visualises B (seed, mask) pairs in one compiled, sharded computation: the flat form of
  `visualize_grid`, for runs whose elements do not form a full positions x seeds product (e.g. each
  (channel, position) with its own seeds, see `rfspec.selection`).

  Element b is `visualize(params, seeds[b], masks[b], cfg)`, computed exactly as `visualize_grid`
  computes its flattened elements (same chunks, sharding and checks).

  Args:
    params: GoogLeNet params.
    seeds: int [B].
    masks: float [B, h, w, C] node masks for `cfg.tap` at `cfg.net_hw`.
    cfg, progress, devices, snapshot_steps: as in `visualize_grid`.

  Returns:
    `GridResult` with a flat leading axis: images [B, H, W, 3], traces [B, steps], snapshots
    [K, B, H, W, 3].
  """
  seeds = check_seeds(seeds)
  masks = masks_lib.check_mask(masks, cfg.tap, cfg.net_hw, batched=True)
  if len(seeds) != len(masks):
    raise UserError(f"visualize_batch pairs seeds[b] with masks[b]; got {len(seeds)} seeds and {len(masks)} masks. "
                    "For every seed with every mask use visualize_grid.")
  snapshot_steps = check_snapshot_steps(snapshot_steps, cfg)
  images, traces, snaps = _run_grid(params, seeds, masks, cfg, progress, devices,
                                    lambda b: f"element {b} [seed {seeds[b]}]", snapshot_steps)
  return GridResult(images, traces, snaps)


def check_snapshot_steps(steps, cfg: VisConfig) -> tuple[int, ...]:
  """`snapshot_steps` -> sorted tuple of ints; a UserError unless each ends a compiled chunk."""
  n = min(cfg.chunk, cfg.steps)
  try:
    out = tuple(sorted({int(k) for k in steps}))
  except (TypeError, ValueError):
    raise UserError(f"snapshot_steps must be whole step counts, e.g. (300, 600); got {steps!r}.") from None
  bad = [k for k in out if not (1 <= k <= cfg.steps and (k % n == 0 or k == cfg.steps))]
  if bad:
    raise UserError(f"snapshot_steps {bad} do not end a compiled chunk: each must be a multiple of cfg.chunk = {n} "
                    f"and at most cfg.steps = {cfg.steps} (or equal to it). Change the steps or cfg.chunk.")
  return out


def _is_traced(*trees) -> bool:
  return any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(trees))


def visualize(params, seed, node_mask, cfg: VisConfig, *,
              progress: Callable[[Progress], None] | None = print_progress,
              devices: Sequence[jax.Device] | None = None, return_trace: bool = False) -> np.ndarray | jax.Array:
  """The preferred input of the chosen nodes, by gradient ascent from a random start.

  A pure function of (params, seed, node_mask, cfg): the same seed gives bit-identical output.
  With concrete inputs it validates them, runs on one device (or `devices`) in compiled chunks,
  reports progress and stops on non-finite values. Called under `jit`/`vmap` (traced seed or
  mask) it is `optimize(...).image`, so it can be vmapped over seeds and masks.

  Args:
    params: GoogLeNet params (see `rfspec.load_params`).
    seed: int; all randomness (start, jitter, ...) comes from `jax.random.key(seed)`.
    node_mask: float [h, w, C] for `cfg.tap` at `cfg.image_hw`, nodes at (i, j) = (row, col) of
      the tap's grid, e.g. `rfspec.node_mask(tap, channel, image_hw, position=(i, j))`.
    cfg: `VisConfig`, e.g. `VisConfig(tap="inception_4c/output", image_hw=(224, 224))`.
    progress: called with a `rfspec.progress.Progress` after each chunk; default
      `print_progress` (a line on stderr); None for silence; `rfspec.progress.log_progress` logs.
    devices: where to run; default the first local device.
    return_trace: removed (a UserError if true): `optimize` returns `VisResult(image, trace)`,
      `visualize_batch` a `GridResult` with traces; this function always returns the image.

  Returns:
    float32 [H, W, 3] RGB in [0, 1], indexed (y, x) (a jax.Array when traced).

  Raises:
    ValueError: a mask of the wrong shape (the message gives the expected one) or all zero.
    NonFiniteError: the run went NaN/inf.
  """
  _refuse_trace("visualize", return_trace)
  if _is_traced(params, seed, node_mask):
    return optimize(params, seed, node_mask, cfg).image
  seed = check_seeds([seed])
  mask = masks_lib.check_mask(node_mask, cfg.tap, cfg.net_hw)
  devices = [jax.local_devices()[0]] if devices is None else devices
  image, _, _ = _run_grid(params, seed, mask[None], cfg, progress, devices, lambda b: f"the run [seed {seed[0]}]")
  return image[0]

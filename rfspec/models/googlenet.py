"""BVLC GoogLeNet (the Caffe model-zoo deploy net) in Flax, with Caffe's exact semantics.

The architecture is `rfspec.models.layers.LAYERS` (re-exported here with its arithmetic): the Flax
module below, the Caffe weight mapping, the memory estimates and the receptive-field geometry all
walk that one table, so they cannot disagree.

Layout conventions: activations are NHWC, conv kernels HWIO (Caffe stores OIHW), positions
on a tap's grid are (row, col).
"""

from __future__ import annotations

import functools
import math
from typing import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from rfspec.models import preprocess
from rfspec import memory
# The table and its arithmetic, re-exported (googlenet.LAYERS, googlenet.blob_hws, ...).
from rfspec.models.layers import (CLASSIFY_MAX, CLASSIFY_MIN, INPUT, LAYERS, LAYER_BY_NAME, LRN_ALPHA, LRN_BETA,
                                  LRN_K, LRN_SIZE, PAD_MODES, TAPS, Layer, ancestors, blob_hw, blob_hws,
                                  check_images, check_input_hw, check_pad_mode, check_tap, conv_out, layer_out,
                                  min_input_size, normalize_taps, param_shapes, pool_out)


# ----------------------------------------------------------------------------- ops


def _pool_pads(n: int, k: int, s: int, p: int) -> tuple[int, int]:
  """(low, high) padding that makes a VALID window give Caffe's ceil-mode grid.

  High padding may be negative (crop) when Caffe's minus-one rule drops the last window.
  """
  out = pool_out(n, k, s, p)
  return p, (out - 1) * s + k - n - p


def _window_max(x, axis: int, k: int, s: int):
  """Max over VALID windows of `k` elements, stride `s`, along `axis` of `x`."""
  window, strides = [1] * x.ndim, [1] * x.ndim
  window[axis], strides[axis] = k, s
  # numpy (not jnp) init value: under jit a jnp scalar is a tracer, and reduce_window with a
  # traced init value cannot be differentiated.
  return jax.lax.reduce_window(x, np.array(-np.inf, x.dtype), jax.lax.max, window, strides, "VALID")


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2, 3))
def _max_along(x, axis: int, k: int, s: int):
  """`_window_max` with a scatter-free gradient equal to jax.grad's (XLA's CPU
  select-and-scatter, the autodiff gradient of a max window, is ~40x slower than the forward)."""
  return _window_max(x, axis, k, s)


def _max_along_fwd(x, axis, k, s):
  y = _window_max(x, axis, k, s)
  return y, (x, y)


def _max_along_bwd(axis, k, s, residuals, ct):
  # Like jax.grad of reduce_window max: each window's cotangent goes to the FIRST element that
  # equals its max (ties included). Offset t of every window is one strided slice of x. Its
  # share lands on x[s*o + t], i.e. on phase t % s at slot o + t // s: sum the shares per phase
  # (shifted by pads), then interleave the phases by a stack and a reshape. No gather, no
  # scatter, no interior padding (slow on CPU).
  x, y = residuals
  m, n = y.shape[axis], x.shape[axis]
  slots = -(-n // s)
  zero = np.array(0, ct.dtype)
  phases = [None] * s
  taken = None
  for t in range(k):
    hit = jax.lax.slice_in_dim(x, t, t + (m - 1) * s + 1, s, axis) == y
    hit, taken = (hit, hit) if taken is None else (hit & ~taken, taken | hit)
    widths = [(0, 0, 0)] * x.ndim
    widths[axis] = (t // s, slots - m - t // s, 0)
    part = jax.lax.pad(jnp.where(hit, ct, zero), zero, widths)
    phases[t % s] = part if phases[t % s] is None else phases[t % s] + part
  if s == 1:
    return (phases[0],)
  phases = [jnp.zeros_like(phases[0]) if ph is None else ph for ph in phases]
  grad = jnp.stack(phases, axis=axis + 1)
  grad = grad.reshape(*x.shape[:axis], slots * s, *x.shape[axis + 1:])
  return (jax.lax.slice_in_dim(grad, 0, n, axis=axis),)


_max_along.defvjp(_max_along_fwd, _max_along_bwd)


def max_pool(x, k: int, s: int, p: int):
  """Caffe MAX pooling on NHWC `x`: windows are clipped to the image, like -inf padding.

  Computed as a max over rows, then over columns: the same numbers (max is separable), and 4-6x
  faster on CPU than one 2-D window. The gradient equals jax.grad of that plain computation
  (see `_max_along`).
  """
  (hl, hh), (wl, wh) = _pool_pads(x.shape[1], k, s, p), _pool_pads(x.shape[2], k, s, p)
  x = jax.lax.pad(x, np.array(-np.inf, x.dtype), ((0, 0, 0), (hl, hh, 0), (wl, wh, 0), (0, 0, 0)))
  return _max_along(_max_along(x, 1, k, s), 2, k, s)


def _ave_divisor(n: int, k: int, s: int, p: int) -> np.ndarray:
  """Caffe's AVE divisor along one axis: the window clipped to [-p, n + p)."""
  starts = np.arange(pool_out(n, k, s, p)) * s - p
  return (np.minimum(starts + k, n + p) - starts).astype(np.float32)


def ave_pool(x, k: int, s: int, p: int):
  """Caffe AVE pooling on NHWC `x`: padding counts in the divisor, the ceil overhang does not."""
  h, w = x.shape[1:3]
  (hl, hh), (wl, wh) = _pool_pads(h, k, s, p), _pool_pads(w, k, s, p)
  zero = np.array(0, x.dtype)
  x = jax.lax.pad(x, zero, ((0, 0, 0), (hl, hh, 0), (wl, wh, 0), (0, 0, 0)))
  total = jax.lax.reduce_window(x, zero, jax.lax.add, (1, k, k, 1), (1, s, s, 1), "VALID")
  divisor = np.outer(_ave_divisor(h, k, s, p), _ave_divisor(w, k, s, p))
  return total / jnp.asarray(divisor, x.dtype)[None, :, :, None]


def _lrn_window_sum(x):
  """Sum over the LRN_SIZE channels centred on each channel (zero beyond the ends), NHWC.

  Five shifted slices of the channel-padded array, added in order from x + 0 (no 0 + x, which
  would turn -0.0 into +0.0): the same sums as `jax.lax.reduce_window` (bit for bit,
  tests/models/googlenet_grad_test.py), 12 % faster on XLA's CPU backend for LRN's forward +
  backward and 1.4 % for a whole 224 px gradient to inception_4c/5x5 (measured, interleaved in one
  process).
  """
  half = LRN_SIZE // 2
  padded = jnp.pad(x, ((0, 0), (0, 0), (0, 0), (half, half)))
  c = x.shape[-1]
  total = padded[..., 0:c]
  for i in range(1, LRN_SIZE):
    total = total + padded[..., i:i + c]
  return total


def _lrn_pow(scale):
  """scale^0.75 as sqrt(scale) * sqrt(sqrt(scale)), within float rounding of pow.

  XLA's CPU sqrt and division are vector instructions; its rsqrt and pow are not: at
  [4, 56, 56, 192] this takes 0.6 ms, rsqrt(s) * rsqrt(sqrt(s)) 4.8 ms and s ** -0.75 7.2 ms, and
  with rsqrt in the backward the two LRN layers cost a whole-net step ~7 % (measured).
  """
  assert LRN_BETA == 0.75
  q = jnp.sqrt(scale)
  return q * jnp.sqrt(q)


def _lrn_fwd(x):
  scale = LRN_K + (LRN_ALPHA / LRN_SIZE) * _lrn_window_sum(x * x)
  return x / _lrn_pow(scale), (x, scale)


def _lrn_bwd(residuals, ct):
  # y_c = x_c s_c^-b with s_c = k + a/n sum_{j in win(c)} x_j^2, so
  # dy_c/dx_j = [c = j] s_c^-b - (2ab/n) x_c x_j s_c^(-b-1) for j in win(c); the window is
  # symmetric, so the sum over c is again a window sum. Closed form: ~3x faster than autodiff.
  x, scale = residuals
  pow_b = _lrn_pow(scale)  # s^b
  cross = _lrn_window_sum(ct * x / (pow_b * scale))
  return (ct / pow_b - (2 * LRN_ALPHA * LRN_BETA / LRN_SIZE) * x * cross,)


@jax.custom_vjp
def lrn(x):
  """Caffe ACROSS_CHANNELS LRN on NHWC `x`: x * (k + alpha/size * sum_{c-2..c+2} x^2)^-beta.

  The gradient is the closed-form derivative (`_lrn_bwd`), equal to jax.grad of the forward
  within float rounding.
  """
  return _lrn_fwd(x)[0]


lrn.defvjp(_lrn_fwd, _lrn_bwd)


def _plain_conv2d(x, kernel, s: int, p: int, precision):
  return jax.lax.conv_general_dilated(x, kernel, (s, s), ((p, p), (p, p)), dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                      precision=precision)


def _plain_conv(x, kernel, s: int, p: int, precision):
  """Caffe convolution; a 1x1, stride-1, unpadded one as one matmul over pixels (the same
  numbers, about twice as fast as XLA's CPU convolution for the inception modules' 1x1 layers)."""
  if kernel.shape[:2] == (1, 1) and s == 1 and p == 0:
    return jnp.dot(x, kernel[0, 0], precision=precision)
  return _plain_conv2d(x, kernel, s, p, precision)


@functools.lru_cache(maxsize=None)
def _polyphase_taps(k: int, s: int, p: int) -> tuple[np.ndarray, int, int]:
  """Kernel rows of the input gradient of a stride-`s` conv, split by output phase.

  Along one axis, input pixel y = s*a + r gets g[y] = sum_d ct[a - d] K[s*d + r + p]: for each
  phase r a stride-1 correlation of the cotangent. Returns (rows [L, s], with -1 where phase r
  has no tap e; d_lo; d_hi), tap e standing for d = d_hi - e.
  """
  ds = [d for r in range(s) for d in range(-k - p, k + p + 1) if 0 <= s * d + r + p < k]
  d_lo, d_hi = min(ds), max(ds)
  rows = np.array([[s * (d_hi - e) + r + p for r in range(s)] for e in range(d_hi - d_lo + 1)])
  return np.where((rows >= 0) & (rows < k), rows, -1), d_lo, d_hi


def _conv_input_grad(ct, kernel, x_shape, s: int, p: int, precision):
  """The input gradient of `_plain_conv` for the output cotangent `ct`, always as a convolution
  (or a matmul) of `ct` with a rearranged HWIO kernel.

  Autodiff's versions are slow on XLA's CPU runtime: its transpose of a stride-1 conv keeps the
  kernel OIHW-reversed ("01oi"), which the runtime does not hand to its fast convolution library
  inside a scan (2-4x slower per layer; a whole loop step at 224 px took 400 ms instead of 200).
  The library wants the kernel laid out HWIO: the same correlation written with "HWOI" dimension
  numbers is as slow as autodiff's, hence the explicit swapaxes. Autodiff's transpose of the
  stride-2 conv1 convolves the zero-dilated cotangent (3-5x slower on 3 channels). Here: 1x1, a
  matmul with the transposed kernel; stride 1, a correlation with the flipped HWIO kernel;
  stride s > 1, one stride-1 correlation with the polyphase-rearranged kernel, then a
  depth-to-space. Equal to autodiff's gradient up to float summation order.
  """
  k, c_in = kernel.shape[0], kernel.shape[2]
  kernel = kernel.astype(ct.dtype)
  if k == 1 and s == 1 and p == 0:
    return jnp.dot(ct, kernel[0, 0].T, precision=precision)
  if s == 1:
    flipped = jnp.swapaxes(kernel[::-1, ::-1], 2, 3)
    q = k - 1 - p
    return jax.lax.conv_general_dilated(ct, flipped, (1, 1), ((q, q), (q, q)),
                                        dimension_numbers=("NHWC", "HWIO", "NHWC"), precision=precision)
  rows, d_lo, d_hi = _polyphase_taps(k, s, p)
  taps = len(rows)
  ok = rows >= 0
  safe = np.where(ok, rows, 0)
  # pk[ey, ex, c_out, (ry, rx, c_in)] = K[rows[ey, ry], rows[ex, rx], c_in, c_out], 0 where none.
  pk = kernel[safe[:, None, :, None], safe[None, :, None, :]]  # [L, L, s, s, c_in, c_out]
  pk = jnp.where((ok[:, None, :, None] & ok[None, :, None, :])[..., None, None], pk, 0)
  pk = pk.transpose(0, 1, 5, 2, 3, 4).reshape(taps, taps, kernel.shape[3], s * s * c_in)
  (n, h, w), (oh, ow) = x_shape[:3], ct.shape[1:3]
  ah, aw = -(-h // s), -(-w // s)  # phase-grid size
  pads = ((d_hi, ah - oh - d_lo), (d_hi, aw - ow - d_lo))
  g = jax.lax.conv_general_dilated(ct, pk, (1, 1), pads, dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                   precision=precision)
  return g.reshape(n, ah, aw, s, s, c_in).transpose(0, 1, 3, 2, 4, 5).reshape(n, ah * s, aw * s, c_in)[:, :h, :w]


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4))
def conv2d(x, kernel, s: int, p: int, precision=None):
  """Caffe convolution (cross-correlation, zero padding `p`, stride `s`) of NHWC `x` with an HWIO
  `kernel`, with the fast input gradient of `_conv_input_grad`."""
  return _plain_conv(x, kernel, s, p, precision)


def _conv2d_fwd(x, kernel, s, p, precision):
  return _plain_conv(x, kernel, s, p, precision), (x, kernel)


def _conv2d_bwd(s, p, precision, residuals, ct):
  x, kernel = residuals
  # The kernel's gradient as autodiff gives it (XLA drops it when only the input's is used).
  g_kernel = jax.vjp(lambda w_: _plain_conv(x, w_, s, p, precision), kernel)[1](ct)[0]
  return _conv_input_grad(ct, kernel, x.shape, s, p, precision).astype(x.dtype), g_kernel


conv2d.defvjp(_conv2d_fwd, _conv2d_bwd)


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5))
def conv_relu(x, kernel, bias, s: int, p: int, precision=None):
  """relu(conv2d(x, kernel) + bias): a Caffe conv layer with its in-place ReLU.

  One custom VJP for the three, so that the backward keeps only the layer's input and its
  post-ReLU output (both live anyway as blobs) instead of also the pre-ReLU values, and routes
  the cotangent through the ReLU (zero where the output is 0, as jax.grad of relu at 0) and then
  `_conv_input_grad`.
  """
  return jax.nn.relu(_plain_conv(x, kernel, s, p, precision) + bias)


def _conv_relu_fwd(x, kernel, bias, s, p, precision):
  out = jax.nn.relu(_plain_conv(x, kernel, s, p, precision) + bias)
  return out, (x, kernel, out)


def _conv_relu_bwd(s, p, precision, residuals, ct):
  x, kernel, out = residuals
  ct = jnp.where(out > 0, ct, jnp.zeros((), ct.dtype))
  g_x, g_kernel = _conv2d_bwd(s, p, precision, (x, kernel), ct)
  return g_x, g_kernel, jnp.sum(ct, axis=(0, 1, 2))


conv_relu.defvjp(_conv_relu_fwd, _conv_relu_bwd)


def _reflect_pad(x, lo_hi: tuple[tuple[int, int], tuple[int, int]]):
  """Mirror-pads NHWC `x` by (low, high) rows and columns; a negative amount crops."""
  (hl, hh), (wl, wh) = lo_hi
  x = jnp.pad(x, ((0, 0), (max(hl, 0), max(hh, 0)), (max(wl, 0), max(wh, 0)), (0, 0)), mode="reflect")
  h, w = x.shape[1:3]
  return x[:, max(-hl, 0):h - max(-hh, 0), max(-wl, 0):w - max(-wh, 0)]


def _reflect_pool(x, k: int, s: int, p: int, kind: str):
  """Max / average pooling over Caffe's ceil-mode grid with every window filled by mirroring."""
  x = _reflect_pad(x, (_pool_pads(x.shape[1], k, s, p), _pool_pads(x.shape[2], k, s, p)))
  if kind == "maxpool":
    return _max_along(_max_along(x, 1, k, s), 2, k, s)
  zero = np.array(0, x.dtype)
  return jax.lax.reduce_window(x, zero, jax.lax.add, (1, k, k, 1), (1, s, s, 1), "VALID") / (k * k)


# ----------------------------------------------------------------------------- model


class CaffeConv(nn.Module):
  """Caffe convolution: cross-correlation, symmetric zero padding; params "kernel" HWIO, "bias".

  With relu=True, the layer's in-place ReLU too (`conv_relu`, one custom VJP for both). A 1x1,
  stride-1, unpadded conv is computed as one matmul over pixels (see `_plain_conv`).
  """

  features: int
  k: int
  s: int = 1
  p: int = 0
  dtype: jnp.dtype = jnp.float32
  precision: jax.lax.Precision | str | None = None
  relu: bool = False

  @nn.compact
  def __call__(self, x):
    kernel = self.param("kernel", nn.initializers.lecun_normal(), (self.k, self.k, x.shape[-1], self.features))
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,))
    kernel, bias, x = kernel.astype(self.dtype), bias.astype(self.dtype), x.astype(self.dtype)
    if self.relu:
      return conv_relu(x, kernel, bias, self.s, self.p, self.precision)
    return conv2d(x, kernel, self.s, self.p, self.precision) + bias


class GoogLeNet(nn.Module):
  """The BVLC GoogLeNet deploy net.

  Takes Caffe-preprocessed input (see `rfspec.models.preprocess`), NHWC float [N, H, W, 3], and
  returns {tap: blob} for the requested taps, computing only the layers those taps depend on.
  Spatial blobs are NHWC [N, h, w, C]; "loss3/classifier" and "prob" are [N, 1000].

  Attributes:
    dtype: compute dtype (e.g. jnp.bfloat16 on accelerators); params stay float32.
    precision: lax precision for convs and the classifier. HIGHEST keeps float32 exact on GPUs
      and TPUs, whose default rounds through bf16/tf32.
    pad_mode: "zero" (Caffe's) or "reflect" (the padding ablation; see `PAD_MODES`).
  """

  dtype: jnp.dtype = jnp.float32
  precision: jax.lax.Precision | str | None = jax.lax.Precision.HIGHEST
  pad_mode: str = "zero"

  @nn.compact
  def __call__(self, x, taps: Sequence[str] = TAPS):
    taps = normalize_taps(taps)
    needed = ancestors(taps)
    blobs = {INPUT: x.astype(self.dtype)}
    for layer in LAYERS:
      if layer.name in needed:
        blobs[layer.name] = self._apply(layer, [blobs[b] for b in layer.bottoms])
    return {tap: blobs[tap] for tap in taps}

  def _apply(self, layer: Layer, inputs):
    x = inputs[0]
    if self.pad_mode == "reflect" and layer.kind in ("conv", "maxpool", "avepool"):
      if layer.kind != "conv":
        return _reflect_pool(x, layer.k, layer.s, layer.p, layer.kind)
      x = _reflect_pad(x, ((layer.p, layer.p), (layer.p, layer.p)))
      conv = CaffeConv(layer.channels, layer.k, layer.s, 0, dtype=self.dtype, precision=self.precision,
                       relu=True, name=layer.name)
      return conv(x)
    if layer.kind == "conv":
      conv = CaffeConv(layer.channels, layer.k, layer.s, layer.p, dtype=self.dtype, precision=self.precision,
                       relu=True, name=layer.name)
      return conv(x)
    if layer.kind == "maxpool":
      return max_pool(x, layer.k, layer.s, layer.p)
    if layer.kind == "avepool":
      return ave_pool(x, layer.k, layer.s, layer.p)
    if layer.kind == "lrn":
      return lrn(x)
    if layer.kind == "concat":
      return jnp.concatenate(inputs, axis=-1)
    if layer.kind == "fc":
      if x.shape[1:3] != (1, 1):
        raise ValueError(f"{layer.name} needs a 1x1 pool5 (inputs of {CLASSIFY_MIN}-{CLASSIFY_MAX} px), "
                         f"got pool5 of {x.shape[1]}x{x.shape[2]}.")
      dense = nn.Dense(layer.channels, dtype=self.dtype, precision=self.precision, name=layer.name)
      return dense(x.reshape(x.shape[0], -1))
    if layer.kind == "softmax":
      return jax.nn.softmax(x.astype(jnp.float32), axis=-1).astype(x.dtype)
    raise AssertionError(f"unhandled layer kind {layer.kind!r}")


def num_params() -> int:
  """Parameter count of the deploy net, from `param_shapes`."""
  return sum(math.prod(s) for p in param_shapes().values() for s in p.values())


def default_grad_parts(devices=None) -> int:
  """How many independent pieces the gradient of `forward` (and the engine's step) cuts a batch
  into on `devices` (default: the first local device): 2 on a lone CPU device, else 1.

  XLA's CPU runtime runs independent operations side by side: two half-batch backward passes
  keep both cores busy through the many small memory-bound operations (ReLU gates, pooling and
  LRN gradients) that one batch-wide pass runs one after another. On a GPU or TPU a smaller batch
  only leaves the chip idler; several CPU devices already run concurrently.
  """
  devices = list(jax.local_devices()[:1] if devices is None else devices)
  return 2 if len(devices) == 1 and devices[0].platform == "cpu" else 1


def _bounds(n: int, parts: int) -> list[tuple[int, int]]:
  cuts = np.linspace(0, n, max(1, min(parts, n)) + 1).round().astype(int)
  return list(zip(cuts[:-1].tolist(), cuts[1:].tolist()))


def _net(params, images, taps, dtype, precision, pad_mode):
  model = GoogLeNet(dtype=dtype, precision=precision, pad_mode=pad_mode)
  return model.apply({"params": params}, preprocess.to_caffe(images), taps)


@functools.partial(jax.custom_vjp, nondiff_argnums=(2, 3, 4, 5, 6))
def _net_cut(params, images, taps, dtype, precision, pad_mode, parts):
  """`_net`, whose gradient (w.r.t. params and images) runs on `parts` independent pieces of the
  batch. Undifferentiated, the whole batch at once (the same numbers as without the cut);
  differentiated, the forward that feeds the backward also runs in pieces, so its values may
  differ from the whole batch's by float rounding (as the engine's steps do)."""
  return _net(params, images, taps, dtype, precision, pad_mode)


def _net_cut_fwd(params, images, taps, dtype, precision, pad_mode, parts):
  outs, vjps = [], []
  for lo, hi in _bounds(images.shape[0], parts):
    out, vjp = jax.vjp(lambda p, x: _net(p, x, taps, dtype, precision, pad_mode), params, images[lo:hi])
    outs.append(out)
    vjps.append(vjp)  # a pytree of this piece's residuals
  return jax.tree.map(lambda *xs: jnp.concatenate(xs), *outs), vjps


def _net_cut_bwd(taps, dtype, precision, pad_mode, parts, vjps, ct):
  n = jax.tree.leaves(ct)[0].shape[0]
  g_params, g_images = None, []
  for vjp, (lo, hi) in zip(vjps, _bounds(n, parts)):
    gp, gx = vjp(jax.tree.map(lambda c: c[lo:hi], ct))
    g_params = gp if g_params is None else jax.tree.map(jnp.add, g_params, gp)
    g_images.append(gx)
  return g_params, jnp.concatenate(g_images)


_net_cut.defvjp(_net_cut_fwd, _net_cut_bwd)


@functools.partial(jax.jit, static_argnames=("taps", "dtype", "precision", "pad_mode", "parts"))
def _forward(params, images, taps, dtype, precision, pad_mode="zero", parts=1):
  if parts > 1 and images.shape[0] > 1:
    return _net_cut(params, images, taps, dtype, precision, pad_mode, parts)
  return _net(params, images, taps, dtype, precision, pad_mode)


def forward(params, images, taps: str | Sequence[str] = ("prob",), *, dtype=jnp.float32,
            precision=jax.lax.Precision.HIGHEST, pad_mode: str = "zero",
            grad_parts: int | None = None) -> dict[str, jax.Array]:
  """Runs GoogLeNet on RGB images and returns the requested blobs.

  Differentiable, with the engine's fast gradient: `jax.grad` (or `jax.vjp`) of any function of
  the blobs uses the model's hand-written VJPs (convolution input gradients, fused conv + ReLU,
  scatter-free max pooling, closed-form LRN) and, on a lone CPU device, runs the backward on two
  independent halves of the batch, as `rfspec.visualize_grid` runs its steps. So a researcher's
  own objective is as fast as the engine's, e.g.

    mask = rfspec.node_mask("inception_4c/output", 7, (224, 224))
    objective = lambda x: jnp.sum(rfspec.forward(params, x, taps="inception_4c/output")["inception_4c/output"] * mask)
    grads = jax.jit(jax.grad(objective))(images)     # [N, 224, 224, 3]

  Jit the gradient (as here) to compile it once. Each single call on a CPU also maps a fresh
  temporary buffer (page faults); `rfspec.engine.keep_freed_memory()`, called once before JAX's
  first computation, lets the process reuse it instead (opt-in; see its docstring).

  Args:
    params: GoogLeNet params, {caffe layer name: {"kernel", "bias"}} (see `rfspec.load_params`).
    images: float [N, H, W, 3] (or [H, W, 3]), RGB in [0, 1]. Any size large enough for the
      deepest tap; "loss3/classifier" and "prob" need 223-254 px per side.
    taps: a tap name or a sequence of names from `rfspec.TAPS`.
    dtype: compute dtype.
    precision: conv / matmul precision (HIGHEST reproduces Caffe's float32 numbers).
    pad_mode: "zero" (Caffe's) or "reflect" (every conv and pool mirrors instead; see PAD_MODES).
    grad_parts: independent pieces the batch is cut into when the call is differentiated
      (default `default_grad_parts()`: 2 on a lone CPU device, else 1; 1 turns the cut off). The values
      of an undifferentiated call never depend on it; under `jax.grad` the forward that feeds the
      backward runs in the same pieces, equal to the whole batch's up to float rounding.

  Returns:
    {tap: array}: spatial taps are NHWC [N, h, w, C] and equal Caffe's blobs (post-ReLU where
    Caffe's ReLU is in place); "loss3/classifier" and "prob" are [N, 1000]. An unbatched
    [H, W, 3] input gives unbatched outputs.

  Raises:
    UserError: an unknown tap, a shape other than [N, H, W, 3] / [H, W, 3], an empty batch, an
      input too small for a tap, integer images (e.g. uint8 0-255), values far outside [0, 1], or
      a call that cannot fit in memory (`rfspec.memory.check_forward_fits`).
  """
  taps = normalize_taps(taps)
  if not isinstance(images, (np.ndarray, jax.Array)):
    images = np.asarray(images)
  check_images(images)
  unbatched = images.ndim == 3
  check_input_hw(taps, images.shape[-3:-1])
  # Before the images are copied to the device or anything is compiled (static shapes only).
  memory.check_forward_fits(images.shape[-3:-1], 1 if unbatched else images.shape[0], taps)
  images = jnp.asarray(images)
  if unbatched:
    images = images[None]
  parts = default_grad_parts() if grad_parts is None else int(grad_parts)
  out = _forward(params, images.astype(jnp.float32), taps, dtype, precision, check_pad_mode(pad_mode), max(parts, 1))
  return {t: v[0] for t, v in out.items()} if unbatched else out

"""Objectives: Σ mask · act(tap), the tap's activations (post- or pre-ReLU), and regularisers.

`node_objective(act, mask) = Σ mask · act` has gradient `mask` with respect to the blob: the
gradient of the chosen nodes is one and of all others zero, which is exactly how the paper
(after Inceptionism / DeepDream) drives a node or a whole tiled channel.

Blobs are NHWC, [N, h, w, C], indexed (i, j) = (row, col) on the tap's grid; images are
[N, H, W, 3] RGB in [0, 1], indexed (y, x). Classifier taps are reshaped to [N, 1, 1, C] so
that every mask is [h, w, C].
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from rfspec.models import googlenet, preprocess

__all__ = ["OBJECTIVES", "l2", "l2_feedback", "node_objective", "pre_relu_conv", "tap_activation",
           "total_variation"]

OBJECTIVES = ("post_relu", "pre_relu", "l2_feedback")


def _precision(dtype):
  # HIGHEST keeps float32 exact on GPUs/TPUs; bf16 runs at the hardware's native precision.
  return jax.lax.Precision.HIGHEST if jnp.dtype(dtype) == jnp.float32 else None


def pre_relu_conv(params, layer: googlenet.Layer, x, dtype=jnp.float32, pad_mode: str = "zero"):
  """A conv layer's output before its in-place ReLU, from its bottom blob and its params.

  Args:
    params: GoogLeNet params; uses params[layer.name] {"kernel": HWIO, "bias": [C]}.
    layer: a "conv" entry of `googlenet.LAYERS` (gives k, s, p).
    x: the layer's bottom blob, NHWC [N, H', W', C_in] (post-ReLU, as Caffe stores it).
    dtype: compute dtype, as `GoogLeNet(dtype=...)`.
    pad_mode: as `GoogLeNet(pad_mode=...)`.

  Returns:
    [N, h, w, C] pre-activations; relu of this equals the model's blob.
  """
  p = params[layer.name]
  pad = layer.p
  if pad_mode == "reflect" and pad:
    x = jnp.pad(x, ((0, 0), (pad, pad), (pad, pad), (0, 0)), mode="reflect")
    pad = 0
  # The model's conv (its fast input gradient included), so pre- and post-ReLU steps cost the same.
  y = googlenet.conv2d(x.astype(dtype), jnp.asarray(p["kernel"]).astype(dtype), layer.s, pad, _precision(dtype))
  return y + jnp.asarray(p["bias"]).astype(dtype)


def tap_activation(params, images, tap: str, *, pre_relu: bool = False, dtype=jnp.float32,
                   mean_bgr=preprocess.MEAN_BGR, pad_mode: str = "zero"):
  """Runs GoogLeNet up to `tap` only and returns its activations.

  Args:
    params: GoogLeNet params (see `rfspec.load_params`).
    images: float32 [N, H, W, 3] RGB in [0, 1].
    tap: a name from `rfspec.TAPS`.
    pre_relu: for conv taps, the values before the in-place ReLU (they keep a gradient where
      the node is off); for concat taps ("inception_*/output"), each branch's pre-ReLU values.
      Pooling and LRN taps have no ReLU of their own, so pre = post there.
    dtype: compute dtype of the net (jnp.float32 or jnp.bfloat16).
    mean_bgr: the mean subtracted to make Caffe's input (the deploy net's by default).
    pad_mode: "zero" (Caffe's) or "reflect" (see `googlenet.PAD_MODES`).

  Returns:
    [N, h, w, C] in `dtype`: the blob at (i, j) = (row, col) of the tap's grid; classifier
    taps give [N, 1, 1, C].
  """
  googlenet.check_tap(tap)  # a user error before anything is traced
  mean = tuple(float(v) for v in np.asarray(mean_bgr, np.float64).reshape(-1))
  return _tap_activation(params, images, tap=tap, pre_relu=bool(pre_relu), dtype=dtype, mean_bgr=mean,
                         pad_mode=pad_mode)


# One compiled program per (tap, options, shapes): called op by op, the forward compiled each of its
# dozens of ops at each new shape (an eager 4c/5x5 call at 224 px: 3.7 s, jitted: 0.9 s). The same
# values bit for bit (checked for conv1 to 4c, pre- and post-ReLU); inside a caller's trace it inlines.
@functools.partial(jax.jit, static_argnames=("tap", "pre_relu", "dtype", "mean_bgr", "pad_mode"))
def _tap_activation(params, images, *, tap: str, pre_relu: bool, dtype, mean_bgr: tuple, pad_mode: str):
  layer = googlenet.LAYER_BY_NAME[tap]
  model = googlenet.GoogLeNet(dtype=dtype, precision=_precision(dtype), pad_mode=pad_mode)
  x = preprocess.to_caffe(images, mean_bgr)
  if pre_relu and layer.kind in ("conv", "concat"):
    convs = [layer] if layer.kind == "conv" else [googlenet.LAYER_BY_NAME[b] for b in layer.bottoms]
    bottoms = tuple(dict.fromkeys(c.bottoms[0] for c in convs if c.bottoms[0] != googlenet.INPUT))
    blobs = model.apply({"params": params}, x, taps=bottoms) if bottoms else {}
    blobs[googlenet.INPUT] = x.astype(dtype)
    act = jnp.concatenate([pre_relu_conv(params, c, blobs[c.bottoms[0]], dtype, pad_mode) for c in convs], -1)
  else:
    act = model.apply({"params": params}, x, taps=(tap,))[tap]
  if act.ndim == 2:
    act = act[:, None, None, :]
  return act


def node_objective(act, mask):
  """Σ mask · act per image, in float32.

  Args:
    act: [N, h, w, C] (or [h, w, C]) activations at (i, j) = (row, col) of the tap's grid.
    mask: [h, w, C] node mask (see `rfspec.node_mask`), broadcast over N.

  Returns:
    float32 [N] (or a scalar for unbatched `act`).
  """
  prod = act.astype(jnp.float32) * jnp.asarray(mask, jnp.float32)
  return jnp.sum(prod, axis=(-3, -2, -1))


def l2_feedback(act, mask):
  """½ Σ mask · act² per image, in float32: Zipser (2015)'s objective.

  Its gradient with respect to the blob is `mask · act`, the node's own activation fed back as
  its gradient (the script's `dst.diff = dst.data * mask`). With `act` post-ReLU, a node that is
  0 has zero gradient. Shapes as `node_objective`.
  """
  a = act.astype(jnp.float32)
  return 0.5 * jnp.sum(jnp.asarray(mask, jnp.float32) * a * a, axis=(-3, -2, -1))


def l2(image, centre: float = 0.5):
  """Mean squared distance of an image [..., H, W, 3] from grey `centre`; a penalty."""
  return jnp.mean(jnp.square(image - centre), axis=(-3, -2, -1))


def total_variation(image):
  """Mean absolute difference between (y, x)-neighbouring pixels of [..., H, W, 3]; a penalty."""
  dy = jnp.abs(image[..., 1:, :, :] - image[..., :-1, :, :])
  dx = jnp.abs(image[..., :, 1:, :] - image[..., :, :-1, :])
  return jnp.mean(dy, axis=(-3, -2, -1)) + jnp.mean(dx, axis=(-3, -2, -1))

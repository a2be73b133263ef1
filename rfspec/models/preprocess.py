"""RGB images in [0, 1] <-> the BVLC GoogLeNet's Caffe input.

This is the only module that knows Caffe's input convention: BGR channel order, values 0-255,
minus the per-channel ImageNet mean. Everything else in rfspec speaks RGB in [0, 1].
"""

import jax.numpy as jnp
import numpy as np

# Per-channel mean the BVLC GoogLeNet was trained with, in Caffe's BGR order.
MEAN_BGR = np.array([104.0, 117.0, 123.0], np.float32)


def to_caffe(rgb, mean_bgr=MEAN_BGR):
  """Maps RGB images in [0, 1] to Caffe input.

  Args:
    rgb: float array [..., H, W, 3], RGB in [0, 1].
    mean_bgr: the per-channel mean to subtract, BGR (default: the deploy net's `MEAN_BGR`).

  Returns:
    float array [..., H, W, 3]: BGR, 0-255 scale, minus `mean_bgr`.
  """
  return rgb[..., ::-1] * 255.0 - jnp.asarray(mean_bgr, rgb.dtype)


def from_caffe(bgr, mean_bgr=MEAN_BGR):
  """Inverse of `to_caffe`: Caffe input [..., H, W, 3] -> RGB [..., H, W, 3] (unclipped)."""
  return (bgr + jnp.asarray(mean_bgr, bgr.dtype))[..., ::-1] / 255.0

"""Named visualisation recipes, as data: the one place their settings live.

A recipe is a dict of `rfspec.VisConfig` field values. `VisConfig(tap=..., recipe=NAME, **fields)`
(or `VisConfig.from_recipe(NAME, tap=..., **fields)`) takes every field not given from
`RECIPES[NAME]`; fields given explicitly win. So a config records its recipe by name and no
caller has to pop and rebuild configs.

- `zipser2015`: the paper's own procedure, from its author's 2015 scripts
  (`../shared/reference/zipser2015/PROCEDURE.md`). In Caffe's data space (BGR, 0-255, minus
  the script's mean (104, 116, 122)) one step is: roll by (oy, ox) in {-1, 0, 1}^2; forward;
  seed the tap's gradient with its own activation times the node mask (so the input gradient is
  that of 1/2 Σ mask · relu(z)^2, and a node that is 0 gets no gradient and stays 0); add
  1.5 / mean(|g| where g != 0) · g; multiply the image by 0.995; desaturate each channel 1 %
  towards the pixel's channel mean; roll back; clip to [-mean, 255 - mean]. The start image is
  one plane of 225 · U[0, 1) copied to all three channels and set as the data blob, so the first
  forward sees it unclipped (brighter than the mean colour). 2,000 steps.
  rfspec holds the image in RGB [0, 1] units, `rgb = (data + mean)[..., ::-1] / 255`, and feeds
  the net `data` with the same mean (`caffe_mean`), so the net sees the script's data blob; every
  step above is linear in `data`, so it maps to the same step on `rgb` (step size 1.5 / 255,
  decay and desaturation about the mean colour, clip to [0, 1]). The roll commutes with every
  per-pixel operation and with the mean |g|, so rolling only the net's view (and so the
  gradient) is the same step. tests/recipes_test.py checks one engine step against a literal
  numpy transcription of the procedure in data space.
- `deepdream`: the Inceptionism notebook's step on a grey random-dot start (pixels, SGD with
  the step normalised by mean |g|, random jitter, clip to [0, 1]), with no decay.
- `lucid`: Lucid's recipe: Fourier (1/f) parameterisation with decorrelated colour and a
  sigmoid, Adam at 0.05, pad 12 / jitter 8 / scale 0.9-1.1 / rotate +-10 degrees each step.
"""

from __future__ import annotations

import types
from typing import Any, Mapping

__all__ = ["DEFAULT_RECIPE", "RECIPES", "ZIPSER2015_MEAN_BGR"]

# The mean of the paper's script (caffe.Classifier(mean=...)), BGR; not the deploy net's
# 104/117/123.
ZIPSER2015_MEAN_BGR = (104.0, 116.0, 122.0)

# The deploy preprocessing of BVLC GoogLeNet (BGR), which every other recipe uses.
_DEPLOY_MEAN_BGR = (104.0, 117.0, 123.0)

_DEEPDREAM: dict[str, Any] = dict(
    steps=256, param="pixel", init_scale=0.1, decorrelate=True, optimizer="sgd",
    # DeepDream's step of 1.5 on Caffe's 0-255 scale.
    learning_rate=1.5 / 255.0, normalize_grad=True, pad=0, jitter=32, jitter_wrap=False, scales=(),
    rotate_degrees=0.0, objective="post_relu", decay=0.0, desaturate=0.0, clip=(0.0, 1.0),
    caffe_mean=_DEPLOY_MEAN_BGR)

RECIPES: Mapping[str, Mapping[str, Any]] = types.MappingProxyType({
    "zipser2015": types.MappingProxyType(dict(
        _DEEPDREAM, steps=2000, param="dots", init_scale=225.0, learning_rate=1.5 / 255.0,
        normalize_grad=True, jitter=1, jitter_wrap=True, objective="l2_feedback", decay=0.005,
        desaturate=0.01, clip=(0.0, 1.0), caffe_mean=ZIPSER2015_MEAN_BGR)),
    "deepdream": types.MappingProxyType(_DEEPDREAM),
    "lucid": types.MappingProxyType(dict(
        _DEEPDREAM, param="fourier", init_scale=0.01, decorrelate=True, optimizer="adam",
        learning_rate=0.05, normalize_grad=False, pad=12, jitter=8,
        scales=tuple(1 + (i - 5) / 50 for i in range(11)), rotate_degrees=10.0, clip=None)),
})

DEFAULT_RECIPE = "deepdream"

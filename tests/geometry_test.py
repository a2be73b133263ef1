"""Tests for rfspec.geometry: analytic RF geometry, its exactness, effective RFs, census.

Positions are (i, j) = (row, col) on a tap's grid; pixels are (y, x) = (row, col).
"""

from __future__ import annotations

import functools

import pytest
from absl.testing import absltest, parameterized
import jax
import jax.numpy as jnp
import numpy as np

import rfspec
from rfspec.models import googlenet
from rfspec.report import census_markdown
from rfspec.geometry import (ReceptiveField, _erf_maps, branch_tap, census, effective_rf,
                                    erf_stats, geometry, nearest_node, probe_positions, receptive_field, spatial_taps,
                                    trunk_taps)
from tests.conftest import real_params

# ----------------------------------------------------------------------------- hand-derived table
#
# Derived by hand with the rule (size, jump, start) -> (size + (k-1)*jump, jump*s, start - p*jump),
# starting from one input pixel (1, 1, 0); offset = start + (size-1)/2. LRN and 1x1 convs change
# nothing; a concat takes the union of its branches, which in GoogLeNet is always the 5x5 branch
# (every branch is centred alike, and 5x5 adds the most).
#
#   conv1/7x7_s2  k7 s2 p3:  size 1+6*1 = 7,     jump 1*2 = 2,   start 0-3*1 = -3,   offset -3+3 = 0
#   pool1/3x3_s2  k3 s2 p0:  size 7+2*2 = 11,    jump 4,         start -3,           offset -3+5 = 2
#   conv2/3x3     k3 s1 p1:  size 11+2*4 = 19,   jump 4,         start -3-4 = -7,    offset -7+9 = 2
#   pool2/3x3_s2  k3 s2 p0:  size 19+2*4 = 27,   jump 8,         start -7,           offset -7+13 = 6
#   inception_3a  branches from (27, 8, -7): 1x1 (27, -7); 3x3 (27+2*8 = 43, -7-8 = -15);
#                 5x5 (27+4*8 = 59, -7-2*8 = -23); pool 3x3 p1 (43, -15), pool_proj 1x1 (43, -15)
#                 union: start -23, end max(20, 28, 36, 28) = 36 -> size 59, offset -23+29 = 6
#   inception_3b  5x5 branch: size 59+4*8 = 91,    start -23-16 = -39,   offset -39+45 = 6
#   pool3/3x3_s2  k3 s2 p0:  size 91+2*8 = 107,  jump 16,        start -39,          offset -39+53 = 14
#   inception_4a  5x5: size 107+4*16 = 171,  start -39-32 = -71,    offset -71+85 = 14
#   inception_4b  5x5: size 171+64 = 235,    start -103,            offset -103+117 = 14
#   inception_4c  5x5: size 235+64 = 299,    start -135,            offset -135+149 = 14
#   inception_4d  5x5: size 363, start -167; inception_4e: size 427, start -199, offset -199+213 = 14
#   pool4/3x3_s2  k3 s2 p0:  size 427+2*16 = 459, jump 32,       start -199,         offset -199+229 = 30
#   inception_5a  5x5: size 459+4*32 = 587,  start -199-64 = -263,  offset -263+293 = 30
#   inception_5b  5x5: size 587+128 = 715,   start -327,            offset -327+357 = 30
#   pool5/7x7_s1  k7 s1 p0:  size 715+6*32 = 907, jump 32,       start -327,         offset -327+453 = 126
#
# Grids at 224 (Caffe: conv floor, pool ceil): 224 -conv1-> 112 -pool1-> 56 -pool2-> 28 -pool3-> 14
# -pool4-> 7 -pool5 (7x7, s1)-> 1.
HAND_224 = (
    # tap,                    size, stride, offset, grid side, start
    ("conv1/7x7_s2",           7,    2,   0.0,  112,   -3),
    ("pool1/3x3_s2",           11,   4,   2.0,  56,    -3),
    ("conv2/3x3",              19,   4,   2.0,  56,    -7),
    ("pool2/3x3_s2",           27,   8,   6.0,  28,    -7),
    ("inception_3a/1x1",       27,   8,   6.0,  28,    -7),
    ("inception_3a/3x3",       43,   8,   6.0,  28,    -15),
    ("inception_3a/5x5",       59,   8,   6.0,  28,    -23),
    ("inception_3a/pool",      43,   8,   6.0,  28,    -15),
    ("inception_3a/output",    59,   8,   6.0,  28,    -23),
    ("inception_3b/output",    91,   8,   6.0,  28,    -39),
    ("pool3/3x3_s2",           107,  16,  14.0, 14,    -39),
    ("inception_4a/output",    171,  16,  14.0, 14,    -71),
    ("inception_4c/output",    299,  16,  14.0, 14,    -135),
    ("inception_4e/output",    427,  16,  14.0, 14,    -199),
    ("pool4/3x3_s2",           459,  32,  30.0, 7,     -199),
    ("inception_5a/output",    587,  32,  30.0, 7,     -263),
    ("inception_5b/output",    715,  32,  30.0, 7,     -327),
    ("pool5/7x7_s1",           907,  32,  126.0, 1,    -327),
)


class GeometryTest(parameterized.TestCase):

  @parameterized.parameters(*HAND_224)
  def test_matches_hand_table_at_224(self, tap, size, stride, offset, side, start):
    rf = receptive_field(tap, (224, 224))
    self.assertEqual((rf.size, rf.stride, rf.offset, rf.grid), (size, stride, offset, (side, side)))
    self.assertEqual(rf.box(0, 0), (start, start, start + size, start + size))
    self.assertEqual(rf.centre(0, 0), (offset, offset))

  def test_acceptance_values(self):
    got = {t: (receptive_field(t, (224, 224)).size, receptive_field(t, (224, 224)).stride)
           for t in ("conv1/7x7_s2", "inception_3a/output", "inception_4c/output", "inception_5b/output",
                     "pool5/7x7_s1")}
    self.assertEqual(got, {"conv1/7x7_s2": (7, 2), "inception_3a/output": (59, 8), "inception_4c/output": (299, 16),
                           "inception_5b/output": (715, 32), "pool5/7x7_s1": (907, 32)})

  def test_classifier_taps_see_pool5(self):
    rf = receptive_field("prob", (224, 224))
    self.assertEqual((rf.size, rf.stride, rf.offset, rf.grid), (907, 32, 126.0, (1, 1)))

  def test_geometry_is_size_independent_grid_is_not(self):
    a, b = receptive_field("inception_4c/output", (224, 224)), receptive_field("inception_4c/output", (299, 448))
    self.assertEqual((a.size, a.stride, a.offset), (b.size, b.stride, b.offset))
    self.assertEqual(b.grid, googlenet.blob_hw("inception_4c/output", (299, 448)))
    self.assertEqual(b.grid, (18, 28))  # 299 -> 150 -> 75 -> 37 -> 18; 448 -> 224 -> 112 -> 56 -> 28
    self.assertEqual(geometry("inception_4c/output"), (299, 16, -135))

  def test_int_size_means_square(self):
    self.assertEqual(receptive_field("conv2/3x3", 100), receptive_field("conv2/3x3", (100, 100)))

  def test_frozen_and_hashable(self):
    rf = receptive_field("conv2/3x3", (64, 80))
    self.assertIsInstance(rf, ReceptiveField)
    self.assertEqual(len({rf, receptive_field("conv2/3x3", (64, 80))}), 1)
    with self.assertRaises(AttributeError):
      rf.size = 3

  def test_branch_tap(self):
    # 4c: 1x1 (128 ch) | 3x3 (256) | 5x5 (64) | pool_proj (64).
    self.assertEqual(branch_tap("inception_4c/output", 0), "inception_4c/1x1")
    self.assertEqual(branch_tap("inception_4c/output", 128), "inception_4c/3x3")
    self.assertEqual(branch_tap("inception_4c/output", 128 + 256), "inception_4c/5x5")
    self.assertEqual(branch_tap("inception_4c/output", 511), "inception_4c/pool_proj")
    self.assertEqual(branch_tap("conv2/3x3", 5), "conv2/3x3")
    # A 1x1-branch channel sees only what 4b/output sees; a 5x5-branch channel the full union.
    self.assertEqual(receptive_field(branch_tap("inception_4c/output", 0), 224).size, 235)
    self.assertEqual(receptive_field(branch_tap("inception_4c/output", 400), 224).size, 299)
    with self.assertRaisesRegex(ValueError, "512 channels"):
      branch_tap("inception_4c/output", 512)

  @parameterized.parameters("conv1/7x7_s2", "inception_3a/5x5", "inception_4c/output", "pool5/7x7_s1")
  def test_array_forms_match_scalar_methods(self, tap):
    rf = receptive_field(tap, (230, 261))  # non-square, odd: catches row/col mix-ups
    h, w = rf.grid
    boxes, fr, cen, full = rf.boxes(), rf.inside_fractions(), rf.centres(), rf.fully_inside()
    self.assertEqual((boxes.shape, fr.shape, cen.shape, full.shape), ((h, w, 4), (h, w), (h, w, 2), (h, w)))
    for i, j in {(0, 0), (h - 1, w - 1), (h // 2, 0), (0, w - 1), (h // 3, w // 2)}:
      self.assertEqual(tuple(boxes[i, j]), rf.box(i, j))
      self.assertAlmostEqual(fr[i, j], rf.inside_fraction(i, j))
      self.assertEqual(tuple(cen[i, j]), rf.centre(i, j))
      top, left, bottom, right = rf.box(i, j)
      self.assertEqual(rf.centre(i, j), ((top + bottom - 1) / 2, (left + right - 1) / 2))
      self.assertEqual(bool(full[i, j]), top >= 0 and left >= 0 and bottom <= 230 and right <= 261)

  def test_inside_fraction_by_hand(self):
    rf = receptive_field("inception_4c/output", (224, 224))
    # Node (0, 0): box [-135, 164) on both axes, 164 of 299 rows and columns inside.
    self.assertAlmostEqual(rf.inside_fraction(0, 0), (164 / 299) ** 2)
    # Node (7, 7): box [-135 + 112, 164 + 112) = [-23, 276) covers all 224 rows and columns.
    self.assertAlmostEqual(rf.inside_fraction(7, 7), (224 / 299) ** 2)
    # Node (7, 0): rows like (7, 7), columns like (0, 0).
    self.assertAlmostEqual(rf.inside_fraction(7, 0), (224 / 299) * (164 / 299))
    # conv1 node (5, 1) is inside: rows [7, 14); columns [-1, 6) has 6 of 7 inside.
    conv1 = receptive_field("conv1/7x7_s2", (224, 224))
    self.assertEqual(conv1.inside_fraction(5, 1), 6 / 7)
    self.assertEqual(conv1.inside_fraction(5, 2), 1.0)

  def test_nearest_node(self):
    rf = receptive_field("inception_4c/output", (224, 300))
    for i, j in [(0, 0), (3, 11), (13, 17)]:
      self.assertEqual(nearest_node("inception_4c/output", (224, 300), rf.centre(i, j)), (i, j))
    self.assertEqual(nearest_node("inception_4c/output", (224, 300), (14 + 16 * 3 + 7.9, 14 + 16 * 5 - 7.9)), (3, 5))
    self.assertEqual(nearest_node("inception_4c/output", (224, 300), (14 + 8, 14 + 8)), (1, 1))  # tie -> larger
    self.assertEqual(nearest_node("inception_4c/output", (224, 300), (-500, 10_000)), (0, rf.grid[1] - 1))


class ExactnessByIntervalsTest(parameterized.TestCase):
  """box ∩ image equals an exact, node-by-node propagation of Caffe's window semantics.

  This reference does not use the (size, jump, start) recurrence: it tracks, for every existing
  node of every blob, the interval of input pixels it reads, using only nodes that exist (conv
  zero padding and the pooling windows Caffe clips to the blob contribute nothing) and Caffe's
  ceil/floor output sizes. So it would catch a box that over-reaches where a padded or
  ceil-overhang neighbour does not exist, at any input size.
  """

  @staticmethod
  def _exact(n: int) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    iv = {googlenet.INPUT: (np.arange(n), np.arange(n) + 1)}
    for layer in googlenet.LAYERS:
      if layer.kind in ("fc", "softmax"):
        continue
      lo, hi = iv[layer.bottoms[0]]
      if layer.kind in ("conv", "maxpool", "avepool"):
        out = googlenet.layer_out(layer, len(lo))
        if out < 1:
          break
        first = np.clip(np.arange(out) * layer.s - layer.p, 0, len(lo))
        last = np.clip(np.arange(out) * layer.s - layer.p + layer.k, 0, len(lo))
        assert (last > first).all()
        iv[layer.name] = (lo[first], hi[last - 1])
      elif layer.kind == "concat":
        iv[layer.name] = (np.min([iv[b][0] for b in layer.bottoms], 0), np.max([iv[b][1] for b in layer.bottoms], 0))
      else:
        iv[layer.name] = (lo, hi)
    return iv

  def test_all_taps_all_sizes(self):
    checked = 0
    for n in list(range(1, 140)) + [199, 223, 224, 225, 227, 254, 299, 320, 448, 449, 511]:
      for tap, (lo, hi) in self._exact(n).items():
        if tap == googlenet.INPUT:
          continue
        boxes = receptive_field(tap, (n, 7 if n < 7 else n)).boxes()[:, 0]  # rows of the first column
        np.testing.assert_array_equal(np.clip(boxes[:, 0], 0, n), lo, err_msg=f"{tap} at {n}")
        np.testing.assert_array_equal(np.clip(boxes[:, 2], 0, n), hi, err_msg=f"{tap} at {n}")
        checked += 1
    self.assertGreater(checked, 8_000)


# ----------------------------------------------------------------------------- gradient checks


def positive_params(seed: int) -> dict:
  """Random GoogLeNet params with every weight and bias > 0 (kernels ~ U(0.5, 1.5) / fan_in).

  With positive inputs every pre-activation is positive, so every ReLU passes gradient, and the
  1/fan_in scale keeps activations O(1) through the net (no overflow, no underflow). Drawn with a
  seeded numpy Generator: eager `jax.random` would compile once per distinct kernel shape.
  """
  rng = np.random.default_rng(seed)
  params = {}
  for name, shapes in googlenet.param_shapes().items():
    fan_in = int(np.prod(shapes["kernel"][:-1]))
    params[name] = {"kernel": jnp.asarray(rng.uniform(0.5, 1.5, shapes["kernel"]) / fan_in, jnp.float32),
                    "bias": jnp.asarray(rng.uniform(0.01, 0.1, shapes["bias"]), jnp.float32)}
  return params


class AvePoolGoogLeNet(googlenet.GoogLeNet):
  """GoogLeNet with every MAX pool replaced by the AVE pool over the same (clipped) windows."""

  def _apply(self, layer, inputs):
    if layer.kind == "maxpool":
      return googlenet.ave_pool(inputs[0], layer.k, layer.s, layer.p)
    return super()._apply(layer, inputs)


@functools.partial(jax.jit, static_argnames=("model", "taps", "probes"))
def _supports(model, params, x, taps, probes):
  """bool [Q, H, W]: pixels where d(sum over channels of probe q's node)/d x != 0 for some image.

  probes: tuple of (tap, (i, j)); x: [N, H, W, 3]. One forward, backward vmapped over probes.
  """
  out, vjp = jax.vjp(lambda x: model.apply({"params": params}, x, taps=taps), x)
  cts = {t: np.zeros((len(probes),) + out[t].shape, np.float32) for t in taps}
  for q, (tap, (i, j)) in enumerate(probes):
    cts[tap][q, :, i, j, :] = 1.0
  grads = jax.vmap(lambda ct: vjp(ct)[0])(cts)  # [Q, N, H, W, 3]
  return (grads != 0).any(axis=(1, 4)), grads.min()


def _box_mask(tap: str, hw: tuple[int, int], i: int, j: int) -> np.ndarray:
  top, left, bottom, right = receptive_field(tap, hw).box(i, j)
  mask = np.zeros(hw, bool)
  mask[max(top, 0):max(min(bottom, hw[0]), 0), max(left, 0):max(min(right, hw[1]), 0)] = True
  return mask


class ExactnessByGradientTest(parameterized.TestCase):
  """The pixels that influence a node are exactly box ∩ image, shown with gradients.

  Why this is sound. "Pixel p can influence node n" is a property of the network's dependency
  graph: p reaches n through conv taps (inside the zero-padded window), pooling windows (clipped
  to the blob, as Caffe does), LRN (same position) and concats. A MAX pool's output depends on
  every element of its window (each one is the maximum for some input), so the graph of the real
  net equals the graph of the same net with every MAX pool replaced by the AVE pool over the
  same windows. In that AVE variant with positive weights, positive biases and positive inputs,
  every pre-activation is positive (every ReLU passes gradient) and every Jacobian entry along
  an edge of the graph is positive, except LRN's cross-channel terms, which are of relative size
  ~alpha*beta*x^2 ~ 1e-4 and cannot cancel the positive paths (the test also checks that no
  gradient entry is negative). So d node / d pixel is > 0 exactly on the pixels the node depends
  on, and exactly 0 elsewhere (off-graph pixels get no contribution at all): a single backward
  pass per node reveals the exact influence set. The real MAX net is then checked for the
  one-sided property on random inputs (its single-input gradients route to one winner per
  window, so they show only a subset).

  The input is 80x96 (non-square, to catch row/col mix-ups), where every checked tap's corner
  and edge boxes hang off the image. Probes: the centre, the middle of the left edge, the corner.
  """

  HW = (80, 96)
  TAPS = ("conv1/7x7_s2", "conv2/3x3", "inception_3a/5x5", "inception_3a/pool", "inception_3a/output",
          "inception_3b/output", "pool3/3x3_s2", "inception_4a/output")

  def _probes(self, taps):
    return tuple((t, p) for t in taps for p in probe_positions(t, self.HW).values())

  def test_avepool_variant_support_equals_box(self):
    params = positive_params(0)
    x = jax.random.uniform(jax.random.key(1), (1, *self.HW, 3), minval=0.5, maxval=1.5)
    probes = self._probes(self.TAPS)
    support, min_grad = _supports(AvePoolGoogLeNet(), params, x, self.TAPS, probes)
    support = np.asarray(support)
    self.assertGreaterEqual(float(min_grad), 0.0)
    for q, (tap, (i, j)) in enumerate(probes):
      expected = _box_mask(tap, self.HW, i, j)
      where = f"{tap} node {(i, j)}"
      # Inside: nothing outside box ∩ image influences the node.
      support_q = support[q]
      self.assertFalse((support_q & ~expected).any(), f"{where}: gradient outside box ∩ image")
      # Exact: every pixel on the edge of box ∩ image influences it ...
      rows, cols = np.nonzero(expected)
      top, bottom, left, right = rows.min(), rows.max(), cols.min(), cols.max()
      edge = np.concatenate([support_q[top, left:right + 1], support_q[bottom, left:right + 1],
                             support_q[top:bottom + 1, left], support_q[top:bottom + 1, right]])
      self.assertTrue(edge.all(), f"{where}: {np.sum(~edge)} edge pixels of box ∩ image have no influence")
      # ... and so does every pixel inside it.
      np.testing.assert_array_equal(support_q, expected, err_msg=where)
    # The corner probes really do hang off the image (else this would test nothing about clipping).
    self.assertLess(receptive_field("inception_3a/5x5", self.HW).inside_fraction(0, 0), 1.0)

  def test_maxpool_net_gradients_stay_inside_box(self):
    taps = ("conv2/3x3", "inception_3a/pool", "inception_3b/output")
    params = positive_params(2)
    x = jax.random.uniform(jax.random.key(3), (2, *self.HW, 3), minval=0.1, maxval=1.0)
    probes = self._probes(taps)
    support, _ = _supports(googlenet.GoogLeNet(), params, x, taps, probes)
    for q, (tap, (i, j)) in enumerate(probes):
      expected = _box_mask(tap, self.HW, i, j)
      self.assertTrue(np.asarray(support[q]).any(), f"{tap} {(i, j)}: no gradient at all")
      self.assertFalse((np.asarray(support[q]) & ~expected).any(), f"{tap} {(i, j)}: gradient outside box ∩ image")


# ----------------------------------------------------------------------------- errors


class ErrorsTest(parameterized.TestCase):

  def test_unknown_tap_suggests_closest(self):
    with self.assertRaisesRegex(ValueError, r"Unknown tap 'inception_4c/outptu'.*'inception_4c/output'"):
      receptive_field("inception_4c/outptu", (224, 224))
    with self.assertRaisesRegex(ValueError, "conv2/3x3"):
      geometry("conv2/3x4")

  @parameterized.parameters(("box", (14, 0)), ("box", (0, 14)), ("inside_fraction", (-1, 0)),
                            ("centre", (3, 99)), ("box", (1.5, 2)))
  def test_position_outside_grid(self, method, pos):
    rf = receptive_field("inception_4c/output", (224, 224))
    with self.assertRaisesRegex(ValueError, r"outside the 14x14 grid of tap 'inception_4c/output'"):
      getattr(rf, method)(*pos)

  @parameterized.parameters("inception_5b/output", "inception_4c/output", "conv2/3x3")
  def test_too_small_names_smallest_size(self, tap):
    smallest = googlenet.min_input_size(tap)
    receptive_field(tap, (smallest, smallest))  # works
    with self.assertRaisesRegex(ValueError, rf"too small.*at least {smallest} px"):
      receptive_field(tap, (smallest - 1, smallest + 50))

  def test_classifier_needs_pool5_1x1(self):
    with self.assertRaisesRegex(ValueError, "223-254"):
      receptive_field("prob", (448, 448))

  def test_bad_image_hw(self):
    with self.assertRaisesRegex(ValueError, "image_hw"):
      receptive_field("conv1/7x7_s2", (0, 10))
    with self.assertRaisesRegex(ValueError, "image_hw"):
      receptive_field("conv1/7x7_s2", "big")


# ----------------------------------------------------------------------------- census


class CensusTest(parameterized.TestCase):

  def test_census_224(self):
    rows = census([224, 299, 448])
    self.assertLen(rows, 3 * len(spatial_taps()))
    by = {(r["image_hw"][0], r["tap"]): r for r in rows}
    self.assertEqual(by[224, "inception_4c/output"]["pct_fully_inside"], 0.0)
    self.assertGreater(by[448, "inception_4c/output"]["pct_fully_inside"], 0.0)  # 299 < 448
    # conv1 at 224: node i's rows [2i-3, 2i+4) are inside iff 2 <= i <= 110: 109 of 112 per axis.
    self.assertAlmostEqual(by[224, "conv1/7x7_s2"]["pct_fully_inside"], 100 * (109 / 112) ** 2)
    r = by[224, "inception_3a/output"]
    self.assertEqual((r["rf_size"], r["stride"], r["offset"], r["grid"]), (59, 8, 6.0, [28, 28]))
    for r in rows:
      self.assertBetween(r["mean_inside_fraction"], 0.0, 1.0)
      self.assertBetween(r["pct_fully_inside"], 0.0, 100.0)
    # A whole RF inside means an inside fraction of 1, so the mean is at least the share fully inside.
    self.assertTrue(all(r["mean_inside_fraction"] >= r["pct_fully_inside"] / 100 - 1e-12 for r in rows))

  def test_census_errors(self):
    with self.assertRaisesRegex(ValueError, "at least"):
      census([64])
    with self.assertRaisesRegex(ValueError, "Did you mean"):
      census([224], taps=["inception_4c/ouput"])

  def test_markdown(self):
    md = census_markdown(census([224], taps=trunk_taps()))
    self.assertIn("| `inception_4c/output` | 299 | 16 | 14 | 14x14 | 0.0 |", md)


# ----------------------------------------------------------------------------- effective RF


class ErfStatsTest(absltest.TestCase):

  def test_point_mass(self):
    maps = np.zeros((1, 9, 11), np.float32)
    maps[0, 2, 7] = 3.0
    centroid, shift, radius = erf_stats(maps, np.array([[2.0, 3.0]]))
    np.testing.assert_allclose(centroid, [[2.0, 7.0]])
    np.testing.assert_allclose(shift, [4.0])
    np.testing.assert_allclose(radius, [0.0])

  def test_plus_shape(self):
    # Mass 1 at the centre, 1 at each of the 4 neighbours: the centre alone holds 20 %, so the
    # 95 % disc must reach the neighbours at distance 1.
    maps = np.zeros((1, 7, 7), np.float32)
    for y, x in [(3, 3), (2, 3), (4, 3), (3, 2), (3, 4)]:
      maps[0, y, x] = 1.0
    centroid, shift, radius = erf_stats(maps, np.array([[3.0, 3.0]]))
    np.testing.assert_allclose(centroid, [[3.0, 3.0]])
    np.testing.assert_allclose(shift, [0.0], atol=1e-6)
    np.testing.assert_allclose(radius, [1.0])

  def test_uniform_square(self):
    # A uniform 21x21 square: 95 % of 441 px needs the disc to cover nearly all of it, so its
    # radius lies between the half-side 10 and the half-diagonal 10*sqrt(2).
    maps = np.zeros((1, 31, 31), np.float32)
    maps[0, 5:26, 5:26] = 1.0
    _, _, radius = erf_stats(maps, np.array([[15.0, 15.0]]))
    self.assertBetween(float(radius[0]), 10.0, 10 * 2 ** 0.5)


  def test_all_zero_map_gives_nan(self):
    centroid, shift, radius = erf_stats(np.zeros((1, 5, 5), np.float32), np.array([[2.0, 2.0]]))
    self.assertTrue(np.isnan(np.asarray(centroid)).all() and np.isnan(shift[0]) and np.isnan(radius[0]))


@pytest.mark.slow
class EffectiveRFTest(parameterized.TestCase):
  HW = (96, 112)

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    cls.params = positive_params(4)

  def test_maps_stay_in_box_and_corner_centroid_moves_inward(self):
    tap = "inception_3a/output"
    probes = probe_positions(tap, self.HW)
    erf = effective_rf(self.params, tap, None, list(probes.values()), self.HW, key=jax.random.key(0), num_samples=3,
                       batch_size=2)
    self.assertEqual(erf.maps.shape, (3, *self.HW))
    self.assertEqual((erf.centroid.shape, erf.centroid_shift.shape, erf.radius95.shape, erf.centre.shape),
                     ((3, 2), (3,), (3,), (3, 2)))
    maps = np.asarray(erf.maps)
    for p, (i, j) in enumerate(probes.values()):
      self.assertFalse((maps[p] > 0)[~_box_mask(tap, self.HW, i, j)].any())
      self.assertTrue((maps[p] > 0).any())
    centre, corner = 0, 2
    rf = receptive_field(tap, self.HW)
    np.testing.assert_allclose(erf.centre[corner], rf.centre(0, 0))
    # The corner node's box is [-23, 36) on both axes: the part in the image is centred at 17.5,
    # so the ERF centroid lies below and right of the analytic centre (6, 6).
    self.assertTrue((np.asarray(erf.centroid[corner]) > np.asarray(erf.centre[corner]) + 3).all())
    self.assertGreater(float(erf.centroid_shift[corner]), 3 * float(erf.centroid_shift[centre]))
    self.assertLess(float(erf.radius95[centre]), rf.size / 2 * 2 ** 0.5)

  def test_one_compile_for_positions_and_channels(self):
    tap = "conv2/3x3"
    kw = dict(key=jax.random.key(1), num_samples=2, batch_size=2)
    first = effective_rf(self.params, tap, 3, [(0, 0), (5, 7)], (64, 64), **kw)
    before = _erf_maps._cache_size()
    second = effective_rf(self.params, tap, 17, [(10, 2), (1, 1)], (64, 64), **kw)
    self.assertEqual(_erf_maps._cache_size(), before)
    self.assertFalse(np.allclose(first.maps, second.maps))

  def test_deterministic_and_given_images(self):
    kw = dict(num_samples=2, batch_size=2)
    a = effective_rf(self.params, "conv2/3x3", 0, (4, 4), (48, 48), key=jax.random.key(5), **kw)
    b = effective_rf(self.params, "conv2/3x3", 0, (4, 4), (48, 48), key=jax.random.key(5), **kw)
    np.testing.assert_array_equal(a.maps, b.maps)
    images = jax.random.uniform(jax.random.key(5), (2, 48, 48, 3))
    c = effective_rf(self.params, "conv2/3x3", 0, [(4, 4)], images=images, batch_size=2)
    np.testing.assert_allclose(a.maps, c.maps, rtol=1e-5)
    # Three images with batch 2: the third batch is padded with a zero-weight image, the mean is not.
    e = effective_rf(self.params, "conv2/3x3", 0, [(4, 4)], images=images[:1])
    d = effective_rf(self.params, "conv2/3x3", 0, [(4, 4)], images=jnp.concatenate([images, images[:1]]),
                     batch_size=2)
    np.testing.assert_allclose(d.maps, (2 * a.maps + e.maps) / 3, rtol=1e-5)

  def test_errors(self):
    with self.assertRaisesRegex(ValueError, r"outside the 6x6 grid"):
      effective_rf(self.params, "inception_3a/output", None, [(0, 0), (6, 0)], (48, 48), key=jax.random.key(0))
    with self.assertRaisesRegex(ValueError, "256 channels"):
      effective_rf(self.params, "inception_3a/output", 256, [(0, 0)], (48, 48), key=jax.random.key(0))
    with self.assertRaisesRegex(ValueError, "key"):
      effective_rf(self.params, "conv2/3x3", 0, [(0, 0)], (48, 48))
    with self.assertRaisesRegex(ValueError, "Did you mean"):
      effective_rf(self.params, "conv2/3x33", 0, [(0, 0)], (48, 48), key=jax.random.key(0))


class RealWeightsERFTest(absltest.TestCase):
  """With the BVLC weights: a border node's ERF is cut off and pulled inward; a centre node's is not."""

  def test_border_erf_is_cut_off(self):
    params = real_params()
    tap, hw = "inception_3a/output", (96, 96)
    probes = probe_positions(tap, hw)
    erf = effective_rf(params, tap, None, list(probes.values()), hw, key=jax.random.key(0), num_samples=4,
                       batch_size=2)
    centre, corner = 0, 2
    # Corner node (0, 0): box [-23, 36), analytic centre (6, 6); only [0, 36) is in the image, so the
    # gradient mass sits below and right of the centre (measured: centroid ~(10, 11), shift ~6 px,
    # against ~1 px for the centre node).
    self.assertLess(float(erf.centroid_shift[centre]), 3.0)
    self.assertGreater(float(erf.centroid_shift[corner]), 4.5)
    self.assertGreater(float(erf.centroid_shift[corner]), 3 * float(erf.centroid_shift[centre]))
    self.assertTrue((np.asarray(erf.centroid[corner]) > np.asarray(erf.centre[corner]) + 3).all())
    maps = np.asarray(erf.maps)
    self.assertFalse((maps[corner] > 0)[~_box_mask(tap, hw, 0, 0)].any())


class PublicApiTest(absltest.TestCase):

  def test_exported(self):
    self.assertIs(rfspec.receptive_field, receptive_field)
    self.assertIs(rfspec.effective_rf, effective_rf)


if __name__ == "__main__":
  absltest.main()

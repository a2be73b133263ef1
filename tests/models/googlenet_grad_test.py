"""The model's hand-written gradients equal jax.grad of the plain computations, on real weights.

`googlenet.max_pool`, `googlenet.lrn`, `googlenet.conv2d` and `googlenet.conv_relu` carry custom
VJPs (scatter-free max routing, LRN's closed-form derivative, convolution input gradients with
an HWIO kernel, a fused ReLU) because XLA's CPU autodiff of them dominated a visualisation step. Each
is checked here against jax.grad of an independent transcription of the plain forward (the
separable reduce_window max pooling and Caffe's LRN formula), on blobs of the real net: post-ReLU
blobs are full of zeros, so pooling windows with ties are common, and odd input sizes make
Caffe's ceil-mode windows overhang the blob (clipped windows). The forward values must stay
bit-identical.
"""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from absl.testing import absltest, parameterized

import rfspec
from rfspec import objectives
from rfspec.models import googlenet
from tests.conftest import real_params

_BOTTOMS = ("conv1/7x7_s2", "pool1/3x3_s2", "conv2/3x3_reduce", "conv2/3x3", "conv2/norm2", "pool2/3x3_s2",
            "inception_3a/5x5_reduce",
            "inception_3b/output")
_IMAGE_HW = (79, 80)  # every stride-2 pool then has a ceil-mode window overhanging its blob


def _plain_max_pool(x, k, s, p):
  """Caffe MAX pooling, transcribed plainly: -inf padding to the ceil-mode grid, then a max over
  rows and a max over columns (two reduce_windows, differentiated by jax.grad)."""
  outs = [googlenet.pool_out(n, k, s, p) for n in x.shape[1:3]]
  highs = [(o - 1) * s + k - n - p for o, n in zip(outs, x.shape[1:3])]
  x = jax.lax.pad(x, np.float32(-np.inf), ((0, 0, 0), (p, highs[0], 0), (p, highs[1], 0), (0, 0, 0)))
  x = jax.lax.reduce_window(x, np.float32(-np.inf), jax.lax.max, (1, k, 1, 1), (1, s, 1, 1), "VALID")
  return jax.lax.reduce_window(x, np.float32(-np.inf), jax.lax.max, (1, 1, k, 1), (1, 1, s, 1), "VALID")


def _plain_lrn(x):
  """Caffe's LRN as the model computes it, without its custom VJP (window sum by reduce_window,
  ^0.75 as sqrt(s) * sqrt(sqrt(s))), differentiated by jax.grad: the same forward numbers, bit
  for bit."""
  window = jax.lax.reduce_window(x * x, np.float32(0), jax.lax.add, (1, 1, 1, 5), (1, 1, 1, 1),
                                 ((0, 0), (0, 0), (0, 0), (2, 2)))
  scale = 1.0 + (1e-4 / 5) * window
  q = jnp.sqrt(scale)
  return x / (q * jnp.sqrt(q))


@functools.lru_cache(maxsize=None)
def _all_blobs():
  """The real net's blobs that feed a pool or an LRN, for 2 random images (one compile)."""
  images = np.random.default_rng(0).uniform(size=(2, *_IMAGE_HW, 3)).astype(np.float32)
  return rfspec.forward(real_params(), images, taps=_BOTTOMS)


def _blobs(taps):
  return {t: _all_blobs()[t] for t in taps}


def _vjp(fn, x, seed=1):
  y, pullback = jax.vjp(fn, x)
  ct = jnp.asarray(np.random.default_rng(seed).normal(size=y.shape).astype(np.float32))
  return y, pullback(ct)[0]


def _assert_close(test, got, want):
  got, want = np.asarray(got), np.asarray(want)
  scale = np.abs(want).max()
  test.assertGreater(scale, 0)
  np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5 * scale)


class MaxPoolGradTest(parameterized.TestCase):

  @parameterized.named_parameters(
      ("pool1_stride2", "conv1/7x7_s2", "pool1/3x3_s2"),
      ("pool2_stride2", "conv2/norm2", "pool2/3x3_s2"),
      ("inception_3a_pool_stride1_pad1", "pool2/3x3_s2", "inception_3a/pool"),
      ("pool3_stride2", "inception_3b/output", "pool3/3x3_s2"),
  )
  def test_equals_jax_grad_of_plain_pooling_on_real_blobs(self, bottom, pool):
    layer = googlenet.LAYER_BY_NAME[pool]
    x = _blobs((bottom,))[bottom]
    n = x.shape[1]
    if layer.p == 0:  # the case is exercised: Caffe's last window overhangs the blob
      self.assertGreater((googlenet.pool_out(n, layer.k, layer.s, 0) - 1) * layer.s + layer.k, n)
    self.assertGreater(float(jnp.mean(x == 0)), 0.05)  # ReLU zeros: windows with tied maxima
    fast = lambda v: googlenet.max_pool(v, layer.k, layer.s, layer.p)
    plain = lambda v: _plain_max_pool(v, layer.k, layer.s, layer.p)
    y_fast, g_fast = _vjp(jax.jit(fast), x)
    y_plain, g_plain = _vjp(jax.jit(plain), x)
    np.testing.assert_array_equal(y_fast, y_plain)
    _assert_close(self, g_fast, g_plain)

  @parameterized.parameters((3, 2, 0), (3, 1, 1), (2, 2, 0))
  def test_ties_go_where_jax_grad_sends_them(self, k, s, p):
    # Small integers: most windows hold several equal maxima; the gradient must pick the same
    # element (all-equal cotangents make any different choice visible as a different count).
    x = jnp.asarray(np.random.default_rng(k + s).integers(0, 3, size=(1, 9, 8, 2)).astype(np.float32))
    ones = lambda f: jax.jit(jax.grad(lambda v: jnp.sum(f(v))))(x)
    np.testing.assert_array_equal(ones(lambda v: googlenet.max_pool(v, k, s, p)),
                                  ones(lambda v: _plain_max_pool(v, k, s, p)))


class LrnGradTest(parameterized.TestCase):

  @parameterized.parameters(("pool1/3x3_s2",), ("conv2/3x3",))
  def test_equals_jax_grad_of_plain_lrn_on_real_blobs(self, bottom):
    x = _blobs((bottom,))[bottom]
    y_fast, g_fast = _vjp(jax.jit(googlenet.lrn), x)
    y_plain, g_plain = _vjp(jax.jit(_plain_lrn), x)
    np.testing.assert_array_equal(y_fast, y_plain)
    _assert_close(self, g_fast, g_plain)

  def test_cross_channel_term_matters(self):
    # On real conv2 activations the cross-channel part of the derivative is far above the
    # tolerance, so a closed form that got it wrong (or dropped it) fails the test above.
    x = _blobs(("conv2/3x3",))["conv2/3x3"]
    ct = jnp.ones_like(x)
    full = jax.vjp(googlenet.lrn, x)[1](ct)[0]
    c = x.shape[-1]
    sq = jnp.pad(x * x, ((0, 0), (0, 0), (0, 0), (2, 2)))
    diagonal_only = (1.0 + 1e-4 / 5 * sum(sq[..., i:i + c] for i in range(5))) ** -0.75
    self.assertGreater(float(jnp.abs(full - diagonal_only).max()), 1e-2 * float(jnp.abs(full).max()))


def _plain_layer_conv(x, kernel, s, p):
  """A conv layer as plain autodiff sees it: lax.conv_general_dilated, HWIO, HIGHEST."""
  return jax.lax.conv_general_dilated(x, kernel, (s, s), ((p, p), (p, p)), dimension_numbers=("NHWC", "HWIO", "NHWC"),
                                      precision=jax.lax.Precision.HIGHEST)


def _plain_conv_relu(x, kernel, bias, s, p, precision=None):
  del precision
  return jax.nn.relu(_plain_layer_conv(x, kernel, s, p) + bias)


# One layer of every kind of conv the net has: the stride-2 7x7 on 3 channels (polyphase input
# gradient), 3x3 and 5x5 stride-1 (flipped HWIO kernel) and 1x1 (a matmul).
_CONV_LAYERS = ("conv1/7x7_s2", "conv2/3x3", "inception_3a/5x5", "inception_3a/1x1")


def _conv_input(layer, h, w, seed):
  c_in = real_params()[layer.name]["kernel"].shape[2]
  scale = (-120, 150) if layer.name.startswith("conv1") else (0, 40)  # data space / a post-ReLU blob
  return jnp.asarray(np.random.default_rng(seed).uniform(*scale, size=(2, h, w, c_in)).astype(np.float32))


class ConvGradTest(parameterized.TestCase):

  @parameterized.product(name=_CONV_LAYERS, hw=(_IMAGE_HW, (24, 25)))  # odd and even sides
  def test_conv_input_gradient_equals_jax_grad_on_real_weights(self, name, hw):
    layer = googlenet.LAYER_BY_NAME[name]
    kernel = jnp.asarray(real_params()[name]["kernel"])
    x = _conv_input(layer, *hw, seed=5)
    fast = lambda v: googlenet.conv2d(v, kernel, layer.s, layer.p, jax.lax.Precision.HIGHEST)
    y_fast, g_fast = _vjp(jax.jit(fast), x)
    y_plain, g_plain = _vjp(jax.jit(lambda v: _plain_layer_conv(v, kernel, layer.s, layer.p)), x)
    np.testing.assert_allclose(y_fast, y_plain, rtol=1e-6, atol=1e-6 * np.abs(y_plain).max())
    _assert_close(self, g_fast, g_plain)

  @parameterized.parameters(*_CONV_LAYERS)
  def test_conv_relu_gradient_equals_jax_grad_on_real_weights(self, name):
    # The fused conv + bias + ReLU: the forward bit-identical, the input gradient that of
    # jax.grad through relu (zero where the output is 0) within 1e-5.
    layer = googlenet.LAYER_BY_NAME[name]
    kernel, bias = (jnp.asarray(real_params()[name][k]) for k in ("kernel", "bias"))
    bottom = layer.bottoms[0]  # the real net's blob below the layer (data space for conv1)
    x = _conv_input(layer, *_IMAGE_HW, seed=7) if bottom == googlenet.INPUT else _blobs((bottom,))[bottom]
    fast = lambda v: googlenet.conv_relu(v, kernel, bias, layer.s, layer.p, jax.lax.Precision.HIGHEST)
    y_fast, g_fast = _vjp(jax.jit(fast), x)
    y_plain, g_plain = _vjp(jax.jit(lambda v: _plain_conv_relu(v, kernel, bias, layer.s, layer.p)), x)
    off = float(jnp.mean(y_plain == 0))
    self.assertTrue(0.05 < off < 0.95, off)  # the ReLU gates a real share of the nodes
    np.testing.assert_allclose(y_fast, y_plain, rtol=1e-6, atol=1e-6 * np.abs(y_plain).max())
    _assert_close(self, g_fast, g_plain)

  def test_conv_relu_kernel_and_bias_gradients_are_autodiffs(self):
    layer = googlenet.LAYER_BY_NAME["conv2/3x3"]
    kernel, bias = (jnp.asarray(real_params()[layer.name][k]) for k in ("kernel", "bias"))
    x = _conv_input(layer, 12, 11, seed=8)
    loss = lambda f: lambda k, b: jnp.sum(f(x, k, b, 1, 1) ** 2)
    fast = jax.grad(loss(lambda *a: googlenet.conv_relu(*a, jax.lax.Precision.HIGHEST)), argnums=(0, 1))(kernel, bias)
    plain = jax.grad(loss(_plain_conv_relu), argnums=(0, 1))(kernel, bias)
    for got, want in zip(fast, plain):
      _assert_close(self, got, want)

  def test_kernel_gradient_is_autodiffs(self):
    kernel = jnp.asarray(real_params()["conv1/7x7_s2"]["kernel"])
    x = jnp.asarray(np.random.default_rng(6).uniform(size=(1, 21, 20, 3)).astype(np.float32))
    loss = lambda conv, k: jnp.sum(conv(x, k) ** 2)
    fast = jax.grad(lambda k: loss(lambda v, k_: googlenet.conv2d(v, k_, 2, 3), k))(kernel)
    plain = jax.grad(lambda k: loss(lambda v, k_: jax.lax.conv_general_dilated(
        v, k_, (2, 2), ((3, 3), (3, 3)), dimension_numbers=("NHWC", "HWIO", "NHWC")), k))(kernel)
    np.testing.assert_array_equal(fast, plain)


@pytest.mark.slow
class InputGradTest(parameterized.TestCase):

  @parameterized.parameters(("inception_3a/output", False), ("inception_3a/output", True))
  def test_input_gradient_equals_plain_autodiff(self, tap, pre_relu):
    # Through conv1 (stride 2), both LRNs, pool1 and pool2 (stride 2, overhanging windows) and
    # inception_3a/pool (stride 1), for post- and pre-ReLU objectives.
    params = real_params()
    images = jnp.asarray(np.random.default_rng(3).uniform(size=(1, *_IMAGE_HW, 3)).astype(np.float32))
    shape = objectives.tap_activation(params, images[:1], tap).shape[1:]
    mask = jnp.asarray(np.random.default_rng(4).uniform(size=shape).astype(np.float32))

    def grad():
      obj = lambda x: objectives.node_objective(objectives.tap_activation(params, x, tap, pre_relu=pre_relu),
                                                mask).sum()
      return jax.jit(jax.grad(obj))(images)

    fast = grad()
    with absltest.mock.patch.object(googlenet, "max_pool", _plain_max_pool), \
         absltest.mock.patch.object(googlenet, "lrn", _plain_lrn), \
         absltest.mock.patch.object(googlenet, "conv2d", lambda x, k, s, p, prec=None: _plain_layer_conv(x, k, s, p)), \
         absltest.mock.patch.object(googlenet, "conv_relu", _plain_conv_relu):
      plain = grad()
    _assert_close(self, fast, plain)


class ForwardGradTest(parameterized.TestCase):
  """A user's jax.grad of rfspec.forward: the batch cut (`grad_parts`) changes neither the values
  of an undifferentiated call nor the gradients, and every element's gradient is its own."""

  def _setup(self, n=3):
    params = real_params()
    images = jnp.asarray(np.random.default_rng(5).uniform(size=(n, *_IMAGE_HW, 3)).astype(np.float32))
    tap = "inception_3a/output"
    mask = jnp.asarray(np.random.default_rng(6).uniform(
        size=rfspec.forward(params, images[:1], taps=tap)[tap].shape[1:]).astype(np.float32))
    return params, images, tap, mask

  def test_values_do_not_depend_on_the_cut(self):
    params, images, tap, _ = self._setup()
    whole = rfspec.forward(params, images, taps=tap, grad_parts=1)[tap]
    cut = rfspec.forward(params, images, taps=tap, grad_parts=2)[tap]
    np.testing.assert_array_equal(whole, cut)  # undifferentiated, the cut is not taken

  @parameterized.parameters(2, 3)
  def test_input_and_param_gradients_equal_the_uncut_ones(self, parts):
    params, images, tap, mask = self._setup()
    obj = lambda p, x, k: jnp.sum(rfspec.forward(p, x, taps=tap, grad_parts=k)[tap] * mask)
    g_cut = jax.jit(jax.grad(obj, argnums=(0, 1)), static_argnums=2)(params, images, parts)
    g_whole = jax.jit(jax.grad(obj, argnums=(0, 1)), static_argnums=2)(params, images, 1)
    _assert_close(self, g_cut[1], g_whole[1])
    for name in ("conv1/7x7_s2", "inception_3a/5x5"):
      _assert_close(self, g_cut[0][name]["kernel"], g_whole[0][name]["kernel"])
    # Each element's gradient is what it gets alone.
    alone = jax.jit(jax.grad(obj, argnums=1), static_argnums=2)(params, images[1:2], 1)
    _assert_close(self, g_cut[1][1:2], alone)

  def test_default_is_two_pieces_on_a_lone_cpu(self):
    self.assertEqual(googlenet.default_grad_parts(jax.devices("cpu")[:1]), 2)
    self.assertEqual(googlenet.default_grad_parts(jax.devices("cpu")[:1] * 2), 1)


if __name__ == "__main__":
  absltest.main()

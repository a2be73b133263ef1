"""Tests for rfspec.weights.caffe: the hand-written .caffemodel reader and the params mapping."""

import functools
import io
import os

from absl.testing import absltest, parameterized
import cv2
import jax
import numpy as np
from PIL import Image

from rfspec.models import googlenet
from rfspec.weights import caffe
from tests.conftest import CAFFEMODEL, DEPLOY, real_params, shared_file
from tests.weights import protowire


@functools.lru_cache(maxsize=None)
def real_blobs():
  return caffe.read_caffemodel(shared_file(CAFFEMODEL))


def caffe_layout(params) -> dict[str, list[np.ndarray]]:
  """Params back in Caffe's current layout: conv (O, I, kh, kw), fc (N, K), bias (N,)."""
  out = {}
  for name, p in params.items():
    kernel = np.asarray(p["kernel"])
    weight = kernel.transpose(3, 2, 0, 1) if kernel.ndim == 4 else kernel.T
    out[name] = [np.ascontiguousarray(weight), np.asarray(p["bias"])]
  return out


def assert_params_equal(test, got, want):
  test.assertEqual(sorted(got), sorted(want))
  for name in want:
    test.assertEqual(sorted(got[name]), sorted(want[name]), name)
    for key in want[name]:
      np.testing.assert_array_equal(np.asarray(got[name][key]), np.asarray(want[name][key]),
                                    err_msg=f"{name} {key}")


class RealFileTest(absltest.TestCase):
  """The real BVLC file from ../shared (legacy V1 encoding)."""

  def test_params_have_the_model_shapes(self):
    params = real_params()
    shapes = jax.tree.map(lambda a: tuple(a.shape), params)
    self.assertEqual(shapes, googlenet.param_shapes())
    for leaf in jax.tree.leaves(params):
      self.assertIsInstance(leaf, jax.Array)
      self.assertEqual(leaf.dtype, np.float32)
      self.assertTrue(np.isfinite(np.asarray(leaf)).all())
    self.assertEqual(sum(leaf.size for leaf in jax.tree.leaves(params)), googlenet.num_params())

  def test_matches_opencv_caffe_importer(self):
    """An independent reader: OpenCV gives conv weights OIHW and fc weights (N, K)."""
    net = cv2.dnn.readNetFromCaffe(str(shared_file(DEPLOY)), str(shared_file(CAFFEMODEL)))
    params = real_params()
    for name in ("conv1/7x7_s2", "inception_4c/5x5", "inception_5b/pool_proj"):
      np.testing.assert_array_equal(np.asarray(params[name]["kernel"]),
                                    net.getParam(name, 0).transpose(2, 3, 1, 0), err_msg=name)
      np.testing.assert_array_equal(np.asarray(params[name]["bias"]), net.getParam(name, 1).ravel())
    np.testing.assert_array_equal(np.asarray(params["loss3/classifier"]["kernel"]),
                                  net.getParam("loss3/classifier", 0).T)
    np.testing.assert_array_equal(np.asarray(params["loss3/classifier"]["bias"]),
                                  net.getParam("loss3/classifier", 1).ravel())

  def test_read_caffemodel_keeps_legacy_dims(self):
    blobs = real_blobs()
    # Legacy blobs are right-aligned 4-D (README): the classifier weight is 1x1x1000x1024.
    self.assertEqual([b.shape for b in blobs["loss3/classifier"]], [(1, 1, 1000, 1024), (1, 1, 1, 1000)])
    self.assertEqual(blobs["conv1/7x7_s2"][0].shape, (64, 3, 7, 7))
    self.assertEqual(blobs["conv1/relu_7x7"], [])  # parameter-free layers are listed, blob-less
    self.assertEqual(sum(1 for b in blobs.values() if b), len(googlenet.param_shapes()))


class EncodingTest(parameterized.TestCase):
  """Files written here (tests/weights/protowire.py) in other encodings load to the same params."""

  def write(self, data: bytes, name: str = "model.caffemodel") -> str:
    return self.create_tempfile(name, content=data, mode="wb").full_path

  def test_current_encoding_with_double_and_unpacked_data(self):
    blobs = caffe_layout(real_params())
    data = protowire.caffemodel(blobs, legacy=False, double=["conv1/7x7_s2", "loss3/classifier"],
                                unpacked=["inception_3a/1x1"])
    assert_params_equal(self, caffe.load_caffemodel(self.write(data)), real_params())

  def test_auxiliary_heads_and_parameter_free_layers_are_skipped(self):
    rng = np.random.default_rng(0)
    blobs = {"data": [], **caffe_layout(real_params()), "prob": []}
    # The official 2014 file also holds the training-only auxiliary heads.
    blobs["loss1/conv"] = [rng.normal(size=(128, 512, 1, 1)).astype(np.float32), np.zeros(128, np.float32)]
    blobs["loss2/fc"] = [rng.normal(size=(1024, 2048)).astype(np.float32), np.zeros(1024, np.float32)]
    blobs["loss1/loss"] = []
    path = self.write(protowire.caffemodel(blobs, legacy=True))
    with self.assertLogs(caffe.log, "DEBUG") as logs:
      params = caffe.load_caffemodel(path)
    assert_params_equal(self, params, real_params())
    skipped = "\n".join(logs.output)
    for name in ("loss1/conv", "loss2/fc", "loss1/loss", "data", "prob"):
      self.assertIn(repr(name), skipped)

  @parameterized.product(legacy=(False, True), double=(False, True), packed=(False, True))
  def test_small_blobs_round_trip(self, legacy, double, packed):
    rng = np.random.default_rng(1)
    arrays = {"a": [rng.normal(size=(4, 3, 2, 2)).astype(np.float32), rng.normal(size=4).astype(np.float32)],
              "relu": [],
              "b": [rng.normal(size=(5, 7)).astype(np.float32)]}
    names = list(arrays)
    data = protowire.caffemodel(arrays, legacy=legacy, double=names if double else (),
                                unpacked=() if packed else names)
    got = caffe.read_caffemodel(self.write(data))
    self.assertEqual(list(got), names)
    for name in names:
      self.assertLen(got[name], len(arrays[name]))
      for g, want in zip(got[name], arrays[name]):
        self.assertEqual(g.dtype, np.float32)
        if legacy:  # right-aligned 4-D dims
          self.assertEqual(g.shape, (1,) * (4 - want.ndim) + want.shape)
        np.testing.assert_array_equal(g.reshape(want.shape), want)

  def test_to_params_accepts_current_shapes(self):
    params = caffe.to_params(caffe_layout(real_params()))
    assert_params_equal(self, params, real_params())


class ErrorTest(parameterized.TestCase):

  def write(self, data: bytes, name: str = "model.caffemodel") -> str:
    return self.create_tempfile(name, content=data, mode="wb").full_path

  def test_missing_and_mis_shaped_layers_in_one_error(self):
    blobs = caffe_layout(real_params())
    del blobs["inception_5b/pool_proj"]
    blobs["conv2/3x3"][0] = blobs["conv2/3x3"][0].reshape(192, 64, 1, 9)  # same count, wrong shape
    blobs["loss3/classifier"][1] = blobs["loss3/classifier"][1][:999]
    blobs["inception_3a/1x1"] = blobs["inception_3a/1x1"][:1]  # no bias
    path = self.write(protowire.caffemodel(blobs))
    with self.assertRaises(caffe.CaffeModelError) as cm:
      caffe.load_caffemodel(path)
    message = str(cm.exception)
    self.assertIsInstance(cm.exception, ValueError)
    self.assertLen(cm.exception.problems, 4)
    self.assertIn(path, message)
    self.assertRegex(message, r"missing layer 'inception_5b/pool_proj'")
    self.assertRegex(message, r"'conv2/3x3' weights: shape \(192, 64, 1, 9\), expected \(192, 64, 3, 3\)")
    self.assertRegex(message, r"'loss3/classifier' bias: shape \(999,\), expected \(1000,\)")
    self.assertRegex(message, r"'inception_3a/1x1' has 1 blob\(s\), expected 2")

  def test_element_count_disagreeing_with_dims(self):
    dims = b"".join(protowire.int_field(f, d) for f, d in zip((1, 2, 3, 4), (1, 1, 2, 3)))
    blob = dims + protowire.bytes_field(5, np.arange(5, dtype="<f4").tobytes())  # 5 of 6 values
    bias = protowire.blob(np.zeros(64, np.float32))
    path = self.write(protowire.net([protowire.layer("conv1/7x7_s2", [blob, bias])]))
    for read in (caffe.read_caffemodel, caffe.load_caffemodel):
      with self.assertRaisesRegex(caffe.CaffeModelError, r"'conv1/7x7_s2' blob 0: dims \(1, 1, 2, 3\) "
                                  r"need 6 values but 5 are stored"):
        read(path)

  def test_truncated_file(self):
    data = shared_file(CAFFEMODEL).read_bytes()
    path = self.write(data[:len(data) // 2])
    with self.assertRaises(caffe.CaffeModelError) as cm:
      caffe.load_caffemodel(path)
    message = str(cm.exception)
    self.assertIn(path, message)
    self.assertIn("truncated", message)
    self.assertIn("re-download", message)

  def test_truncated_at_a_layer_boundary_lists_missing_layers(self):
    blobs = caffe_layout(real_params())
    first = {name: blobs[name] for name in list(blobs)[:10]}
    with self.assertRaises(caffe.CaffeModelError) as cm:
      caffe.load_caffemodel(self.write(protowire.caffemodel(first)))
    self.assertLen(cm.exception.problems, len(blobs) - 10)
    self.assertIn("missing layer 'loss3/classifier'", str(cm.exception))

  @parameterized.named_parameters(
      ("random_bytes", lambda: np.random.default_rng(0).bytes(100_000), r"not a valid \.caffemodel|truncated or corrupt"),
      ("empty", lambda: b"", "is empty"),
      ("png", lambda: _png_bytes(), "PNG image"),
      ("prototxt", lambda: shared_file(DEPLOY).read_bytes(), "prototxt"),
      ("html_error_page", lambda: b"<!DOCTYPE html><html><body>404 Not Found</body></html>", "HTML"),
  )
  def test_not_a_caffemodel(self, make, pattern):
    path = self.write(make())
    for read in (caffe.read_caffemodel, caffe.load_caffemodel):
      with self.assertRaises(caffe.CaffeModelError) as cm:
        read(path)
      message = str(cm.exception)
      self.assertRegex(message, pattern)
      self.assertIn(path, message)
      self.assertIn("bvlc_googlenet.caffemodel", message)  # says what to pass instead

  def test_corrupt_bytes_never_escape_as_other_errors(self):
    base = protowire.caffemodel({"conv1/7x7_s2": [np.ones((2, 3, 1, 1), np.float32), np.ones(2, np.float32)],
                                 "relu": [],
                                 "loss3/classifier": [np.ones((3, 4), np.float32)]},
                                unpacked=["loss3/classifier"])
    rng = np.random.default_rng(2)
    path = self.create_tempfile("fuzz.caffemodel").full_path
    for _ in range(300):
      data = bytearray(base)
      for i in rng.integers(len(data), size=3):
        data[i] = rng.integers(256)
      with open(path, "wb") as f:
        f.write(bytes(data[:rng.integers(1, len(data) + 1)]))
      try:
        caffe.read_caffemodel(path)
      except caffe.CaffeModelError:
        pass  # the only error allowed; anything else fails the test

  def test_nonexistent_path(self):
    path = os.path.join(self.create_tempdir().full_path, "nope.caffemodel")
    with self.assertRaisesRegex(FileNotFoundError, "nope.caffemodel"):
      caffe.load_caffemodel(path)


def _png_bytes() -> bytes:
  buf = io.BytesIO()
  Image.new("RGB", (8, 8), (255, 0, 0)).save(buf, format="PNG")
  return buf.getvalue()


if __name__ == "__main__":
  absltest.main()

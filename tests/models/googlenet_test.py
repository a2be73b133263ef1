"""GoogLeNet: the layer table against deploy.prototxt, Caffe's op semantics, and OpenCV.

The reference for numbers is OpenCV's Caffe importer, an implementation independent of rfspec;
the reference for the architecture is the deploy.prototxt text itself, parsed here with a few
regular expressions (never through rfspec's own table).
"""

import re

import cv2
import jax
import jax.numpy as jnp
import numpy as np
from absl.testing import absltest, parameterized

from rfspec.models import googlenet, preprocess
from rfspec.models.labels import imagenet_labels
from tests.conftest import DEPLOY, IMAGES, real_params, shared_file


def _prototxt_layers(text: str) -> list[str]:
  """Top-level `layer { ... }` blocks of a prototxt, by brace matching."""
  blocks, depth, start = [], 0, None
  for m in re.finditer(r"layer\s*\{|\{|\}", text):
    if m.group().startswith("layer") and depth == 0:
      start, depth = m.start(), 1
    elif m.group().endswith("{"):
      depth += 1
    else:
      depth -= 1
      if depth == 0 and start is not None:
        blocks.append(text[start:m.end()])
        start = None
  return blocks


def _field(block: str, name: str) -> list[str]:
  return re.findall(rf'\b{name}:\s*"?([^"\s]+)"?', block)


def _last_writer(blocks: list[str]) -> dict[str, str]:
  """blob -> name of the last layer writing it (so conv blobs map to their in-place ReLU)."""
  writer = {}
  for b in blocks:
    for top in _field(b, "top"):
      writer[top] = _field(b, "name")[0]
  return writer


def _truncated_prototxt(blocks: list[str], last_blob: str) -> str:
  """The deploy net up to and including every layer that writes `last_blob`.

  OpenCV must be able to build the whole net, so inputs too small for the classifier need
  the net cut after the deepest tap they can reach.
  """
  writer = _last_writer(blocks)[last_blob]
  kept = []
  for b in blocks:
    kept.append(b)
    if _field(b, "name")[0] == writer:
      break
  return 'name: "GoogleNet"\n' + "\n".join(kept) + "\n"


def _opencv_blobs(prototxt: str, caffemodel: str, images_rgb: np.ndarray, taps) -> dict[str, np.ndarray]:
  """OpenCV's value of each tap blob (NHWC, or [N, K]) for RGB [0, 1] images [N, H, W, 3]."""
  net = cv2.dnn.readNetFromCaffe(prototxt, caffemodel)
  # Fusion lets concat write branch blobs in place, so branch outputs would be overwritten.
  net.enableFusion(False)
  blocks = _prototxt_layers(open(prototxt).read())
  writer = _last_writer(blocks)
  # Caffe preprocessing written out independently of rfspec.models.preprocess.
  bgr = images_rgb[..., ::-1] * 255.0 - np.array([104.0, 117.0, 123.0], np.float32)
  net.setInput(np.ascontiguousarray(bgr.transpose(0, 3, 1, 2), dtype=np.float32))
  outs = net.forward([writer[t] for t in taps])
  result = {}
  for tap, out in zip(taps, outs):
    result[tap] = out.transpose(0, 2, 3, 1) if out.ndim == 4 and tap not in ("loss3/classifier", "prob") \
        else out.reshape(out.shape[0], -1)
  return result


class LayerTableTest(absltest.TestCase):
  """The single layer table must be exactly the deploy net."""

  def test_taps_are_deploy_blobs_in_order(self):
    blocks = _prototxt_layers(open(shared_file(DEPLOY)).read())
    tops = []
    for b in blocks:
      for top in _field(b, "top"):
        if top not in tops and top != "data":
          tops.append(top)
    self.assertEqual(list(googlenet.TAPS), tops)

  def test_layer_hyperparameters_match_prototxt(self):
    blocks = _prototxt_layers(open(shared_file(DEPLOY)).read())
    kinds = {"Convolution": "conv", "LRN": "lrn", "Concat": "concat", "InnerProduct": "fc", "Softmax": "softmax"}
    seen = 0
    for b in blocks:
      name, typ = _field(b, "name")[0], _field(b, "type")[0]
      if name not in googlenet.LAYER_BY_NAME:
        self.assertIn(typ, ("Input", "ReLU", "Dropout"), name)
        continue
      layer, seen = googlenet.LAYER_BY_NAME[name], seen + 1
      kind = {"MAX": "maxpool", "AVE": "avepool"}[_field(b, "pool")[0]] if typ == "Pooling" else kinds[typ]
      self.assertEqual(layer.kind, kind, name)
      self.assertEqual(list(layer.bottoms), _field(b, "bottom"), name)
      self.assertEqual(layer.k, int((_field(b, "kernel_size") or ["1"])[0]), name)
      self.assertEqual(layer.s, int((_field(b, "stride") or ["1"])[0]), name)
      self.assertEqual(layer.p, int((_field(b, "pad") or ["0"])[0]), name)
      if typ in ("Convolution", "InnerProduct"):
        self.assertEqual(layer.channels, int(_field(b, "num_output")[0]), name)
    self.assertEqual(seen, len(googlenet.LAYERS))

  def test_parameter_count_pinned_without_weights(self):
    abstract = jax.eval_shape(googlenet.GoogLeNet().init, jax.random.key(0), jnp.zeros((1, 224, 224, 3)))
    leaves = jax.tree_util.tree_leaves(abstract["params"])
    self.assertEqual(sum(int(np.prod(x.shape)) for x in leaves), 6_998_552)
    shapes = jax.tree_util.tree_map(lambda x: x.shape, abstract["params"])
    self.assertEqual(shapes, googlenet.param_shapes())

  def test_blob_sizes_at_224(self):
    hws = googlenet.blob_hws((224, 224))
    # The stride-2 pools give 112 -> 56 -> 28 -> 14 -> 7 (../shared/README.md).
    self.assertEqual(hws["conv1/7x7_s2"], (112, 112))
    self.assertEqual(hws["pool1/3x3_s2"], (56, 56))
    self.assertEqual(hws["pool2/3x3_s2"], (28, 28))
    self.assertEqual(hws["pool3/3x3_s2"], (14, 14))
    self.assertEqual(hws["pool4/3x3_s2"], (7, 7))
    self.assertEqual(hws["pool5/7x7_s1"], (1, 1))


def _caffe_pool_reference(x, k, s, p, mode):
  """Caffe's pooling_layer.cpp forward loop, transcribed literally, for one [H, W] plane."""
  h, w = x.shape
  ph = int(np.ceil((h + 2 * p - k) / s)) + 1
  pw = int(np.ceil((w + 2 * p - k) / s)) + 1
  if p:
    if (ph - 1) * s >= h + p:
      ph -= 1
    if (pw - 1) * s >= w + p:
      pw -= 1
  out = np.zeros((ph, pw), np.float64)
  for i in range(ph):
    for j in range(pw):
      hs, ws = i * s - p, j * s - p
      he, we = min(hs + k, h + p), min(ws + k, w + p)
      size = (he - hs) * (we - ws)
      hs, ws, he, we = max(hs, 0), max(ws, 0), min(he, h), min(we, w)
      win = x[hs:he, ws:we]
      out[i, j] = win.max() if mode == "max" else win.sum() / size
  return out


def _caffe_lrn_reference(x):
  """Caffe's LRN across channels for x [C], literally: x * (1 + a/n * sum of squares)^-b."""
  c = x.shape[0]
  y = np.empty_like(x, dtype=np.float64)
  for i in range(c):
    lo, hi = max(0, i - 2), min(c, i + 3)
    y[i] = x[i] * (1.0 + 1e-4 / 5 * np.sum(x[lo:hi].astype(np.float64) ** 2)) ** -0.75
  return y


class OpsTest(parameterized.TestCase):

  @parameterized.product(hw=[(7, 7), (8, 9), (13, 10), (14, 14), (15, 16)], ksp=[(3, 2, 0), (3, 1, 1), (7, 1, 0), (3, 2, 1), (2, 2, 1)],
                         mode=["max", "ave"])
  def test_pooling_matches_caffe_loop(self, hw, ksp, mode):
    k, s, p = ksp
    x = np.random.default_rng(hash((hw, ksp)) % 2**32).normal(size=hw).astype(np.float32)
    fn = googlenet.max_pool if mode == "max" else googlenet.ave_pool
    got = np.asarray(fn(jnp.asarray(x)[None, :, :, None], k, s, p))[0, :, :, 0]
    want = _caffe_pool_reference(x, k, s, p, mode)
    self.assertEqual(got.shape, want.shape)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)

  def test_lrn_matches_caffe_formula(self):
    x = np.random.default_rng(0).uniform(0, 300, size=(2, 3, 4, 9)).astype(np.float32)
    got = np.asarray(googlenet.lrn(jnp.asarray(x)))
    want = np.apply_along_axis(_caffe_lrn_reference, -1, x)
    np.testing.assert_allclose(got, want, rtol=1e-5)

  def test_preprocess_round_trip_and_convention(self):
    rgb = np.random.default_rng(1).uniform(size=(2, 5, 6, 3)).astype(np.float32)
    caffe = np.asarray(preprocess.to_caffe(jnp.asarray(rgb)))
    np.testing.assert_allclose(caffe[..., 0], rgb[..., 2] * 255 - 104, rtol=1e-6, atol=1e-4)  # B
    np.testing.assert_allclose(caffe[..., 2], rgb[..., 0] * 255 - 123, rtol=1e-6, atol=1e-4)  # R
    np.testing.assert_allclose(np.asarray(preprocess.from_caffe(jnp.asarray(caffe))), rgb, atol=1e-6)


class BadInputTest(absltest.TestCase):

  def test_unknown_tap_suggests_close_names(self):
    with self.assertRaisesRegex(ValueError, r"Unknown tap 'inception_4c/ouput'.*inception_4c/output"):
      googlenet.check_tap("inception_4c/ouput")

  def test_too_small_input_names_smallest_size(self):
    need = googlenet.min_input_size("inception_4c/output")
    self.assertEqual(min(googlenet.blob_hws((need, need))["inception_4c/output"]), 1)
    self.assertEqual(min(googlenet.blob_hws((need - 1, need - 1))["inception_4c/output"]), 0)
    with self.assertRaisesRegex(ValueError, rf"at least {need} px"):
      googlenet.forward({}, np.zeros((1, need - 1, need - 1, 3), np.float32), taps="inception_4c/output")

  def test_classifier_needs_223_to_254(self):
    with self.assertRaisesRegex(ValueError, "223-254 px"):
      googlenet.forward({}, np.zeros((1, 300, 300, 3), np.float32), taps="prob")

  def test_bad_image_shape(self):
    with self.assertRaisesRegex(ValueError, r"\[N, H, W, 3\]"):
      googlenet.forward({}, np.zeros((1, 64, 64), np.float32), taps="conv1/7x7_s2")


class ComputesOnlyWhatIsNeededTest(absltest.TestCase):

  def test_shallow_tap_needs_only_its_ancestors(self):
    # With only conv1's params, a conv1 request works: nothing deeper is built or run.
    params = {"conv1/7x7_s2": {"kernel": jnp.ones((7, 7, 3, 64)) * 0.01, "bias": jnp.zeros(64)}}
    out = googlenet.forward(params, np.full((2, 20, 18, 3), 0.5, np.float32), taps="conv1/7x7_s2")
    self.assertEqual(out["conv1/7x7_s2"].shape, (2, 10, 9, 64))
    self.assertEqual(googlenet.ancestors(["inception_3a/3x3"]) & {"inception_3a/1x1", "inception_3a/5x5"}, set())


class MatchesOpenCVTest(parameterized.TestCase):
  """Every tap OpenCV exposes equals rfspec.forward to max|diff| <= 1e-4 * max|ref|."""

  @parameterized.named_parameters(
      ("224", (224, 224), "prob"),
      # Odd and non-square: ceil-mode pooling decides the grid (pool5 is 1x2, so stop there).
      ("231x257", (231, 257), "pool5/7x7_s1"),
      ("odd_small", (97, 131), "inception_5b/output"),
  )
  def test_all_taps(self, hw, deepest):
    params = real_params()
    taps = googlenet.TAPS[:googlenet.TAPS.index(deepest) + 1]
    images = np.random.default_rng(sum(hw)).uniform(size=(2, *hw, 3)).astype(np.float32)
    blocks = _prototxt_layers(open(shared_file(DEPLOY)).read())
    prototxt = self.create_tempfile("deploy.prototxt", _truncated_prototxt(blocks, deepest)).full_path
    from tests.conftest import CAFFEMODEL
    ref = _opencv_blobs(prototxt, str(CAFFEMODEL), images, taps)
    got = googlenet.forward(params, images, taps=taps)
    for tap in taps:
      want, have = ref[tap], np.asarray(got[tap])
      self.assertEqual(have.shape, want.shape, tap)
      err = np.abs(have - want).max() / np.abs(want).max()
      self.assertLessEqual(err, 1e-4, f"{tap} at {hw}: relative error {err:.2e}")


class ClassifyTest(absltest.TestCase):

  def test_example_images(self):
    from PIL import Image

    labels = imagenet_labels()
    images = []
    for name in ("cat.jpg", "fish-bike.jpg"):
      with Image.open(shared_file(IMAGES / name)) as im:  # Caffe's resize: 224x224 bilinear
        images.append(np.asarray(im.convert("RGB").resize((224, 224), Image.BILINEAR), np.float32) / 255)
    images = np.stack(images)
    prob = np.asarray(googlenet.forward(real_params(), images, taps="prob")["prob"])
    from tests.conftest import CAFFEMODEL
    ref = _opencv_blobs(str(shared_file(DEPLOY)), str(CAFFEMODEL), images, ["prob"])["prob"]
    np.testing.assert_allclose(prob, ref, atol=1e-3)
    cat_top3 = [labels[i] for i in np.argsort(-prob[0])[:3]]
    self.assertTrue(cat_top3[0].startswith("tiger cat"), cat_top3)
    self.assertCountEqual([l.split(",")[0] for l in cat_top3], ["tiger cat", "tabby", "Egyptian cat"])
    self.assertTrue(labels[int(np.argmax(prob[1]))].startswith("barrow"))


if __name__ == "__main__":
  absltest.main()

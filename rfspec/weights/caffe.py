"""Reads Caffe `.caffemodel` files without Caffe or protoc, and maps them onto GoogLeNet params.

A `.caffemodel` is a serialized `caffe.NetParameter` protobuf. This module decodes the protobuf
wire format by hand, reading only the fields weights need:

  NetParameter      layers=2 (V1LayerParameter, legacy), layer=100 (LayerParameter, current)
  V1LayerParameter  bottom=2, top=3, name=4, type=5 (enum), blobs=6
  LayerParameter    name=1, type=2 (string), bottom=3, top=4, blobs=7
  BlobProto         num=1, channels=2, height=3, width=4 (legacy 4-D), data=5 (float),
                    shape=7 (BlobShape: dim=1, int64), double_data=8 (double)

Repeated numbers may be packed or not; packed floats are decoded with `np.frombuffer`, so the
27 MB BVLC file parses in about a second. Every other field (diffs, layer parameters) is skipped
by its length without being decoded.

`to_params` checks the file against `googlenet.param_shapes()` the way Caffe's
`Net::CopyTrainedLayersFrom` does: layers are matched by name, layers the deploy net does not have
(auxiliary heads `loss1/*`, `loss2/*`, data and loss layers) are skipped, and a blob must have the
expected shape, where legacy 4-D blobs are right-aligned (a 1x1x1000x1024 blob is a 1000x1024
matrix). All problems are reported together in one `CaffeModelError`.
"""

from __future__ import annotations

import logging
import math
import os
from typing import Iterator, NamedTuple

import jax
import numpy as np

from rfspec.errors import UserError
from rfspec.models import googlenet

log = logging.getLogger(__name__)

# What to tell a user whose file is unusable.
_FIX = ("Pass the binary bvlc_googlenet.caffemodel from the BVLC model zoo (re-download it if it "
        "is truncated), not deploy.prototxt or another network's weights.")

# V1LayerParameter.LayerType enum -> the string type of the current LayerParameter.
_V1_TYPES = {
    0: "None", 1: "Accuracy", 2: "BNLL", 3: "Concat", 4: "Convolution", 5: "Data", 6: "Dropout",
    7: "EuclideanLoss", 8: "Flatten", 9: "HDF5Data", 10: "HDF5Output", 11: "Im2col",
    12: "ImageData", 13: "InfogainLoss", 14: "InnerProduct", 15: "LRN",
    16: "MultinomialLogisticLoss", 17: "Pooling", 18: "ReLU", 19: "Sigmoid", 20: "Softmax",
    21: "SoftmaxWithLoss", 22: "Split", 23: "TanH", 24: "WindowData", 25: "Eltwise", 26: "Power",
    27: "SigmoidCrossEntropyLoss", 28: "HingeLoss", 29: "MemoryData", 30: "ArgMax",
    31: "Threshold", 32: "DummyData", 33: "Slice", 34: "MVN", 35: "AbsVal", 36: "Silence",
    37: "ContrastiveLoss", 38: "Exp", 39: "Deconvolution",
}

# Wire types.
_VARINT, _FIXED64, _LEN, _FIXED32 = 0, 1, 2, 5

# Unpacked repeated floats / doubles: records of (1-byte tag, little-endian value).
_F32_RECORD = np.dtype([("tag", "u1"), ("value", "<f4")])
_F64_RECORD = np.dtype([("tag", "u1"), ("value", "<f8")])


class CaffeModelError(UserError):
  """A file that is not a usable GoogLeNet `.caffemodel`; the message says why and what to do.

  Attributes:
    problems: one line per problem (e.g. each missing layer and each mis-shaped blob).
  """

  def __init__(self, message: str, problems: list[str] | None = None):
    super().__init__(message)
    self.problems = list(problems or [])


class _WireError(Exception):
  """Malformed protobuf; `pos` is the absolute byte offset where decoding failed."""

  def __init__(self, message: str, pos: int, truncated: bool = False):
    super().__init__(message)
    self.pos = pos
    self.truncated = truncated


class _Blob(NamedTuple):
  shape: tuple[int, ...]
  data: np.ndarray  # flat float32, as stored (its size may disagree with `shape`)


class _Layer(NamedTuple):
  name: str
  type: str
  blobs: list[_Blob]


# ----------------------------------------------------------------------------- wire format


def _varint(buf: memoryview, pos: int, end: int) -> tuple[int, int]:
  """Decodes a varint at `pos`; returns (value, position after it)."""
  value, shift = 0, 0
  while True:
    if pos >= end:
      raise _WireError("a number runs past the end of its message", pos, truncated=True)
    byte = buf[pos]
    pos += 1
    value |= (byte & 0x7F) << shift
    if byte < 0x80:
      return value, pos
    shift += 7
    if shift >= 70:
      raise _WireError("a number is longer than 10 bytes", pos)


def _next_field(buf: memoryview, pos: int, end: int) -> tuple[int, int, object, int]:
  """Decodes the field at `pos`; returns (field number, wire type, value, position after it).

  The value is an int for varints, and the (start, end) byte range for length-delimited and
  fixed-width fields, so large payloads are never copied here.
  """
  start = pos
  key, pos = _varint(buf, pos, end)
  field, wire = key >> 3, key & 7
  if field == 0:
    raise _WireError("field number 0", start)
  if wire == _VARINT:
    value, pos = _varint(buf, pos, end)
  elif wire == _LEN:
    length, pos = _varint(buf, pos, end)
    value = (pos, pos + length)
    pos += length
  elif wire in (_FIXED32, _FIXED64):
    value = (pos, pos + (4 if wire == _FIXED32 else 8))
    pos = value[1]
  else:  # 3/4 are deprecated groups, which Caffe never writes; 6/7 do not exist.
    raise _WireError(f"unsupported wire type {wire} (field {field})", start)
  if pos > end:
    raise _WireError(f"field {field} needs {pos - end:,} more bytes than are left", start,
                     truncated=True)
  return field, wire, value, pos


def _fields(buf: memoryview, pos: int, end: int) -> Iterator[tuple[int, int, object, int]]:
  """Yields (field number, wire type, value, start offset) for each field in buf[pos:end]."""
  while pos < end:
    start = pos
    field, wire, value, pos = _next_field(buf, pos, end)
    yield field, wire, value, start


def _expect(wire: int, wanted: tuple[int, ...], field: int, what: str, start: int) -> None:
  if wire not in wanted:
    raise _WireError(f"{what} (field {field}) has wire type {wire}, expected one of {wanted}", start)


def _string(buf: memoryview, span: tuple[int, int], start: int) -> str:
  try:
    return bytes(buf[span[0]:span[1]]).decode("utf-8")
  except UnicodeDecodeError:
    raise _WireError("a layer name or type is not UTF-8 text", start) from None


def _packed_varints(buf: memoryview, span: tuple[int, int]) -> list[int]:
  out, pos = [], span[0]
  while pos < span[1]:
    value, pos = _varint(buf, pos, span[1])
    out.append(value)
  return out


def _int64(value: int) -> int:
  """Two's-complement reinterpretation (protobuf writes negative int32/int64 as 10-byte varints)."""
  return value - (1 << 64) if value >= 1 << 63 else value


def _repeated_real(buf: memoryview, start: int, end: int, field: int, wire: int,
                   span: tuple[int, int], width: int) -> tuple[np.ndarray, int]:
  """Decodes one occurrence of a repeated float (width 4) or double (width 8) field.

  Packed data is one np.frombuffer. Unpacked data (a tag before every element, as some old
  writers emit) is read as a run of (tag, value) records in one go, so it is fast too.

  Args:
    start: offset of the occurrence's tag; end: end of the enclosing message.

  Returns:
    (values as float32 or float64, offset after the last element consumed).
  """
  dtype = "<f4" if width == 4 else "<f8"
  lo, hi = span
  if wire == _LEN:
    if (hi - lo) % width:
      raise _WireError(f"packed field {field} has {hi - lo} bytes, not a multiple of {width}", start)
    return np.frombuffer(buf, dtype, (hi - lo) // width, lo), hi
  tag = (field << 3) | (_FIXED32 if width == 4 else _FIXED64)
  record = _F32_RECORD if width == 4 else _F64_RECORD
  n_max = (end - start) // record.itemsize
  tags = np.frombuffer(buf, np.uint8, n_max * record.itemsize, start)[::record.itemsize]
  stop = np.flatnonzero(tags != tag)
  n = int(stop[0]) if stop.size else n_max
  if n == 0:  # a tag of more than one byte (field > 15, or a non-minimal varint): this element only
    return np.frombuffer(buf, dtype, 1, lo), hi
  values = np.frombuffer(buf, record, n, start)["value"].astype(dtype)
  return values, start + n * record.itemsize


def _parse_blob(buf: memoryview, pos: int, end: int) -> _Blob:
  legacy = {}  # the legacy dims present: {1: num, 2: channels, 3: height, 4: width}
  dims: list[int] = []
  chunks: dict[int, list[np.ndarray]] = {5: [], 8: []}  # float data, double data
  while pos < end:
    start = pos
    field, wire, value, pos = _next_field(buf, pos, end)
    if field in (1, 2, 3, 4):
      _expect(wire, (_VARINT,), field, "a blob dimension", start)
      legacy[field] = _int64(value)
    elif field in (5, 8):
      width = 4 if field == 5 else 8
      _expect(wire, (_LEN, _FIXED32 if width == 4 else _FIXED64), field, "blob data", start)
      values, pos = _repeated_real(buf, start, end, field, wire, value, width)
      chunks[field].append(values)
    elif field == 7:
      _expect(wire, (_LEN,), field, "a blob shape", start)
      for f, w, v, s in _fields(buf, *value):
        if f == 1:
          _expect(w, (_VARINT, _LEN), f, "a shape dim", s)
          dims.extend(_int64(d) for d in (_packed_varints(buf, v) if w == _LEN else [v]))
  # As Caffe's Blob::FromProto: any legacy dim present means 4-D (num, channels, height, width).
  shape = tuple(legacy.get(f, 0) for f in (1, 2, 3, 4)) if legacy else tuple(dims)
  parts = chunks[5] or chunks[8]
  data = np.concatenate(parts) if len(parts) > 1 else parts[0] if parts else np.zeros(0)
  with np.errstate(over="ignore", invalid="ignore"):  # doubles beyond float32 range -> inf
    return _Blob(shape, data.astype(np.float32, copy=False))


def _parse_layer(buf: memoryview, span: tuple[int, int], v1: bool) -> _Layer:
  # Field numbers differ between V1LayerParameter and LayerParameter.
  f_name, f_type, f_blobs = (4, 5, 6) if v1 else (1, 2, 7)
  name, type_, blobs = "", "", []
  for field, wire, value, start in _fields(buf, *span):
    if field == f_name:
      _expect(wire, (_LEN,), field, "a layer name", start)
      name = _string(buf, value, start)
    elif field == f_type:
      if v1:
        _expect(wire, (_VARINT,), field, "a layer type", start)
        type_ = _V1_TYPES.get(value, f"V1 type {value}")
      else:
        _expect(wire, (_LEN,), field, "a layer type", start)
        type_ = _string(buf, value, start)
    elif field == f_blobs:
      _expect(wire, (_LEN,), field, "a blob", start)
      blobs.append(_parse_blob(buf, *value))
    elif v1 and field == 1 and wire == _LEN:
      raise _WireError("the layer uses the pre-2014 V0 encoding, which rfspec does not read "
                       "(upgrade it with Caffe's upgrade_net_proto_binary)", start)
  return _Layer(name, type_, blobs)


def _parse_net(buf: memoryview) -> list[_Layer]:
  layers = []
  for field, wire, value, start in _fields(buf, 0, len(buf)):
    if field in (2, 100):
      _expect(wire, (_LEN,), field, "a layer", start)
      layers.append(_parse_layer(buf, value, v1=field == 2))
    elif field == 1:
      _expect(wire, (_LEN,), field, "the net name", start)
  return layers


# ----------------------------------------------------------------------------- file reading


_TEXT = "it is a text file"


def _sniff(head: bytes) -> str | None:
  """A hint for files that are clearly something else, from their first bytes."""
  if head.startswith(b"\x89PNG"):
    return "it is a PNG image"
  if head.startswith(b"\xff\xd8\xff"):
    return "it is a JPEG image"
  if head.startswith(b"\x1f\x8b"):
    return "it is gzip-compressed (decompress it first)"
  if head.startswith(b"PK\x03\x04"):
    return "it is a zip archive (extract the .caffemodel from it first)"
  text = head.lstrip()
  if text[:15].lower().startswith((b"<!doctype", b"<html", b"<?xml")):
    return "it is an HTML/XML page, probably an error page saved by a failed download"
  try:
    decoded = text.decode("utf-8")
  except UnicodeDecodeError as e:
    if e.start < len(text) - 3:  # not just a character cut in half at the end of `head`
      return None
    decoded = text[:e.start].decode("utf-8")
  if decoded and all(c.isprintable() or c in "\r\n\t" for c in decoded):
    if any(word in decoded for word in ("layer", "name:", "input", "{")):
      return "it is a text prototxt (a network definition such as deploy.prototxt), not binary weights"
    return _TEXT
  return None


def _read_layers(path: str | os.PathLike) -> list[_Layer]:
  """Parses every layer of a .caffemodel, raising CaffeModelError for anything unreadable."""
  path = os.fspath(path)
  if not os.path.exists(path):
    raise FileNotFoundError(f"No such .caffemodel file: {path!r}; check the path.")
  if os.path.isdir(path):
    raise CaffeModelError(f"{path!r} is a directory, not a .caffemodel file. {_FIX}")
  with open(path, "rb") as f:
    data = f.read()
  if not data:
    raise CaffeModelError(f"{path!r} is empty (0 bytes). {_FIX}")
  hint = _sniff(data[:512])
  if hint and hint != _TEXT:
    raise CaffeModelError(f"{path!r} is not a .caffemodel: {hint}. {_FIX}")
  try:
    layers = _parse_net(memoryview(data))
  except _WireError as e:
    if e.truncated:
      what = (f"{path!r} is truncated or corrupt: {e} (at byte {e.pos:,} of {len(data):,}); "
              "it probably did not download completely.")
    else:
      what = f"{path!r} is not a valid .caffemodel protobuf: {e} (at byte {e.pos:,})."
    if hint:
      what += f" It looks like {hint[6:]}."
    raise CaffeModelError(f"{what} {_FIX}") from None
  if not any(layer.name for layer in layers):
    raise CaffeModelError(f"{path!r} holds no Caffe layers, so it is not a .caffemodel"
                          f"{' (' + hint + ')' if hint else ''}. {_FIX}")
  return layers


def _shaped(blob: _Blob) -> np.ndarray | None:
  """The blob's data reshaped to its dims, or None if the element counts disagree."""
  if any(d < 0 for d in blob.shape) or math.prod(blob.shape) != blob.data.size:
    return None
  return blob.data.reshape(blob.shape)


def _count_problem(name: str, i: int, blob: _Blob) -> str:
  return (f"{name!r} blob {i}: dims {blob.shape} need {math.prod(blob.shape):,} values but "
          f"{blob.data.size:,} are stored")


def read_caffemodel(path: str | os.PathLike) -> dict[str, list[np.ndarray]]:
  """Reads every layer's blobs from a `.caffemodel` (legacy V1 or current encoding).

  Args:
    path: a binary `.caffemodel` file.

  Returns:
    {layer name: [blob, ...]} in file order; each blob is a float32 array shaped as the file says
    (legacy blobs are 4-D (num, channels, height, width), e.g. the classifier weight is
    (1, 1, 1000, 1024); current ones use their `shape`). Parameter-free layers map to [].

  Raises:
    FileNotFoundError: `path` does not exist.
    CaffeModelError: the file is not a readable .caffemodel (empty, truncated, another format),
      or a blob's element count disagrees with its dims (all such blobs listed).
  """
  out, problems = {}, []
  for layer in _read_layers(path):
    arrays = []
    for i, blob in enumerate(layer.blobs):
      array = _shaped(blob)
      if array is None:
        problems.append(_count_problem(layer.name, i, blob))
      arrays.append(None if array is None else array.copy())  # writable, not a view of the file
    out[layer.name] = arrays
  if problems:
    raise CaffeModelError(f"{os.fspath(path)!r} has {len(problems)} corrupt blob(s):\n  "
                          + "\n  ".join(problems) + f"\n{_FIX}", problems)
  return out


# ----------------------------------------------------------------------------- params


def _caffe_shapes(flax_shapes: dict[str, tuple[int, ...]]) -> list[tuple[str, tuple[int, ...]]]:
  """Caffe blob order and shapes for one layer: conv (O, I, kh, kw) / fc (N, K), then bias (N,)."""
  kernel = flax_shapes["kernel"]
  weight = (kernel[3], kernel[2], kernel[0], kernel[1]) if len(kernel) == 4 else kernel[::-1]
  return [("weights", weight), ("bias", flax_shapes["bias"])]


def _strip_ones(shape: tuple[int, ...]) -> tuple[int, ...]:
  """Legacy blobs are right-aligned 4-D: (1, 1, 1000, 1024) is the matrix (1000, 1024)."""
  i = 0
  while i < len(shape) - 1 and shape[i] == 1:
    i += 1
  return tuple(shape[i:])


def _to_flax(array: np.ndarray, flax_shape: tuple[int, ...]) -> np.ndarray:
  """Caffe (O, I, kh, kw) -> HWIO; (N, K) -> (K, N); biases unchanged."""
  if len(flax_shape) == 4:
    array = array.transpose(2, 3, 1, 0)
  elif len(flax_shape) == 2:
    array = array.T
  return np.ascontiguousarray(array, np.float32)


def _convert(layers: dict[str, list[np.ndarray | _Blob]], source: str,
             types: dict[str, str] | None = None) -> dict:
  expected = googlenet.param_shapes()
  for name, blobs in layers.items():
    if name not in expected:
      kind = f"{types[name]}, " if types and types.get(name) else ""
      log.debug("%s: skipping layer %r (%s%d blobs): not a parameter layer of the deploy net.",
                source, name, kind, len(blobs))
  params, problems = {}, []
  for name, flax_shapes in expected.items():
    if name not in layers:
      problems.append(f"missing layer {name!r}")
      continue
    blobs = layers[name]
    wanted = _caffe_shapes(flax_shapes)
    if len(blobs) != len(wanted):
      problems.append(f"{name!r} has {len(blobs)} blob(s), expected {len(wanted)} (weights, bias)")
      continue
    params[name] = {}
    for i, ((what, caffe_shape), blob, key) in enumerate(zip(wanted, blobs, ("kernel", "bias"))):
      array = _shaped(blob) if isinstance(blob, _Blob) else np.asarray(blob)
      if array is None:
        problems.append(_count_problem(name, i, blob))
      elif _strip_ones(array.shape) != _strip_ones(caffe_shape):
        problems.append(f"{name!r} {what}: shape {tuple(array.shape)}, expected {caffe_shape}")
      else:
        params[name][key] = _to_flax(array.reshape(caffe_shape), flax_shapes[key])
  if problems:
    raise CaffeModelError(
        f"{source} does not fit the BVLC GoogLeNet deploy net ({len(problems)} problem(s)):\n  "
        + "\n  ".join(problems) + f"\n{_FIX}", problems)
  return on_device(params)


def on_device(params) -> dict:
  """{layer: {"kernel", "bias"}} of numpy arrays -> the same tree of float32 jax arrays.

  `jax.device_put`, not `jnp.asarray`: on jax 0.10 `jnp.asarray` of a numpy array compiles a copy
  program for each new shape (`lax.stage`), 116 of them for GoogLeNet, about 1 s per process.
  """
  return jax.tree.map(lambda v: jax.device_put(np.asarray(v, np.float32)), params)


def to_params(blobs: dict[str, list[np.ndarray]], *, source: str = "The weights") -> dict:
  """Maps Caffe blobs (as from `read_caffemodel`) onto GoogLeNet's Flax params.

  Args:
    blobs: {caffe layer name: [weights, bias]}; conv weights (O, I, kh, kw), inner-product
      weights (N, K), biases (N,), each possibly right-aligned in 4-D (legacy). Layers that are
      not parameter layers of the deploy net (auxiliary heads, data, loss, ReLU, ...) are skipped.
    source: how to name the weights in error messages.

  Returns:
    {caffe layer name: {"kernel": HWIO (kh, kw, I, O) or (K, N), "bias": (N,)}}, float32 jax
    arrays, exactly the tree `googlenet.param_shapes()` describes.

  Raises:
    CaffeModelError: listing every missing layer and every blob of the wrong shape at once.
  """
  return _convert(blobs, source)


def load_caffemodel(path: str | os.PathLike) -> dict:
  """Reads a `.caffemodel` and returns GoogLeNet params (see `to_params` for the layout).

  Raises:
    FileNotFoundError: `path` does not exist.
    CaffeModelError: the file is unreadable, or does not fit the deploy net (every missing layer,
      mis-shaped or corrupt blob listed in one message).
  """
  layers, types = {}, {}
  for layer in _read_layers(path):
    if layer.name in layers:
      log.debug("%s: layer %r appears again; the later copy wins (as in Caffe).", path, layer.name)
    layers[layer.name], types[layer.name] = list(layer.blobs), layer.type
  # Corrupt blobs only matter in layers the deploy net uses, so _convert checks them there.
  return _convert(layers, repr(os.fspath(path)), types)

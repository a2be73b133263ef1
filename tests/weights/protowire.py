"""A tiny protobuf *writer* for tests: builds `.caffemodel` bytes in either Caffe encoding.

Written independently of the reader in `rfspec.weights.caffe`, from the protobuf wire-format spec
and caffe.proto's field numbers, so a test that writes with this and reads with that checks the
reader against the format rather than against itself.
"""

from __future__ import annotations

from typing import Sequence

import numpy as np

# caffe.proto V1LayerParameter.LayerType values used by the tests.
V1_CONVOLUTION, V1_INNER_PRODUCT, V1_RELU, V1_DATA = 4, 14, 18, 5


def varint(value: int) -> bytes:
  value &= (1 << 64) - 1  # negative numbers as 10-byte two's complement, like protobuf
  out = bytearray()
  while True:
    byte, value = value & 0x7F, value >> 7
    out.append(byte | (0x80 if value else 0))
    if not value:
      return bytes(out)


def key(field: int, wire: int) -> bytes:
  return varint((field << 3) | wire)


def int_field(field: int, value: int) -> bytes:
  return key(field, 0) + varint(value)


def bytes_field(field: int, payload: bytes) -> bytes:
  return key(field, 2) + varint(len(payload)) + payload


def str_field(field: int, text: str) -> bytes:
  return bytes_field(field, text.encode("utf-8"))


def blob(array: np.ndarray, *, legacy: bool = False, double: bool = False,
         packed: bool = True) -> bytes:
  """A BlobProto. legacy: 4-D num/channels/height/width (right-aligned); else `shape`.

  double: store `double_data` (field 8) instead of `data` (field 5). packed=False writes one tag
  per element (data and shape dims), as old protobuf writers may.
  """
  array = np.asarray(array)
  if legacy:
    dims = (1,) * (4 - array.ndim) + array.shape
    out = b"".join(int_field(f, d) for f, d in zip((1, 2, 3, 4), dims))
  else:
    if packed:  # BlobShape.dim (field 1, int64) is declared packed
      dims = bytes_field(1, b"".join(varint(d) for d in array.shape))
    else:
      dims = b"".join(int_field(1, d) for d in array.shape)
    out = bytes_field(7, dims)
  field, fmt = (8, "<f8") if double else (5, "<f4")
  values = array.astype(fmt).ravel()
  if packed:
    out += bytes_field(field, values.tobytes())
  else:
    wire = 1 if double else 5
    out += b"".join(key(field, wire) + v.tobytes() for v in values)
  return out


def layer(name: str, blobs: Sequence[bytes] = (), *, legacy: bool = False, type_: str = "",
          bottoms: Sequence[str] = (), tops: Sequence[str] = ()) -> bytes:
  """A layer message: LayerParameter (name=1, type=2, bottom=3, top=4, blobs=7) or, legacy,
  V1LayerParameter (bottom=2, top=3, name=4, type=5 enum, blobs=6); the caller wraps it with
  `net_field`."""
  if legacy:
    v1_type = {"Convolution": V1_CONVOLUTION, "InnerProduct": V1_INNER_PRODUCT, "ReLU": V1_RELU,
               "Data": V1_DATA}.get(type_, 0)
    return (b"".join(str_field(2, b) for b in bottoms) + b"".join(str_field(3, t) for t in tops)
            + str_field(4, name) + int_field(5, v1_type) + b"".join(bytes_field(6, b) for b in blobs))
  return (str_field(1, name) + str_field(2, type_) + b"".join(str_field(3, b) for b in bottoms)
          + b"".join(str_field(4, t) for t in tops) + b"".join(bytes_field(7, b) for b in blobs))


def net(layers: Sequence[bytes], *, legacy: bool = False, name: str = "GoogleNet") -> bytes:
  """A NetParameter holding `layers` in field 2 (legacy `layers`) or 100 (current `layer`)."""
  field = 2 if legacy else 100
  return str_field(1, name) + b"".join(bytes_field(field, payload) for payload in layers)


def caffemodel(blobs: dict[str, list[np.ndarray]], *, legacy: bool = False,
               double: Sequence[str] = (), unpacked: Sequence[str] = ()) -> bytes:
  """A whole .caffemodel from {layer name: [caffe-layout arrays]}.

  Args:
    blobs: e.g. {"conv1/7x7_s2": [weights (O, I, kh, kw), bias (O,)], "conv1/relu_7x7": []}.
    legacy: V1 encoding with 4-D legacy blob dims; else the current `layer` + `shape` encoding.
    double: names of layers whose blobs are stored as double_data.
    unpacked: names of layers whose numbers are written one tag per element.
  """
  layers = []
  for name, arrays in blobs.items():
    type_ = ("ReLU" if not len(arrays) else
             "Convolution" if np.ndim(arrays[0]) == 4 else "InnerProduct")
    encoded = [blob(a, legacy=legacy, double=name in double, packed=name not in unpacked)
               for a in arrays]
    layers.append(layer(name, encoded, legacy=legacy, type_=type_))
  return net(layers, legacy=legacy)

r"""Converts GoogLeNet weights (a Caffe `.caffemodel`) into an orbax checkpoint directory.

  python -m experiments.convert_weights \
      --weights=../shared/weights/bvlc_googlenet.caffemodel --workdir=/tmp/bvlc_googlenet

The checkpoint directory (--workdir) is what `--weights=DIR` of the other binaries (and
`rfspec.load_params(DIR)`) accept; it loads faster than the `.caffemodel`, needs no protobuf
parsing, and records the sha256 of every array, so a damaged copy is refused rather than used.
`--caffemodel` and `--out` are older names of `--weights` and `--workdir`. Prints a one-line
summary on stdout.
"""

from __future__ import annotations

import math
import os

from absl import flags, logging

from experiments import _cli
from rfspec.weights import store

_WEIGHTS = _cli.define_weights_flag(
    "Weights to convert: a .caffemodel path (or 'bvlc_googlenet' from the cache, or another "
    "checkpoint dir). Default from $RFSPEC_WEIGHTS.")
_WORKDIR = _cli.define_workdir_flag(
    help="The orbax checkpoint directory to write; pass it to other binaries as --weights=DIR.")
flags.DEFINE_alias("caffemodel", "weights")
flags.DEFINE_alias("out", "workdir")
_OVERWRITE = flags.DEFINE_bool("overwrite", False,
                               "Replace --workdir if it is an existing orbax checkpoint.")


def main(argv: list[str]) -> None:
  if not flags.FLAGS["verbosity"].present:  # orbax and jax log every step at INFO
    logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    raise _cli.UserError(f"Unexpected arguments {argv[1:]}; use --weights=PATH.caffemodel --workdir=DIR.")
  params = store.load_params(_WEIGHTS.value)
  out = store.save_checkpoint(params, _WORKDIR.value, overwrite=_OVERWRITE.value)
  count = sum(math.prod(leaf.shape) for layer in params.values() for leaf in layer.values())
  source = _WEIGHTS.value if _WEIGHTS.value == store.NAME else os.path.abspath(_WEIGHTS.value)
  print(f"wrote {len(params)} layers ({count:,} parameters) from {source} to {out}")


if __name__ == "__main__":
  _cli.run(main)

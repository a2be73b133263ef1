r"""Converts a Caffe `.caffemodel` into an orbax checkpoint of GoogLeNet params.

  python -m experiments.convert_weights \
      --caffemodel=../shared/weights/bvlc_googlenet.caffemodel --out=/tmp/bvlc_googlenet

The checkpoint directory is what `--weights=DIR` (and `rfspec.load_params(DIR)`) accept; it loads
faster than the `.caffemodel` and needs no protobuf parsing. Prints a one-line summary on stdout.
"""

from __future__ import annotations

import math
import os

from absl import flags, logging

from experiments import _cli
from rfspec.weights import caffe, store

_CAFFEMODEL = flags.DEFINE_string("caffemodel", None, "Binary .caffemodel to convert.",
                                  required=True)
_OUT = flags.DEFINE_string("out", None, "Orbax checkpoint directory to write.", required=True)
_OVERWRITE = flags.DEFINE_bool("overwrite", False,
                               "Replace --out if it is an existing orbax checkpoint.")


def main(argv: list[str]) -> None:
  if not flags.FLAGS["verbosity"].present:  # orbax and jax log every step at INFO
    logging.set_verbosity(logging.WARNING)
  if len(argv) > 1:
    raise _cli.UserError(f"Unexpected arguments {argv[1:]}; use --caffemodel=PATH --out=DIR.")
  params = caffe.load_caffemodel(_CAFFEMODEL.value)
  try:
    out = store.save_checkpoint(params, _OUT.value, overwrite=_OVERWRITE.value)
  except FileExistsError as e:
    raise _cli.UserError(str(e)) from None
  count = sum(math.prod(leaf.shape) for layer in params.values() for leaf in layer.values())
  print(f"wrote {len(params)} layers ({count:,} parameters) from "
        f"{os.path.abspath(_CAFFEMODEL.value)} to {out}")


if __name__ == "__main__":
  _cli.run(main)

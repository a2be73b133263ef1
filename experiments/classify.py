"""Top-5 ImageNet labels and probabilities for each image, from BVLC GoogLeNet.

  python -m experiments.classify ../shared/images/cat.jpg ../shared/images/fish-bike.jpg \
      --weights=../shared/weights/bvlc_googlenet.caffemodel

Images are resized to 224x224 (bilinear), as Caffe's classification example does.
"""

import os
import sys

from absl import flags
import numpy as np

from experiments import _cli

_WEIGHTS = _cli.define_weights_flag()
_TOP = flags.DEFINE_integer("top", 5, "How many classes to print per image.")


def main(argv):
  paths = argv[1:]
  if not paths:
    raise _cli.UserError("Name at least one image: python -m experiments.classify IMAGE [IMAGE ...]")
  missing = [p for p in paths if not os.path.isfile(p)]
  if missing:
    raise _cli.UserError(f"No such image file: {', '.join(missing)}.")
  import rfspec
  from rfspec import files
  from rfspec.models.labels import imagenet_labels

  try:
    images = np.stack([files.load_image(p, (224, 224)) for p in paths])
  except OSError as e:
    raise _cli.UserError(f"Could not read an image ({e}). Pass JPEG or PNG files.") from None
  params = rfspec.load_params(_WEIGHTS.value)
  prob = np.asarray(rfspec.forward(params, images, taps="prob")["prob"])
  labels = imagenet_labels()
  for path, p in zip(paths, prob):
    print(path)
    for idx in np.argsort(-p)[:_TOP.value]:
      print(f"  {p[idx]:.4f}  {labels[idx]}  (class {idx})")
  print(f"classified {len(paths)} image(s)", file=sys.stderr)


if __name__ == "__main__":
  _cli.run(main)

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


_IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png")


def _glob_hint(folder: str) -> str:
  """What to pass instead of `folder`: a glob of its images, and how many it holds."""
  try:
    names = sorted(n for n in os.listdir(folder) if n.lower().endswith(_IMAGE_SUFFIXES))
  except OSError:
    names = []
  suffixes = sorted({os.path.splitext(n)[1] for n in names}) or [".jpg"]
  globs = " ".join(os.path.join(folder, f"*{x}") for x in suffixes)
  if not names:
    return f"{globs} (it holds no .jpg, .jpeg or .png files)"
  shown = ", ".join(names[:3]) + (", ..." if len(names) > 3 else "")
  return f"{globs} (it holds {len(names)} image(s): {shown})"


def main(argv):
  paths = argv[1:]
  if not paths:
    raise _cli.UserError("Name at least one image: python -m experiments.classify IMAGE [IMAGE ...]")
  folders = [p for p in paths if os.path.isdir(p)]
  if folders:
    raise _cli.UserError(f"{folders[0]} is a directory; name image files (JPEG or PNG), e.g. "
                         f"python -m experiments.classify {_glob_hint(folders[0])}.")
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

"""ImageNet class names in the BVLC GoogLeNet's output order (from third_party/synset_words.txt)."""

import functools
import pathlib

LABELS_FILE = pathlib.Path(__file__).resolve().parents[2] / "third_party" / "synset_words.txt"


@functools.lru_cache(maxsize=1)
def imagenet_labels() -> tuple[str, ...]:
  """The 1000 class names, index = output unit of "prob" (e.g. 281 -> "tabby, tabby cat")."""
  if not LABELS_FILE.exists():
    raise FileNotFoundError(f"{LABELS_FILE} is missing: install rfspec from a checkout with "
                            "`pip install -e .` so third_party/ travels with the package.")
  lines = LABELS_FILE.read_text().splitlines()
  return tuple(line.split(" ", 1)[1].strip() for line in lines if line.strip())

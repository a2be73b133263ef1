"""Config for the receptive-field census (`experiments/rf_census.py`).

  python -m experiments.rf_census --workdir=/tmp/rf_census \
      --weights=../shared/weights/bvlc_googlenet.caffemodel
  python -m experiments.rf_census --workdir=/tmp/rf_census_quick \
      --config=experiments/configs/rf_census.py:quick --weights=../shared/weights/bvlc_googlenet.caffemodel
  python -m experiments.rf_census --workdir=/tmp/rf_geom --config.erf=False   # geometry only, no weights

Override any field on the command line, e.g. `--config.sizes='(224, 320)' --config.erf_samples=4`.
"""

import ml_collections

# The main line of the net, conv1 ... inception_5b (the ERF section's default taps).
_TRUNK = ("conv1/7x7_s2", "conv2/3x3", "inception_3a/output", "inception_3b/output", "inception_4a/output",
          "inception_4c/output", "inception_4e/output", "inception_5a/output", "inception_5b/output")


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
  """The census config; `arg="quick"` gives a tiny, CPU-friendly variant."""
  config = ml_collections.ConfigDict()
  config.sizes = (224, 299, 448)  # square input sides; the census runs every tap at each
  config.heatmap_taps = ("conv2/3x3", "inception_3a/output", "inception_4c/output", "inception_5b/output")
  config.erf = True  # the effective-RF section; needs weights (--weights)
  config.erf_taps = _TRUNK
  config.erf_image_size = 224
  config.erf_samples = 16  # noise images averaged per tap
  config.erf_batch = 4  # noise images per forward pass
  config.erf_channel = -1  # -1: the whole position (sum over channels); else one channel of each tap
  config.seed = 0

  if arg == "quick":
    config.sizes = (224, 299)
    config.heatmap_taps = ("inception_3a/output", "inception_4c/output")
    config.erf_taps = ("conv2/3x3", "inception_3a/output")
    config.erf_image_size = 96
    config.erf_samples = 2
    config.erf_batch = 2
  elif arg:
    raise ValueError(f"Unknown rf_census config variant {arg!r}; use 'quick' or nothing.")
  return config

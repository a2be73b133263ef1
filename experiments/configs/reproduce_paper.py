"""All six figures of Zipser (2015); the default config of experiments.reproduce_paper.

  python -m experiments.reproduce_paper --workdir=/tmp/paper                 # full on a GPU/TPU, else cpu
  python -m experiments.reproduce_paper --workdir=/tmp/paper \
      --config=experiments/configs/reproduce_paper.py:quick                   # CPU, minutes
"""

from experiments.configs import figures


def get_config(arg=None):
  return figures.figure_config(list(figures.FIGURES), arg)

"""Figure 4 of Zipser (2015) alone (see figures.py for the node types and the rule).

  python -m experiments.reproduce_paper --workdir=/tmp/paper --config=experiments/configs/fig4.py:quick
"""

from experiments.configs import figures


def get_config(arg=None):
  return figures.figure_config(["fig4"], arg)

"""rfspec: how a convolutional node's preferred stimulus depends on its receptive field.

The public API, re-exported; see README.md for a tour.
"""

from rfspec.models.googlenet import TAPS, forward

__all__ = ["TAPS", "forward"]

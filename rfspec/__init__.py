"""rfspec: how a convolutional node's preferred stimulus depends on its receptive field.

The public API, re-exported; see README.md for a tour. Positions on a tap's grid are (i, j) =
(row, col); pixels are (y, x) = (row, col); images are RGB in [0, 1], NHWC.
"""

from rfspec.masks import node_mask
from rfspec.models.googlenet import TAPS, forward
from rfspec.geometry import effective_rf, receptive_field
from rfspec.engine import VisConfig, initial_image, visualize, visualize_grid
from rfspec.weights.store import load_params, weights_sha256
from rfspec.runs.atlas import position_atlas

__all__ = ["TAPS", "VisConfig", "effective_rf", "forward", "initial_image", "load_params", "node_mask", "position_atlas", "receptive_field",
           "visualize", "visualize_grid", "weights_sha256"]

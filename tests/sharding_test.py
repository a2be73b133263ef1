"""visualize_grid sharded over 4 forced CPU devices equals the single-device run.

jax is already initialised in the pytest process, so the check runs in a subprocess with
XLA_FLAGS=--xla_force_host_platform_device_count=4 set before jax is imported.
"""

import os
import subprocess
import sys
import textwrap

import pytest
from absl.testing import absltest

from tests.conftest import REPO

_SCRIPT = textwrap.dedent("""
    import sys
    import jax
    import numpy as np
    from jax.sharding import PartitionSpec as P

    import rfspec.engine
    from rfspec import masks
    from tests.conftest import tiny_params

    vis = rfspec.engine
    assert len(jax.devices()) == 4, jax.devices()
    params = tiny_params()
    cfg = vis.VisConfig(tap="conv2/3x3", image_hw=(40, 40), steps=4, chunk=2, jitter=3,
                        learning_rate=0.02, objective="pre_relu")
    ms = masks.node_masks(cfg.tap, 11, cfg.image_hw, [(2, 3), (7, 6), (5, 5)])
    seeds = [0, 7]  # P * S = 6: padded to 8 for 4 devices

    # The grid batch really is laid out over the 4 devices.
    mesh = vis.grid_mesh()
    state = vis._chunk_fns(cfg).init(vis._put(np.arange(8, dtype=np.int32),
                                              jax.sharding.NamedSharding(mesh, P("grid"))))
    assert len(state.z.sharding.device_set) == 4, state.z.sharding
    assert state.z.addressable_shards[0].data.shape[0] == 2

    quiet = lambda info: None
    flat = (np.tile(seeds, 3), np.repeat(ms, 2, axis=0))  # the grid's (p, s) pairs, b = p * S + s
    sharded = vis.visualize_batch(params, *flat, cfg, progress=quiet)
    single = vis.visualize_batch(params, *flat, cfg, progress=quiet, devices=jax.devices()[:1])
    assert sharded.images.shape == (6, 40, 40, 3), sharded.images.shape
    grid = vis.visualize_grid(params, seeds, ms, cfg, progress=quiet)
    np.testing.assert_array_equal(grid.reshape(6, 40, 40, 3), sharded.images)
    np.testing.assert_allclose(sharded.images, single.images, atol=1e-5)
    np.testing.assert_allclose(sharded.traces, single.traces, rtol=1e-5, atol=1e-3)
    assert not np.allclose(sharded.images[0], sharded.images[1])
    print("SHARDING-OK")
""")


@pytest.mark.slow
class ShardingTest(absltest.TestCase):

  def test_sharded_grid_equals_unsharded(self):
    env = dict(os.environ, XLA_FLAGS=f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=4",
               JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", _SCRIPT], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=900)
    self.assertEqual(proc.returncode, 0, proc.stderr[-4000:])
    self.assertIn("SHARDING-OK", proc.stdout)


if __name__ == "__main__":
  absltest.main()

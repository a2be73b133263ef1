"""Multi-host, proven on one machine: 2 JAX processes x 2 CPU devices run `visualize_grid`.

Both processes call `jax.distributed.initialize` on 127.0.0.1 (CPU collectives), then
`rfspec.visualize_grid` with the same arguments, as the README says a pod does. The grid (3
positions x 2 seeds = 6 elements) is not a multiple of the 4 global devices, so it is padded and
each process feeds and owns only its shards. Each process must return exactly (bit for bit) what
one process with the same 4-device mesh returns.
"""

import os
import socket
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from absl.testing import absltest

from tests.conftest import REPO, smoke_env

_SCRIPT = textwrap.dedent("""
    import sys
    import numpy as np

    out, process_id, port = sys.argv[1], int(sys.argv[2]), sys.argv[3]
    import jax
    if process_id >= 0:
      jax.distributed.initialize(coordinator_address=f"127.0.0.1:{port}", num_processes=2,
                                 process_id=process_id, initialization_timeout=60)
    import rfspec
    from rfspec import masks
    from tests.conftest import tiny_params

    assert jax.device_count() == 4 and jax.local_device_count() == (2 if process_id >= 0 else 4)
    cfg = rfspec.VisConfig(tap="conv2/3x3", image_hw=(40, 40), steps=4, chunk=2, jitter=3)
    ms = masks.node_masks(cfg.tap, 11, cfg.image_hw, [(2, 3), (7, 6), (5, 5)])
    result = rfspec.engine.visualize_batch(tiny_params(), np.tile([0, 7], 3), np.repeat(ms, 2, axis=0), cfg,
                                           progress=lambda _: None)
    np.savez(out, images=result.images.reshape(3, 2, 40, 40, 3), traces=result.traces.reshape(3, 2, -1))
    print("DONE", process_id, jax.process_count())
""")


def _free_port() -> int:
  with socket.socket() as s:
    s.bind(("127.0.0.1", 0))
    return s.getsockname()[1]


@pytest.mark.slow
class MultiHostTest(absltest.TestCase):

  def test_two_processes_return_the_single_process_grid_bit_for_bit(self):
    tmp = self.create_tempdir().full_path
    port = str(_free_port())
    env = dict(os.environ, JAX_PLATFORMS="cpu", **smoke_env())  # the processes agree with each other

    def start(process_id, devices):
      out = os.path.join(tmp, f"p{process_id}.npz")
      proc = subprocess.Popen([sys.executable, "-c", _SCRIPT, out, str(process_id), port], cwd=REPO,
                              env=dict(env, XLA_FLAGS=f"{env['XLA_FLAGS']} --xla_force_host_platform_device_count={devices}"),
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
      return proc, out

    def finish(proc):
      try:
        stdout, stderr = proc.communicate(timeout=240)
      except subprocess.TimeoutExpired:
        proc.kill()
        stdout, stderr = proc.communicate()
        self.fail(f"timed out:\n{stderr[-3000:]}")
      self.assertEqual(proc.returncode, 0, stderr[-3000:])
      self.assertIn("DONE", stdout)

    workers = [start(i, 2) for i in range(2)]
    for proc, _ in workers:
      finish(proc)
    single, single_out = start(-1, 4)  # one process, the same 4-device mesh
    finish(single)

    want = np.load(single_out)
    self.assertEqual(want["images"].shape, (3, 2, 40, 40, 3))
    self.assertFalse(np.array_equal(want["images"][0, 0], want["images"][0, 1]))  # seeds differ
    for _, out in workers:
      got = np.load(out)
      np.testing.assert_array_equal(got["images"], want["images"])
      np.testing.assert_array_equal(got["traces"], want["traces"])


if __name__ == "__main__":
  absltest.main()

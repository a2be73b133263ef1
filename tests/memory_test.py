"""rfspec.memory: the estimates' arithmetic on tiny shapes, and refusals before anything is allocated."""

import os
import re
import subprocess
import sys
import textwrap
from unittest import mock

from absl.testing import absltest, parameterized

from rfspec import memory
from rfspec.engine import VisConfig
from rfspec.errors import UserError
from tests.conftest import REPO

# conv1/7x7_s2 (k 7, s 2, p 3) on 33 px: (33 + 6 - 7) // 2 + 1 = 17 -> 17 x 17 x 64; its params
# 7*7*3*64 + 64. pool1/3x3_s2 (k 3, s 2, ceil): (17 - 3) / 2 + 1 = 8 -> 8 x 8 x 64; pool1/norm1 too.
INPUT_33 = 3 * 33 * 33
CONV1_33 = 17 * 17 * 64
POOL1_33 = 8 * 8 * 64
CONV1_PARAM_BYTES = 4 * (7 * 7 * 3 * 64 + 64)


class _Device:
  """A stand-in accelerator with an allocator limit (what `Device.memory_stats()` reports)."""

  def __init__(self, i, limit, in_use=0, platform="gpu"):
    self.id, self.platform, self.device_kind, self._stats = i, platform, "Fake GPU", {
        "bytes_limit": limit, "bytes_in_use": in_use}

  def memory_stats(self):
    return self._stats


def _limit(n_bytes):
  return mock.patch.object(memory, "available_bytes", return_value=(int(n_bytes), "a test limit"))


class EstimateTest(parameterized.TestCase):

  def test_step_counts_every_blob_from_the_input_to_the_tap(self):
    cfg = VisConfig(tap="conv1/7x7_s2", image_hw=(33, 33))
    per_image = 12 * (INPUT_33 + CONV1_33)
    self.assertEqual(memory.estimate_step_bytes(cfg, 1), per_image + CONV1_PARAM_BYTES)
    self.assertEqual(memory.estimate_step_bytes(cfg, 5), 5 * per_image + CONV1_PARAM_BYTES)
    deeper = VisConfig(tap="pool1/norm1", image_hw=(33, 33))
    self.assertEqual(memory.estimate_step_bytes(deeper, 1),
                     12 * (INPUT_33 + CONV1_33 + 2 * POOL1_33) + CONV1_PARAM_BYTES)

  def test_step_sees_the_canvas_and_the_dtype(self):
    padded = VisConfig(tap="conv1/7x7_s2", image_hw=(17, 17), canvas_pad=8)  # the net sees 33 px
    self.assertEqual(memory.estimate_step_bytes(padded, 1), 12 * (INPUT_33 + CONV1_33) + CONV1_PARAM_BYTES)
    half = VisConfig(tap="conv1/7x7_s2", image_hw=(33, 33), dtype="bfloat16")
    self.assertEqual(memory.estimate_step_bytes(half, 2), 2 * 6 * (INPUT_33 + CONV1_33) + CONV1_PARAM_BYTES)

  def test_forward_counts_input_outputs_and_the_largest_blob(self):
    got = memory.estimate_forward_bytes((33, 33), 3, ("conv1/7x7_s2",))
    self.assertEqual(got, 3 * 4 * (INPUT_33 + 3 * CONV1_33 + CONV1_33) + CONV1_PARAM_BYTES)
    both = memory.estimate_forward_bytes((33, 33), 1, ("conv1/7x7_s2", "pool1/3x3_s2"))
    self.assertEqual(both, 4 * (INPUT_33 + 3 * CONV1_33 + CONV1_33 + POOL1_33) + CONV1_PARAM_BYTES)


class CheckFitsTest(parameterized.TestCase):

  def test_small_work_passes(self):
    cfg = VisConfig(tap="conv1/7x7_s2", image_hw=(33, 33))
    with _limit(memory.estimate_step_bytes(cfg, 4)):
      memory.check_fits(cfg, 4)
    with _limit(memory.estimate_forward_bytes((33, 33), 4, ("conv1/7x7_s2",))):
      memory.check_forward_fits((33, 33), 4, ("conv1/7x7_s2",))

  def test_6000_px_is_refused_from_the_arithmetic_alone(self):
    cfg = VisConfig(tap="inception_4c/output", image_hw=(6000, 6000))
    with _limit(16e9), self.assertRaises(UserError) as cm:
      memory.check_fits(cfg, 8)
    message = str(cm.exception)
    need = memory.estimate_step_bytes(cfg, 8)
    self.assertGreater(need, 300e9)  # 4.1e9 activation values per image
    self.assertIn(f"about {need / 1e9:.1f} GB", message)
    self.assertIn("16.0 GB of a test limit", message)
    self.assertIn("Not even one image of this size fits", message)
    self.assertIn("RFSPEC_MEMORY_LIMIT", message)
    self.assertNotIn("\n", message)

  def test_says_how_many_images_fit(self):
    cfg = VisConfig(tap="conv1/7x7_s2", image_hw=(64, 64))
    limit = memory.estimate_step_bytes(cfg, 7) + 1  # 7 fit, 8 do not
    with _limit(limit), self.assertRaisesRegex(UserError, r"batch of 8 image\(s\).*At most 7 image\(s\)"):
      memory.check_fits(cfg, 8)
    with _limit(memory.estimate_forward_bytes((64, 64), 3, ("conv1/7x7_s2",))):
      with self.assertRaisesRegex(UserError, r"rfspec.forward on 4 image\(s\) of 64x64 px.*At most 3 image"):
        memory.check_forward_fits((64, 64), 4, ("conv1/7x7_s2",))

  def test_accelerators_hold_a_shard_each(self):
    cfg = VisConfig(tap="conv1/7x7_s2", image_hw=(64, 64))
    limit = memory.estimate_step_bytes(cfg, 2) + 1000
    devices = [_Device(i, limit + 1000, in_use=1000) for i in range(4)]
    memory.check_fits(cfg, 8, devices)  # 2 images on each of 4 devices
    with self.assertRaisesRegex(UserError, r"per device \(3 of 9 images on each of 4\).*At most 8 image"):
      memory.check_fits(cfg, 9, devices)
    devices[2]._stats["bytes_in_use"] = 10_000  # the fullest device decides
    with self.assertRaisesRegex(UserError, "device 2"):
      memory.check_fits(cfg, 8, devices)

  def test_cpu_devices_share_the_host(self):
    cfg = VisConfig(tap="conv1/7x7_s2", image_hw=(64, 64))
    cpus = [_Device(i, 0, platform="cpu") for i in range(4)]
    with _limit(memory.estimate_step_bytes(cfg, 4)):
      memory.check_fits(cfg, 4, cpus)
      with self.assertRaisesRegex(UserError, r"batch of 5 image\(s\).*At most 4"):
        memory.check_fits(cfg, 5, cpus)  # padded to 8, all in one host's memory

  def test_unknown_limit_refuses_nothing(self):
    cfg = VisConfig(tap="inception_4c/output", image_hw=(6000, 6000))
    with mock.patch.object(memory, "available_bytes", return_value=(None, "")):
      memory.check_fits(cfg, 8)
    memory.check_fits(cfg, 1, [_Device(0, None)])  # a backend without an allocator limit


class LimitTest(parameterized.TestCase):

  @parameterized.parameters(("64G", 64 << 30), ("1.5T", int(1.5 * (1 << 40))), ("512MiB", 512 << 20),
                            ("1000", 1000), ("2 gb", 2 << 30))
  def test_env_override(self, text, want):
    with mock.patch.dict(os.environ, {"RFSPEC_MEMORY_LIMIT": text}):
      self.assertEqual(memory.available_bytes()[0], want)
      self.assertEqual(memory.available_bytes(_Device(0, 1))[0], want)

  def test_env_override_that_is_not_a_size(self):
    with mock.patch.dict(os.environ, {"RFSPEC_MEMORY_LIMIT": "lots"}):
      with self.assertRaisesRegex(UserError, "RFSPEC_MEMORY_LIMIT='lots' is not a size.*64G"):
        memory.available_bytes()

  def test_host_memory_is_what_is_left(self):
    with mock.patch.dict(os.environ, {"RFSPEC_MEMORY_LIMIT": ""}):
      available, what = memory.available_bytes()
    self.assertGreater(available, 0)
    self.assertLessEqual(available, os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    self.assertTrue(what)

  def test_a_container_limit_below_the_host(self):
    files = {"/sys/fs/cgroup/memory.max": 1 << 30, "/sys/fs/cgroup/memory.current": 256 << 20}
    with mock.patch.object(memory, "_read_int", side_effect=files.get):
      available, what = memory._host_available()
    self.assertEqual(available, (1 << 30) - (256 << 20))
    self.assertIn("container", what)

  def test_accelerator_limit_is_the_allocators_free_memory(self):
    self.assertEqual(memory.available_bytes(_Device(3, 10_000, in_use=2_500))[0], 7_500)


# A 6000 x 6000 image that takes no memory (a broadcast view): forward must refuse it before it
# is copied to the device (432 MB) or compiled, so the peak RSS barely moves.
_FORWARD_SCRIPT = textwrap.dedent("""
    import resource, numpy as np, jax
    from rfspec.models import googlenet
    from rfspec.errors import UserError
    jax.devices()
    images = np.broadcast_to(np.float32(0.5), (1, 6000, 6000, 3))
    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    try:
      googlenet.forward({}, images, taps="inception_4c/output")
    except UserError as e:
      print("refused:", e)
    print("grew_kb", resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before)
""")


class ForwardRefusesBeforeAllocatingTest(absltest.TestCase):

  def test_6000_px_forward(self):
    env = dict(os.environ, RFSPEC_MEMORY_LIMIT="2G", JAX_PLATFORMS="cpu")
    proc = subprocess.run([sys.executable, "-c", _FORWARD_SCRIPT], cwd=REPO, env=env, capture_output=True,
                          text=True, timeout=300)
    self.assertEqual(proc.returncode, 0, proc.stderr[-3000:])
    self.assertIn("refused: rfspec.forward on 1 image(s) of 6000x6000 px", proc.stdout)
    self.assertIn("RFSPEC_MEMORY_LIMIT", proc.stdout)
    grew_kb = int(re.search(r"grew_kb (\d+)", proc.stdout)[1])
    self.assertLess(grew_kb, 100_000, proc.stdout)  # the image alone would be 432 MB


if __name__ == "__main__":
  absltest.main()

"""experiments/_cli.py: user errors are one paragraph and exit 1, bugs keep their traceback,
Ctrl-C leaves at once with 130, JAX's no-TPU notice is dropped, and every binary's --help shows
the common flags.

Each case is a real subprocess; they are started together in setUpClass and run concurrently.
They pass however pytest is started: in the background (`bash .ci/run &`) a non-interactive shell
starts pytest with SIGINT ignored, every child inherits that, and Python then never raises
KeyboardInterrupt; so the Ctrl-C case's child restores SIGINT first, as a terminal would have it.
(Not a Popen preexec_fn: that forks a multithreaded JAX process, which can deadlock.)
"""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import textwrap

import pytest
from absl.testing import absltest

from tests.conftest import IMAGES, REPO, shared_file

# A stand-in binary whose main() misbehaves as asked (argv[1]), run through _cli.run.
_FAKE_BINARY = textwrap.dedent("""
    import sys, threading, time
    from experiments import _cli

    def main(argv):
      mode = argv[1]
      if mode == "user_error":
        from rfspec.models import googlenet
        googlenet.check_tap("inception_4c/ouput")
      if mode == "jax_bug":
        import jax.numpy as jnp
        jnp.broadcast_to(jnp.ones(3), (4,))  # a shape bug: ValueError, must keep its traceback
      if mode == "no_tpu_notice":
        import logging
        import jax
        jax.devices()  # on a machine without a TPU, JAX logs the notice here
        log = logging.getLogger("jax._src.xla_bridge")
        # The notice as JAX words it (so the case holds where JAX skips the TPU probe), and a
        # warning from the same logger that must still show.
        log.info("Unable to initialize backend 'tpu': INTERNAL: Failed to open libtpu.so: (test)")
        log.warning("a warning from xla_bridge (test)")
      if mode == "interrupt":
        import signal
        signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started with it ignored
        # A non-daemon worker (like XLA's compile threads) that a normal exit would wait for.
        threading.Thread(target=time.sleep, args=(600,)).start()
        print("partial result", flush=False)
        print("ready", file=sys.stderr, flush=True)
        time.sleep(600)  # the test sends SIGINT here

    _cli.run(main)
""")

# Prints each binary's own flag help, as --helpshort shows it, from one process: the flags of
# one binary are deleted before the next is imported.
_HELP_SCRIPT = textwrap.dedent("""
    import importlib, sys
    from absl import flags
    base = set(flags.FLAGS)
    for binary in sys.argv[1:]:
      for name in set(flags.FLAGS) - base:
        delattr(flags.FLAGS, name)
      sys.argv[0] = f"experiments/{binary}.py"
      module = importlib.import_module(f"experiments.{binary}")
      print(f"== {binary}")
      print(flags.FLAGS.module_help(module))
""")

# Binaries and the common flags each must show in --helpshort.
_HELP = {
    "classify": ("--weights",),
    "convert_weights": ("--weights", "--workdir"),
    "reproduce_paper": ("--weights", "--workdir", "--config"),
    "specificity": ("--weights", "--workdir", "--config"),
    "rf_census": ("--weights", "--workdir", "--config"),
}


def _start(args, env=None):
  return subprocess.Popen([sys.executable, *args], cwd=REPO, env=dict(os.environ, **(env or {})),
                          stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.slow
class CliTest(absltest.TestCase):

  @classmethod
  def setUpClass(cls):
    super().setUpClass()
    tmp = tempfile.mkdtemp(prefix="cli_test_")
    cls.addClassCleanup(shutil.rmtree, tmp, ignore_errors=True)
    cache_file = os.path.join(tmp, "cache_is_a_file")
    with open(cache_file, "w") as f:
      f.write("x")
    cat = str(shared_file(IMAGES / "cat.jpg"))
    offline = {"RFSPEC_WEIGHTS_URL": "http://127.0.0.1:9/bvlc_googlenet.caffemodel", "RFSPEC_WEIGHTS": ""}
    paper = ["-m", "experiments.reproduce_paper", f"--workdir={tmp}/paper", "--figures=none"]
    cls.procs = {
        "no_config": _start(paper + ["--config=experiments/configs/nope.py"]),
        "typo_override": _start(paper + ["--config.vis.stepz=3"]),
        "cache_is_file": _start(["-m", "experiments.classify", "--weights=bvlc_googlenet", cat],
                                env=dict(offline, RFSPEC_CACHE=cache_file)),
        # /sys refuses new files even to root, unlike a chmod'ed directory.
        "cache_read_only": _start(["-m", "experiments.classify", "--weights=bvlc_googlenet", cat],
                                  env=dict(offline, RFSPEC_CACHE="/sys")),
        "user_error": _start(["-c", _FAKE_BINARY, "user_error"]),
        "jax_bug": _start(["-c", _FAKE_BINARY, "jax_bug"]),
        "interrupt": _start(["-c", _FAKE_BINARY, "interrupt"]),
        "no_tpu_notice": _start(["-c", _FAKE_BINARY, "no_tpu_notice"]),
        # Checked before the weights are loaded: this path does not exist.
        "benchmark_repeats": _start(["-m", "experiments.benchmark", "--repeats=0",
                                     "--weights=/nonexistent/w.caffemodel"]),
        "help": _start(["-c", _HELP_SCRIPT, *_HELP]),
    }
    interrupt = cls.procs["interrupt"]
    assert interrupt.stderr.readline().strip() == "ready", "the interrupt case did not start"
    interrupt.send_signal(signal.SIGINT)
    cls.results = {}
    for name, proc in cls.procs.items():
      try:
        out, err = proc.communicate(timeout=120)
      except subprocess.TimeoutExpired:
        proc.kill()
        out, err = proc.communicate()
        err += "\n<<timed out>>"
      cls.results[name] = (proc.returncode, out, err)

  def assert_one_paragraph(self, name, *needles):
    code, _, err = self.results[name]
    self.assertEqual(code, 1, err[-3000:])
    self.assertNotIn("Traceback", err)
    self.assertTrue(err.startswith("error: "), err[-3000:])
    self.assertLessEqual(len(err.strip().splitlines()), 2, err)  # the paragraph + "--helpshort" hint at most
    for needle in needles:
      self.assertIn(needle, err)

  def test_missing_config_file(self):
    self.assert_one_paragraph("no_config", "experiments/configs/nope.py", "reproduce_paper.py")

  def test_mistyped_override_is_caught_by_the_locked_config(self):
    self.assert_one_paragraph("typo_override", "stepz", "steps")

  def test_cache_that_is_a_file(self):
    self.assert_one_paragraph("cache_is_file", "RFSPEC_CACHE", "is a file", "--weights=")

  def test_read_only_cache(self):
    self.assert_one_paragraph("cache_read_only", "/sys", "RFSPEC_CACHE", "not writable", "--weights=")

  def test_library_user_error(self):
    self.assert_one_paragraph("user_error", "Unknown tap 'inception_4c/ouput'", "inception_4c/output")

  def test_jax_shape_bug_keeps_its_traceback(self):
    code, _, err = self.results["jax_bug"]
    self.assertNotEqual(code, 0)
    self.assertIn("Traceback", err)
    self.assertIn("broadcast", err)
    self.assertNotIn("error: ", err.splitlines()[0])

  def test_ctrl_c_flushes_and_exits_130_at_once(self):
    code, out, err = self.results["interrupt"]
    self.assertEqual(code, 130, err[-2000:])
    self.assertIn("partial result", out)  # stdout was flushed before leaving
    self.assertIn("rerun the same command to resume", err)
    self.assertNotIn("timed out", err)  # did not wait for the worker thread

  def test_no_tpu_notice_in_any_binary(self):
    code, _, err = self.results["no_tpu_notice"]
    self.assertEqual(code, 0, err[-3000:])
    self.assertNotIn("Unable to initialize backend 'tpu'", err)
    self.assertIn("a warning from xla_bridge (test)", err)  # only the notice is dropped

  def test_benchmark_repeats_must_be_positive(self):
    self.assert_one_paragraph("benchmark_repeats", "--repeats=0", ">= 1")
    self.assertNotIn("/nonexistent", self.results["benchmark_repeats"][2])

  def test_help_shows_the_common_flags(self):
    code, out, err = self.results["help"]
    self.assertEqual(code, 0, err[-3000:])
    sections = dict(part.split("\n", 1) for part in out.split("== ")[1:])
    self.assertEqual(set(sections), set(_HELP))
    for binary, wanted in _HELP.items():
      for flag in wanted:
        self.assertRegex(sections[binary], rf"(^|\n)\s*{flag}:", f"{binary} --helpshort lacks {flag}")


class EnsureWorkdirTest(absltest.TestCase):

  def test_creates_and_removes_a_killed_runs_temp_files(self):
    from experiments import _cli

    workdir = os.path.join(self.create_tempdir().full_path, "out")
    _cli.ensure_workdir(workdir)
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True,
                          text=True, check=True).stdout.strip()
    stale = os.path.join(workdir, f".fig2.npz.{dead}.abcd1234.tmp")
    keep = os.path.join(workdir, "fig2.npz")
    for path in (stale, keep):
      with open(path, "w") as f:
        f.write("x")
    _cli.ensure_workdir(workdir)
    self.assertEqual(os.listdir(workdir), ["fig2.npz"])

  def test_unwritable_is_a_user_error(self):
    from experiments import _cli
    from rfspec.errors import UserError

    blocker = self.create_tempfile("file").full_path
    with self.assertRaisesRegex(UserError, "Cannot write to --workdir"):
      _cli.ensure_workdir(os.path.join(blocker, "out"))


if __name__ == "__main__":
  absltest.main()

"""rfspec.locking.workdir_lock: one run per workdir; the second is told who holds it."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import threading

from absl.testing import absltest

from rfspec import locking
from rfspec.errors import UserError
from tests.conftest import REPO

# Holds the lock of argv[1] until stdin closes (or it is killed).
_HOLDER = textwrap.dedent("""
    import sys
    from rfspec.locking import workdir_lock
    lock = workdir_lock(sys.argv[1])
    print("locked", flush=True)
    sys.stdin.read()
""")


def _start_holder(workdir):
  proc = subprocess.Popen([sys.executable, "-c", _HOLDER, workdir, "--marker=holder"], cwd=REPO,
                          stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
  line = proc.stdout.readline().strip()
  if line != "locked":
    proc.kill()
    raise AssertionError(f"the holder did not take the lock: {line!r} {proc.stderr.read()[-2000:]}")
  return proc


class WorkdirLockTest(absltest.TestCase):

  def setUp(self):
    super().setUp()
    self.workdir = os.path.join(self.create_tempdir().full_path, "run")

  def test_second_process_is_told_who_holds_it(self):
    holder = _start_holder(self.workdir)
    try:
      with self.assertRaises(UserError) as cm:
        locking.workdir_lock(self.workdir)
      message = str(cm.exception)
      for part in (self.workdir, f"pid {holder.pid} on host {socket.gethostname()}", "--marker=holder",
                   "started ", "min ago", "another --workdir"):
        self.assertIn(part, message)
      self.assertNotIn("\n", message)
    finally:
      holder.stdin.close()
      holder.wait(timeout=60)
    self.assertEqual(holder.returncode, 0, holder.stderr.read()[-2000:])
    with locking.workdir_lock(self.workdir) as lock:  # free once the holder has exited
      self.assertTrue(lock.held)

  def test_killed_holder_leaves_no_stale_lock(self):
    holder = _start_holder(self.workdir)
    holder.send_signal(signal.SIGKILL)
    holder.wait(timeout=60)
    holder.stdin.close()
    lock = locking.workdir_lock(self.workdir)
    lock.release()

  def test_release_clears_the_holder_and_keeps_the_file(self):
    lock = locking.workdir_lock(self.workdir)
    path = os.path.join(self.workdir, locking.LOCK_FILE)
    with open(path) as f:
      info = json.load(f)
    self.assertEqual((info["pid"], info["host"]), (os.getpid(), socket.gethostname()))
    self.assertIn("command", info)
    lock.release()
    lock.release()  # idempotent
    self.assertFalse(lock.held)
    self.assertEqual(os.path.getsize(path), 0)
    with locking.workdir_lock(self.workdir):
      pass

  def test_reentrant_in_one_thread_exclusive_between_threads(self):
    outer = locking.workdir_lock(self.workdir)
    inner = locking.workdir_lock(self.workdir)  # a run calling another run on the same workdir
    errors = []

    def other_thread():
      try:
        locking.workdir_lock(self.workdir)
      except UserError as e:
        errors.append(str(e))

    thread = threading.Thread(target=other_thread)
    thread.start()
    thread.join()
    self.assertLen(errors, 1)
    self.assertIn("(this process)", errors[0])
    inner.release()
    self.assertTrue(outer.held)  # still held until the outer release
    outer.release()
    self.assertFalse(outer.held)
    with locking.workdir_lock(self.workdir):
      pass

  def test_unusable_workdir_is_a_user_error(self):
    blocker = self.create_tempfile("file").full_path
    with self.assertRaisesRegex(UserError, "Cannot use the workdir .*Pass a directory you can write to"):
      locking.workdir_lock(os.path.join(blocker, "run"))


if __name__ == "__main__":
  absltest.main()

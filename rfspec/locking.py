"""One run per workdir: an advisory lock that says who holds it.

Two runs writing one workdir would interleave their outputs and manifests. `workdir_lock(path)`
takes an exclusive `fcntl.flock` on `<path>/.rfspec.lock` without waiting, and on success writes
who holds it (pid, host, command line, start time) into that file. A second run gets a
`UserError` naming the holder and the fix instead of waiting or proceeding.

The kernel drops a flock when its holder exits, however it exits (Ctrl-C, kill -9, a crash), so
a lock is never stale and the file is never deleted (deleting a lock file races: a waiter may
hold the old inode while a newcomer locks a new one). On release the holder's details are
cleared, so the file only ever names a live holder.
"""

from __future__ import annotations

import errno
import fcntl
import json
import logging
import os
import shlex
import socket
import sys
import threading
import time

from rfspec.errors import UserError

__all__ = ["LOCK_FILE", "WorkdirLock", "workdir_lock"]

log = logging.getLogger(__name__)

LOCK_FILE = ".rfspec.lock"

# Locks this process holds, by lock-file path: re-entrant within one thread (a run that calls
# another run on the same workdir), exclusive between threads and processes.
_held: dict[str, "WorkdirLock"] = {}
_held_guard = threading.Lock()


def _command_line() -> str:
  argv = getattr(sys, "orig_argv", None) or [sys.executable, *sys.argv]
  return shlex.join(argv)


def _holder_text(path: str) -> str:
  """Who holds the lock, from the lock file, as a clause for the message."""
  try:
    with open(path) as f:
      info = json.loads(f.read() or "null")
  except (OSError, ValueError):
    info = None
  if not isinstance(info, dict) or "pid" not in info:
    return "another process (it has not written its details yet)"
  started = info.get("started_unix")
  age = ""
  if isinstance(started, (int, float)):
    minutes = max(0, int((time.time() - started) // 60))
    age = f", {minutes // 60} h {minutes % 60} min ago" if minutes >= 60 else f", {minutes} min ago"
  command = " ".join(str(info.get("command", "?")).split())  # one line, whatever argv held
  command = command if len(command) <= 300 else command[:297] + "..."
  me = " (this process)" if info.get("pid") == os.getpid() and info.get("host") == socket.gethostname() else ""
  return (f"pid {info.get('pid')}{me} on host {info.get('host', '?')}, started {info.get('started', '?')}"
          f"{age}, command: {command}")


class WorkdirLock:
  """A held workdir lock; `release()` (or leaving a `with` block) lets it go. Idempotent."""

  def __init__(self, directory: str, path: str, fd: int):
    self.directory, self.path, self._fd = directory, path, fd
    self._count, self._thread = 1, threading.get_ident()

  @property
  def held(self) -> bool:
    return self._fd is not None

  def release(self) -> None:
    with _held_guard:
      if self._fd is None:
        return
      self._count -= 1
      if self._count > 0:
        return
      fd, self._fd = self._fd, None
      _held.pop(self.path, None)
    try:
      os.ftruncate(fd, 0)  # the file names a live holder only
    except OSError:
      pass
    os.close(fd)  # drops the flock

  def __enter__(self) -> "WorkdirLock":
    return self

  def __exit__(self, *exc) -> None:
    self.release()

  def __repr__(self):
    return f"WorkdirLock({self.directory!r}, held={self.held})"


def workdir_lock(path: str | os.PathLike) -> WorkdirLock:
  """Takes the lock of workdir `path` (created if missing) for this run, without waiting.

  Use it as a context manager (`with workdir_lock(workdir): ...`) or keep the returned lock and
  call `release()`; either way the kernel releases it when the process ends. Within one thread
  the lock is re-entrant (each call needs its own release); another thread or process is refused.

  Returns:
    The held `WorkdirLock`.

  Raises:
    UserError: another run holds the workdir (the message names its pid, host, command line and
      start time, and the fixes); or the workdir cannot be created or written.
  """
  directory = os.path.abspath(os.fspath(path))
  lock_path = os.path.join(directory, LOCK_FILE)
  with _held_guard:
    mine = _held.get(lock_path)
    if mine is not None and mine._thread == threading.get_ident():
      mine._count += 1
      return mine
  try:
    os.makedirs(directory, exist_ok=True)
    fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
  except OSError as e:
    raise UserError(f"Cannot use the workdir {directory} ({e.strerror or e}): its lock file {lock_path} "
                    "cannot be created. Pass a directory you can write to.") from None
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except OSError as e:
    os.close(fd)
    if e.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
      raise UserError(
          f"The workdir {directory} is in use by another rfspec run: {_holder_text(lock_path)}. Two runs "
          "writing one workdir would mix their outputs. Wait for that run to finish (or stop it), or pass "
          f"another --workdir. The lock ({lock_path}) is the kernel's and ends with its process, so there "
          "is nothing to delete.") from None
    # A filesystem without flock (some network mounts): run unlocked rather than not at all.
    log.warning("Cannot lock %s (%s); running without the one-run-per-workdir guard.", lock_path, e)
    fd = os.open(os.devnull, os.O_RDONLY | os.O_CLOEXEC)
  else:
    info = {"pid": os.getpid(), "host": socket.gethostname(), "command": _command_line(),
            "started": time.strftime("%Y-%m-%d %H:%M:%S %Z"), "started_unix": time.time()}
    data = (json.dumps(info) + "\n").encode()
    # In place, not via rename: the lock belongs to this inode.
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)
  lock = WorkdirLock(directory, lock_path, fd)
  with _held_guard:
    _held[lock_path] = lock
  return lock

"""An advisory lock per workdir, so two runs never write the same files at once."""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import sys
import time

from rfspec.errors import UserError

LOCK_NAME = ".rfspec.lock"


@contextlib.contextmanager
def workdir_lock(workdir: str):
  """Holds `fcntl.flock` on WORKDIR/.rfspec.lock for the block; a second holder gets a UserError
  naming the first (pid, host, command, start time). The lock dies with its process."""
  path = os.path.join(workdir, LOCK_NAME)
  fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o666)
  try:
    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
  except BlockingIOError:
    try:
      with open(path) as f:
        who = json.load(f)
      holder = (f"process {who.get('pid')} on {who.get('host')} ({who.get('command')}), running since "
                f"{who.get('started')}")
    except (OSError, ValueError):
      holder = "another process"
    os.close(fd)
    raise UserError(f"The workdir {workdir!r} is in use by {holder}. Wait for it to finish, or use another "
                    "--workdir.") from None
  try:
    os.ftruncate(fd, 0)
    os.write(fd, json.dumps(dict(pid=os.getpid(), host=socket.gethostname(), command=" ".join(sys.argv),
                                 started=time.strftime("%Y-%m-%d %H:%M:%S"))).encode())
    yield path
  finally:
    fcntl.flock(fd, fcntl.LOCK_UN)
    os.close(fd)

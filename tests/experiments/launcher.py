"""Runs the binaries for the tests from a fork server: one process per test process that has
imported JAX, rfspec and the binaries' libraries once, and forks a child per run.

Each child runs `experiments.<name>` as `python -m` does (`runpy`, as __main__, its flags defined
and parsed afresh) with its own argv, environment and working directory, stdout and stderr in
files, and exits with the binary's status after its atexit handlers. The server never starts
JAX's backend, so a child starts its own as a fresh process would. What this saves: starting
Python and importing JAX and rfspec, about 1 CPU-s per run on this project's 2-core VM (the
suite's binary runs paid about 25 CPU-s for it). Real interpreter starts stay tested where the
process itself is the point (tests/experiments/cli_test.py: Ctrl-C, --help, the cache flags).
"""

from __future__ import annotations

import atexit
import json
import os
import signal
import subprocess
import sys
import tempfile
import threading
import time

from tests.conftest import REPO

# The server: JSON requests on stdin ({"id", "module", "argv", "env", "cwd", "out", "err"}), JSON
# events on its stdout ({"id", "pid"} when a child starts, {"id", "code"} when it ends).
_SERVER = r"""
import atexit, json, os, runpy, select, sys, traceback
import jax, ml_collections, matplotlib  # noqa: F401  (what the binaries import, once)
import experiments._cli  # noqa: F401
import rfspec.runs.atlas, rfspec.runs.census, rfspec.runs.figures, rfspec.runs.sweep  # noqa: F401
import rfspec.plots, rfspec.report, rfspec.weights.store  # noqa: F401
events = os.fdopen(os.dup(1), "w")
os.dup2(os.open(os.devnull, os.O_WRONLY), 1)  # only `events` reaches the client
children, buffer = {}, b""
print(json.dumps({"ready": os.getpid()}), file=events, flush=True)

def child(req):
  os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
  os.dup2(os.open(req["out"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 1)
  os.dup2(os.open(req["err"], os.O_WRONLY | os.O_CREAT | os.O_TRUNC), 2)
  os.chdir(req["cwd"])
  os.environ.clear()
  os.environ.update(req["env"])
  sys.argv = list(req["argv"])
  code = 0
  try:
    runpy.run_module(req["module"], run_name="__main__", alter_sys=True)
  except SystemExit as e:
    if isinstance(e.code, str):
      print(e.code, file=sys.stderr)
    code = e.code if isinstance(e.code, int) else (0 if e.code is None else 1)
  except BaseException:
    traceback.print_exc()
    code = 1
  try:
    atexit._run_exitfuncs()  # what a normal interpreter exit runs
  finally:
    for stream in (sys.stdout, sys.stderr):
      stream.flush()
    os._exit(code)

open_input = True
while open_input or children:
  if open_input and select.select([0], [], [], 0.02)[0]:
    data = os.read(0, 1 << 16)
    if not data:
      open_input = False
    buffer += data
    while b"\n" in buffer:
      line, buffer = buffer.split(b"\n", 1)
      req = json.loads(line)
      events.flush()
      sys.stderr.flush()
      pid = os.fork()
      if pid == 0:
        events.close()
        child(req)
      children[pid] = req["id"]
      print(json.dumps({"id": req["id"], "pid": pid}), file=events, flush=True)
  elif not open_input:
    select.select([], [], [], 0.02)
  while children:
    pid, status = os.waitpid(-1, os.WNOHANG)
    if pid == 0:
      break
    print(json.dumps({"id": children.pop(pid), "code": os.waitstatus_to_exitcode(status)}), file=events, flush=True)
"""


class Run:
  """A binary run in the fork server, with the parts of `subprocess.Popen` the tests use."""

  def __init__(self, server: "_Server", run_id: int, args: list[str], folder: str):
    self._server, self._id, self.args, self._folder = server, run_id, args, folder
    self.pid = server.wait_for(run_id, "pid")
    self.returncode = None

  def communicate(self, timeout: float | None = None) -> tuple[str, str]:
    try:
      code = self._server.wait_for(self._id, "code", timeout)
    except subprocess.TimeoutExpired:
      raise subprocess.TimeoutExpired(self.args, timeout) from None
    self.returncode = code
    with open(os.path.join(self._folder, "out")) as out, open(os.path.join(self._folder, "err")) as err:
      return out.read(), err.read()

  def kill(self):
    try:
      os.kill(self.pid, signal.SIGKILL)
    except ProcessLookupError:
      pass


class _Server:

  def __init__(self):
    self._proc = subprocess.Popen([sys.executable, "-c", _SERVER], cwd=REPO, stdin=subprocess.PIPE,
                                  stdout=subprocess.PIPE, env=dict(os.environ))
    self._events, self._cond, self._next = {}, threading.Condition(), 0
    first = json.loads(self._proc.stdout.readline() or "{}")
    if "ready" not in first:
      raise RuntimeError(f"the test launcher's fork server did not start (exit {self._proc.poll()})")
    threading.Thread(target=self._read, daemon=True).start()
    self._folder = tempfile.mkdtemp(prefix="launcher_")
    atexit.register(self.close)

  def _read(self):
    for line in self._proc.stdout:
      event = json.loads(line)
      with self._cond:
        self._events.setdefault(event.pop("id"), {}).update(event)
        self._cond.notify_all()
    with self._cond:
      self._events[None] = {"gone": True}
      self._cond.notify_all()

  def wait_for(self, run_id: int, key: str, timeout: float | None = None):
    deadline = None if timeout is None else time.monotonic() + timeout
    with self._cond:
      while key not in self._events.get(run_id, {}):
        if None in self._events:
          raise RuntimeError("the test launcher's fork server exited")
        left = None if deadline is None else deadline - time.monotonic()
        if left is not None and left <= 0:
          raise subprocess.TimeoutExpired("launcher", timeout)
        self._cond.wait(left)
      return self._events[run_id][key]

  def start(self, module: str, argv: list[str], env: dict[str, str]) -> Run:
    with self._cond:
      run_id, self._next = self._next, self._next + 1
    folder = os.path.join(self._folder, str(run_id))
    os.makedirs(folder)
    req = {"id": run_id, "module": module, "argv": argv, "env": env, "cwd": str(REPO),
           "out": os.path.join(folder, "out"), "err": os.path.join(folder, "err")}
    self._proc.stdin.write((json.dumps(req) + "\n").encode())
    self._proc.stdin.flush()
    return Run(self, run_id, [sys.executable, "-m", module, *argv[1:]], folder)

  def close(self):
    try:
      self._proc.stdin.close()
      self._proc.wait(timeout=60)
    except Exception:
      self._proc.kill()


_lock = threading.Lock()
_server: _Server | None = None


def start(name: str, args, env: dict[str, str]) -> Run:
  """`python -m experiments.<name> *args` with environment `env`, from this process's fork server."""
  global _server
  with _lock:
    if _server is None:
      _server = _Server()
  return _server.start(f"experiments.{name}", [f"experiments/{name}.py", *args], env)

"""Progress with an ETA: the one adapter between the engine's chunk events and every run.

The engine calls `progress(info)` with a `Progress` after each compiled chunk of a grid call
(`rfspec.visualize_grid(..., progress=...)`); the default prints one line on stderr, `None`
silences it. A run made of several grid calls (figures, atlas batches, sweep taps) counts its
work in image-steps with one `RunProgress`, whose `callback(tap)` is that `progress` function for
one grid call: every line then reports the whole run, with an ETA.

The ETA prices what is left of every planned grid call. A grid call costs an overhead (compiling,
the work between calls: a channel rule, a figure's measurements) plus its image-steps at its tap's
step rate:

  * the step rate of a tap is measured on the chunks after each call's first (the first chunk
    carries the compile); until a call has had two chunks, its tap's rate is the latest finished
    call's whole time over its image-steps (overhead included), and before that the tap has not
    run (a first chunk alone is mostly compile; without a prior it is still the best guess);
  * the overhead of a call not yet started is the latest measured call's first chunk beyond its
    image-steps at the step rate: from a call that compiled a new shape (a tap and work not run
    before; of the same tap if one ran) for a new shape, from a call that reused one for a shape
    already run (0 until one has), so equal batches, as the atlas's, pay their compile once;
  * a tap that has not run is priced by the prior (`prior_s`, seconds per image-step with the
    overhead spread over them, e.g. `cpu_prior`), scaled by how the finished calls compared with
    the prior (a busy machine is slower than the prior's idle one), else at the run's measured
    seconds per unit of relative cost (`cost`, e.g. the tap's multiply-adds).

Work restored from a store (`skip`) counts as done but is never used as a rate.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Callable, NamedTuple, Sequence, TextIO

__all__ = ["Progress", "RunProgress", "check_run_progress", "format_progress", "format_seconds", "log_progress",
           "print_progress"]

_log = logging.getLogger("rfspec")


class Progress(NamedTuple):
  """What a `progress` callback receives after each compiled chunk of a grid call.

  Attributes:
    step: steps done so far (per image).
    total: cfg.steps.
    images: grid elements being optimised (without padding).
    image_steps_per_s: throughput; after the first chunk it excludes compile time.
    elapsed_s: wall time since the call started, compile included.
    eta_s: estimated seconds left in this call.
  """

  step: int
  total: int
  images: int
  image_steps_per_s: float
  elapsed_s: float
  eta_s: float


def format_seconds(seconds: float | None) -> str:
  """45 -> "45s", 125 -> "2m05s", 3725 -> "1h02m"; None -> "?"."""
  if seconds is None:
    return "?"
  s = int(round(max(seconds, 0.0)))
  if s < 60:
    return f"{s}s"
  if s < 3600:
    return f"{s // 60}m{s % 60:02d}s"
  return f"{s // 3600}h{s % 3600 // 60:02d}m"


def format_progress(info: Progress) -> str:
  """One line for a `Progress`, e.g. 'visualize: step 64/256, 9 images, 4.1 image-steps/s, ...'."""
  return (f"visualize: step {info.step}/{info.total}, {info.images} images, {info.image_steps_per_s:.1f} "
          f"image-steps/s, elapsed {format_seconds(info.elapsed_s)}, ETA {format_seconds(info.eta_s)}")


def _emit(line: str, final: bool, stream: TextIO | None = None) -> None:
  stream = stream or sys.stderr
  if stream.isatty():  # rewrite in place on a terminal; one line per update in logs and notebooks
    stream.write("\r" + line + "\x1b[K" + ("\n" if final else ""))
  else:
    stream.write(line + "\n")
  stream.flush()


def print_progress(info: Progress) -> None:
  """The default `progress` callback: a line on stderr after each chunk."""
  _emit(format_progress(info), info.step >= info.total)


def log_progress(info: Progress) -> None:
  """A `progress` callback that logs the line at INFO on the "rfspec" logger instead."""
  _log.info("%s", format_progress(info))


class RunProgress:
  """Progress and ETA of a whole run made of several grid calls.

  Each grid call has a name (e.g. "inception_4c/5x5 batch 3") and a tap; its work is image-steps.
  Grids named in `grids` are the plan; a grid first met in `callback` or `skip` joins the plan then.

  Args:
    grids: (name, tap, image-steps) per planned grid call.
    label: printed at the start of every line (e.g. the binary's name).
    prior_s: seconds per image-step of a tap before it has run (e.g. from `rfspec.throughput`),
      or None.
    cost: relative cost of one image-step per tap, for taps with neither a measurement nor a prior.
    clock: seconds, monotonic; injectable for tests.
    stream: where lines go (stderr); `quiet=True` prints nothing.
  """

  def __init__(self, grids: Sequence[tuple[str, str, int]] = (), *, label: str = "",
               prior_s: Callable[[str], float | None] | None = None, cost: Callable[[str], float] | None = None,
               clock: Callable[[], float] = time.perf_counter, stream: TextIO | None = None, quiet: bool = False):
    self.label = label
    self._prior_fn, self._cost_fn = prior_s, cost
    self._clock, self._stream, self._quiet = clock, stream, quiet
    self._grids: dict[str, dict] = {}
    for name, tap, work in grids:
      self._add(name, tap, work)
    self._since = clock()
    self._order = -1

  def _add(self, name: str, tap: str, work: int) -> dict:
    if name not in self._grids:
      self._grids[name] = dict(tap=str(tap), work=int(work), done=0, seconds=0.0, skipped=False, first_s=0.0,
                               first_done=0, steady_s=0.0, steady_done=0, order=-1)
    return self._grids[name]

  @property
  def total(self) -> int:
    return sum(g["work"] for g in self._grids.values())

  @property
  def done(self) -> int:
    return sum(g["done"] for g in self._grids.values())

  def update(self, name: str, done: int, *, tap: str = "", work: int | None = None) -> None:
    """Grid `name` has done `done` image-steps (the time since the last update is its time: its first
    update's also holds the compile and whatever ran between calls)."""
    g = self._add(name, tap, work if work is not None else done)
    now = self._clock()
    dt, before = now - self._since, g["done"]
    g["done"] = min(int(done), g["work"])
    g["seconds"] += dt
    if before == 0:
      g["first_s"], g["first_done"] = dt, g["done"]
      self._order += 1
      g["order"] = self._order
    else:
      g["steady_s"] += dt
      g["steady_done"] += g["done"] - before
    self._since = now

  def skip(self, name: str, *, tap: str = "", work: int = 0) -> None:
    """Grid `name` was restored from a store: done, and never a rate."""
    g = self._add(name, tap, work)
    g["done"], g["skipped"] = g["work"], True
    self._since = self._clock()

  def _measured(self, tap: str | None = None) -> list[dict]:
    """Grids that ran here (not restored), of `tap` (None: any), latest started last."""
    gs = [g for g in self._grids.values() if g["done"] and not g["skipped"] and (tap is None or g["tap"] == tap)]
    return sorted(gs, key=lambda g: g["order"])

  def _step_rate(self, tap: str) -> tuple[float, bool] | None:
    """(seconds per image-step of `tap`, whether it excludes the calls' overhead), or None."""
    gs = self._measured(tap)
    if not gs:
      return None
    steady = [g for g in gs if g["steady_done"]]
    if not steady:  # no call of the tap has had a second chunk: the latest finished call, overhead included
      whole = [g for g in gs if g["done"] >= g["work"]]
      return (whole[-1]["seconds"] / whole[-1]["done"], False) if whole else None
    return sum(g["steady_s"] for g in steady) / sum(g["steady_done"] for g in steady), True

  def _overhead(self, g: dict) -> float:
    """Seconds a call not yet started spends beyond its image-steps: the latest measured call's first
    chunk beyond its steps, from a call that also repeated a compiled shape (same tap and work) if
    `g` does, else from a call that compiled a new one (of `g`'s tap if any ran); 0 if none."""
    repeats = any(h["tap"] == g["tap"] and h["work"] == g["work"] and h["done"] and not h["skipped"]
                  for h in self._grids.values())
    seen, known = set(), []
    for h in self._measured():
      shape = (h["tap"], h["work"])
      rate = self._step_rate(h["tap"])
      if rate is not None and rate[1]:
        known.append((h, shape in seen, max(0.0, h["first_s"] - h["first_done"] * rate[0])))
      seen.add(shape)
    same = [o for h, rep, o in known if rep == repeats and (repeats or h["tap"] == g["tap"])]
    if not same and not repeats:
      same = [o for h, rep, o in known if not rep]
    return same[-1] if same else 0.0

  def _speed(self) -> float:
    """Finished calls' time over what the prior gave them (1 without a prior or a finished call)."""
    if self._prior_fn is None:
      return 1.0
    took = predicted = 0.0
    for g in self._measured():
      prior = self._prior_fn(g["tap"]) if g["done"] >= g["work"] else None
      if prior:
        took += g["seconds"]
        predicted += g["work"] * prior
    return took / predicted if predicted else 1.0

  def eta_s(self) -> float | None:
    """Estimated seconds until every planned grid is done; None when nothing prices the work yet."""
    measured = self._measured()
    cost = lambda tap: float(self._cost_fn(tap)) if self._cost_fn else 1.0  # noqa: E731
    per_cost = (sum(g["seconds"] for g in measured) / sum(g["done"] * cost(g["tap"]) for g in measured)
                if measured else None)
    speed = self._speed()
    left = 0.0
    for g in self._grids.values():
      if g["done"] >= g["work"]:
        continue
      todo = g["work"] - g["done"]
      rate = self._step_rate(g["tap"])
      if rate is not None:
        left += todo * rate[0] + (self._overhead(g) if rate[1] and g["done"] == 0 else 0.0)
        continue
      prior = self._prior_fn(g["tap"]) if self._prior_fn is not None else None
      started = self._measured(g["tap"])
      if prior is not None:
        left += todo * prior * speed
      elif started:  # no prior: the tap's own first chunk, compile and all, beats other taps' rates
        left += todo * started[-1]["seconds"] / started[-1]["done"]
      elif per_cost is not None:
        left += todo * per_cost * cost(g["tap"])
      else:
        return None
    return left

  def line(self, detail: str = "") -> str:
    frac = self.done / self.total if self.total else 1.0
    head = f"{self.label}: " if self.label else ""
    return (f"{head}{detail}{'; ' if detail else ''}whole run {frac:.0%} of {self.total:,} image-steps, "
            f"ETA {format_seconds(self.eta_s())}")

  def note(self, text: str) -> None:
    """Prints `text` with the run's state."""
    if not self._quiet:
      _emit(self.line(text), True, self._stream)

  def callback(self, name: str, tap: str = "") -> Callable[[Progress], None]:
    """The engine `progress` function for grid call `name` (of `tap`)."""

    def report(info: Progress) -> None:
      self.update(name, info.step * info.images, tap=tap, work=info.total * info.images)
      if not self._quiet:
        _emit(self.line(f"{name} step {info.step}/{info.total}, {info.image_steps_per_s:.1f} image-steps/s"),
              info.step >= info.total, self._stream)

    return report


def check_run_progress(progress, make_default: Callable[[], "RunProgress"]) -> "RunProgress":
  """A run's `progress` argument -> a `RunProgress`: None gives `make_default()` (it prints on
  stderr), False a quiet one, a `RunProgress` itself; anything else is a UserError naming what to pass."""
  if progress is None:
    return make_default()
  if progress is False:
    return RunProgress(quiet=True)
  if not isinstance(progress, RunProgress):
    from rfspec.errors import UserError

    raise UserError(f"progress must be a rfspec.progress.RunProgress (e.g. RunProgress(quiet=True)), None for the "
                    f"default lines on stderr, or False for silence; got {progress!r}.")
  return progress

"""Progress with an ETA: the one adapter between the engine's chunk events and every run.

The engine calls `progress(info)` with a `Progress` after each compiled chunk of a grid call
(`rfspec.visualize_grid(..., progress=...)`); the default prints one line on stderr, `None`
silences it. A run made of several grid calls (figures, atlas batches, sweep taps) counts its
work in image-steps with one `RunProgress`, whose `callback(tap)` is that `progress` function for
one grid call: every line then reports the whole run, with an ETA.

The ETA prices work by tap: once a tap has run, at its measured seconds per image-step; before,
at a prior (`prior_s`, e.g. from `rfspec.throughput`), else at the run's measured seconds per
unit of relative cost (`cost`, e.g. the tap's multiply-adds). Work restored from a store
(`skip`) counts as done but is never used as a rate.
"""

from __future__ import annotations

import logging
import sys
import time
from typing import Callable, NamedTuple, Sequence, TextIO

__all__ = ["CPU_GRID_SECONDS", "Progress", "RunProgress", "cpu_prior", "format_progress",
           "format_seconds", "log_progress", "print_progress", "tap_macs"]

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

  def _add(self, name: str, tap: str, work: int) -> dict:
    if name not in self._grids:
      self._grids[name] = dict(tap=str(tap), work=int(work), done=0, seconds=0.0, skipped=False)
    return self._grids[name]

  @property
  def total(self) -> int:
    return sum(g["work"] for g in self._grids.values())

  @property
  def done(self) -> int:
    return sum(g["done"] for g in self._grids.values())

  def update(self, name: str, done: int, *, tap: str = "", work: int | None = None) -> None:
    """Grid `name` has done `done` image-steps (time since the last finished grid is its time)."""
    g = self._add(name, tap, work if work is not None else done)
    now = self._clock()
    g["done"] = min(int(done), g["work"])
    g["seconds"] += now - self._since
    self._since = now

  def skip(self, name: str, *, tap: str = "", work: int = 0) -> None:
    """Grid `name` was restored from a store: done, and never a rate."""
    g = self._add(name, tap, work)
    g["done"], g["skipped"] = g["work"], True
    self._since = self._clock()

  def _rate(self, tap: str) -> float | None:
    gs = [g for g in self._grids.values() if g["tap"] == tap and g["done"] and not g["skipped"]]
    n = sum(g["done"] for g in gs)
    return sum(g["seconds"] for g in gs) / n if n else None

  def eta_s(self) -> float | None:
    """Estimated seconds until every planned grid is done; None when nothing prices the work yet."""
    measured = [g for g in self._grids.values() if g["done"] and not g["skipped"]]
    cost = lambda tap: float(self._cost_fn(tap)) if self._cost_fn else 1.0  # noqa: E731
    per_cost = (sum(g["seconds"] for g in measured) / sum(g["done"] * cost(g["tap"]) for g in measured)
                if measured else None)
    left = 0.0
    for g in self._grids.values():
      if g["done"] >= g["work"]:
        continue
      rate = self._rate(g["tap"])
      if rate is None and self._prior_fn is not None:
        rate = self._prior_fn(g["tap"])
      if rate is None and per_cost is not None:
        rate = per_cost * cost(g["tap"])
      if rate is None:
        return None
      left += (g["work"] - g["done"]) * rate
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


# ----------------------------------------------------------------------------- a cost prior


def tap_macs(tap: str, image_hw: tuple[int, int]) -> int:
  """Multiply-adds of the convolutions (and the classifier) a forward pass to `tap` needs: its
  ancestors in `googlenet.LAYERS`. A prior for how an image-step's cost grows with depth."""
  from rfspec import masks as masks_lib
  from rfspec.models import googlenet

  needed, todo = set(), [tap]
  while todo:
    name = todo.pop()
    if name != googlenet.INPUT and name not in needed:
      needed.add(name)
      todo.extend(googlenet.LAYER_BY_NAME[name].bottoms)
  channels = {googlenet.INPUT: 3, **{layer.name: layer.channels for layer in googlenet.LAYERS}}
  macs = 0
  for layer in googlenet.LAYERS:
    if layer.name in needed and layer.kind in ("conv", "fc"):
      h, w, c = masks_lib.tap_shape(layer.name, image_hw) if layer.kind == "conv" else (1, 1, layer.channels)
      c_in = sum(channels[b] for b in layer.bottoms)
      if layer.kind == "fc":
        bh, bw, _ = masks_lib.tap_shape(layer.bottoms[0], image_hw)
        c_in *= bh * bw
      macs += h * w * layer.k * layer.k * c_in * c
  return macs


# Seconds each grid call costs besides its steps on 2 CPU cores: compiling it, the channel rule's
# forward passes and its figure's share of the measurements (a quick run is mostly this).
CPU_GRID_SECONDS = 12.0


def cpu_prior(image_hw: tuple[int, int], grids: Sequence[tuple[str, str, int]] = ()) -> Callable[[str], float]:
  """A `RunProgress` prior: seconds per image-step of `tap` at `image_hw` on 2 CPU cores (the
  measured table, `rfspec.throughput.seconds_per_image_step`), with each planned grid call's
  overhead (`CPU_GRID_SECONDS`) spread over its tap's image-steps.

  Args:
    image_hw: the run's input size.
    grids: the run's planned (name, tap, image-steps), for the overhead share; empty: none.
  """
  from rfspec import throughput  # the measured table (it imports tap_macs from here)

  work: dict[str, int] = {}
  calls: dict[str, int] = {}
  for _, tap, n in grids:
    work[tap] = work.get(tap, 0) + int(n)
    calls[tap] = calls.get(tap, 0) + 1

  def prior(tap: str) -> float:
    step = throughput.seconds_per_image_step(tap, tuple(image_hw))
    return step + (CPU_GRID_SECONDS * calls[tap] / work[tap] if work.get(tap) else 0.0)

  return prior

"""The receptive-field census as a run: how much of each tap's RF falls off the image.

Geometry (`rfspec.geometry.census`) needs no weights: every spatial tap at every input size, its
RF size, stride, offset, grid, the share of positions whose RF lies wholly inside and the mean
inside fraction. With `erf` it also measures effective RFs (mean |d act / d input| over noise,
`rfspec.geometry.erf_summary`) at the centre, edge and corner nodes of each ERF tap; each tap is
one unit of the `Store`, so a rerun (or a killed run) redoes only the taps it lacks, and the
weights load only if one is missing.

A notebook calls exactly what `python -m experiments.rf_census` calls:

    settings = runs.census.settings_from_config(config)   # validates everything, loads nothing
    with runs.Store(workdir, weights_sha256=digest, schema=runs.census.SCHEMA) as store:
      result = runs.census.run_census(lambda: rfspec.load_params(src), settings, store)

Positions are (i, j) = (row, col) of a tap's grid; pixels (y, x). Numbers only: the tables are in
`rfspec.report.census_markdown`, the plots in `rfspec.plots`.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable, NamedTuple

import jax

from rfspec import geometry
from rfspec.errors import UserError
from rfspec.runs.store import Store

__all__ = ["CensusResult", "CensusSettings", "SCHEMA", "run_census", "settings_from_config"]

SCHEMA = 1


@dataclasses.dataclass(frozen=True)
class CensusSettings:
  """A validated census config (see experiments/configs/rf_census.py for the fields)."""

  sizes: tuple[tuple[int, int], ...]
  heatmap_taps: tuple[str, ...]
  erf: bool
  erf_taps: tuple[str, ...]
  erf_image_hw: tuple[int, int]
  erf_samples: int
  erf_batch: int
  erf_channel: int | None
  seed: int


class CensusResult(NamedTuple):
  """rows: one dict per (tap, size) (`rfspec.geometry.census`); erf: None, or {"image_hw", "samples",
  "channel", "seed", "rows": one dict per probed node (`rfspec.geometry.erf_summary`)}."""

  rows: list[dict[str, Any]]
  erf: dict[str, Any] | None


def _positive_int(v) -> bool:
  return isinstance(v, int) and not isinstance(v, bool) and v > 0


def settings_from_config(config) -> CensusSettings:
  """Checks the whole config before anything loads; every problem in one UserError paragraph."""
  problems, sizes = [], []
  for s in config.sizes:
    hw = (s, s) if isinstance(s, int) else tuple(s)
    if len(hw) != 2 or not all(_positive_int(v) for v in hw):
      problems.append(f"config.sizes must hold positive ints (square sides) or (H, W) pairs; got {s!r}")
    else:
      sizes.append(hw)
  if not config.sizes:
    problems.append("config.sizes is empty; give at least one input size, e.g. --config.sizes='(224,)'")
  for tap in config.heatmap_taps:
    try:
      geometry.check_spatial_tap(tap)
    except UserError as e:
      problems.append(f"heatmap_taps: {str(e).rstrip('.')}")
  channel = None if config.erf_channel < 0 else int(config.erf_channel)
  if config.erf:
    if not (_positive_int(config.erf_samples) and _positive_int(config.erf_batch)):
      problems.append(f"config.erf_samples and config.erf_batch must be >= 1; got {config.erf_samples!r} and {config.erf_batch!r}")
    hw = (config.erf_image_size, config.erf_image_size)
    for tap in config.erf_taps:
      try:
        geometry.probe_positions(tap, hw)
        if channel is not None:
          geometry.branch_tap(tap, channel)
      except UserError as e:
        problems.append(str(e).rstrip("."))
  if problems:
    raise UserError("The rf_census config has problems: " + "; ".join(problems) + ". Fix these fields "
                    "(e.g. --config.sizes='(224, 299)') and run again.")
  return CensusSettings(tuple(sizes), tuple(config.heatmap_taps), bool(config.erf), tuple(config.erf_taps),
                        (config.erf_image_size, config.erf_image_size), int(config.erf_samples),
                        int(config.erf_batch), channel, int(config.seed))


def run_census(load_params: Callable[[], Any], settings: CensusSettings, store: Store, *,
               log: Callable[[str], None] = lambda msg: None) -> CensusResult:
  """The census, and the ERF section when `settings.erf` (params from `load_params()`, called only
  if some tap is not stored). `log` gets one line per step (the binary prints them on stderr)."""
  rows = geometry.census(settings.sizes)
  if not settings.erf:
    return CensusResult(rows, None)
  common = dict(image_hw=list(settings.erf_image_hw), samples=settings.erf_samples,
                channel=settings.erf_channel, seed=settings.seed)
  params, erf_rows = None, []
  for n, tap in enumerate(settings.erf_taps):
    unit, key = f"erf/{geometry.tap_filename(tap)}", dict(common, tap=tap)
    stored = store.load(unit, key)
    if stored is None:
      if params is None:
        log("loading weights")
        params = load_params()
      log(f"ERF {n + 1}/{len(settings.erf_taps)}: {tap} at {settings.erf_image_hw[0]}x{settings.erf_image_hw[1]}, "
          f"{settings.erf_samples} noise images")
      tap_rows = geometry.erf_summary(params, (tap,), settings.erf_image_hw, key=jax.random.key(settings.seed),
                                      num_samples=settings.erf_samples, channel=settings.erf_channel,
                                      batch_size=settings.erf_batch)
      store.save(unit, key, {}, {"rows": tap_rows})
    else:
      log(f"ERF {n + 1}/{len(settings.erf_taps)}: {tap} cached in the workdir ({unit}), reused")
      tap_rows = stored[1]["rows"]
    erf_rows += tap_rows
  return CensusResult(rows, dict(common, rows=erf_rows))

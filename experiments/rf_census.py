"""Receptive-field census: how much of each GoogLeNet tap's RF falls off the image.

  python -m experiments.rf_census --workdir=/tmp/rf_census \
      --weights=../shared/weights/bvlc_googlenet.caffemodel
  python -m experiments.rf_census --workdir=/tmp/rf_census_quick \
      --config=experiments/configs/rf_census.py:quick --weights=../shared/weights/bvlc_googlenet.caffemodel
  python -m experiments.rf_census --workdir=/tmp/rf_geom --config.erf=False   # no weights needed

Writes to --workdir:
  rf_census.json              every tap at every size: RF size, stride, offset, grid, % of positions
                              whose RF lies fully inside, mean inside fraction; and the ERF summary
  rf_census.md                the same as markdown tables
  pct_inside_vs_depth.png     % fully inside against depth, one line per input size
  inside_fraction_<tap>.png   per-node inside-fraction heatmaps for the config's heatmap taps
  erf/                        per-tap ERF results (units of rfspec.runs.Store, keyed on the settings
                              and the weights' sha256, verified by checksum), reused by a rerun

With `config.erf` (the default) it also measures effective RFs (mean |d act / d input| over noise)
at the centre, edge and corner nodes of each ERF tap, which needs weights.
"""

from __future__ import annotations

import os
import sys

from experiments import _cli

_WORKDIR = _cli.define_workdir_flag()
_WEIGHTS = _cli.define_weights_flag()
_CONFIG = _cli.define_config_flag("rf_census")

ERF_SCHEMA = 1  # bump when a stored ERF unit's format changes


def _progress(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def _sizes(config) -> list[tuple[int, int]]:
  sizes = []
  for s in config.sizes:
    hw = (s, s) if isinstance(s, int) else tuple(s)
    if len(hw) != 2 or not all(isinstance(v, int) and v > 0 for v in hw):
      raise _cli.UserError(f"config.sizes must hold positive ints (square sides) or (H, W) pairs; got {s!r}.")
    sizes.append(hw)
  if not sizes:
    raise _cli.UserError("config.sizes is empty; give at least one input size, e.g. --config.sizes='(224,)'.")
  return sizes


def _erf_rows(config, workdir: str) -> dict:
  """ERF summary for `config.erf_taps`, reusing per-tap results cached in the workdir."""
  import jax

  from rfspec.geometry import branch_tap, erf_summary, probe_positions, tap_filename

  hw = (config.erf_image_size, config.erf_image_size)
  channel = None if config.erf_channel < 0 else int(config.erf_channel)
  for tap in config.erf_taps:  # validate everything before the slow weight load
    probe_positions(tap, hw)
    if channel is not None:
      branch_tap(tap, channel)
  if config.erf_samples < 1 or config.erf_batch < 1:
    raise _cli.UserError("config.erf_samples and config.erf_batch must be >= 1.")
  # Keyed on the weights' content (sha256), not their path: replacing the file at --weights redoes the
  # ERFs. Each tap is a unit of a Store, vouched for by checksum, so a hand-edited one is recomputed.
  from rfspec.runs.store import Store

  digest = _cli.weights_digest(_WEIGHTS.value)
  settings = {"image_hw": list(hw), "samples": config.erf_samples, "channel": channel, "seed": config.seed}
  rows = {}
  with Store(workdir, weights_sha256=digest, schema=ERF_SCHEMA) as store:
    for tap in config.erf_taps:
      unit = store.load(f"erf/{tap_filename(tap)}", dict(settings, tap=tap))
      if unit is not None:
        rows[tap] = unit[1]["rows"]
    todo = [t for t in config.erf_taps if t not in rows]
    if todo:
      params = _cli.load_params(_WEIGHTS.value)
      key = jax.random.key(config.seed)
      for n, tap in enumerate(todo):
        _progress(f"ERF {n + 1}/{len(todo)}: {tap} at {hw[0]}x{hw[1]}, {config.erf_samples} noise images")
        rows[tap] = erf_summary(params, (tap,), hw, key=key, num_samples=config.erf_samples,
                                channel=channel, batch_size=config.erf_batch)
        store.save(f"erf/{tap_filename(tap)}", dict(settings, tap=tap), {}, {"rows": rows[tap]})  # resume from here
    else:
      _progress(f"ERF: all {len(config.erf_taps)} taps cached in {os.path.join(workdir, 'erf')}")
  return {"weights": _WEIGHTS.value, "weights_sha256": digest, **settings,
          "rows": [r for t in config.erf_taps for r in rows[t]]}


def main(argv):
  if len(argv) > 1:
    raise _cli.UserError(f"Unexpected arguments {argv[1:]}; rf_census takes only flags.")
  config = _CONFIG.value
  workdir = _cli.ensure_workdir(_WORKDIR.value)

  import matplotlib

  matplotlib.use("Agg")
  from rfspec import files
  from rfspec.geometry import (census, census_markdown, plot_inside_fractions, plot_pct_inside,
                                      spatial_taps, tap_filename)
  from rfspec.models import googlenet

  sizes = _sizes(config)
  for tap in config.heatmap_taps:
    googlenet.check_tap(tap)
    if tap not in spatial_taps():
      raise _cli.UserError(f"Heatmap tap {tap!r} has no spatial grid; pick one of the spatial taps.")

  _progress(f"census: {len(spatial_taps())} taps x {len(sizes)} sizes")
  rows = census(sizes)
  erf = _erf_rows(config, workdir) if config.erf else None

  files.write_json(os.path.join(workdir, "rf_census.json"), {
      "sizes": [list(hw) for hw in sizes], "census": rows, "erf": erf, "config": config})
  files.write_text(os.path.join(workdir, "rf_census.md"),
                census_markdown(rows, erf["rows"] if erf else None, erf["image_hw"] if erf else None))
  files.save_figure(os.path.join(workdir, "pct_inside_vs_depth.png"), plot_pct_inside(rows))
  for tap in config.heatmap_taps:
    _progress(f"heatmap: {tap}")
    files.save_figure(os.path.join(workdir, f"inside_fraction_{tap_filename(tap)}.png"), plot_inside_fractions(tap, sizes))

  key_row = next((r for r in rows if r["tap"] == "inception_4c/output"), rows[-1])
  erf_note = f"; ERF at {len(config.erf_taps)} taps" if erf else ""
  print(f"rf_census: {len(rows)} rows ({len(sizes)} sizes) -> {os.path.join(workdir, 'rf_census.json')}; "
        f"{key_row['tap']} at {key_row['image_hw'][0]}x{key_row['image_hw'][1]}: RF {key_row['rf_size']} px, "
        f"{key_row['pct_fully_inside']:.1f} % of positions fully inside{erf_note}")


if __name__ == "__main__":
  _cli.run(main)

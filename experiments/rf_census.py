"""Receptive-field census: how much of each GoogLeNet tap's RF falls off the image.

  python -m experiments.rf_census --workdir=/tmp/rf_census \
      --weights=../shared/weights/bvlc_googlenet.caffemodel
  python -m experiments.rf_census --workdir=/tmp/rf_census_quick \
      --config=experiments/configs/rf_census.py:quick --weights=../shared/weights/bvlc_googlenet.caffemodel
  python -m experiments.rf_census --workdir=/tmp/rf_geom --config.erf=False   # no weights needed

Flags -> `rfspec.runs.census.run_census` -> report / plots -> files. Writes to --workdir:
  rf_census.json              every tap at every size: RF size, stride, offset, grid, % of positions
                              whose RF lies fully inside, mean inside fraction; and the ERF summary
  rf_census.md                the same as markdown tables
  pct_inside_vs_depth.png     % fully inside against depth, one line per input size
  inside_fraction_<tap>.png   per-node inside-fraction heatmaps for the config's heatmap taps
  erf/                        one Store unit per ERF tap (keyed on the settings and the weights'
                              sha256), reused by a rerun

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


def _log(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def main(argv):
  if len(argv) > 1:
    raise _cli.UserError(f"Unexpected arguments {argv[1:]}; rf_census takes only flags.")
  from rfspec.runs import census

  config = _CONFIG.value
  settings = census.settings_from_config(config)  # the whole config, before any weights load
  workdir = _cli.ensure_workdir(_WORKDIR.value)
  import matplotlib

  matplotlib.use("Agg")
  from rfspec import files, geometry, plots, report
  from rfspec.runs.store import Store

  digest = _cli.weights_digest(_WEIGHTS.value) if settings.erf else ""
  _log(f"census: {len(geometry.spatial_taps())} taps x {len(settings.sizes)} sizes")
  with Store(workdir, weights_sha256=digest, schema=census.SCHEMA) as store:
    result = census.run_census(lambda: _cli.load_params(_WEIGHTS.value), settings, store, log=_log)
  rows, erf = result.rows, result.erf
  if erf is not None:
    erf = dict(erf, weights=_WEIGHTS.value, weights_sha256=digest)
  files.write_json(os.path.join(workdir, "rf_census.json"), {
      "sizes": [list(hw) for hw in settings.sizes], "census": rows, "erf": erf, "config": config})
  files.write_text(os.path.join(workdir, "rf_census.md"),
                   report.census_markdown(rows, erf["rows"] if erf else None, erf["image_hw"] if erf else None))
  files.save_figure(os.path.join(workdir, "pct_inside_vs_depth.png"), plots.plot_pct_inside(rows))
  for tap in settings.heatmap_taps:
    _log(f"heatmap: {tap}")
    files.save_figure(os.path.join(workdir, f"inside_fraction_{geometry.tap_filename(tap)}.png"),
                      plots.plot_inside_fractions(tap, settings.sizes))

  key_row = next((r for r in rows if r["tap"] == "inception_4c/output"), rows[-1])
  erf_note = f"; ERF at {len(settings.erf_taps)} taps" if erf else ""
  print(f"rf_census: {len(rows)} rows ({len(settings.sizes)} sizes) -> {os.path.join(workdir, 'rf_census.json')}; "
        f"{key_row['tap']} at {key_row['image_hw'][0]}x{key_row['image_hw'][1]}: RF {key_row['rf_size']} px, "
        f"{key_row['pct_fully_inside']:.1f} % of positions fully inside{erf_note}")


if __name__ == "__main__":
  _cli.run(main)

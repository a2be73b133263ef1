"""The position atlas: one node type at every position of its grid, each position against the centre.

  python -m experiments.position_atlas --workdir=/tmp/atlas_cpu --config=experiments/configs/position_atlas.py:cpu
  python -m experiments.position_atlas --workdir=/tmp/atlas_quick --config=experiments/configs/position_atlas.py:quick

Flags -> `rfspec.runs.atlas.run_atlas` -> plots / page -> files. Every compiled batch and the measure
are units of a `rfspec.runs.Store` (keyed on the config and the weights' sha256), so a killed run
resumes without redoing finished batches; the outputs are sealed by checksum, and a rerun redoes
any that fail the check (a truncated page, an edited JSON).

Outputs in DIR: atlas.html (the heat map of psi_auc vs the centre, click a cell for the two
positions cut to their common window; the mosaic, click a tile for every start), atlas.json (every
number, the channel rule, the weights' sha256, how to remake any tile), atlas.png (the mosaic),
atlas_psi.png (the heat map), atlas.npz (the exact images); DIR/atlas/ holds the units.
"""

from __future__ import annotations

import os
import time

from absl import flags

from experiments import _cli

_WORKDIR = _cli.define_workdir_flag()
_WEIGHTS = _cli.define_weights_flag()
_CONFIG = _cli.define_config_flag("position_atlas")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Redo every unit even if stored.")

OUTPUTS = ("atlas.html", "atlas.json", "atlas.png", "atlas_psi.png", "atlas.npz")


def main(argv):
  if len(argv) > 1:
    raise _cli.UserError(f"Unexpected arguments {argv[1:]}; flags look like --workdir=DIR.")
  from rfspec.runs import atlas

  settings = atlas.settings_from_config(_CONFIG.value)  # the whole config, before any weights load
  workdir = _cli.ensure_workdir(_WORKDIR.value)
  digest = _cli.weights_digest(_WEIGHTS.value)
  from rfspec import files, plots, report
  from rfspec.runs.store import Store

  t0 = time.perf_counter()
  with Store(workdir, weights_sha256=digest, schema=atlas.SCHEMA, overwrite=_OVERWRITE.value) as store:
    key = dict(settings=settings.to_dict(), report=report.ATLAS_REPORT_VERSION)
    paths = {name: os.path.join(workdir, name) for name in OUTPUTS}
    if store.sealed("atlas", key) is not None:
      print(f"{report.smoke_head(settings.smoke_test)}position_atlas: up to date, outputs verified by checksum "
            f"(use --overwrite to redo); open {paths['atlas.html']}")
      return
    params = _cli.load_params(_WEIGHTS.value)
    result = atlas.run_atlas(params, settings, store)
    summary = atlas.summary(result, weights=_WEIGHTS.value, weights_sha256=digest)
    title = f"{result.tap} channel {result.channel}: first start per position"
    note = report.SMOKE_TEST if settings.smoke_test else ""
    mosaic, layout = plots.atlas_mosaic(result.images[:, :, 0], result.boxes, result.inside, result.rows,
                                        result.cols, title=title, tile=settings.mosaic_tile, note=note,
                                        seeds=result.seeds[:, :, 0])
    heat, cells = plots.atlas_psi_heatmap(plots.atlas_psi_figure(
        result.psi, result.psi_ci, result.psi_reason, result.window_share, result.rows, result.cols,
        result.reference, title=f"{result.tap} channel {result.channel}", degenerate=result.psi_degenerate,
        note=note, n_starts=settings.seeds_per_position))
    summary.update(mosaic=layout, seconds=time.perf_counter() - t0)
    files.write_png(paths["atlas.png"], mosaic)
    files.write_png(paths["atlas_psi.png"], heat)
    files.write_npz(paths["atlas.npz"], {f: getattr(result, f) for f in (
        "images", "seeds", "traces", "start_activation", "final_activation", "rows", "cols", "boxes", "inside", "psi",
        "psi_ci", "window_share", "window_rects")})
    files.write_json(paths["atlas.json"], summary)
    files.write_text(paths["atlas.html"], report.atlas_html(summary, result.images, heatmap=heat, heatmap_cells=cells))
    store.seal("atlas", key, paths)
  print(f"{report.smoke_head(settings.smoke_test)}position_atlas: {report.atlas_summary_line(summary)}; "
        f"{time.perf_counter() - t0:.0f}s; open {paths['atlas.html']}")


if __name__ == "__main__":
  _cli.run(main)

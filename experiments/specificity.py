"""The paper's claims as numbers: one verdict per claim, with intervals and the run's own nulls.

  python -m experiments.specificity --workdir=/tmp/spec224 --config=experiments/configs/specificity.py:cpu224
  python -m experiments.specificity --workdir=/tmp/spec_quick --config=experiments/configs/specificity.py:quick

Flags -> `rfspec.runs.sweep.run_sweep` -> report / plots -> files. Every compiled batch and every
tap's measurements are units of a `rfspec.runs.Store` (keyed on the config and the weights'
sha256), so a killed run resumes without redoing finished work; the outputs are sealed by
checksum, and a rerun redoes any that fail the check.

Outputs in DIR: specificity.json (settings, the five claims, per-tap numbers, dead runs),
specificity.md, specificity.html, psi_vs_off_image.png; DIR/sweep/<tap>/ holds the units.
"""

from __future__ import annotations

import os
import time

from absl import flags

from experiments import _cli

_WORKDIR = _cli.define_workdir_flag()
_WEIGHTS = _cli.define_weights_flag()
_CONFIG = _cli.define_config_flag("specificity")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Redo every unit even if stored.")

OUTPUTS = ("specificity.json", "specificity.md", "specificity.html", "psi_vs_off_image.png")


def main(argv):
  if len(argv) > 1:
    raise _cli.UserError(f"Unexpected arguments {argv[1:]}; flags look like --workdir=DIR.")
  from rfspec.runs import sweep

  settings = sweep.settings_from_config(_CONFIG.value)  # the whole config, before any weights load
  refs = [p.strip() for p in str(_CONFIG.value.get("reference_images", "")).split(",") if p.strip()]
  for p in refs:
    if not os.path.isfile(p):
      raise _cli.UserError(f"config.reference_images: {p!r} is not a file; pass comma-separated image files.")
  workdir = _cli.ensure_workdir(_WORKDIR.value)
  digest = _cli.weights_digest(_WEIGHTS.value)
  from rfspec import files, plots, report
  from rfspec.runs.store import Store

  t0 = time.perf_counter()
  with Store(workdir, weights_sha256=digest, schema=sweep.SCHEMA, overwrite=_OVERWRITE.value) as store:
    key = dict(settings=settings.to_dict(), references=[files.file_digest(p)["sha256"] for p in refs],
               report=report.SWEEP_REPORT_VERSION)
    paths = {name: os.path.join(workdir, name) for name in OUTPUTS}
    if store.sealed("specificity", key) is not None:
      print(f"{report.smoke_head(settings.smoke_test)}specificity: up to date, outputs verified by checksum (use "
            f"--overwrite to redo); open {paths['specificity.md']}")
      return
    params = _cli.load_params(_WEIGHTS.value)
    result = sweep.run_sweep(params, settings, store, natural=sweep.natural_photos(refs))
    summary = sweep.summary(result, weights=_WEIGHTS.value, weights_sha256=digest)
    summary["timing"] = dict(this_run_s=time.perf_counter() - t0, taps_s={r.tap: r.seconds for r in result.runs})
    files.save_figure(paths["psi_vs_off_image.png"], plots.specificity_figure(summary))
    files.write_text(paths["specificity.md"], report.specificity_markdown(summary))
    files.write_text(paths["specificity.html"], report.specificity_html(summary))
    files.write_json(paths["specificity.json"], summary)
    store.seal("specificity", key, paths)
  table = "; ".join(f"{c['claim'].split('.')[0]}: {c['verdict']}" for c in summary["claims"])
  print(f"{report.smoke_head(settings.smoke_test)}specificity: claims {table}; {time.perf_counter() - t0:.0f}s; "
        f"open {paths['specificity.md']}")


if __name__ == "__main__":
  _cli.run(main)

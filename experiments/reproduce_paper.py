"""Reproduces Figures 1-6 of Zipser (2015) on BVLC GoogLeNet and writes an HTML report.

  python -m experiments.reproduce_paper --workdir=/tmp/paper        # full on a GPU/TPU, else cpu
  python -m experiments.reproduce_paper --workdir=/tmp/paper \
      --config=experiments/configs/reproduce_paper.py:quick          # a smoke test, minutes on a CPU
  python -m experiments.reproduce_paper --workdir=/tmp/paper \
      --config=experiments/configs/fig2.py                           # one figure

Flags -> settings (validated whole) -> weights -> `rfspec.runs.figures.run_figures` -> plots and
report -> files -> seal. The first stderr line says which variant runs and why (without one in
--config: `full` if JAX's backend is a GPU or TPU, else `cpu`); the next gives the whole run's ETA
before the first step, and every progress line updates it. Each panel (one compiled grid call) and
each figure's numbers are units of a `rfspec.runs.Store`, so a killed run resumes where it stopped;
the outputs are sealed by checksum, and a rerun redoes any that fail the check.

Outputs in DIR: figN.png (the grid: RF boxes around each image, dashed where clipped; small RFs
zoomed beside it), figN.json (the numbers, how to regenerate any image bit for bit, and the PNG's
layout: `plots.grid_geometry(R, C, **png_layout)` finds each cell), figN.npz
(images [K, P, S, H, W, 3] and final_activation [K, P, S] for K panels, P positions, S seeds) and
report.html; DIR/figures/ holds the units.
"""

from __future__ import annotations

import os
import sys
import time

from absl import flags
import numpy as np

from experiments import _cli

_WORKDIR = _cli.define_workdir_flag()
_WEIGHTS = _cli.define_weights_flag()
_CONFIG = _cli.define_config_flag("reproduce_paper")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Redo every panel and output even if stored.")
_ONLY = flags.DEFINE_list("figures", [], "Run only these figures of the config (e.g. fig1,fig4).")

ACCELERATOR_BACKENDS = ("gpu", "cuda", "rocm", "tpu")


def pick_variant(config, backend: str, config_file: str = "experiments/configs/reproduce_paper.py"):
  """(config as a dict, the run's first stderr line). A config that names no variant (`variant =
  "auto"`) runs `full` on a GPU or TPU backend and `cpu` otherwise: each `vis` field still at its
  `by_machine.full` value takes the `by_machine[variant]` one (an override on the command line stands)."""
  d = config.to_dict() if hasattr(config, "to_dict") else dict(config)
  if d.get("variant", "auto") != "auto":
    return d, f"reproduce_paper: variant '{d['variant']}', as --config names it"
  variant = "full" if backend in ACCELERATOR_BACKENDS else "cpu"
  other = "cpu" if variant == "full" else "full"
  machine = "a GPU/TPU" if variant == "full" else "no GPU or TPU"
  by_machine = d.pop("by_machine")
  vis = {k: (by_machine[variant].get(k, v) if v == by_machine["full"].get(k) else v) for k, v in d["vis"].items()}
  d = dict(d, variant=variant, vis=vis)
  return d, (f"reproduce_paper: variant '{variant}', picked because --config names no variant and JAX's backend is "
             f"'{backend}' ({machine}); pass --config={config_file}:{other} (or :quick) to choose")


def main(argv):
  import jax

  config, first_line = pick_variant(_CONFIG.value, jax.default_backend())
  print(first_line, file=sys.stderr, flush=True)
  if len(argv) > 1:
    raise _cli.UserError(f"Unexpected arguments {argv[1:]}; flags look like --workdir=DIR.")
  from rfspec.runs import figures as run_lib

  settings = run_lib.settings_from_config(config, only=_ONLY.value)  # the whole config, before weights load
  workdir = _cli.ensure_workdir(_WORKDIR.value)
  digest = _cli.weights_digest(_WEIGHTS.value)
  from rfspec import files, plots, report
  from rfspec.progress import RunProgress
  from rfspec.runs.store import Store

  t0 = time.perf_counter()
  names = [f.name for f in settings.figures]
  paths = {n: {ext: os.path.join(workdir, f"{n}.{ext}") for ext in ("png", "json", "npz")} for n in names}
  report_path = os.path.join(workdir, "report.html")
  head = report.smoke_head(settings.smoke_test)
  with Store(workdir, weights_sha256=digest, schema=run_lib.SCHEMA, overwrite=_OVERWRITE.value) as store:
    key = dict(settings=settings.to_dict(), weights=_WEIGHTS.value, report=report.PAPER_REPORT_VERSION)
    if store.sealed("reproduce_paper", key) is not None:
      print(f"{head}reproduce_paper: up to date, outputs verified by checksum (use --overwrite to redo); "
            f"open {report_path}")
      return
    params = _cli.load_params(_WEIGHTS.value)
    progress = RunProgress(run_lib.planned_work(settings), label="reproduce_paper",
                           prior_s=run_lib.step_prior(settings))
    result = run_lib.run_figures(params, settings, store, progress=progress)
    for fig in result.figures:
      canvas, layout = plots.paper_figure(fig, note=report.SMOKE_TEST if settings.smoke_test else "")
      files.write_png(paths[fig.name]["png"], canvas)
      files.write_npz(paths[fig.name]["npz"], dict(images=np.stack([p.images for p in fig.panels]),
                                                   final_activation=np.stack([p.final_activation for p in fig.panels])))
      meta = run_lib.figure_dict(fig, weights=_WEIGHTS.value, weights_sha256=digest)
      files.write_json(paths[fig.name]["json"], dict(meta, smoke_test=settings.smoke_test, png_layout=layout,
                                                     settings=settings.to_dict()))
    relative = {n: {ext: os.path.basename(p) for ext, p in v.items()} for n, v in paths.items()}
    files.write_text(report_path, report.paper_html(result, files_of=relative, weights=_WEIGHTS.value))
    store.seal("reproduce_paper", key, {f"{n}.{ext}": p for n, v in paths.items() for ext, p in v.items()}
               | {"report.html": report_path})
  made = sum(not f.resumed for f in result.figures)
  print(f"{head}reproduce_paper: {made} figure(s) made, {len(names) - made} restored from the store, "
        f"{time.perf_counter() - t0:.0f}s; open {report_path}")


if __name__ == "__main__":
  _cli.run(main)

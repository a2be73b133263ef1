"""Reproduces Figures 1-6 of Zipser (2015) on BVLC GoogLeNet and writes an HTML report.

  python -m experiments.reproduce_paper --workdir=/tmp/paper        # full on a GPU/TPU, else cpu
  python -m experiments.reproduce_paper --workdir=/tmp/paper \
      --config=experiments/configs/reproduce_paper.py:quick          # a smoke test, minutes on a CPU
  python -m experiments.reproduce_paper --workdir=/tmp/paper \
      --config=experiments/configs/fig2.py                           # one figure

The first line on stderr says which variant runs and why (without one in --config: `full` if
JAX's backend is a GPU or TPU, else `cpu`); progress lines carry an ETA for the whole run (every
figure, every step), priced per tap from what has run so far. JAX's notice that a machine has no
libtpu is dropped (that line already names the backend); its other messages pass.

Writes DIR/figN.png (the grid: each image untouched inside a margin that shows its node's RF box in
red and the off-image part of the RF hatched; under each image its (i, j) and objective), DIR/figN.json
(everything needed to regenerate any image bit for bit), DIR/figN.npz (the raw images) and
DIR/report.html. A rerun skips figures whose config hash is unchanged; --overwrite redoes them.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import sys
import time

from absl import flags
import numpy as np

from experiments import _cli


class _NoLibtpuNotice(logging.Filter):
  """Drops JAX's INFO line that a machine without libtpu has no TPU (the first stderr line
  already says which backend runs); every other message, errors included, passes."""

  def filter(self, record):
    msg = record.getMessage()
    return not (record.levelno <= logging.INFO and msg.startswith("Unable to initialize backend 'tpu'")
                and "libtpu.so" in msg)


# Before the flags are defined: the default config (no variant) asks JAX for its backend then.
logging.getLogger("jax._src.xla_bridge").addFilter(_NoLibtpuNotice())

_WORKDIR = _cli.define_workdir_flag()
_WEIGHTS = _cli.define_weights_flag()
_CONFIG = _cli.define_config_flag("reproduce_paper")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Redo figures even if their outputs are up to date.")
_ONLY = flags.DEFINE_list("figures", [], "Run only these figures of the config (e.g. fig1,fig4).")


# How to remake any image of a figure from its JSON, bit for bit. Only the same grid call (same
# seeds, same positions, same rfspec version, backend and device count) does that: a lone rfspec.visualize agrees
# to float rounding at first, and zipser2015's step (normalised by the mean of the non-zero |g|,
# with max-pool near-ties) amplifies rounding into visibly different images within a few steps.
REGENERATE = (
    "grid = rfspec.visualize_grid(params, seeds, rfspec.masks.node_masks(tap, channel, image_hw, positions), "
    "rfspec.VisConfig(**vis_config), return_trace=True).images; image = grid[row, seeds.index(seed)], where "
    "tap, channel, seed, vis_config come from the image's entry in 'images' (image_hw = tuple(vis_config['image_hw'])), "
    "positions are its panel's 'position' in row order and seeds are the panel's seeds (tiled: masks = "
    "rfspec.node_mask(tap, channel, image_hw, None)[None], row 0). The same call with the same rfspec version, "
    "backend and device count gives the same image bit for bit; a lone rfspec.visualize, or another rfspec "
    "version whose gradients sum in another order, agrees only up to float rounding, which the zipser2015 "
    "step amplifies.")


def config_hash(fig: dict, vis: dict, weights: str) -> str:
  """Hash of everything that determines a figure's pixels (not its title or caption)."""
  key = {k: fig[k] for k in ("panels", "positions", "seeds")}
  return hashlib.sha256(json.dumps([key, vis, weights], sort_keys=True).encode()).hexdigest()[:16]


def announce_variant(config, config_file: str = "experiments/configs/reproduce_paper.py") -> str:
  """The run's first stderr line: which variant runs and why."""
  variant, backend = config.get("variant", "full"), config.get("picked_for_backend", "")
  if not backend:
    return f"reproduce_paper: variant '{variant}', as --config names it"
  machine = "a GPU/TPU" if variant == "full" else "no GPU or TPU"
  other = "cpu" if variant == "full" else "full"
  return (f"reproduce_paper: variant '{variant}', picked because --config names no variant and JAX's "
          f"backend is '{backend}' ({machine}); pass --config={config_file}:{other} (or :quick) to choose")


def _progress(name: str, run):
  start = time.perf_counter()

  def report(desc, info):
    run.update(info.step * info.images)
    print(f"[{name}] {desc}: step {info.step}/{info.total} x {info.images} images, "
          f"{info.image_steps_per_s:.1f} image-steps/s, ETA {info.eta_s:.0f}s "
          f"(figure {time.perf_counter() - start:.0f}s); {run.summary()}", file=sys.stderr, flush=True)

  return report


def run_figure(params, name: str, fig: dict, vis: dict, weights: str, workdir: str, run=None) -> dict:
  """Computes one figure and writes its PNG, NPZ and JSON.

  The JSON is the figure's completion manifest (`rfspec.files.write_manifest`: it records the PNG's and
  NPZ's sha256). It is removed before anything new is written and written last, so a crash
  part-way through a rerun never leaves a done-marker beside a mix of old and new files. `run` is
  the whole run's `rfspec.figures.RunProgress` (a fresh one for this figure alone if None).
  """
  from rfspec import figures, files, plots

  t0 = time.perf_counter()
  files.invalidate_manifest(os.path.join(workdir, f"{name}.json"))
  vis = dict(vis)
  recipe = vis.pop("recipe")
  panels = [figures.Panel(p["tap"], int(p["channel"]), int(p.get("rank", 0))) for p in fig["panels"]]
  result = figures.make_figure(params, panels, fig["positions"], fig["seeds"], vis, recipe=recipe,
                               progress=_progress(name, run or figures.RunProgress(
                                   figures.figure_grids(panels, fig["positions"], fig["seeds"], vis["steps"]))))
  canvas = plots.render_grid(result.images, boxes=result.boxes, row_labels=result.row_labels,
                             col_labels=result.col_labels, captions=result.captions, title=fig["title"])
  png = files.write_png(os.path.join(workdir, f"{name}.png"), canvas)
  buf = __import__("io").BytesIO()
  np.savez_compressed(buf, images=result.images.astype(np.float32), objectives=result.objectives)
  npz = files.atomic_write(os.path.join(workdir, f"{name}.npz"), buf.getvalue())
  meta = dict(
      figure=name, title=fig["title"], claim=fig["claim"], config_hash=config_hash(fig, dict(vis, recipe=recipe), weights),
      weights=weights, recipe=recipe, vis=vis, rows=len(result.row_labels), cols=len(result.col_labels),
      row_labels=result.row_labels, col_labels=result.col_labels, captions=result.captions,
      panels=[p._asdict() for p in result.panels], images=result.records,
      seconds=time.perf_counter() - t0,
      regenerate=REGENERATE,
  )
  files.write_manifest(os.path.join(workdir, f"{name}.json"), {"png": png, "npz": npz}, meta)
  return meta


def is_done(workdir: str, name: str, want_hash: str) -> bool:
  """Whether figure `name` is complete for this config: its JSON manifest matches `want_hash` and
  the PNG and NPZ it vouches for are intact (a truncated or replaced file means redo)."""
  from rfspec import files

  return files.check_manifest(os.path.join(workdir, f"{name}.json"), {"config_hash": want_hash}) is not None


def main(argv):
  config = _CONFIG.value
  from ml_collections import config_flags

  config_file = os.path.relpath(config_flags.get_config_filename(flags.FLAGS["config"]))
  print(announce_variant(config, config_file), file=sys.stderr, flush=True)
  if len(argv) > 1:
    raise _cli.UserError(f"Unexpected arguments {argv[1:]}; flags look like --workdir=DIR.")
  workdir = _cli.ensure_workdir(_WORKDIR.value)  # also removes a killed run's temporary files
  from rfspec import figures

  all_figs = dict(config.figures.to_dict())
  names = _ONLY.value or list(all_figs)
  unknown = [n for n in names if n not in all_figs]
  if unknown:
    raise _cli.UserError(f"Unknown figure(s) {unknown}; this config has {sorted(all_figs)}. "
                         "Use --figures=fig1,fig2 or --config=experiments/configs/figN.py.")
  vis = dict(config.vis.to_dict())
  vis["image_hw"] = list(vis["image_hw"])

  import rfspec
  from experiments import paper_report

  t0 = time.perf_counter()
  todo, skipped = [], []
  for name in names:
    if not _OVERWRITE.value and is_done(workdir, name, config_hash(all_figs[name], vis, _WEIGHTS.value)):
      print(f"[{name}] up to date, skipped (use --overwrite to redo)", file=sys.stderr)
      skipped.append(name)
    else:
      todo.append(name)
  params = rfspec.load_params(_WEIGHTS.value) if todo else None
  # One clock for every grid of every figure to make, so the ETA covers the whole run.
  run = figures.RunProgress([grid for name in todo for grid in figures.figure_grids(
      [figures.Panel(p["tap"]) for p in all_figs[name]["panels"]], all_figs[name]["positions"],
      all_figs[name]["seeds"], vis["steps"])], cost=lambda tap: figures.tap_macs(tap, tuple(vis["image_hw"])))
  if todo:
    print(f"[run] {len(todo)} figure(s) to make ({len(skipped)} up to date): {len(run.grids)} grid calls, "
          f"{run.total} image-steps at {vis['image_hw'][0]}x{vis['image_hw'][1]} px; "
          "whole-run ETA from the first chunk on", file=sys.stderr, flush=True)
  for name in todo:
    fig = all_figs[name]
    print(f"[{name}] {fig['title']}", file=sys.stderr, flush=True)
    meta = run_figure(params, name, fig, dict(vis, image_hw=tuple(vis["image_hw"])), _WEIGHTS.value, workdir, run)
    print(f"[{name}] done in {meta['seconds']:.0f}s; {run.summary()}", file=sys.stderr, flush=True)
  report = os.path.join(workdir, "report.html")
  if todo or not paper_report.is_current(workdir, names):
    if params is None:
      params = rfspec.load_params(_WEIGHTS.value)  # the report measures in the net's feature space
    report = paper_report.write(workdir, names, params=params, params_src=_WEIGHTS.value,
                                variant=config.get("variant", ""))
  print(f"reproduce_paper: {len(todo)} figure(s) made, {len(skipped)} up to date, "
        f"{time.perf_counter() - t0:.0f}s; open {report}")


if __name__ == "__main__":
  _cli.run(main)

"""The position atlas: one node type visualised at every position of its grid, as a browsable page.

  python -m experiments.position_atlas --workdir=/tmp/atlas                          # full, GPU/TPU
  python -m experiments.position_atlas --workdir=/tmp/atlas_cpu \\
      --config=experiments/configs/position_atlas.py:cpu                              # ~30 min, 2 cores
  python -m experiments.position_atlas --workdir=/tmp/atlas_quick \\
      --config=experiments/configs/position_atlas.py:quick                            # CI, < 1 min

Writes to DIR:
  atlas.png       the mosaic: tile (i, j) at its grid position (first seed), its RF outline and the
                  off-image share of the RF in the margin, captions "in <inside fraction>";
  atlas_psi.png   heat maps: PSI of each position against the centre, and the RF's inside fraction;
  atlas.npz       images [R, C, S, H, W, 3], traces, start/final activations, rows, cols, seeds,
                  boxes, inside fractions, PSI;
  atlas.json      every setting needed to regenerate any tile bit for bit (VisConfig fields, tap,
                  channel and the rule that chose it, seeds, the batches as they ran, weights), per-tile
                  numbers, timings;
  atlas.html      the mosaic; click a tile for its images large (every seed), RF box, inside
                  fraction and activations; self-contained (images embedded), works from disk;
  atlas.done.json the completion manifest (sha256 of the files above), written last.
Finished batches are kept in DIR/batches/ (one .npz + manifest each), so a killed run resumes
without redoing them; a rerun with nothing left to do only checks the manifest.
"""

from __future__ import annotations

import hashlib
import io as _io
import json
import os
import sys
import time

import numpy as np

from experiments import _cli

_WORKDIR = _cli.define_workdir_flag()
_WEIGHTS = _cli.define_weights_flag()
_CONFIG = _cli.define_config_flag("position_atlas")

OUTPUTS = ("atlas.png", "atlas_psi.png", "atlas.npz", "atlas.json", "atlas.html")
DONE = "atlas.done.json"
BATCH_DIR = "batches"


def _user_error(msg: str):
  from rfspec.errors import UserError

  return UserError(msg)


def _cfg_fields(cfg) -> dict:
  """VisConfig -> JSON-able fields; `VisConfig(**fields)` (tuples from lists) rebuilds it."""
  import dataclasses

  out = {}
  for k, v in dataclasses.asdict(cfg).items():
    out[k] = list(v) if isinstance(v, tuple) else v
  return out


def build_cfg(config):
  """The VisConfig of `config.vis` for `config.tap`, with user errors as UserError."""
  import rfspec
  from rfspec import atlas

  vis = dict(config.vis.to_dict()) if hasattr(config.vis, "to_dict") else dict(config.vis)
  recipe = vis.pop("recipe", "deepdream")
  vis["image_hw"] = tuple(vis.get("image_hw", (224, 224)))
  atlas.check_spatial_tap(config.tap)
  try:
    return rfspec.VisConfig.from_recipe(recipe, tap=config.tap, **vis)
  except (ValueError, TypeError) as e:
    raise _user_error(f"Bad --config.vis: {e}") from None


def config_hash(fields: dict) -> str:
  return hashlib.sha256(json.dumps(fields, sort_keys=True).encode()).hexdigest()[:16]


class DiskStore:
  """`rfspec.atlas.BatchStore` on disk: DIR/batches/batch_KKKK.npz + its manifest, both atomic."""

  def __init__(self, workdir: str, key: str, on_event=None):
    self.dir = os.path.join(workdir, BATCH_DIR)
    self.key = key
    self.on_event = on_event or (lambda *_: None)

  def _paths(self, index: int):
    base = os.path.join(self.dir, f"batch_{index:04d}")
    return base + ".npz", base + ".done.json"

  def load(self, index, positions):
    from rfspec import atlas, files

    npz, manifest = self._paths(index)
    want = dict(config_hash=self.key, positions=np.asarray(positions).tolist())
    if files.check_manifest(manifest, want) is None:
      return None
    try:
      with np.load(npz) as z:
        result = atlas.BatchResult(*(np.asarray(z[f]) for f in atlas.BatchResult._fields))
    except (OSError, ValueError, KeyError):
      return None
    if not np.array_equal(result.positions, positions):
      return None
    self.on_event("resumed", index)
    return result

  def save(self, index, result):
    from rfspec import files

    npz, manifest = self._paths(index)
    files.invalidate_manifest(manifest)
    buf = _io.BytesIO()
    np.savez_compressed(buf, **result._asdict())
    files.atomic_write(npz, buf.getvalue())
    files.write_manifest(manifest, {"batch": npz},
                      dict(config_hash=self.key, positions=np.asarray(result.positions).tolist()))
    self.on_event("saved", index)


def _progress_printer():
  last = [0.0]

  def report(info):
    now = time.perf_counter()
    # One line per chunk at most every 2 s, and one per finished (or resumed) batch.
    if info.batch_done or now - last[0] >= 2.0:
      last[0] = now
      eta = "?" if not np.isfinite(info.eta_s) else f"{info.eta_s:.0f}s"
      what = "done" if info.batch_done else f"step {info.step}/{info.steps}"
      print(f"[atlas] batch {info.batch}/{info.batches} {what}: {100 * info.done:.0f}% of the atlas, "
            f"{info.image_steps_per_s:.1f} image-steps/s, elapsed {info.elapsed_s:.0f}s, ETA {eta}",
            file=sys.stderr, flush=True)

  return report


def _on_batch(event, index):
  """Store events: "saved" once the batch's file and manifest are on disk, "resumed" when loaded."""
  print(f"[atlas] batch {index + 1} {event}", file=sys.stderr, flush=True)


def main(argv):
  if len(argv) > 1:
    raise _user_error(f"Unexpected arguments {argv[1:]}; flags look like --workdir=DIR.")
  config = _CONFIG.value
  workdir = _cli.ensure_workdir(_WORKDIR.value)
  t_start = time.perf_counter()

  import rfspec
  from rfspec import atlas, files, geometry, masks, plots, report

  cfg = build_cfg(config)
  tap = cfg.tap
  h, w, n_channels = cfg.tap_shape
  channel = int(config.channel)
  if channel < -1 or channel >= n_channels:
    raise _user_error(f"--config.channel={channel} is out of range: {tap!r} has {n_channels} channels "
                      f"(0..{n_channels - 1}); use -1 to pick one by rule.")
  seeds = [int(s) for s in config.seeds]
  lattice = int(config.lattice)
  if lattice < 0:
    raise _user_error(f"--config.lattice must be 0 (every position) or n >= 1; got {lattice}.")
  try:
    positions = None if lattice == 0 else masks.lattice(tap, cfg.image_hw, lattice)
  except ValueError as e:
    raise _user_error(str(e)) from None
  batch_positions = int(config.batch_positions) or None
  atlas.check_atlas_args(tap, max(channel, 0), seeds, cfg, positions)  # user errors before the weights load
  files.clean_stale_temps(workdir)
  if os.path.isdir(os.path.join(workdir, BATCH_DIR)):
    files.clean_stale_temps(os.path.join(workdir, BATCH_DIR))

  settings = dict(weights=_WEIGHTS.value, tap=tap, channel_config=channel, seeds=seeds, lattice=lattice,
                  batch_positions=batch_positions, vis_config=_cfg_fields(cfg))
  key = config_hash(settings)
  done = os.path.join(workdir, DONE)
  if files.check_manifest(done, dict(config_hash=key, mosaic_tile=int(config.mosaic_tile))) is not None:
    print(f"[atlas] up to date ({DONE} checks out); nothing to do", file=sys.stderr)
    print(f"position_atlas: up to date, 0 batches run; open {os.path.join(workdir, 'atlas.html')}")
    return
  files.invalidate_manifest(done)

  params = rfspec.load_params(_WEIGHTS.value)
  if channel == -1:
    choice = atlas.active_channel(params, cfg, seeds, positions)
    channel = choice.channel
    rule = (f"rfspec.atlas.active_channel (rfspec.selection's rule): the strongest weakest start activation "
            f"over every seed's start image at every position shown; {choice.candidates} channel(s) are active "
            f"at all of them; channel {channel} is active at {100 * choice.active_share:.0f}% of the "
            f"(position, seed) pairs, weakest start activation {choice.min_start:.3g}")
  else:
    rule = "given in the config"
  print(f"[atlas] {tap} channel {channel} ({rule}); {cfg.recipe} "
        f"{cfg.image_hw[0]}x{cfg.image_hw[1]} px, {cfg.steps} steps, seeds {seeds}", file=sys.stderr, flush=True)

  # The batch key also covers the resolved channel.
  store = DiskStore(workdir, config_hash(dict(settings, channel=channel)), on_event=_on_batch)
  result = atlas.position_atlas(params, tap, channel, seeds, cfg, positions=positions,
                                batch_positions=batch_positions, progress=_progress_printer(), store=store)
  t_atlas = time.perf_counter() - t_start

  rows, cols = [int(i) for i in result.rows], [int(j) for j in result.cols]
  boxes, inside = atlas.tile_boxes(cfg, rows, cols)
  rf = geometry.receptive_field(tap, cfg.net_hw)
  t0 = time.perf_counter()
  spec = atlas.psi_vs_centre(params, result, cfg)
  psi, ceiling, ref, space = spec.psi, spec.ceiling, spec.reference, spec.space
  t_psi = time.perf_counter() - t0

  files = {name: os.path.join(workdir, name) for name in OUTPUTS}
  title = (f"{tap} channel {channel}: {len(rows)}x{len(cols)} positions, seed {seeds[0]} "
           f"({cfg.image_hw[0]} px, {cfg.steps} steps)")
  mosaic, layout = plots.atlas_mosaic(result.images[:, :, 0], boxes, inside, rows, cols, title=title,
                                      tile=int(config.mosaic_tile))
  files.write_png(files["atlas.png"], mosaic)
  files.save_figure(files["atlas_psi.png"], plots.atlas_psi_figure(psi, inside, rows, cols, ref,
                                                                title=f"{tap} channel {channel}", space=space))
  buf = _io.BytesIO()
  np.savez_compressed(buf, images=result.images, traces=result.traces, start_activation=result.start_activation,
                      final_activation=result.final_activation, rows=np.asarray(rows), cols=np.asarray(cols),
                      seeds=np.asarray(seeds), boxes=boxes, inside_fraction=inside, psi_vs_reference=psi,
                      seed_ceiling=ceiling)
  files.atomic_write(files["atlas.npz"], buf.getvalue())

  # The batches as they ran (the last one padded): a tile is remade bit for bit by its batch's grid call.
  plan = atlas.plan_batches([(i, j) for i in rows for j in cols], result.batch_positions)
  tiles = []
  for r, i in enumerate(rows):
    for c, j in enumerate(cols):
      k, n = divmod(r * len(cols) + c, result.batch_positions)
      tiles.append(dict(
          r=r, c=c, position=[i, j], batch=k, index_in_batch=n, box=boxes[r, c].tolist(),
          inside_fraction=float(inside[r, c]),
          start_activation=result.start_activation[r, c].tolist(),
          final_activation=result.final_activation[r, c].tolist(),
          final_objective=result.traces[r, c, :, -1].tolist(),
          psi_vs_reference=None if not np.isfinite(psi[r, c]) else float(psi[r, c]),
          seed_ceiling=None if not np.isfinite(ceiling[r, c]) else float(ceiling[r, c])))
  meta = dict(
      config_hash=key, variant=config.get("variant", ""), weights=_WEIGHTS.value, tap=tap, channel=channel,
      channel_rule=rule, seeds=seeds, rows=rows, cols=cols, grid=[h, w], lattice=lattice,
      image_hw=list(cfg.image_hw), recipe=cfg.recipe, vis_config=_cfg_fields(cfg),
      rf=dict(size=rf.size, stride=rf.stride, offset=rf.offset - cfg.canvas_pad, grid=list(rf.grid)),
      reference=dict(r=ref[0], c=ref[1], position=[rows[ref[0]], cols[ref[1]]]),
      psi=dict(function="rfspec.atlas.psi_vs_centre (rfspec.metrics.specificity_matrix per pair)", space=space,
               min_ceiling=spec.min_ceiling,
               note="PSI_p = (PSI[p, ref] + PSI[ref, p]) / 2 on RF boxes grown by the jitter; None where the "
                    "seed ceiling is below min_ceiling; with S seeds the ceiling is a mean over S(S-1) ordered "
                    "pairs of different seeds"),
      mosaic=dict(layout, seed=seeds[0], tile=int(config.mosaic_tile)),
      batches=result.batches, batch_positions=result.batch_positions, resumed_batches=result.resumed,
      batch_plan=[b.tolist() for b in plan], seconds=dict(atlas=t_atlas, psi=t_psi),
      regenerate=("cfg = rfspec.VisConfig(**{k: tuple(v) if isinstance(v, list) else v for k, v in "
                  "vis_config.items()}); masks = np.stack([rfspec.node_mask(tap, channel, cfg.net_hw, tuple(p)) "
                  "for p in batch_plan[tile['batch']]]); img = rfspec.visualize_grid(params, seeds, masks, cfg)"
                  "[tile['index_in_batch'], s]  # = atlas.npz images[tile['r'], tile['c'], s] bit for bit on the "
                  "same device count. rfspec.visualize(params, seeds[s], masks[tile['index_in_batch']], cfg) is "
                  "the same computation, but its batch of one rounds differently, and under zipser2015 such "
                  "differences grow with the steps."),
      tiles=tiles)
  files.write_json(files["atlas.json"], meta)
  files.write_text(files["atlas.html"], report.atlas_html(meta, result.images))
  files.write_manifest(done, files, dict(config_hash=key, mosaic_tile=int(config.mosaic_tile)))
  print(f"[atlas] done in {time.perf_counter() - t_start:.0f}s", file=sys.stderr, flush=True)
  print(f"position_atlas: {tap} channel {channel}, {len(rows)}x{len(cols)} positions x {len(seeds)} seeds, "
        f"{result.batches} batches ({result.resumed} resumed), {time.perf_counter() - t_start:.0f}s; "
        f"open {files['atlas.html']}")


if __name__ == "__main__":
  _cli.run(main)

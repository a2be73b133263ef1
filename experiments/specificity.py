"""The specificity sweep: one verdict per claim of the paper, with 95 % intervals.

  python -m experiments.specificity --workdir=/tmp/spec                                  # full, GPU/TPU
  python -m experiments.specificity --workdir=/tmp/spec_cpu \
      --config=experiments/configs/specificity.py:cpu                                    # reduced, 2 CPU cores
  python -m experiments.specificity --workdir=/tmp/spec_quick \
      --config=experiments/configs/specificity.py:quick                                  # CI smoke run

Flags -> `rfspec.specificity` -> files. Per tap: channels by `choose_channels`, one compiled grid
call (`sweep_tap`), the input-size ablation (a second call at 2x the side) and the realism
scores; each finished tap is DIR/specificity/<tap>.npz + .json under a completion manifest
(<tap>.done.json, `rfspec.files.write_manifest`) keyed by a config hash, so a killed run resumes and a
rerun skips finished taps; --overwrite redoes them.

Outputs: DIR/specificity.json (settings, per-tap numbers, "claims": one verdict per claim, the
trend), DIR/psi_vs_off_image.png, DIR/specificity_by_tap.png, DIR/specificity.md,
DIR/specificity_section.html, and DIR/report.html refreshed (verdicts at the top of the section).
"""

from __future__ import annotations

import dataclasses
import glob
import hashlib
import json
import os
import sys
import time

from absl import flags
import numpy as np

from experiments import _cli

_WORKDIR = _cli.define_workdir_flag()
_WEIGHTS = _cli.define_weights_flag()
_CONFIG = _cli.define_config_flag("specificity")
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Redo every tap even if cached.")

SCHEMA = 3  # bump when the cached per-tap format changes
REPORT_VERSION = 8  # bump when the aggregate outputs change (cached taps stay valid)
OUTPUTS = ("specificity.json", "specificity.md", "specificity_section.html", "psi_vs_off_image.png",
           "specificity_by_tap.png", "report.html")
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_INT32 = 2 ** 31


def _progress(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def _hash(obj) -> str:
  return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- config checks


def _settings(config) -> dict:
  """The config's fields that determine the results, validated before any work; raises UserError."""
  from rfspec import metrics
  from rfspec.engine import VisConfig
  from rfspec.geometry import spatial_taps
  from rfspec.models import googlenet

  taps = list(config.taps)
  if not taps:
    raise _cli.UserError("config.taps is empty; name spatial taps, e.g. ('conv2/3x3', 'inception_4c/output').")
  for tap in taps:
    try:
      googlenet.check_tap(tap)
    except ValueError as e:
      raise _cli.UserError(f"config.taps: {e}") from None
    if tap not in spatial_taps():
      raise _cli.UserError(f"config.taps: {tap!r} has no spatial grid, so it has no positions; use spatial taps "
                           "from conv2/3x3 to inception_5b/output.")
    if tap == metrics.JUDGE_TAP:
      raise _cli.UserError(f"config.taps: {tap!r} is the judge layer (rfspec.metrics.JUDGE_TAP); judging it by "
                           "its own features is circular. Drop it, or sweep a branch such as 'inception_3a/5x5'.")
  if len(set(taps)) != len(taps):
    raise _cli.UserError(f"config.taps lists a tap twice: {taps}.")
  try:
    seeds = [int(s) for s in config.seeds]
  except (TypeError, ValueError):
    raise _cli.UserError(f"config.seeds must be integers; got {config.seeds!r}.") from None
  if len(seeds) < metrics.MIN_SEEDS or len(set(seeds)) != len(seeds):
    raise _cli.UserError(f"config.seeds needs at least {metrics.MIN_SEEDS} distinct seeds (the indices compare pairs "
                         f"of seeds at each position); got {seeds}.")
  bad = [s for s in seeds if not -_INT32 <= s < _INT32]
  if bad:
    raise _cli.UserError(f"config.seeds: {bad} do not fit in int32 (jax.random.key takes int32 seeds); use seeds "
                         f"in [-2**31, 2**31).")
  k = int(config.channels_per_tap)
  if k < 1:
    raise _cli.UserError(f"config.channels_per_tap must be >= 1 (3 or more gives each channel a floor); got {k}.")
  for tap in taps:
    n = googlenet.LAYER_BY_NAME[tap].channels
    if k > n:
      raise _cli.UserError(f"config.channels_per_tap = {k} exceeds the {n} channels of {tap!r}; lower it.")
  n_pos = int(config.n_positions)
  if n_pos < 2:
    raise _cli.UserError(f"config.n_positions must be >= 2 (the centre and at least one other); got {n_pos}.")
  n_boot = int(config.n_boot)
  if n_boot < 20:
    raise _cli.UserError(f"config.n_boot must be >= 20 bootstrap draws (200 for 95 % intervals); got {n_boot}.")
  vis = dict(config.vis.to_dict() if hasattr(config.vis, "to_dict") else config.vis)
  try:
    vis["image_hw"] = [int(v) for v in vis.get("image_hw", (224, 224))]
  except (TypeError, ValueError):
    raise _cli.UserError(f"config.vis.image_hw must be two integers; got {vis.get('image_hw')!r}.") from None
  for tap in taps:  # bad fields or an image too small for a tap: VisConfig says which
    try:
      vis_config(vis, tap)
    except (ValueError, TypeError) as e:
      raise _cli.UserError(f"config.vis does not work for tap {tap!r}: {e}") from None
  size_taps = list(config.input_size_taps)
  bad = [t for t in size_taps if t not in taps]
  if bad:
    raise _cli.UserError(f"config.input_size_taps: {bad} are not in config.taps {taps}; the input-size ablation "
                         "reuses a swept tap's centre visualisations.")
  pad_taps = list(config.padding_taps)
  bad = [t for t in pad_taps if t not in taps]
  if bad:
    raise _cli.UserError(f"config.padding_taps: {bad} are not in config.taps {taps}; the padding ablation reruns a "
                         "swept tap with reflect padding.")
  return dict(taps=taps, seeds=seeds, channels_per_tap=k, n_positions=n_pos, n_boot=n_boot, vis=vis,
              tiled_realism=bool(config.tiled_realism), input_size_taps=size_taps, padding_taps=pad_taps,
              variant=str(config.get("variant", "full")))


def vis_config(vis: dict, tap: str):
  from rfspec.engine import VisConfig

  fields = {k: v for k, v in vis.items() if k != "recipe"}
  fields["image_hw"] = tuple(fields["image_hw"])
  return VisConfig.from_recipe(vis.get("recipe", "deepdream"), tap=tap, **fields)


def reference_images(spec: str) -> list[str]:
  """Natural photos for the realism references: `spec` (comma-separated files or folders) or, if
  empty, the JPEGs in $RFSPEC_SHARED/images or ../shared/images. Raises UserError if a given
  path is missing; returns [] if the default folder has none."""
  exts = (".jpg", ".jpeg", ".png")

  def in_dir(d):
    return sorted(p for p in glob.glob(os.path.join(d, "*")) if p.lower().endswith(exts))

  if spec:
    out = []
    for part in (p.strip() for p in spec.split(",") if p.strip()):
      if os.path.isdir(part):
        out += in_dir(part)
      elif os.path.isfile(part):
        out.append(part)
      else:
        raise _cli.UserError(f"config.reference_images: {part!r} is neither a file nor a folder.")
    if not out:
      raise _cli.UserError(f"config.reference_images={spec!r} holds no .jpg/.jpeg/.png images.")
    return [os.path.abspath(p) for p in out]
  shared = os.environ.get("RFSPEC_SHARED") or os.path.join(os.path.dirname(_REPO), "shared")
  return [os.path.abspath(p) for p in in_dir(os.path.join(shared, "images"))]


def _fingerprint(paths) -> list:
  out = []
  for p in paths:
    with open(p, "rb") as f:
      out.append([os.path.basename(p), hashlib.sha1(f.read()).hexdigest()[:12]])
  return out


# ----------------------------------------------------------------------------- per-tap cache


def _paths(workdir: str, tap: str) -> dict:
  from rfspec.geometry import tap_filename

  base = os.path.join(workdir, "specificity", tap_filename(tap))
  return dict(npz=base + ".npz", json=base + ".json", done=base + ".done.json")


def tap_hash(settings: dict, tap: str, weights: str, ref_fp: list) -> str:
  """Hash of everything that determines one tap's result."""
  key = {k: settings[k] for k in ("seeds", "channels_per_tap", "n_positions", "n_boot", "vis", "tiled_realism")}
  return _hash(dict(key, schema=SCHEMA, tap=tap, weights=weights, reference=ref_fp,
                    input_size=tap in settings["input_size_taps"]))


def _load(workdir: str, tap: str, want: str):
  """(TapResult, extras dict) if the tap's manifest vouches for intact files with this hash, else None."""
  from rfspec import files
  from rfspec import specificity as spec

  p = _paths(workdir, tap)
  if files.check_manifest(p["done"], want={"config_hash": want}) is None:
    return None
  with np.load(p["npz"]) as z:
    arrays = {k: z[k] for k in z.files}
  fields = {f: arrays[f] for f in spec.TapResult._fields if f in arrays}
  fields.update(tap=tap, rf_size=int(arrays["rf_size"]), stride=int(arrays["stride"]), n_main=int(arrays["n_main"]))
  extras = files.read_json(p["json"])
  if "size_images" in arrays:
    extras["size_images"] = arrays["size_images"]
  return spec.TapResult(**fields), extras


def _save(workdir: str, result, extras: dict, config_hash: str) -> None:
  """Arrays (.npz) and the per-tap numbers (.json), then the manifest LAST (it marks completion)."""
  import io as _io

  from rfspec import files

  p = _paths(workdir, result.tap)
  files.invalidate_manifest(p["done"])
  arrays = {f: np.asarray(getattr(result, f)) for f in result._fields if f != "tap"}
  size_images = extras.pop("size_images", None)
  if size_images is not None:
    arrays["size_images"] = np.asarray(size_images, np.float32)
  buf = _io.BytesIO()
  np.savez_compressed(buf, **arrays)
  files.atomic_write(p["npz"], buf.getvalue())
  files.write_json(p["json"], extras)
  files.write_manifest(p["done"], {"npz": p["npz"], "json": p["json"]}, extra={"config_hash": config_hash})


def _reflect_paths(workdir: str, tap: str) -> dict:
  base = _paths(workdir, tap)["npz"][:-len(".npz")] + ".reflect"
  return dict(npz=base + ".npz", json=base + ".json", done=base + ".done.json")


def _padding_run(workdir, tap, want, compute):
  """The tap's reflect-padding numbers: cached under their own manifest (the main tap's cache is
  independent of whether the ablation runs), else `compute()` -> (numbers dict, images)."""
  import io as _io

  from rfspec import files

  p = _reflect_paths(workdir, tap)
  if not _OVERWRITE.value and files.check_manifest(p["done"], want={"config_hash": want}) is not None:
    return files.read_json(p["json"]), True
  numbers, images = compute()
  files.invalidate_manifest(p["done"])
  buf = _io.BytesIO()
  np.savez_compressed(buf, images=np.asarray(images, np.float32))
  files.atomic_write(p["npz"], buf.getvalue())
  files.write_json(p["json"], numbers)
  files.write_manifest(p["done"], {"npz": p["npz"], "json": p["json"]}, extra={"config_hash": want})
  return numbers, False


# ----------------------------------------------------------------------------- JSON


def _num(x):
  """numpy -> JSON-friendly Python; NaN/inf -> None."""
  arr = np.asarray(x, np.float64)
  if arr.ndim == 0:
    v = float(arr)
    return v if np.isfinite(v) else None
  return [_num(v) for v in arr]


def tap_json(r, s, extras: dict) -> dict:
  """One tap's numbers for specificity.json (no images, no bootstrap draws)."""
  from rfspec import metrics

  n_seeds = r.objective.shape[-1]
  return dict(
      tap=r.tap, rf_size=r.rf_size, stride=r.stride, channels=[int(c) for c in r.channels],
      channel_rule=extras["channel_rule"], channels_eligible=extras["channels_eligible"],
      positions=[[int(v) for v in p] for p in r.positions[:r.n_main]],
      mirrors=[[int(v) for v in p] for p in r.positions[r.n_main:]],
      boxes=[[int(v) for v in b] for b in r.boxes[:r.n_main]], rf_off=_num(r.rf_off[:r.n_main]),
      erf_off=_num(r.erf_off[:r.n_main]),
      undefined=metrics.undefined_reasons(n_seeds, (len(r.channels) - 1) * n_seeds),
      per_channel=[dict(channel=int(c), auc_id=_num(r.auc_id[k]), auc_id_ci=_num(r.auc_id_ci[k]),
                        psi_auc=_num(r.psi_auc[k]), psi_auc_ci=_num(r.psi_auc_ci[k]), psi_floor=_num(r.psi_floor[k]),
                        mirror_psi=_num(r.mirror_psi[k]), final_objective=_num(r.objective[k]))
                   for k, c in enumerate(r.channels)],
      summary=dict(psi_vs_centre=_num(s.psi_vs_centre), psi_vs_centre_ci=_num(s.psi_vs_centre_ci),
                   psi_mean=_num(s.psi_mean), psi_mean_ci=_num(s.psi_mean_ci), auc_id=_num(s.auc_id),
                   auc_id_ci=_num(s.auc_id_ci), auc_id_mean=_num(s.auc_id_mean),
                   auc_id_mean_ci=_num(s.auc_id_mean_ci), mirror_psi=_num(s.mirror_psi),
                   mirror_psi_ci=_num(s.mirror_psi_ci)),
      input_size=extras.get("input_size"), padding=extras.get("padding"), realism=extras.get("realism"),
      seconds=extras["seconds"])


def _verdict_json(v) -> dict:
  d = v._asdict()
  d["estimate"], d["ci"] = _num(v.estimate), _num(v.ci)
  return d


# ----------------------------------------------------------------------------- main


def _tap_progress(label: str):
  def report(info):
    _progress(f"[{label}] step {info.step}/{info.total} x {info.images} images, "
              f"{info.image_steps_per_s:.1f} image-steps/s, ETA {info.eta_s:.0f}s")

  return report


def _realism_block(scores: dict) -> dict:
  return {k: dict(mean=_num(np.mean(v)), per_image=_num(v)) for k, v in scores.items()}


def main(argv):
  if len(argv) > 1:
    raise _cli.UserError(f"Unexpected arguments {argv[1:]}; flags look like --workdir=DIR.")
  settings = _settings(_CONFIG.value)
  workdir = _cli.ensure_workdir(_WORKDIR.value)
  weights = _WEIGHTS.value
  refs = reference_images(str(_CONFIG.value.reference_images)) if settings["tiled_realism"] else []
  ref_fp = _fingerprint(refs)
  hashes = {tap: tap_hash(settings, tap, weights, ref_fp) for tap in settings["taps"]}

  import matplotlib

  matplotlib.use("Agg")
  import jax
  import jax.numpy as jnp

  from rfspec import files, metrics, plots, report
  from rfspec import specificity as spec

  files.clean_stale_temps(os.path.join(workdir, "specificity"))
  t0 = time.perf_counter()
  state = {}

  def params():
    if "params" not in state:
      import rfspec

      _progress(f"loading weights {weights}")
      state["params"] = rfspec.load_params(weights)
    return state["params"]

  def reference_stats():
    if "reference" not in state:
      images = np.stack([files.load_image(p, (metrics.REALISM_SIZE, metrics.REALISM_SIZE)) for p in refs])
      state["natural"] = images
      state["reference"] = metrics.activation_stats(params(), jnp.asarray(images))
    return state["reference"]

  hw = tuple(settings["vis"]["image_hw"])
  n_s = len(settings["seeds"])
  results, extras_all, made, cached, cached_at = [], [], 0, 0, []
  for n, tap in enumerate(settings["taps"]):
    hit = None if _OVERWRITE.value else _load(workdir, tap, hashes[tap])
    if hit is not None:
      _progress(f"[{tap}] up to date, skipped ({n + 1}/{len(settings['taps'])})")
      cached_at.append(len(results))
      results.append(hit[0])
      extras_all.append(hit[1])
      cached += 1
      continue
    key = jax.random.fold_in(jax.random.key(0), n)
    t_tap = time.perf_counter()
    cfg = vis_config(settings["vis"], tap)
    positions = spec.diagonal_positions(tap, hw, settings["n_positions"])
    choice = spec.choose_channels(params(), cfg, positions, settings["seeds"], settings["channels_per_tap"])
    if not choice.channels:
      raise _cli.UserError(f"No channel of {tap!r} passes the channel rule ({choice.rule}) at {hw[0]}x{hw[1]} px; "
                           "use a larger image or fewer positions (config.n_positions).")
    _progress(f"[{tap}] channels {choice.channels} ({choice.eligible} eligible), {settings['n_positions']} positions "
              f"+ mirrors x {n_s} seeds ({n + 1}/{len(settings['taps'])})")
    r = spec.sweep_tap(params(), cfg, choice.channels, settings["seeds"], n_positions=settings["n_positions"],
                       key=key, n_boot=settings["n_boot"], tiled=settings["tiled_realism"],
                       progress=_tap_progress(tap))
    extras = dict(channel_rule=choice.rule, channels_eligible=choice.eligible)
    t_grid = time.perf_counter() - t_tap
    if tap in settings["input_size_taps"]:
      ab = spec.input_size_ablation(params(), cfg, choice.channels, settings["seeds"], r.images[:, 0],
                                    key=jax.random.fold_in(key, 7), n_boot=settings["n_boot"],
                                    progress=_tap_progress(f"{tap} @2x"))
      extras["size_images"] = ab.pop("images")
      boot = ab.pop("psi_auc_boot")
      extras["input_size"] = dict(image_hw=ab["image_hw"], rf_off=_num(ab["rf_off"]), psi_auc=_num(ab["psi_auc"]),
                                  psi_auc_mean=_num(np.mean(ab["psi_auc"])),
                                  psi_auc_mean_ci=_num(spec._interval(boot.mean(axis=0))))
    if settings["tiled_realism"] and refs:
      ref = reference_stats()
      extras["realism"] = dict(
          channel=int(r.channels[0]),
          single=_realism_block(spec.realism_scores(params(), r.images[0, 0], ref)),
          tiled=_realism_block(spec.realism_scores(params(), r.tiled, ref)))
    extras["seconds"] = dict(total=time.perf_counter() - t_tap, grid_and_metrics=t_grid)
    _save(workdir, r, dict(extras), hashes[tap])
    results.append(r)
    extras_all.append({k: v for k, v in extras.items() if k != "size_images"})
    made += 1
    s = spec.summarize_tap(r)
    _progress(f"[{tap}] psi_auc vs centre {s.psi_mean:.2f} [{s.psi_mean_ci[0]:.2f}, {s.psi_mean_ci[1]:.2f}], auc_id "
              f"{s.auc_id_mean:.2f}; {extras['seconds']['total']:.0f}s")

  overall = _hash([SCHEMA, REPORT_VERSION, settings, weights, sorted(hashes.values())])
  out_path = os.path.join(workdir, "specificity.json")
  if not made and all(os.path.exists(os.path.join(workdir, f)) for f in OUTPUTS):
    try:
      if files.read_json(out_path).get("config_hash") == overall:
        print(f"specificity: 0 tap(s) computed, {cached} up to date; outputs unchanged (use --overwrite to redo); "
              f"open {os.path.join(workdir, 'report.html')}")
        return
    except (OSError, ValueError):
      pass

  # The mirror ablation is recomputed from the cached images (cheap; its definition may be newer
  # than the cache), with the key `sweep_tap` used.
  for i in cached_at:
    n = settings["taps"].index(results[i].tap)
    results[i] = results[i]._replace(**spec.mirror_fields(
        params(), results[i], jax.random.fold_in(jax.random.fold_in(jax.random.key(0), n), 1000), settings["n_boot"]))

  for r, extras in zip(results, extras_all):
    if r.tap not in settings["padding_taps"]:
      continue
    want = _hash([hashes[r.tap], "reflect"])

    def compute(r=r):
      _progress(f"[{r.tap}] padding ablation: the same grid with reflect padding")
      cfg = dataclasses.replace(vis_config(settings["vis"], r.tap), pad_mode="reflect")
      refl = spec.sweep_tap(params(), cfg, [int(c) for c in r.channels], settings["seeds"],
                            n_positions=settings["n_positions"], key=jax.random.fold_in(jax.random.key(0), 99),
                            n_boot=settings["n_boot"], tiled=False,
                            progress=_tap_progress(f"{r.tap} reflect"))
      return _num_tree(spec.padding_difference(r, refl)), refl.images

    extras["padding"], hit = _padding_run(workdir, r.tap, want, compute)
    made += 0 if hit else 1

  sums = [spec.summarize_tap(r) for r in results]
  references = None
  if settings["tiled_realism"] and refs:
    reference_stats()
    noise = np.asarray(jax.random.uniform(jax.random.key(1), (n_s, *hw, 3)))
    references = dict(natural=_realism_block(spec.realism_scores(params(), state["natural"], state["reference"])),
                      noise=_realism_block(spec.realism_scores(params(), noise, state["reference"])),
                      natural_images=[os.path.basename(p) for p in refs])
  control = None
  if settings["padding_taps"] and refs:
    reference_stats()
    control = dict(spec.padding_control(params(), state["natural"]), images=[os.path.basename(p) for p in refs])
  realism = None
  per_tap = [dict(single=e["realism"]["single"]["stats_distance"]["per_image"],
                  tiled=e["realism"]["tiled"]["stats_distance"]["per_image"]) for e in extras_all if e.get("realism")]
  if per_tap:
    realism = spec.realism_difference(per_tap, jax.random.key(2), settings["n_boot"])
  verdicts = spec.claims(results, hw, n_s, realism)
  taps_json = [tap_json(r, s, e) for r, s, e in zip(results, sums, extras_all)]
  summary = dict(
      config_hash=overall, settings=settings, weights=weights, judge=metrics.JUDGE_TAP,
      equivalence_margin=spec.EQUIVALENCE_MARGIN, ci_level=metrics.CI_LEVEL,
      claims=[_verdict_json(v) for v in verdicts["verdicts"]], trend=_num_tree(verdicts["trend"]),
      realism_difference=None if realism is None else dict(single_minus_tiled=_num(realism["single_minus_tiled"]),
                                                            n=realism["n"]),
      realism_references=references, padding_control=control, taps=taps_json,
      timing=dict(this_run_s=time.perf_counter() - t0, computed=made, cached=cached,
                  taps_s=sum(e["seconds"]["total"] for e in extras_all)))
  files.save_figure(os.path.join(workdir, "psi_vs_off_image.png"), plots.specificity_trend_figure(taps_json,
                                                                                               summary["trend"]))
  files.save_figure(os.path.join(workdir, "specificity_by_tap.png"), plots.specificity_taps_figure(taps_json))
  files.write_text(os.path.join(workdir, "specificity.md"), report.specificity_markdown(summary))
  files.write_text(os.path.join(workdir, "specificity_section.html"), report.specificity_section_html(summary))

  from experiments import paper_report

  figs = [f"fig{i}" for i in range(1, 7) if os.path.exists(os.path.join(workdir, f"fig{i}.json"))]
  # The figures' numbers need the judge's params; without them the paper report would lose them.
  paper_report.write(workdir, figs, params=params() if figs else None, params_src=weights,
                     variant=settings["variant"])
  files.write_json(out_path, summary)  # last: it marks the outputs complete
  table = "; ".join(f"{v['claim'].split('.')[0]}: {v['verdict']}" for v in summary["claims"])
  print(f"specificity: {made} tap(s) computed, {cached} up to date, {time.perf_counter() - t0:.0f}s; claims {table}; "
        f"open {os.path.join(workdir, 'report.html')}")


def _num_tree(tree):
  if isinstance(tree, dict):
    return {k: _num_tree(v) for k, v in tree.items()}
  if isinstance(tree, (list, tuple, np.ndarray, float, np.floating)):
    return _num(tree)
  return tree


if __name__ == "__main__":
  _cli.run(main)

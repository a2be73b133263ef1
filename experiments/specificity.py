"""Sweeps position specificity (PSI) across GoogLeNet taps, with a padding ablation and tiled realism.

  python -m experiments.specificity --workdir=/tmp/spec                                  # full, GPU/TPU
  python -m experiments.specificity --workdir=/tmp/spec_cpu \
      --config=experiments/configs/specificity.py:cpu                                    # reduced, 2 CPU cores
  python -m experiments.specificity --workdir=/tmp/spec_quick \
      --config=experiments/configs/specificity.py:quick                                  # CI smoke run

For every variant ("none", then each canvas fill of the config) and every tap, one compiled grid
call visualises K channels (`rfspec.selection.rank_channels`) x P positions x S seeds (plus, for
"none", the first channel tiled), and `rfspec.specificity.sweep_tap` measures PSI, seed
ceilings, transfer and realism. Each finished (variant, tap) is cached as
DIR/specificity/<variant>__<tap>.json (+ .npz images) under a config hash, so a killed run resumes
and a rerun skips finished work; --overwrite redoes it.

Outputs: DIR/specificity.json (every number, the settings, timing, the channel rule),
DIR/psi_vs_rf_size.png, DIR/psi_vs_inside_fraction.png, DIR/transfer_<tap>.png, DIR/specificity.md,
DIR/specificity_section.html, and DIR/report.html refreshed to include that section.
"""

from __future__ import annotations

import glob
import hashlib
import io as _io
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
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Redo every (variant, tap) even if cached.")

SCHEMA = 2  # bump when the cached result format changes
REPORT_VERSION = 6  # bump when the aggregate outputs change (cached results stay valid)
CHANNEL_RULE = ("rfspec.selection.rank_channels: the top-K channels of the tap by the activation of their "
                "centre node on the seed-0 starting image of the recipe (no canvas), ties to the lower index")
OUTPUTS = ("specificity.json", "specificity.md", "specificity_section.html", "psi_vs_rf_size.png",
           "psi_vs_inside_fraction.png", "report.html")
_REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _progress(msg: str) -> None:
  print(msg, file=sys.stderr, flush=True)


def _hash(obj) -> str:
  return hashlib.sha256(json.dumps(obj, sort_keys=True).encode()).hexdigest()[:16]


# ----------------------------------------------------------------------------- config checks


def _settings(config) -> dict:
  """The config's fields that determine the results, validated; raises UserError."""
  from rfspec import masks as masks_lib
  from rfspec.models import googlenet
  from rfspec.geometry import spatial_taps
  from rfspec.engine import CANVAS_FILLS, VisConfig

  taps = list(config.taps)
  if not taps:
    raise _cli.UserError("config.taps is empty; name at least one spatial tap, e.g. 'inception_4c/output'.")
  spatial = spatial_taps()
  for tap in taps:
    try:
      googlenet.check_tap(tap)
    except ValueError as e:
      raise _cli.UserError(f"config.taps: {e}") from None
    if tap not in spatial:
      raise _cli.UserError(f"config.taps: {tap!r} has no spatial grid, so it has no positions; use spatial taps "
                           "from conv2/3x3 to inception_5b/output.")
  if len(set(taps)) != len(taps):
    raise _cli.UserError(f"config.taps lists a tap twice: {taps}.")
  seeds = [int(s) for s in config.seeds]
  if len(seeds) < 2 or len(set(seeds)) != len(seeds):
    raise _cli.UserError(f"config.seeds needs at least 2 distinct seeds (PSI compares different seeds); got {seeds}.")
  k = int(config.channels_per_tap)
  if k < 1:
    raise _cli.UserError(f"config.channels_per_tap must be >= 1; got {k}.")
  positions = list(config.positions)
  known = sorted(masks_lib.named_positions("conv2/3x3", (224, 224)))
  bad = [p for p in positions if p not in known]
  if bad or len(positions) < 2 or len(set(positions)) != len(positions):
    raise _cli.UserError(f"config.positions must be >= 2 distinct names from {known} (the first is the reference); "
                         f"got {positions}.")
  fills = list(config.canvas_fills)
  bad = [f for f in fills if f not in CANVAS_FILLS]
  if bad or len(set(fills)) != len(fills):
    raise _cli.UserError(f"config.canvas_fills must be distinct names from {CANVAS_FILLS}; got {fills}.")
  max_pad = int(config.max_canvas_pad)
  if max_pad < 0:
    raise _cli.UserError(f"config.max_canvas_pad must be >= 0 px; got {max_pad}.")
  vis = dict(config.vis.to_dict() if hasattr(config.vis, "to_dict") else config.vis)
  vis["image_hw"] = [int(v) for v in vis.get("image_hw", (224, 224))]
  recipe = vis.get("recipe", "deepdream")
  for tap in taps:  # bad fields or an image too small for a tap: VisConfig says which
    try:
      VisConfig.from_recipe(recipe, tap=tap, **{**{k_: v for k_, v in vis.items() if k_ != "recipe"},
                                                "image_hw": tuple(vis["image_hw"])})
    except (ValueError, TypeError) as e:
      raise _cli.UserError(f"config.vis does not work for tap {tap!r}: {e}") from None
  return dict(taps=taps, seeds=seeds, channels_per_tap=k, positions=positions, canvas_fills=fills,
              max_canvas_pad=max_pad, vis=vis, tiled_realism=bool(config.tiled_realism),
              variant=str(config.get("variant", "full")))


def reference_images(spec: str) -> list[str]:
  """Natural images for the realism statistics: `spec` (comma-separated files or folders) or, if
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


# ----------------------------------------------------------------------------- cache


def _stem(variant: str, tap: str) -> str:
  from rfspec.geometry import tap_filename

  return f"{variant}__{tap_filename(tap)}"


def tap_hash(settings: dict, variant: str, tap: str, weights: str, ref_fp: list) -> str:
  """Hash of everything that determines one (variant, tap) result."""
  key = {k: settings[k] for k in ("seeds", "channels_per_tap", "positions", "vis", "tiled_realism")}
  key.update(schema=SCHEMA, tap=tap, variant=variant, weights=weights,
             max_canvas_pad=None if variant == "none" else settings["max_canvas_pad"],
             reference=ref_fp if variant == "none" and settings["tiled_realism"] else None)
  return _hash(key)


def _load_cached(workdir: str, variant: str, tap: str, want: str) -> dict | None:
  from rfspec import io

  base = os.path.join(workdir, "specificity", _stem(variant, tap))
  if not (os.path.exists(base + ".json") and os.path.exists(base + ".npz")):
    return None
  try:
    result = io.read_json(base + ".json")
  except (OSError, ValueError):
    return None
  return result if result.get("config_hash") == want else None


def _save(workdir: str, result: dict) -> dict:
  """Writes the images (.npz) then the JSON (last: it marks completion); returns the JSON part."""
  from rfspec import io

  base = os.path.join(workdir, "specificity", _stem(result["variant"], result["tap"]))
  arrays = {"images": result.pop("images")}
  tiled = result.pop("tiled_images")
  if tiled is not None:
    arrays["tiled_images"] = tiled
  buf = _io.BytesIO()
  np.savez_compressed(buf, **arrays)
  io.atomic_write(base + ".npz", buf.getvalue())
  io.write_json(base + ".json", result)
  return result


# ----------------------------------------------------------------------------- report text


def _f(v, digits: int = 3) -> str:
  return "n/a" if v is None else f"{v:.{digits}f}"


MIN_TREND_POINTS = 4  # fewer finite points than this: no verdict on a trend


def _trend(x, y) -> str:
  """A verdict on the monotone trend of y with x, with Spearman's rho and the number of points."""
  from rfspec.specificity import spearman

  x, y = np.asarray(x, np.float64), np.asarray([np.nan if v is None else v for v in y], np.float64)
  n = int(np.sum(np.isfinite(x) & np.isfinite(y)))
  rho = spearman(x, y)
  if rho is None or n < MIN_TREND_POINTS:
    return f"cannot be judged (only {n} defined value(s); a trend needs {MIN_TREND_POINTS})"
  stat = f"Spearman rho = {rho:.2f}, n = {n}"
  if rho >= 0.7:
    return f"rises consistently ({stat})"
  if rho >= 0.3:
    return f"tends to rise ({stat})"
  if rho <= -0.7:
    return f"falls consistently ({stat})"
  if rho <= -0.3:
    return f"tends to fall ({stat})"
  return f"shows no clear monotone trend ({stat})"


def conclusions(settings: dict, results: list[dict]) -> list[str]:
  """Plain sentences with the numbers, each following from them by a stated threshold."""
  from rfspec import specificity as spec

  out = []
  vis = settings["vis"]
  hw = vis["image_hw"]
  if settings["variant"] != "full":
    out.append(f"This is the reduced '{settings['variant']}' sweep ({hw[0]}x{hw[1]} px, {len(settings['taps'])} taps, "
               f"K = {settings['channels_per_tap']}, S = {len(settings['seeds'])} seeds, {vis['steps']} steps, canvas "
               f"fills {settings['canvas_fills'] or 'none'}), not the full 224 px sweep; its numbers are indicative.")
  none = sorted((r for r in results if r["variant"] == "none"), key=lambda r: r["rf"]["size"])
  ref = none[0]["reference_position"] if none else "centre"
  if none:
    listed = ", ".join(f"{r['tap']} (RF {r['rf']['size']} px) {_f(r['summary']['psi_vs_reference_mean'], 2)}"
                       for r in none)
    out.append(f"Mean PSI vs {ref} without a canvas (primary space): {listed}.")
    trend = _trend([r["rf"]["size"] for r in none], [r["summary"]["psi_pixel_mean"] for r in none])
    out.append(f"In pixel space (the same measure for every tap), PSI vs {ref} {trend} with RF size.")
    pts = [(p["inside_fraction"], r["summary"]["psi_by_position"][p["name"]]) for r in none for p in r["positions"]
           if p["name"] != ref and r["summary"]["psi_by_position"][p["name"]] is not None]
    out.append(f"Across all non-{ref} positions of all taps, PSI {_trend([a for a, _ in pts], [b for _, b in pts])} "
               "with the share of the RF inside the image (the paper predicts it falls).")
    pair_txt = ", ".join(f"{r['tap']} {_f(r['pairs']['psi_all_pairs_mean'], 2)} ({r['pairs']['psi_pairs_defined'][0]}"
                         f"/{r['pairs']['psi_pairs_defined'][1]} pairs)" for r in none)
    trend = _trend([r["rf"]["size"] for r in none], [r["pairs"]["psi_all_pairs_mean"] for r in none])
    out.append(f"Mean PSI over every pair of positions whose seed ceiling is at least {spec.MIN_CEILING} (primary "
               f"space): {pair_txt}; it {trend} with RF size.")
    # Within each tap (one space per tap), do seeds agree more away from the reference position?
    diffs = []
    for r in none:
      c = r["pairs"]["ceiling_by_position"]
      others = [v for n, v in c.items() if n != ref and v is not None]
      if c[ref] is not None and others:
        diffs.append((r, float(np.mean(others)) - c[ref]))
    if diffs:
      out.append(f"Seed agreement by position (within each tap, its primary space): the other positions' mean seed "
                 f"ceiling exceeds the {ref}'s at {sum(d > 0 for _, d in diffs)} of {len(diffs)} taps ("
                 + ", ".join(f"{r['tap']} {d:+.3f}" for r, d in diffs) + "); the paper says positions whose RF is "
                 "partly off the image give seed-consistent patterns.")
    ceil = [r["summary"]["seed_ceiling_mean"] for r in none if r["summary"]["seed_ceiling_mean"] is not None]
    if ceil:
      low = [r["tap"] for r in none if (r["summary"]["seed_ceiling_mean"] or 0) < 0.2]
      tail = (f"; below 0.2 at {', '.join(low)}, where seeds barely agree and PSI is noisy." if low else
              "; every tap's seeds agree at least at 0.2, so PSI is measured against a real ceiling.")
      out.append(f"Seed ceilings S_pp (primary space: pixels below {spec.FEATURE_MIN_RF} px RF, features above) "
                 f"average {np.mean(ceil):.2f}{tail}")
    undefined = sum(r["summary"]["psi_by_position"][p["name"]] is None for r in none for p in r["positions"]
                    if p["name"] != ref)
    total = sum(len(r["positions"]) - 1 for r in none)
    if undefined:
      out.append(f"PSI is n/a at {undefined} of {total} (tap, position) pairs: seed ceiling below "
                 f"{spec.MIN_CEILING}, or (feature space) no aligned overlap; there the sweep cannot say whether "
                 "the preferred pattern depends on position.")
    t_all = [r["summary"]["transfer_offdiag_mean"] for r in none]
    if any(v is not None for v in t_all):
      out.append("Mean off-diagonal transfer T_pq (another position's pattern, moved onto q, relative to q's own; "
                 "it needs no seed agreement): "
                 + ", ".join(f"{r['tap']} {_f(r['summary']['transfer_offdiag_mean'], 2)}" for r in none)
                 + f". T {_trend([r['rf']['size'] for r in none], t_all)} with RF size (the paper predicts it "
                   "falls: large-RF nodes prefer position-specific patterns). Caveat: part of any drop is coverage, "
                   "since a moved pattern keeps only what stays on the image, which matters more for large "
                   "patterns and distant positions.")
  for fill in settings["canvas_fills"]:
    both = [(r, c) for r in none for c in results if c["variant"] == fill and c["tap"] == r["tap"]]

    def mean_ceiling(rows, at_ref):
      vals = [v for x in rows for n, v in x["pairs"]["ceiling_by_position"].items()
              if (n == ref) == at_ref and v is not None]
      return _f(float(np.mean(vals)) if vals else None)

    if both:
      out.append(f"With the '{fill}' canvas the mean seed ceiling goes from {mean_ceiling([r for r, _ in both], True)} "
                 f"to {mean_ceiling([c for _, c in both], True)} at the {ref} and from "
                 f"{mean_ceiling([r for r, _ in both], False)} to {mean_ceiling([c for _, c in both], False)} at the "
                 "other positions; PSI over all defined pairs: "
                 + ", ".join(f"{r['tap']} {_f(r['pairs']['psi_all_pairs_mean'], 2)} -> "
                             f"{_f(c['pairs']['psi_all_pairs_mean'], 2)}" for r, c in both) + ".")
    pairs = []
    for r in none:
      c = next((x for x in results if x["variant"] == fill and x["tap"] == r["tap"]), None)
      a, b = r["summary"]["psi_vs_reference_mean"], c and c["summary"]["psi_vs_reference_mean"]
      if c is not None and a is not None and b is not None:
        pairs.append((r, c, b - a))
    if len(pairs) < 3:
      listed = ", ".join(f"{r['tap']} {x:+.2f}" for r, _, x in pairs)
      out.append(f"Canvas '{fill}': mean PSI vs {ref} is defined both with and without it at only {len(pairs)} "
                 f"tap(s){' (' + listed + ')' if listed else ''}, too few to judge its effect.")
      continue
    d = float(np.mean([x[2] for x in pairs]))
    verb = "leaves PSI about unchanged" if abs(d) < 0.05 else ("lowers PSI" if d < 0 else "raises PSI")
    capped = [c["tap"] for _, c, _ in pairs if c["canvas"]["capped"]]
    out.append(f"A '{fill}' canvas {verb}: mean change {d:+.3f} over {len(pairs)} taps ("
               + ", ".join(f"{r['tap']} {x:+.2f}" for r, _, x in pairs) + ")."
               + (f" The canvas was capped at {settings['max_canvas_pad']} px for {', '.join(capped)}, whose RFs "
                  "still fall partly off it." if capped else " Every chosen RF lay wholly inside the canvas."))
  real = [r for r in none if r["realism"]]
  if real:
    sd = [r for r in real if r["realism"]["stats_distance"] is not None]
    if sd:
      better = sum(r["realism"]["stats_distance"]["tiled_minus_single"] < 0 for r in sd)
      out.append(f"Realism (stats distance to natural images, lower = more natural): tiled beats the {ref} single-"
                 f"node run at {better} of {len(sd)} taps (mean change "
                 f"{np.mean([r['realism']['stats_distance']['tiled_minus_single'] for r in sd]):+.3f}).")
    else:
      out.append("Realism: no reference natural images were found, so only the confidence score is available.")
    better = sum((r["realism"]["confidence"]["tiled_minus_single"] or 0) > 0 for r in real)
    out.append(f"By the net's top-1 confidence (secondary), tiled is higher at {better} of {len(real)} taps (mean "
               f"change {np.mean([r['realism']['confidence']['tiled_minus_single'] or 0 for r in real]):+.3f}).")
  return out


def _summary_rows(results: list[dict]) -> list[list]:
  rows = []
  for r in sorted(results, key=lambda r: (r["rf"]["size"], r["variant"] != "none", r["variant"])):
    s, c = r["summary"], r["canvas"]
    rows.append([r["tap"], r["rf"]["size"], r["rf"]["stride"], r["variant"], "-" if c is None else c["pad"],
                 f"{min(p['canvas_inside_fraction'] for p in r['positions']):.0%}" if c else
                 f"{min(p['inside_fraction'] for p in r['positions']):.0%}",
                 "pixel" if r["space"] == "pixel" else "feat", _f(s["seed_ceiling_mean"]),
                 _f(r["pairs"]["ceiling_by_position"][r["reference_position"]]), _f(s["s_vs_reference_mean"]),
                 _f(s["psi_vs_reference_mean"]),
                 f"{_f(r['pairs']['psi_all_pairs_mean'])} ({r['pairs']['psi_pairs_defined'][0]}/"
                 f"{r['pairs']['psi_pairs_defined'][1]})",
                 _f(s["psi_pixel_mean"]), _f(s["psi_feature_mean"]), _f(s["transfer_offdiag_mean"]),
                 f"{r['seconds']['grid']:.0f}"])
  return rows


_SUMMARY_HEADER = ["tap", "RF px", "stride", "variant", "canvas pad px", "min RF inside (canvas if any)", "space",
                   "seed ceiling", "ceiling at ref", "S vs ref", "PSI vs ref", "PSI all pairs (defined)", "PSI pixel",
                   "PSI feature", "T off-diag", "grid s"]


def _position_rows(results: list[dict]) -> list[list]:
  rows = []
  for r in sorted(results, key=lambda r: (r["rf"]["size"], r["variant"] != "none", r["variant"])):
    for p in r["positions"]:
      rows.append([r["tap"], r["variant"], p["name"], f"({p['ij'][0]}, {p['ij'][1]})", f"{p['inside_fraction']:.0%}",
                   f"{p['canvas_inside_fraction']:.0%}", _f(r["pairs"]["ceiling_by_position"][p["name"]]),
                   _f(r["summary"]["psi_by_position"][p["name"]])])
  return rows


_POSITION_HEADER = ["tap", "variant", "position", "(i, j)", "RF inside image", "RF inside canvas", "seed ceiling",
                    "PSI vs ref"]


def _realism_rows(results: list[dict]) -> list[list]:
  rows = []
  for r in sorted((r for r in results if r["realism"]), key=lambda r: r["rf"]["size"]):
    c, d = r["realism"]["confidence"], r["realism"]["stats_distance"]
    rows.append([r["tap"], r["realism"]["channel"], _f(c["single"]), _f(c["tiled"]),
                 _f(d["single"]) if d else "n/a", _f(d["tiled"]) if d else "n/a"])
  return rows


_REALISM_HEADER = ["tap", "channel", "confidence single", "confidence tiled", "stats distance single",
                   "stats distance tiled"]


def _md_table(header, rows) -> str:
  lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
  lines += ["| " + " | ".join(str(v) for v in row) + " |" for row in rows]
  return "\n".join(lines)


def markdown(summary: dict) -> str:
  results = summary["results"]
  parts = [f"# Position specificity sweep ({summary['settings']['variant']})", "",
           *[f"- {s}" for s in summary["conclusions"]], "", "## Per tap and variant", "",
           _md_table(_SUMMARY_HEADER, _summary_rows(results)), "", "## Per position", "",
           _md_table(_POSITION_HEADER, _position_rows(results))]
  if any(r["realism"] for r in results):
    parts += ["", "## Tiled vs single-position realism", "", _md_table(_REALISM_HEADER, _realism_rows(results))]
  parts += ["", f"Channels: {CHANNEL_RULE}.", ""]
  return "\n".join(parts)


def section_html(summary: dict) -> str:
  from rfspec import io

  settings, results = summary["settings"], summary["results"]
  vis = settings["vis"]
  esc = io.html_escape
  ref = settings["positions"][0]
  intro = (f"<p>For each tap, K = {settings['channels_per_tap']} channel(s) x {len(settings['positions'])} positions "
           f"({esc(', '.join(settings['positions']))}) x S = {len(settings['seeds'])} seeds are visualised in one "
           f"compiled grid call ({vis['image_hw'][0]}x{vis['image_hw'][1]} px, recipe "
           f"<code>{esc(vis.get('recipe', 'deepdream'))}</code>, {vis['steps']} steps, objective "
           f"<code>{esc(vis.get('objective', 'post_relu'))}</code>). "
           f"PSI vs {esc(ref)} = 1 - S<sub>p,{esc(ref)}</sub> / mean seed ceiling, compared on the aligned RF regions "
           f"(0: the same pattern everywhere, 1: unrelated); n/a where the seed ceiling is below "
           f"{summary['min_ceiling']} (seeds do not agree, so the ratio means nothing) or undefined. The primary space "
           f"is inception_3a features for RFs of at least {summary['feature_min_rf']} px and pixels below (column "
           "<i>space</i>); pixel-space PSI is shown for every tap. Canvas variants embed the image in a border of the "
           "given fill so that the chosen RFs fall on the canvas rather than off the net's input (the optimised "
           "image is unchanged); the pad is the "
           f"smallest multiple of the stride that holds every RF, capped at {settings['max_canvas_pad']} px. "
           f"Channels: {esc(CHANNEL_RULE)}.</p>")
  seen = "<p class='seen'><b>Measured:</b> " + " ".join(esc(s) for s in summary["conclusions"]) + "</p>"
  plots = ("<p><img src='psi_vs_rf_size.png' alt='PSI vs RF size'></p>"
           "<p><img src='psi_vs_inside_fraction.png' alt='PSI vs inside fraction'></p>")
  transfers = "".join(f"<img src='{esc(name)}' alt='transfer {esc(name)}' style='max-width:32%'>"
                      for name in summary["transfer_plots"])
  realism = ""
  if any(r["realism"] for r in results):
    note = summary["reference_note"]
    realism = ("<h3>Tiled vs single-position realism</h3><p>First channel of each tap, tiled (every position at "
               f"once) vs the {esc(ref)} single-node run, same seeds and settings. Primary score: the relative "
               "Frechet distance of the image's inception_3a channel statistics to those of natural photographs "
               "(lower = more natural); secondary: the net's top-1 confidence (higher = more natural, but smooth "
               f"blobs and adversarial patterns score well too). See <code>rfspec.metrics.realism</code>. "
               f"{esc(note)}</p>" + io.html_table(_REALISM_HEADER, _realism_rows(results)))
  timing = summary["timing"]
  return (intro + seen + io.html_table(_SUMMARY_HEADER, _summary_rows(results)) + plots
          + "<h3>Transfer T<sub>pq</sub> (first channel, no canvas)</h3><p>Row p: the pattern found at p, moved onto "
            "q's RF; column q: the node driven; 1 = as good as q's own pattern. What the move pushes off the image is "
            "replaced by the net's zero input, so T also falls when little of p's pattern stays on the image.</p>"
          + transfers + realism
          + "<details><summary>Per position</summary>"
          + io.html_table(_POSITION_HEADER, _position_rows(results)) + "</details>"
          + f"<p>Weights <code>{esc(summary['weights'])}</code>; config variant "
            f"<code>{esc(settings['variant'])}</code>; "
            f"seeds {settings['seeds']}; grid time {timing['grid_s']:.0f} s, metrics {timing['metrics_s']:.0f} s. "
            "Every number is in <code>specificity.json</code>; images in <code>specificity/*.npz</code>.</p>")


# ----------------------------------------------------------------------------- main


def _tap_progress(label: str):
  def report(info):
    _progress(f"[{label}] step {info.step}/{info.total} x {info.images} images, "
              f"{info.image_steps_per_s:.1f} image-steps/s, ETA {info.eta_s:.0f}s")

  return report


def main(argv):
  if len(argv) > 1:
    raise _cli.UserError(f"Unexpected arguments {argv[1:]}; flags look like --workdir=DIR.")
  config = _CONFIG.value
  settings = _settings(config)
  workdir = _cli.ensure_workdir(_WORKDIR.value)
  weights = _WEIGHTS.value
  refs = reference_images(str(config.reference_images)) if settings["tiled_realism"] else []
  ref_fp = _fingerprint(refs)
  variants = ["none"] + settings["canvas_fills"]
  jobs = [(v, t) for v in variants for t in settings["taps"]]
  hashes = {job: tap_hash(settings, *job, weights, ref_fp) for job in jobs}

  import matplotlib

  matplotlib.use("Agg")
  from rfspec import io
  from rfspec import specificity as spec

  t0 = time.perf_counter()
  state = dict(params=None, reference=None, channels={})

  def params():
    if state["params"] is None:
      import rfspec

      _progress(f"loading weights {weights}")
      state["params"] = rfspec.load_params(weights)
    return state["params"]

  def reference_stats():
    if refs and state["reference"] is None:
      import jax.numpy as jnp

      from rfspec import metrics

      images = np.stack([io.load_image(p, (metrics.REALISM_SIZE, metrics.REALISM_SIZE)) for p in refs])
      state["reference"] = metrics.activation_stats(params(), jnp.asarray(images))
    return state["reference"]

  def channels(tap):
    if tap not in state["channels"]:
      from rfspec import selection
      from rfspec.engine import VisConfig

      vis = {k: v for k, v in settings["vis"].items() if k != "recipe"}
      cfg = VisConfig.from_recipe(settings["vis"].get("recipe", "deepdream"), tap=tap,
                                  **dict(vis, image_hw=tuple(vis["image_hw"])))
      state["channels"][tap] = selection.rank_channels(params(), cfg, k=settings["channels_per_tap"])
    return state["channels"][tap]

  results, made, cached = [], 0, 0
  for n, (variant, tap) in enumerate(jobs):
    label = f"{variant} {tap}"
    hit = None if _OVERWRITE.value else _load_cached(workdir, variant, tap, hashes[(variant, tap)])
    if hit is not None:
      _progress(f"[{label}] up to date, skipped ({n + 1}/{len(jobs)})")
      results.append(hit)
      cached += 1
      continue
    chans = channels(tap)
    _progress(f"[{label}] channels {chans}, {len(settings['positions'])} positions x {len(settings['seeds'])} seeds "
              f"({n + 1}/{len(jobs)})")
    canvas = None if variant == "none" else spec.Canvas(variant, settings["max_canvas_pad"])
    result = spec.sweep_tap(params(), tap, chans, settings["positions"], settings["seeds"], settings["vis"],
                            canvas=canvas, tiled=settings["tiled_realism"] and variant == "none",
                            reference=reference_stats() if variant == "none" else None,
                            progress=_tap_progress(label))
    result["config_hash"] = hashes[(variant, tap)]
    results.append(_save(workdir, result))
    made += 1
    s = result["summary"]
    _progress(f"[{label}] PSI vs {result['reference_position']} {_f(s['psi_vs_reference_mean'])} ({result['space']}), "
              f"seed ceiling {_f(s['seed_ceiling_mean'])}; grid {result['seconds']['grid']:.0f}s, "
              f"metrics {result['seconds']['metrics']:.0f}s")

  for r in results:  # derived from the cached numbers, so it never invalidates a cache
    r["pairs"] = spec.pair_summary(r)
  overall = _hash([SCHEMA, REPORT_VERSION, settings, weights, sorted(hashes.values())])
  out_path = os.path.join(workdir, "specificity.json")
  fresh = not made and all(os.path.exists(os.path.join(workdir, f)) for f in OUTPUTS)
  if fresh:
    try:
      fresh = io.read_json(out_path).get("config_hash") == overall
    except (OSError, ValueError):
      fresh = False
  report = os.path.join(workdir, "report.html")
  if fresh:
    print(f"specificity: 0 tap-variant(s) computed, {cached} up to date; outputs unchanged "
          f"(use --overwrite to redo); open {report}")
    return

  from experiments import paper_report
  from rfspec.geometry import tap_filename

  transfer_plots = []
  for r in results:
    if r["variant"] == "none" and r["per_channel"][0]["transfer"] is not None:
      name = f"transfer_{tap_filename(r['tap'])}.png"
      io.save_figure(os.path.join(workdir, name), spec.plot_transfer(r))
      transfer_plots.append(name)
  io.save_figure(os.path.join(workdir, "psi_vs_rf_size.png"), spec.plot_psi_vs_rf_size(results))
  io.save_figure(os.path.join(workdir, "psi_vs_inside_fraction.png"), spec.plot_psi_vs_inside_fraction(results))
  notes = conclusions(settings, results)
  summary = dict(
      config_hash=overall, settings=settings, weights=weights, channel_rule=CHANNEL_RULE,
      variants=variants, taps=settings["taps"], feature_min_rf=spec.FEATURE_MIN_RF, min_ceiling=spec.MIN_CEILING,
      reference_images=[os.path.basename(p) for p in refs],
      reference_note=(f"Reference natural images: {', '.join(os.path.basename(p) for p in refs)}." if refs else
                      "No reference natural images were found ($RFSPEC_SHARED/images or ../shared/images, or "
                      "config.reference_images), so stats_distance is null."),
      conclusions=notes, transfer_plots=transfer_plots,
      timing=dict(grid_s=sum(r["seconds"]["grid"] for r in results),
                  metrics_s=sum(r["seconds"]["metrics"] for r in results),
                  this_run_s=time.perf_counter() - t0, computed=made, cached=cached),
      results=results)
  io.write_text(os.path.join(workdir, "specificity.md"), markdown(summary))
  io.write_text(os.path.join(workdir, "specificity_section.html"), section_html(summary))
  figs = [f"fig{i}" for i in range(1, 7) if os.path.exists(os.path.join(workdir, f"fig{i}.json"))]
  paper_report.write(workdir, figs, params_src=weights, variant=settings["variant"])
  io.write_json(out_path, summary)  # last: it marks the outputs complete
  psi = ", ".join(f"{r['tap'].replace('/output', '')} {_f(r['summary']['psi_vs_reference_mean'], 2)}"
                  for r in results if r["variant"] == "none")
  print(f"specificity: {made} tap-variant(s) computed, {cached} up to date, {time.perf_counter() - t0:.0f}s; "
        f"PSI vs {settings['positions'][0]} (no canvas): {psi}; open {report}")


if __name__ == "__main__":
  _cli.run(main)

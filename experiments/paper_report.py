"""Builds DIR/report.html from the figure JSON/NPZ files (and specificity.json, if present).

Each figure gets its caption (what the paper claims, and what we measure), its RF geometry, and
the run's settings and timing. "What we see" is computed from the saved images with the same
measure and the same rule for when a number is defined as the specificity sweep
(`rfspec.metrics.position_specificity`, `rfspec.metrics.undefined_reasons`), so the two never
disagree on the same images:

  * position figures: psi_auc between every pair of positions (2 P(W > B) - 1 on the judge
    layer's features pooled over each node's RF box inside the image; 0 = positions
    indistinguishable, 1 = separable), with 95 % bootstrap intervals over seeds, and auc_id (seed
    consistency against the other panels of the same tap at the same positions, when the figure
    has them);
  * tiled figures: the judge similarity between seeds (cosine of whole-image pooled features).
Numbers need the weights (`params`); without them they are n/a and say why.
"""

from __future__ import annotations

import os

import numpy as np

from rfspec import files
from rfspec import _metrics_old as metrics

_INTRO = ("<p>Zipser (2015), <i>Node Specificity in Convolutional Deep Nets Depends on Receptive Field "
          "Position and Size</i>, reproduced on BVLC GoogLeNet with rfspec. Each image is a "
          "visualization: gradient ascent on the input for the chosen node(s), by the recipe named below. "
          "Around each image (never over it): in red, the node's receptive field (RF) box, with ticks in the "
          "margin where an RF edge crosses the image; hatched, the part of the RF that lies off the image. "
          "Under each image: its node's (i, j) = (row, col) on the tap's grid, the share of its RF inside "
          "the image, and the final objective. "
          "Node types are chosen by rule (see <code>experiments/configs/figures.py</code> and "
          "<code>rfspec/selection.py</code>): the paper's own person-trained net is not public.</p>")

# What each recipe does, for a reader who has only the report. PROCEDURE.md (relative to the
# repository root) holds the facts of the paper's own procedure; rfspec/recipes.py the values.
RECIPE_NOTES = {
    "zipser2015": (
        "the paper's own procedure, as its author's 2015 scripts give it (the facts, with their source, "
        "are in <code>../shared/reference/zipser2015/PROCEDURE.md</code>; the values in "
        "<code>rfspec/recipes.py</code>). The image lives in Caffe's data space (BGR, 0-255, minus the "
        "script's mean 104/116/122) and starts as grey random dots: one plane of 225 &middot; U[0, 1) copied "
        "to all three channels, unclipped at the first forward. One step: roll the image by a random "
        "&minus;1, 0 or +1 px along each axis; forward to the tap and feed the node's own activation back "
        "as its gradient (the input gradient of &frac12; &Sigma; mask &middot; relu(z)&sup2;, so a node "
        "that is 0 gets no gradient and stays 0); add 1.5 / mean(|g| where g &ne; 0) &middot; g; multiply "
        "the image by 0.995 (decay toward the mean colour); desaturate each pixel 1 % toward its channel "
        "mean; roll back; clip to the valid range. The script runs 2,000 steps with no octaves. Unlike "
        "the script, every (channel, position, seed) starts from its own noise (the script warm-started "
        "each channel from the previous channel's images), and the net is BVLC GoogLeNet."),
    "deepdream": (
        "the Inceptionism (DeepDream) notebook's step on a grey random-dot start: ascent normalised by "
        "mean |g|, random jitter, clip, no decay. Not the paper's own procedure (see "
        "<code>zipser2015</code>)."),
    "lucid": (
        "Lucid's recipe: Fourier (1/f) parameterisation with decorrelated colour, Adam, and random "
        "pad/jitter/scale/rotate each step. Not the paper's own procedure."),
}


def recipe_html(recipes) -> str:
  """One paragraph per recipe used: its name and what it does (trusted HTML)."""
  return "".join(f"<p><b>Recipe <code>{files.html_escape(r)}</code></b>: "
                 f"{RECIPE_NOTES.get(r, 'see rfspec/recipes.py.')}</p>" for r in sorted(set(recipes)))


def _num(x):
  arr = np.asarray(x, np.float64)
  if arr.ndim == 0:
    return float(arr) if np.isfinite(arr) else None
  return [_num(v) for v in arr]


def _position_stats(images: np.ndarray, boxes: np.ndarray, floor: np.ndarray | None, params) -> dict:
  """images [P, S, H, W, 3], boxes [P, 4], floor [P, S2, H, W, 3] or None -> the sweep's indices."""
  import jax

  n_seeds = images.shape[1]
  n_floor = 0 if floor is None else floor.shape[1]
  undefined = metrics.undefined_reasons(n_seeds, n_floor)
  out = dict(undefined=undefined, n_seeds=n_seeds, n_floor=n_floor)
  if params is None:
    out["undefined"] = {k: "needs the weights (params)" for k in undefined}
    return out
  if undefined["psi_auc"] is not None:
    return out
  res = metrics.position_specificity(params, images, boxes, floor, jax.random.key(0))
  off = ~np.eye(images.shape[0], dtype=bool)
  psi_boot = np.asarray(res.psi_auc_boot)[:, off].mean(axis=1)
  out.update(psi_auc=_num(res.psi_auc), psi_auc_ci=_num(res.psi_auc_ci),
             psi_auc_mean=_num(np.asarray(res.psi_auc)[off].mean()),
             psi_auc_mean_ci=_num(np.nanpercentile(psi_boot, [2.5, 97.5])))
  if undefined["auc_id"] is None:
    out.update(auc_id=_num(res.auc_id), auc_id_ci=_num(res.auc_id_ci), psi_floor=_num(res.psi_floor))
  return out


def _tiled_stats(images: np.ndarray, params) -> dict:
  """images [S, H, W, 3] -> mean judge cosine between seeds over the whole image."""
  import jax.numpy as jnp

  if params is None or len(images) < 2:
    return {}
  h, w = images.shape[1:3]
  d = np.asarray(metrics.describe(params, jnp.asarray(images), jnp.tile(jnp.array([0.0, 0.0, h, w]), (len(images), 1))))
  d = d / np.maximum(np.linalg.norm(d, axis=1, keepdims=True), 1e-12)
  sim = d @ d.T
  return dict(seed_consistency=_num(sim[~np.eye(len(d), dtype=bool)].mean()))


def observations(meta: dict, images: np.ndarray, params=None) -> list[dict]:
  """Per panel of a figure: the numbers behind "what we see"."""
  n_seeds = len({rec["seed"] for rec in meta["images"][0]})
  out = []
  for k, panel in enumerate(meta["panels"]):
    cols = slice(k * n_seeds, (k + 1) * n_seeds)
    recs = [row[k * n_seeds] for row in meta["images"]]
    row = dict(tap=panel["tap"], channel=panel["channel"], judge=metrics.JUDGE_TAP)
    if recs[0]["position"] is None:
      row.update(_tiled_stats(images[0, cols], params))
    else:
      boxes = np.array([r["rf"]["box"] for r in recs], np.float32)
      others = [m for m, p in enumerate(meta["panels"]) if m != k and p["tap"] == panel["tap"]]
      floor = (np.concatenate([images[:, m * n_seeds:(m + 1) * n_seeds] for m in others], axis=1) if others
               else None)
      row.update(_position_stats(images[:, cols], boxes, floor, params))
      row["inside_fraction"] = [r["rf"]["inside_fraction"] for r in recs]
    out.append(row)
  return out


def _seen_text(obs: list[dict]) -> str:
  parts = []
  for o in obs:
    if "inside_fraction" in o:
      if o.get("psi_auc_mean") is not None:
        text = (f"psi_auc between positions {o['psi_auc_mean']:.2f} [{o['psi_auc_mean_ci'][0]:.2f}, "
                f"{o['psi_auc_mean_ci'][1]:.2f}] (mean over pairs, 95 % CI over seeds)")
      else:
        text = f"psi_auc n/a ({o['undefined']['psi_auc']})"
      if o.get("auc_id") is not None:
        text += "; auc_id by position " + ", ".join(f"{v:.2f}" for v in o["auc_id"])
      else:
        text += f"; auc_id n/a ({o['undefined']['auc_id']})"
      text += ". RF inside the image: " + ", ".join(f"{f:.0%}" for f in o["inside_fraction"])
    else:
      sc = o.get("seed_consistency")
      text = "tiled; judge similarity between seeds " + ("n/a (needs params and >= 2 seeds)" if sc is None
                                                         else f"{sc:.2f}")
    parts.append(f"<b>{files.html_escape(o['tap'])} channel {o['channel']}</b>: {text}.")
  return " ".join(parts) + (" psi_auc: 0 = positions indistinguishable, 1 = every seed pair at a position is more "
                            f"alike than any pair across positions (judge {metrics.JUDGE_TAP}).")


def figure_section(workdir: str, name: str, params=None) -> dict | None:
  path = os.path.join(workdir, f"{name}.json")
  if not os.path.exists(path):
    return None
  meta = files.read_json(path)
  images = np.load(os.path.join(workdir, f"{name}.npz"))["images"]
  obs = observations(meta, images, params)
  geometry_rows = []
  for k, panel in enumerate(meta["panels"]):
    for row in meta["images"]:
      rec = row[k * len({r["seed"] for r in meta["images"][0]})]
      rf = rec["rf"]
      geometry_rows.append([panel["tap"], panel["channel"], rec["position_name"],
                            "all" if rec["position"] is None else str(tuple(rec["position"])),
                            rf["size"], rf["stride"], str(rf["box"]) if rf["box"] else "-",
                            "-" if rf["inside_fraction"] is None else f"{rf['inside_fraction']:.0%}"])
  vis = meta["vis"]
  html = (f"<img src='{files.html_escape(name)}.png' alt='{files.html_escape(meta['title'])}'>"
          f"<p class='claim'><b>Paper:</b> {files.html_escape(meta['claim'])}</p>"
          f"<p class='seen'><b>Measured:</b> {_seen_text(obs)}</p>"
          + files.html_table(["tap", "channel", "position", "(i, j)", "RF px", "stride", "RF box (t, l, b, r)", "RF inside"],
                          geometry_rows)
          + f"<p>Settings: recipe <code>{files.html_escape(meta['recipe'])}</code>, "
            f"{vis['image_hw'][0]}x{vis['image_hw'][1]} px, {vis['steps']} steps, seeds "
            f"{sorted({r['seed'] for r in meta['images'][0]})}, weights <code>{files.html_escape(meta['weights'])}</code>; "
            f"{meta['seconds']:.0f} s. Regenerate any image from <code>{files.html_escape(name)}.json</code>.</p>")
  return dict(title=meta["title"], id=name, html=html, observations=obs)


def _inputs(workdir: str, names) -> list[str]:
  paths = [os.path.join(workdir, f"{n}.{ext}") for n in names for ext in ("json", "npz")]
  paths.append(os.path.join(workdir, "specificity_section.html"))
  return [p for p in paths if os.path.exists(p)]


def is_current(workdir: str, names) -> bool:
  """Whether DIR/report.html exists and is newer than every file it is built from."""
  report = os.path.join(workdir, "report.html")
  if not os.path.exists(report):
    return False
  return all(os.path.getmtime(p) <= os.path.getmtime(report) for p in _inputs(workdir, names))


def write(workdir: str, names, *, params=None, params_src: str = "", variant: str = "") -> str:
  """Writes DIR/report.html for the figures `names` (those present) and returns its path.

  With `params`, similarities are also measured in feature space (see `rfspec.metrics`).
  """
  sections = [s for s in (figure_section(workdir, n, params) for n in names) if s is not None]
  spec = os.path.join(workdir, "specificity_section.html")
  if os.path.exists(spec):
    with open(spec) as f:
      sections.append(dict(title="Position specificity across layers", id="specificity", html=f.read()))
  intro = _INTRO + f"<p>Config variant: <code>{files.html_escape(variant or 'full')}</code>.</p>"
  metas = [files.read_json(os.path.join(workdir, f"{n}.json")) for n in names
           if os.path.exists(os.path.join(workdir, f"{n}.json"))]
  intro += recipe_html(m["recipe"] for m in metas if m.get("recipe"))
  if variant == "quick":
    intro += ("<p><b>Quick variant:</b> small images and a dozen steps, a smoke test of the pipeline. "
              "Its patterns have not converged and its numbers say nothing about the paper's claims; "
              "use the full (GPU/TPU) or cpu variant for those.</p>")
  files.write_json(os.path.join(workdir, "observations.json"),
                {s["id"]: s.get("observations") for s in sections if "observations" in s})
  return files.write_html_report(os.path.join(workdir, "report.html"), "rfspec: Zipser (2015) reproduced", sections, intro)

"""Builds DIR/report.html from the figure JSON/NPZ files (and specificity.json, if present).

Each figure gets its caption (what the paper claims, and what we measure), its RF geometry, and
the run's settings and timing. "What we see" is computed from the saved images with
`rfspec.metrics`, so it is a number, not an impression:

  * position figures with >= 2 seeds: the seed ceiling S_pp (same position, different seeds), the
    cross-position similarity S_pq (RF centres aligned) and PSI = 1 - S_pq / mean(S_pp, S_qq);
  * position figures with 1 seed: S_pq between positions only;
  * tiled figures: seed consistency (similarity between seeds, unshifted).
Similarities are masked pixel correlations; PSI near 0 means "same pattern at every position".
"""

from __future__ import annotations

import itertools
import os

import numpy as np

from rfspec import io

_INTRO = ("<p>Zipser (2015), <i>Node Specificity in Convolutional Deep Nets Depends on Receptive Field "
          "Position and Size</i>, reproduced on BVLC GoogLeNet with rfspec. Each image is a "
          "visualization (gradient ascent on the input, the gradient of the chosen node(s) set to one). "
          "Red boxes: the node's receptive field (RF); pink: the part of the RF that lies off the image. "
          "Node types are chosen by rule (see <code>experiments/configs/figures.py</code> and "
          "<code>rfspec/selection.py</code>): the paper's own person-trained net is not public.</p>")


def _position_stats(images: np.ndarray, centres: np.ndarray) -> dict:
  """images [P, S, H, W, 3], centres [P, 2] -> pixel-space S_pp, S_pq and PSI summaries."""
  import jax.numpy as jnp

  from rfspec import metrics

  n_pos, n_seeds = images.shape[:2]
  if n_seeds >= 2:
    spec = metrics.specificity_matrix(jnp.asarray(images), jnp.asarray(centres, jnp.float32))
    s, psi = np.asarray(spec.s_pq), np.asarray(spec.psi)
    off = ~np.eye(n_pos, dtype=bool)
    return dict(seed_ceiling=float(np.mean(np.diag(s))), cross_position=float(np.mean(s[off])),
                psi=float(np.nanmean(psi[off])), s_matrix=s.tolist(), psi_matrix=psi.tolist())
  pairs = [float(metrics.pixel_similarity(jnp.asarray(images[p, 0]), jnp.asarray(images[q, 0]),
                                          jnp.asarray(centres[q] - centres[p], jnp.float32)))
           for p, q in itertools.permutations(range(n_pos), 2)]
  return dict(cross_position=float(np.mean(pairs)))


def _tiled_stats(images: np.ndarray) -> dict:
  """images [S, H, W, 3] -> pixel similarity between seeds (no shift)."""
  import jax.numpy as jnp

  from rfspec import metrics

  if len(images) < 2:
    return {}
  return dict(seed_consistency=float(metrics.seed_ceiling(jnp.asarray(images))))


def observations(meta: dict, images: np.ndarray) -> list[dict]:
  """Per panel of a figure: the numbers behind "what we see"."""
  n_seeds = len({rec["seed"] for rec in meta["images"][0]})
  out = []
  for k, panel in enumerate(meta["panels"]):
    cols = slice(k * n_seeds, (k + 1) * n_seeds)
    recs = [row[k * n_seeds] for row in meta["images"]]
    row = dict(tap=panel["tap"], channel=panel["channel"])
    if recs[0]["position"] is None:
      row.update(_tiled_stats(images[0, cols]))
    else:
      stride, offset = recs[0]["rf"]["stride"], recs[0]["rf"]["offset"]
      centres = np.array([[offset + stride * r["position"][0], offset + stride * r["position"][1]] for r in recs])
      row.update(_position_stats(images[:, cols], centres))
      row["inside_fraction"] = [r["rf"]["inside_fraction"] for r in recs]
    out.append(row)
  return out


def _seen_text(obs: list[dict]) -> str:
  parts = []
  for o in obs:
    name = f"{o['tap']} channel {o['channel']}"
    if "psi" in o:
      parts.append(f"{name}: seeds agree with S<sub>pp</sub> = {o['seed_ceiling']:.3f}; across positions "
                   f"S<sub>pq</sub> = {o['cross_position']:.3f}; PSI = {o['psi']:.2f} "
                   "(0: the same pattern everywhere; 1: as unrelated as different random images).")
    elif "cross_position" in o:
      parts.append(f"{name}: cross-position similarity S<sub>pq</sub> = {o['cross_position']:.3f} "
                   "(one seed, so no seed ceiling).")
    elif "seed_consistency" in o:
      parts.append(f"{name}: similarity between seeds {o['seed_consistency']:.3f} (tiled).")
    if "inside_fraction" in o:
      parts.append("RF inside the image: " + ", ".join(f"{f:.0%}" for f in o["inside_fraction"]) + ".")
  return " ".join(parts)


def figure_section(workdir: str, name: str) -> dict | None:
  path = os.path.join(workdir, f"{name}.json")
  if not os.path.exists(path):
    return None
  meta = io.read_json(path)
  images = np.load(os.path.join(workdir, f"{name}.npz"))["images"]
  obs = observations(meta, images)
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
  html = (f"<img src='{io.html_escape(name)}.png' alt='{io.html_escape(meta['title'])}'>"
          f"<p class='claim'><b>Paper:</b> {io.html_escape(meta['claim'])}</p>"
          f"<p class='seen'><b>Measured:</b> {_seen_text(obs)}</p>"
          + io.html_table(["tap", "channel", "position", "(i, j)", "RF px", "stride", "RF box (t, l, b, r)", "RF inside"],
                          geometry_rows)
          + f"<p>Settings: recipe <code>{io.html_escape(meta['recipe'])}</code>, "
            f"{vis['image_hw'][0]}x{vis['image_hw'][1]} px, {vis['steps']} steps, seeds "
            f"{sorted({r['seed'] for r in meta['images'][0]})}, weights <code>{io.html_escape(meta['weights'])}</code>; "
            f"{meta['seconds']:.0f} s. Regenerate any image from <code>{io.html_escape(name)}.json</code>.</p>")
  return dict(title=meta["title"], id=name, html=html, observations=obs)


def write(workdir: str, names, *, params_src: str = "", variant: str = "") -> str:
  """Writes DIR/report.html for the figures `names` (those present) and returns its path."""
  sections = [s for s in (figure_section(workdir, n) for n in names) if s is not None]
  spec = os.path.join(workdir, "specificity_section.html")
  if os.path.exists(spec):
    with open(spec) as f:
      sections.append(dict(title="Position specificity across layers", id="specificity", html=f.read()))
  intro = _INTRO + f"<p>Config variant: <code>{io.html_escape(variant or 'full')}</code>.</p>"
  io.write_json(os.path.join(workdir, "observations.json"),
                {s["id"]: s.get("observations") for s in sections if "observations" in s})
  return io.write_html_report(os.path.join(workdir, "report.html"), "rfspec: Zipser (2015) reproduced", sections, intro)

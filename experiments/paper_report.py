"""Builds DIR/report.html from the figure JSON/NPZ files (and specificity.json, if present).

Each figure gets its caption (what the paper claims, and what we measure), its RF geometry, and
the run's settings and timing. "What we see" is computed from the saved images with
`rfspec.metrics`, so it is a number, not an impression:

  * position figures with >= 2 seeds: the seed ceiling S_pp (same position, different seeds), the
    cross-position similarity S_pq (RF centres aligned) and PSI = 1 - S_pq / mean(S_pp, S_qq);
  * position figures with 1 seed: S_pq between positions only;
  * tiled figures: seed consistency (similarity between seeds, unshifted).
Comparisons are restricted to each node's RF box inside the image (aligned on the RF centres).
Similarities are computed in GoogLeNet's inception_3a feature space (`rfspec.metrics.FEATURE_TAP`,
see its docstring for why) and, as the baseline, as masked pixel correlations. PSI near 0 means
"same pattern at every position"; NaN where two positions share no comparable region.
"""

from __future__ import annotations

import itertools
import os

import numpy as np

from rfspec import io, metrics
from rfspec.geometry import box_masks

_INTRO = ("<p>Zipser (2015), <i>Node Specificity in Convolutional Deep Nets Depends on Receptive Field "
          "Position and Size</i>, reproduced on BVLC GoogLeNet with rfspec. Each image is a "
          "visualization (gradient ascent on the input, the gradient of the chosen node(s) set to one). "
          "Red boxes: the node's receptive field (RF); pink: the part of the RF that lies off the image. "
          "Node types are chosen by rule (see <code>experiments/configs/figures.py</code> and "
          "<code>rfspec/selection.py</code>): the paper's own person-trained net is not public.</p>")


def _nanmean(x) -> float | None:
  x = np.asarray(x, np.float64)
  return float(np.nanmean(x)) if np.isfinite(x).any() else None


def _position_stats(images: np.ndarray, centres: np.ndarray, regions: np.ndarray, params, space: str) -> dict:
  """images [P, S, H, W, 3], centres [P, 2], regions [P, H, W] -> S_pp, S_pq, PSI in `space`."""
  import jax.numpy as jnp

  n_pos, n_seeds = images.shape[:2]
  off = ~np.eye(n_pos, dtype=bool)
  if n_seeds >= 2:
    spec = metrics.specificity_matrix(jnp.asarray(images), jnp.asarray(centres, jnp.float32), jnp.asarray(regions),
                                      params=params, space=space)
    s, psi = np.asarray(spec.s_pq), np.asarray(spec.psi)
    return dict(seed_ceiling=_nanmean(np.diag(s)), cross_position=_nanmean(s[off]), psi=_nanmean(psi[off]),
                s_matrix=s.tolist(), psi_matrix=psi.tolist())
  pairs = []
  for p, q in itertools.permutations(range(n_pos), 2):
    shift = jnp.asarray(centres[q] - centres[p], jnp.float32)
    region = (regions[q] > 0) & (np.asarray(metrics.shift_image(jnp.asarray(regions[p]), shift)[0]) > 0)
    pairs.append(float(metrics.similarity(jnp.asarray(images[p, 0]), jnp.asarray(images[q, 0]), shift,
                                          jnp.asarray(region), params=params, space=space)))
  return dict(cross_position=_nanmean(pairs))


def _tiled_stats(images: np.ndarray, params, space: str) -> dict:
  """images [S, H, W, 3] -> similarity between seeds (no shift)."""
  import jax.numpy as jnp

  if len(images) < 2:
    return {}
  return dict(seed_consistency=_nanmean(metrics.seed_ceiling(jnp.asarray(images), params=params, space=space)))


def _spaces(params, rf_size: int) -> list[str]:
  """Feature space needs params and an RF of at least `metrics.FEATURE_MIN_RF`; else pixels."""

  if params is None or rf_size < metrics.FEATURE_MIN_RF:
    return [metrics.PIXEL]
  return [metrics.FEATURE_TAP, metrics.PIXEL]


def observations(meta: dict, images: np.ndarray, params=None) -> list[dict]:
  """Per panel of a figure: the numbers behind "what we see"."""
  n_seeds = len({rec["seed"] for rec in meta["images"][0]})
  out = []
  for k, panel in enumerate(meta["panels"]):
    cols = slice(k * n_seeds, (k + 1) * n_seeds)
    recs = [row[k * n_seeds] for row in meta["images"]]
    row = dict(tap=panel["tap"], channel=panel["channel"], spaces={})
    for space in _spaces(params, recs[0]["rf"]["size"]):
      if recs[0]["position"] is None:
        row["spaces"][space] = _tiled_stats(images[0, cols], params, space)
      else:
        stride, offset = recs[0]["rf"]["stride"], recs[0]["rf"]["offset"]
        centres = np.array([[offset + stride * r["position"][0], offset + stride * r["position"][1]] for r in recs])
        regions = box_masks(panel["tap"], images.shape[2:4], [tuple(r["position"]) for r in recs]).astype(np.float32)
        row["spaces"][space] = _position_stats(images[:, cols], centres, regions, params, space)
    if recs[0]["position"] is not None:
      row["inside_fraction"] = [r["rf"]["inside_fraction"] for r in recs]
    out.append(row)
  return out


def _num(v, fmt=".3f") -> str:
  return "n/a" if v is None else format(v, fmt)


def _seen_text(obs: list[dict]) -> str:
  parts = []
  for o in obs:
    bits = []
    for space, st in o["spaces"].items():
      where = "pixels" if space == "pixel" else f"{space} features"
      if "psi" in st:
        ceiling = st["seed_ceiling"]
        # A near-zero ceiling (seeds do not agree at all) makes the ratio in PSI meaningless.
        psi = (f"PSI = {_num(st['psi'], '.2f')}" if ceiling is not None and ceiling >= metrics.MIN_CEILING
               else f"PSI is undefined (seed ceiling below {metrics.MIN_CEILING})")
        bits.append(f"in {where}, seeds agree with S<sub>pp</sub> = {_num(ceiling)} and positions with "
                    f"S<sub>pq</sub> = {_num(st['cross_position'])}; {psi}")
      elif "cross_position" in st:
        bits.append(f"in {where}, cross-position similarity S<sub>pq</sub> = {_num(st['cross_position'])} "
                    "(one seed, so no seed ceiling)")
      elif "seed_consistency" in st:
        bits.append(f"in {where}, seeds agree with {_num(st['seed_consistency'])} (tiled)")
    text = f"<b>{io.html_escape(o['tap'])} channel {o['channel']}</b>: " + "; ".join(bits) + "."
    if "inside_fraction" in o:
      text += " RF inside the image: " + ", ".join(f"{f:.0%}" for f in o["inside_fraction"]) + "."
    parts.append(text)
  return " ".join(parts) + (" PSI: 0 = the same pattern at every position (as far as seeds agree at all); "
                            "1 = as unrelated as different images; n/a where no region can be compared.")


def figure_section(workdir: str, name: str, params=None) -> dict | None:
  path = os.path.join(workdir, f"{name}.json")
  if not os.path.exists(path):
    return None
  meta = io.read_json(path)
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
  intro = _INTRO + f"<p>Config variant: <code>{io.html_escape(variant or 'full')}</code>.</p>"
  if variant == "quick":
    intro += ("<p><b>Quick variant:</b> small images and a dozen steps, a smoke test of the pipeline. "
              "Its patterns have not converged and its numbers say nothing about the paper's claims; "
              "use the full (GPU/TPU) or cpu variant for those.</p>")
  io.write_json(os.path.join(workdir, "observations.json"),
                {s["id"]: s.get("observations") for s in sections if "observations" in s})
  return io.write_html_report(os.path.join(workdir, "report.html"), "rfspec: Zipser (2015) reproduced", sections, intro)

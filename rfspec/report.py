"""Markdown and HTML rendering of rfspec's results: text only, no numbers computed here.

Every function returns a string (or bytes for embedded images) that `rfspec.files.write_text` writes
atomically. Pages are self-contained: images are embedded as data URIs, styles and scripts are
inline, nothing is fetched from the network, so a page works when opened straight from disk.
"""

from __future__ import annotations

import base64
import html
import io as _io
import json
from typing import Any, Mapping

import numpy as np

__all__ = ["atlas_html", "image_data_uri", "specificity_markdown", "specificity_section_html"]


def image_data_uri(image, *, fmt: str = "JPEG", quality: int = 92) -> str:
  """An image as a `data:` URI. image: float [H, W, 3] RGB in [0, 1] (or uint8); fmt JPEG or PNG."""
  from PIL import Image

  arr = np.asarray(image)
  if arr.dtype != np.uint8:
    arr = (np.clip(arr.astype(np.float32), 0.0, 1.0) * 255.0 + 0.5).astype(np.uint8)
  buf = _io.BytesIO()
  if fmt.upper() == "JPEG":
    Image.fromarray(arr).save(buf, format="JPEG", quality=quality)
    mime = "image/jpeg"
  else:
    Image.fromarray(arr).save(buf, format="PNG")
    mime = "image/png"
  return f"data:{mime};base64,{base64.b64encode(buf.getvalue()).decode('ascii')}"


# ----------------------------------------------------------------------------- position atlas

_ATLAS_CSS = """
body{font-family:system-ui,sans-serif;margin:1.5em;color:#222}
h1{font-size:1.3em;margin:.2em 0}.meta{font-size:.9em;color:#444;max-width:70em}
#mosaic{display:grid;gap:3px;margin:1em 0;align-items:center;justify-content:start}
#mosaic .lab{font-size:.75em;color:#555;text-align:center}
.tile{position:relative;display:block;line-height:0;border:2px solid transparent;cursor:pointer}
.tile:hover,.tile.sel{border-color:#1a5fd0}.tile img{width:100%;height:auto}
.tile .rf{position:absolute;border:1px solid rgba(230,40,40,.9);box-sizing:border-box;pointer-events:none}
.tile .cap{position:absolute;left:2px;bottom:2px;font-size:10px;line-height:12px;padding:0 3px;
 background:rgba(0,0,0,.55);color:#fff}
#detail{border-top:1px solid #ccc;padding-top:.8em}#detail[hidden]{display:none}
.seeds{display:flex;flex-wrap:wrap;gap:12px}.frame{position:relative;overflow:hidden;background:#fff;
 outline:1px solid #ddd}.frame img{position:absolute;z-index:1}
.frame .rf{position:absolute;z-index:0;border:2px solid #dc1e1e;box-sizing:border-box;
 background:repeating-linear-gradient(45deg,#f09696 0 1px,transparent 1px 6px)}
.frame .rfin{position:absolute;z-index:2;border:2px solid #dc1e1e;box-sizing:border-box;pointer-events:none}
figure{margin:0}figcaption{font-size:.85em;margin-top:.3em}
table{border-collapse:collapse;font-size:.9em;margin:.6em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}
"""

_ATLAS_JS = r"""
(function(){
const D = JSON.parse(document.getElementById('atlas-data').textContent);
const H = D.image_hw[0], W = D.image_hw[1];
const byKey = {};
D.tiles.forEach((t, k) => { byKey[t.position[0] + '-' + t.position[1]] = k; });
const fmt = v => (v === null || v === undefined) ? 'n/a' : (Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3));
function pct(v, n){ return (100 * v / n) + '%'; }
// The mosaic: a header row of j labels, then one row per i.
const m = document.getElementById('mosaic');
m.style.gridTemplateColumns = 'max-content repeat(' + D.cols.length + ', ' + D.tile_px + 'px)';
m.appendChild(Object.assign(document.createElement('div'), {className: 'lab', textContent: 'i \\ j'}));
D.cols.forEach(j => m.appendChild(Object.assign(document.createElement('div'), {className: 'lab', textContent: j})));
D.rows.forEach((i, r) => {
  m.appendChild(Object.assign(document.createElement('div'), {className: 'lab', textContent: i}));
  D.cols.forEach((j, c) => {
    const k = byKey[i + '-' + j], t = D.tiles[k];
    const a = document.createElement('a');
    a.className = 'tile'; a.href = '#tile-' + i + '-' + j; a.id = 'tile-link-' + i + '-' + j;
    a.title = '(i, j) = (' + i + ', ' + j + '), RF inside ' + t.inside_fraction.toFixed(2);
    const img = document.createElement('img'); img.src = D.images[k][0]; img.alt = a.title; a.appendChild(img);
    // The part of the RF box inside the image, as a thin outline over the thumbnail.
    const b = t.box, top = Math.max(b[0], 0), left = Math.max(b[1], 0), bot = Math.min(b[2], H), right = Math.min(b[3], W);
    if (bot > top && right > left) {
      const rf = document.createElement('div'); rf.className = 'rf';
      Object.assign(rf.style, {top: pct(top, H), left: pct(left, W), height: pct(bot - top, H), width: pct(right - left, W)});
      a.appendChild(rf);
    }
    a.appendChild(Object.assign(document.createElement('span'), {className: 'cap', textContent: 'in ' + t.inside_fraction.toFixed(2)}));
    m.appendChild(a);
  });
});
// The detail view of one tile: every seed large, in a margin that shows the off-image RF.
function show(){
  const hit = /^#tile-(\d+)-(\d+)$/.exec(location.hash);
  const det = document.getElementById('detail');
  document.querySelectorAll('.tile.sel').forEach(e => e.classList.remove('sel'));
  if (!hit || byKey[hit[1] + '-' + hit[2]] === undefined) { det.hidden = true; return; }
  const k = byKey[hit[1] + '-' + hit[2]], t = D.tiles[k];
  document.getElementById('tile-link-' + hit[1] + '-' + hit[2]).classList.add('sel');
  det.hidden = false;
  document.getElementById('dtitle').textContent =
    'Position (i, j) = (' + t.position[0] + ', ' + t.position[1] + ')';
  const mg = Math.round(0.25 * Math.max(H, W));
  // As large as detail_px allows, but every seed side by side in the window.
  const fit = (window.innerWidth - 60) / (D.seeds.length * (W + 2 * mg + 12));
  const scale = Math.max(0.25, Math.min(D.detail_px / Math.max(H, W), fit));
  const seeds = document.getElementById('dseeds'); seeds.textContent = '';
  D.seeds.forEach((s, n) => {
    const fig = document.createElement('figure');
    const fr = document.createElement('div'); fr.className = 'frame';
    Object.assign(fr.style, {width: (W + 2 * mg) * scale + 'px', height: (H + 2 * mg) * scale + 'px'});
    const b = t.box, px = v => (v * scale) + 'px';
    const box = {top: px(b[0] + mg), left: px(b[1] + mg), height: px(b[2] - b[0]), width: px(b[3] - b[1])};
    const rf = document.createElement('div'); rf.className = 'rf'; Object.assign(rf.style, box); fr.appendChild(rf);
    const img = document.createElement('img'); img.src = D.images[k][n];
    img.alt = 'seed ' + s;
    Object.assign(img.style, {left: px(mg), top: px(mg), width: px(W), height: px(H)}); fr.appendChild(img);
    const line = document.createElement('div'); line.className = 'rfin'; Object.assign(line.style, box); fr.appendChild(line);
    fig.appendChild(fr);
    fig.appendChild(Object.assign(document.createElement('figcaption'), {textContent:
      'seed ' + s + ': activation ' + fmt(t.start_activation[n]) + ' at the start \u2192 ' + fmt(t.final_activation[n]) + ' final'}));
    seeds.appendChild(fig);
  });
  const rows = [['RF box (top, left, bottom, right), px', '(' + t.box.join(', ') + ')'],
                ['RF share inside the image', t.inside_fraction.toFixed(3)],
                ['final activation per seed', t.final_activation.map(fmt).join(', ')],
                ['start activation per seed', t.start_activation.map(fmt).join(', ')],
                ['PSI vs centre (' + D.psi_space + ')', fmt(t.psi_vs_reference)],
                ['seed ceiling of that pair', fmt(t.seed_ceiling)]];
  const tb = document.getElementById('dinfo'); tb.textContent = '';
  rows.forEach(([a, v]) => { const tr = tb.insertRow(); tr.insertCell().textContent = a; tr.insertCell().textContent = v; });
}
window.addEventListener('hashchange', show);
document.addEventListener('keydown', e => { if (e.key === 'Escape') location.hash = ''; });
show();
})();
"""


def atlas_html(meta: Mapping[str, Any], images, *, tile_px: int = 96, detail_px: int = 448) -> str:
  """The position atlas page: a clickable mosaic and a detail view per tile, self-contained.

  The mosaic shows each tile (first seed) at its grid position with the part of its RF box inside
  the image outlined and its inside fraction; a click (or a URL ending in `#tile-I-J`) opens the
  tile's images for every seed, large, each in a margin where the RF box continues off the image
  (hatched), with the start and final activation, the RF box, inside fraction and PSI. Images are
  embedded once each as JPEG data URIs (quality 92; the exact values are in atlas.npz); vanilla
  JavaScript builds the page, nothing is loaded from the network.

  Args:
    meta: the atlas.json dict written by `experiments.position_atlas` (tap, channel, seeds, rows,
      cols, image_hw, tiles [{position, box, inside_fraction, start_activation,
      final_activation, psi_vs_reference, seed_ceiling}], psi {space}, ...).
    images: float [R, C, S, H, W, 3] RGB in [0, 1], tile order as meta["tiles"] (row-major).
    tile_px: width of a mosaic tile in CSS px; detail_px: about how large the detail images are.

  Returns:
    The HTML document.
  """
  images = np.asarray(images)
  n_r, n_c, n_s = images.shape[:3]
  tiles = list(meta["tiles"])
  if len(tiles) != n_r * n_c:
    raise ValueError(f"meta has {len(tiles)} tiles but images hold {n_r}x{n_c} positions.")
  data = dict(
      rows=list(meta["rows"]), cols=list(meta["cols"]), seeds=list(meta["seeds"]),
      image_hw=list(images.shape[3:5]), tile_px=int(tile_px), detail_px=int(detail_px),
      psi_space=str(meta.get("psi", {}).get("space", "")),
      tiles=[{k: t[k] for k in ("position", "box", "inside_fraction", "start_activation", "final_activation",
                                "psi_vs_reference", "seed_ceiling")} for t in tiles],
      images=[[image_data_uri(images[t["r"], t["c"], s]) for s in range(n_s)] for t in tiles])
  esc = html.escape
  vis = meta.get("vis_config", {})
  title = f"Position atlas: {meta['tap']} channel {meta['channel']}"
  ref = meta.get("reference", {}).get("position")
  facts = (f"{len(data['rows'])} x {len(data['cols'])} positions of the {meta['grid'][0]} x {meta['grid'][1]} grid, "
           f"seeds {data['seeds']}, {vis.get('image_hw', ['?'])[0]} px, {vis.get('steps', '?')} steps, "
           f"recipe {meta.get('recipe')}. RF {meta['rf']['size']} px, stride {meta['rf']['stride']} px. "
           f"Channel rule: {meta.get('channel_rule', '')}. PSI against the centre {ref} "
           f"({meta.get('psi', {}).get('function', '')}, {data['psi_space']} space; n/a where the seed ceiling "
           f"is below {meta.get('psi', {}).get('min_ceiling', '')}).")
  payload = json.dumps(data).replace("</", "<\\/")  # never close the script element early
  return "\n".join([
      "<!doctype html><html lang='en'><head><meta charset='utf-8'>",
      f"<title>{esc(title)}</title><style>{_ATLAS_CSS}</style></head><body>",
      f"<h1>{esc(title)}</h1><p class='meta'>{esc(facts)}</p>",
      "<p class='meta'>Click a tile (or add <code>#tile-I-J</code> to the URL) to see every seed large with its "
      "RF box; the hatched part of the box lies off the image. Tiles show the first seed; the outline on a tile "
      "is the part of its RF inside the image. Esc closes.</p>",
      "<noscript><p>This page needs JavaScript to draw the atlas; the images are also in atlas.png and atlas.npz."
      "</p></noscript>",
      "<div id='mosaic'></div>",
      "<section id='detail' hidden><h2 id='dtitle'></h2><div class='seeds' id='dseeds'></div>"
      "<table id='dinfo'></table><p><a href='#'>close</a></p></section>",
      f"<script type='application/json' id='atlas-data'>{payload}</script>",
      f"<script>{_ATLAS_JS}</script>",
      "</body></html>"])


# ----------------------------------------------------------------------------- specificity sweep


def _fmt(v, spec: str = ".2f") -> str:
  return "n/a" if v is None else format(v, spec)


def _ci(ci) -> str:
  return "n/a" if ci is None or None in ci else f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def _verdict_rows(claims) -> list[list[str]]:
  return [[c["claim"], c["measure"], f"{_fmt(c['estimate'])} {_ci(c['ci'])}", c["verdict"],
           c["why"] + (f"; {c['settle']}" if c["settle"] else "")] for c in claims]


_VERDICT_HEADER = ["claim", "measure", "estimate [95 % CI]", "verdict", "why / what would settle it"]
_TAP_HEADER = ["tap", "RF px", "channels", "psi_auc vs centre [95 % CI]", "auc_id [95 % CI]",
               "mirror minus p: psi_auc vs centre [95 % CI]", "centre 1x vs 2x psi_auc [95 % CI]", "RF off-image (max)",
               "ERF off-image (max)", "realism: stats distance single / tiled"]


def _tap_rows(taps) -> list[list[str]]:
  rows = []
  for t in taps:
    s, size, real = t["summary"], t.get("input_size") or {}, t.get("realism")
    dist = "n/a" if not real else (f"{_fmt(real['single']['stats_distance']['mean'])} / "
                                   f"{_fmt(real['tiled']['stats_distance']['mean'])}")
    rows.append([t["tap"], str(t["rf_size"]), ", ".join(map(str, t["channels"])),
                 f"{_fmt(s['psi_mean'])} {_ci(s['psi_mean_ci'])}", f"{_fmt(s['auc_id_mean'])} {_ci(s['auc_id_mean_ci'])}",
                 f"{_fmt(s['mirror_psi'])} {_ci(s['mirror_psi_ci'])}",
                 f"{_fmt(size.get('psi_auc_mean'))} {_ci(size.get('psi_auc_mean_ci'))}" if size else "not run",
                 f"{max(v for v in t['rf_off'] if v is not None):.0%}",
                 f"{max(v for v in t['erf_off'] if v is not None):.0%}", dist])
  return rows


def _scale_text(summary: Mapping[str, Any]) -> str:
  st, vis = summary["settings"], summary["settings"]["vis"]
  return (f"config variant '{st['variant']}': {vis['image_hw'][0]}x{vis['image_hw'][1]} px, recipe "
          f"{vis.get('recipe', 'deepdream')}, {vis['steps']} steps, {len(st['taps'])} taps, K = {st['channels_per_tap']} "
          f"channels per tap, {st['n_positions']} positions (+ mirrors), S = {len(st['seeds'])} seeds, "
          f"{st['n_boot']} bootstrap draws; judge {summary['judge']}")


def _realism_ref_text(summary: Mapping[str, Any]) -> str:
  refs = summary.get("realism_references")
  if not refs:
    return "No reference images, so no realism references."
  parts = []
  for name in ("natural", "noise"):
    r = refs[name]
    parts.append(f"{name}: stats distance {_fmt(r['stats_distance']['mean'])}, confidence "
                 f"{_fmt(r['confidence']['mean'])}, entropy {_fmt(r['entropy']['mean'])} nats, spectrum slope "
                 f"{_fmt(r['spectrum_slope']['mean'])}")
  return ("Realism references (" + ", ".join(refs["natural_images"]) + " as natural photos; uniform noise): "
          + "; ".join(parts) + ". Confidence, entropy and stats distance are circular (GoogLeNet judging images "
          "optimised on GoogLeNet, and the natural photos are also the statistics' reference); only the spectrum "
          "slope (natural images about -2) is independent of the net.")


def _ablation_text(summary: Mapping[str, Any]) -> str:
  """The padding and input-size ablations in words, with their numbers."""
  parts = []
  for t in summary["taps"]:
    pad = t.get("padding")
    if pad:
      parts.append(f"{t['tap']} with reflect instead of zero padding: psi_auc vs centre {_fmt(pad['psi_zero'])} -> "
                   f"{_fmt(pad['psi_reflect'])} (difference {_fmt(pad['psi_reflect_minus_zero'])} "
                   f"{_ci(pad['psi_reflect_minus_zero_ci'])}), auc_id {_fmt(pad['auc_id_zero'])} -> "
                   f"{_fmt(pad['auc_id_reflect'])}")
    size = t.get("input_size")
    if size:
      parts.append(f"{t['tap']} centre node at {size['image_hw'][0][0]} vs {size['image_hw'][1][0]} px (RF off-image "
                   f"{size['rf_off'][0]:.0%} vs {size['rf_off'][1]:.0%}): psi_auc {_fmt(size['psi_auc_mean'])} "
                   f"{_ci(size['psi_auc_mean_ci'])}")
  control = summary.get("padding_control")
  if control:
    parts.append(f"control: reflect padding keeps the top-1 class of {control['top1_unchanged']:.0%} of "
                 f"{', '.join(control['images'])} (confidence {', '.join(f'{v:.2f}' for v in control['confidence_zero'])}"
                 f" -> {', '.join(f'{v:.2f}' for v in control['confidence_reflect'])})")
  mirror = [f"{t['tap']} {_fmt(t['summary']['mirror_psi'])} {_ci(t['summary']['mirror_psi_ci'])}" for t in summary["taps"]
            if t["summary"]["mirror_psi"] is not None]
  if mirror:
    parts.append("mirror positions (psi_auc(mirror(p), centre) - psi_auc(p, centre); 0 = the mirror position is as "
                 "specific as p): " + ", ".join(mirror))
  return ("Ablations: " + "; ".join(parts) + ".") if parts else "No ablations were run."


def specificity_markdown(summary: Mapping[str, Any]) -> str:
  """specificity.md: the verdict table first, then per-tap numbers, with the run's scale."""

  def table(header, rows):
    esc = lambda x: str(x).replace("|", "\\|")  # noqa: E731
    return "\n".join(["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
                     + ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows])

  trend = summary.get("trend") or {}
  return "\n".join([
      f"# Position specificity: one verdict per claim ({summary['settings']['variant']})", "",
      f"Scale: {_scale_text(summary)}.", "",
      table(_VERDICT_HEADER, _verdict_rows(summary["claims"])), "",
      f"Trend of psi_auc(p, centre) on the off-image share: theoretical RF slope {_fmt(trend.get('rf'))} "
      f"{_ci(trend.get('rf_ci'))}, ERF slope {_fmt(trend.get('erf'))} {_ci(trend.get('erf_ci'))} "
      f"({trend.get('points', 0)} points).", "",
      "## Per tap", "", table(_TAP_HEADER, _tap_rows(summary["taps"])), "",
      _ablation_text(summary), "", _realism_ref_text(summary), ""])


def specificity_section_html(summary: Mapping[str, Any]) -> str:
  """The report.html section: verdicts at the top, then the plots and per-tap numbers."""
  esc = html.escape

  def table(header, rows):
    head = "".join(f"<th>{esc(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><tr>{head}</tr>{body}</table>"

  quick = ("<p><b>Quick variant:</b> a smoke test of the pipeline; its verdicts say nothing about the paper.</p>"
           if summary["settings"]["variant"] == "quick" else "")
  return (f"<h3>Verdicts</h3>{quick}<p>Scale: {esc(_scale_text(summary))}. psi_auc = 2 P(W &gt; B) - 1 (0: positions "
          "indistinguishable, 1: separable); auc_id = P(W &gt; F) against other channels of the tap (0.5: no more "
          "alike than unrelated nodes); similarities are cosines of the judge layer's features pooled over each "
          "image's RF box inside the image (<code>rfspec.metrics.describe</code>); intervals are 95 % percentile "
          f"bootstraps over seeds (and channels for tap means). Claim 1 is an equivalence test (TOST) with margin "
          f"+-{summary['equivalence_margin']}.</p>"
          + table(_VERDICT_HEADER, _verdict_rows(summary["claims"]))
          + "<p><img src='psi_vs_off_image.png' alt='psi_auc vs off-image share'></p>"
          + "<p><img src='specificity_by_tap.png' alt='specificity per tap'></p>"
          + table(_TAP_HEADER, _tap_rows(summary["taps"]))
          + f"<p>{esc(_ablation_text(summary))}</p><p>{esc(_realism_ref_text(summary))}</p>"
          + "<p>Every number is in <code>specificity.json</code>; images in <code>specificity/*.npz</code>.</p>")

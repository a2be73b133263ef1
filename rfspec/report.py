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
import string
from typing import Any, Mapping

import numpy as np

__all__ = ["atlas_html", "estimate_text", "image_data_uri", "paper_html", "specificity_markdown",
           "specificity_section_html"]


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


# ----------------------------------------------------------------------------- the claims sweep

SMOKE_TEST = "smoke test (tiny size and steps): checks the pipeline, not the science"


def _fmt(v, spec: str = ".2f") -> str:
  return "n/a" if v is None else format(v, spec)


def _ci(ci, degenerate: bool = False, n: int | None = None) -> str:
  """"[lo, hi]"; a collapsed interval says so instead of looking certain."""
  if ci is None or None in ci:
    return "(no interval)"
  if degenerate:
    return f"(n = {n}, no interval; exact bound [{ci[0]:.2f}, {ci[1]:.2f}])" if n else "(no interval)"
  return f"[{ci[0]:.2f}, {ci[1]:.2f}]"


def _table(header, rows) -> str:
  esc = lambda x: str(x).replace("|", "\\|")  # noqa: E731
  return "\n".join(["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
                   + ["| " + " | ".join(esc(c) for c in r) + " |" for r in rows])


CLAIM_HEADER = ["claim", "estimate [95 % CI]", "own null", "permutation p", "verdict", "why / what would settle it"]


def claim_rows(claims) -> list[list[str]]:
  rows = []
  for c in claims:
    second = c.get("second") or {}
    extra = (f" Second measure, {second['name']}: {_fmt(second.get('estimate'))} {_ci(second.get('ci'))}"
             f"{'' if second.get('null') is None else ', null ' + _fmt(second.get('null'))}; {second.get('says', '')}."
             if second else "")
    rows.append([c["claim"], f"{_fmt(c['estimate'])} {_ci(c['ci'], c['ci_degenerate'], c['n'])}",
                 f"{_fmt(c['null'])} ({c['null_kind']})" if c["null_kind"] else "n/a",
                 _fmt(c["p_value"], ".3f"), c["verdict"],
                 c["why"] + (f"; {c['settle']}" if c["settle"] else "") + f" Measure: {c['measure']}." + extra])
  return rows


def _scale(st) -> str:
  return (f"config '{st['variant']}': {st['image_hw'][0]}x{st['image_hw'][1]} px, recipe {st['recipe']}, "
          f"{st['steps']} steps, taps {', '.join(st['taps'])}; K = {st['channels_per_tap']} channels per tap, "
          f"{st['seeds']}, {st['n_positions']} positions centre to corner{' + the corner mirror' if st['mirror'] else ''}"
          f"{', + tiled' if st['tiled'] else ''}; judge {st['judge']}; windows of >= {st['min_window_share']:.0%} of "
          f"the RF; {st['n_boot']} bootstrap draws (channels, then starts), {st['n_perm']} permutations")


def _per_position(values, cis=None) -> str:
  out = []
  for n, v in enumerate(values):
    if v is None:
      out.append("-")
    else:
      out.append(_fmt(v) + ("" if cis is None else " " + _ci(cis[n]["ci"], cis[n]["degenerate"])))
  return "; ".join(out)


TAP_HEADER = ["tap", "RF px", "channels (eligible)", "positions (RF inside)", "psi_auc vs centre [95 % CI]",
              "truncation null", "auc_id", "transfer T", "dead runs"]


def tap_rows(taps) -> list[list[str]]:
  rows = []
  for t in taps:
    pos = "; ".join(f"{tuple(p)} {r} {i:.0%}" for p, r, i in zip(t["positions"], t["roles"], t["inside"]))
    rows.append([t["tap"], str(t["rf_size"]), f"{', '.join(map(str, t['channels']))} ({t['channels_eligible']})", pos,
                 _per_position(t["psi_vs_centre"], t["psi_vs_centre_ci"]), _per_position(t["psi_truncation_null"]),
                 _per_position(t["auc_id"]), _per_position(t["transfer"]), f"{t['dead_runs']} of {t['runs']}"])
  return rows


def _ablations(summary) -> list[str]:
  lines = []
  for t in summary["taps"]:
    m = t["mirror"]
    if m["estimate"] is not None:
      lines.append(f"- Mirror, {t['tap']}: {m['what']}: {_fmt(m['estimate'])} {_ci(m['ci'], m['degenerate'])}.")
    size = t["ablations"].get("input_size")
    if size and "estimate" in size:
      lines.append(f"- Input size, {t['tap']}: the centre node at {size['image_hw'][0][0]} px (RF {size['inside'][0]:.0%} "
                   f"inside) vs {size['image_hw'][1][0]} px ({size['inside'][1]:.0%} inside), on the RF-frame window "
                   f"both see ({size['window_share']:.0%} of the RF), channels {size['channels']}: psi_auc "
                   f"{_fmt(size['estimate'])} {_ci(size['ci'], size['degenerate'], size['n'])}, permutation p = "
                   f"{_fmt(size['p_value'], '.3f')} (0: the same pattern whether or not the rest of the RF is seen).")
    elif size:
      lines.append(f"- Input size, {t['tap']}: {size['skipped']}.")
    pad = t["ablations"].get("padding")
    if pad and "zero" in pad:
      lines.append(f"- Padding, {t['tap']}: psi_auc(corner, centre) with zero padding {_fmt(pad['zero']['estimate'])} "
                   f"{_ci(pad['zero']['ci'], pad['zero']['degenerate'], pad['zero']['n'])}, with reflect padding "
                   f"{_fmt(pad['reflect']['estimate'])} {_ci(pad['reflect']['ci'], pad['reflect']['degenerate'], pad['reflect']['n'])}; "
                   f"reflect minus zero {_fmt(pad['reflect_minus_zero'])} "
                   f"{_ci(pad['reflect_minus_zero_ci'], pad['reflect_minus_zero_degenerate'])} (channels {pad['channels']}).")
    elif pad:
      lines.append(f"- Padding, {t['tap']}: {pad['skipped']}.")
  ctl = summary.get("padding_control")
  if ctl:
    lines.append(f"- Padding control: reflect padding keeps the top-1 class of {ctl['top1_unchanged']:.0%} of {ctl['n']} "
                 "natural photos.")
  return lines


def _pilot(summary) -> list[str]:
  pilot = summary.get("pilot")
  if not pilot:
    return []
  steps = sorted(pilot, key=int)
  rows = []
  for st in steps:
    v = pilot[st]
    for t in v["taps"]:
      corr = [c for c in (t.get("single_start_share") or []) + (t.get("tiled_start_share") or []) if c is not None]  # shares
      rows.append([st, t["tap"], _per_position(t["psi_vs_centre"]), _per_position(t["auc_id"]),
                   _per_position(t["transfer"]), str(t["dead_runs"]),
                   _fmt(max(map(abs, corr)) if corr else None),
                   "; ".join(f"{c['claim'].split('.')[0]}: {_fmt(c['estimate'])} {c['verdict']}" for c in v["claims"])])
  return ["## Pilot: the numbers after each step count", "",
          _table(["steps", "tap", "psi_auc vs centre", "auc_id", "transfer T", "dead", "start noise left (max share)", "claims"],
                 rows), ""]


def specificity_markdown(summary: Mapping[str, Any]) -> str:
  """specificity.md: the verdicts first (estimate, interval, own null, verdict), then per-tap numbers."""
  st = summary["settings"]
  smoke = [f"**{SMOKE_TEST}**", ""] if st.get("smoke_test") else []
  nat = summary.get("natural_photos")
  return "\n".join(smoke + [
      f"# The paper's claims, measured ({st['variant']})", "",
      f"Scale: {_scale(st)}. Weights sha256 {summary.get('weights_sha256') or 'n/a'}.", "",
      _table(CLAIM_HEADER, claim_rows(summary["claims"])), "",
      "psi_auc = 2 P(W > B) - 1 on the common RF-frame window (0: positions indistinguishable, 1: separable); "
      "auc_id = P(W > F), F = pairs with another channel (0.5: no more alike than unrelated node types); transfer T "
      "= the node's response to the other position's pattern moved into its RF frame / to its own, both cut to the "
      "common window (1: the same stimulus to the node). Intervals: 95 % hierarchical bootstrap (channels, then "
      "starts); '(no interval)' where every draw gave the same value.", "",
      "## Per tap", "", _table(TAP_HEADER, tap_rows(summary["taps"])), "",
      "## Ablations", ""] + (_ablations(summary) or ["None run."]) + [""]
      + ([f"Natural photos for claim 5: {nat['n']} (median spectrum slope {_fmt(nat['slope_median'])}).", ""]
         if nat else []) + _pilot(summary))


SWEEP_REPORT_VERSION = 1  # bump when the sweep's rendered outputs change (stored units stay valid)


def _html_table(header, rows) -> str:
  esc = html.escape
  head = "".join(f"<th>{esc(h)}</th>" for h in header)
  body = "".join("<tr>" + "".join(f"<td>{esc(str(c))}</td>" for c in r) + "</tr>" for r in rows)
  return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


_SWEEP_PAGE = string.Template("""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>The paper's claims, measured ($variant)</title><style>$css</style></head><body>
$smoke<h1>The paper's claims, measured ($variant)</h1>
<p>Scale: $scale.</p>
$claims
<p>$legend</p>
<p><img src="psi_vs_off_image.png" alt="psi_auc of each position against the centre, by the RF's off-image share, per tap, with 95 % intervals and the truncation null"></p>
<h2>Per tap</h2>
$taps
<h2>Ablations</h2>
<ul>$ablations</ul>
<p>Every number is in <code>specificity.json</code>.</p>
</body></html>
""")

_CSS = ("body{font-family:system-ui,sans-serif;max-width:1300px;margin:2em auto;padding:0 1em;color:#222}"
        "img{max-width:100%}table{border-collapse:collapse;margin:.5em 0;font-size:.85em}"
        "td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top}th{background:#f4f4f4}"
        ".smoke{background:#fff3cd;border:1px solid #e0c060;padding:.5em 1em;font-weight:bold}")


def specificity_html(summary: Mapping[str, Any]) -> str:
  """specificity.html: the same content as the markdown, offline, no scripts."""
  st = summary["settings"]
  smoke = f"<p class='smoke'>{html.escape(SMOKE_TEST)}</p>" if st.get("smoke_test") else ""
  legend = ("psi_auc = 2 P(W > B) - 1 on the common RF-frame window (0: positions indistinguishable, 1: separable); "
            "auc_id = P(W > F), F = pairs with another channel (0.5: chance); transfer T = the node's response to the "
            "other position's pattern / to its own, both cut to the common window (1: the same stimulus).")
  return _SWEEP_PAGE.substitute(
      variant=html.escape(st["variant"]), css=_CSS, smoke=smoke, scale=html.escape(_scale(st)),
      claims=_html_table(CLAIM_HEADER, claim_rows(summary["claims"])), legend=html.escape(legend),
      taps=_html_table(TAP_HEADER, tap_rows(summary["taps"])),
      ablations="".join(f"<li>{html.escape(line[2:])}</li>" for line in _ablations(summary)) or "<li>None run.</li>")


# ----------------------------------------------------------------------------- the paper's figures

PAPER_REPORT_VERSION = 1  # bump when the figures' PNGs or report change (stored units stay valid)

# What each recipe does, for a reader who has only the report. PROCEDURE.md (relative to the
# repository root) holds the facts of the paper's own procedure; rfspec/recipes.py the values.
RECIPE_NOTES = {
    "zipser2015": (
        "the paper's own procedure, as its author's 2015 scripts give it (the facts, with their source, are in "
        "../shared/reference/zipser2015/PROCEDURE.md; the values in rfspec/recipes.py). The image lives in Caffe's "
        "data space (BGR, 0-255, minus the script's mean 104/116/122) and starts as grey random dots: one plane of "
        "225 U[0, 1) copied to all three channels. One step: roll the image by a random -1, 0 or +1 px along each "
        "axis; forward to the tap and feed the node's own activation back as its gradient (the input gradient of "
        "1/2 sum mask relu(z)^2, so a node that is 0 gets no gradient and stays 0); add 1.5 / mean(|g| where g != 0) "
        "g; multiply the image by 0.995 (decay toward the mean colour); desaturate each pixel 1 % toward its "
        "channel mean; roll back; clip to the valid range. The script runs 2,000 steps with no octaves. Unlike the "
        "script, every (channel, position, seed) starts from its own noise, and the net is BVLC GoogLeNet."),
    "deepdream": (
        "the Inceptionism (DeepDream) notebook's step on a grey random-dot start: ascent normalised by mean |g|, "
        "random jitter, clip, no decay. Not the paper's own procedure (see zipser2015)."),
    "lucid": (
        "Lucid's recipe: Fourier (1/f) parameterisation with decorrelated colour, Adam, and random "
        "pad/jitter/scale/rotate each step. Not the paper's own procedure."),
}

_PAPER_CSS = ("body{font-family:system-ui,sans-serif;max-width:1400px;margin:2em auto;padding:0 1em;color:#222}"
              "img{max-width:100%;border:1px solid #ddd}table{border-collapse:collapse;margin:.5em 0;font-size:.9em}"
              "td,th{border:1px solid #ccc;padding:3px 6px;vertical-align:top;text-align:left}th{background:#f4f4f4}"
              "section{margin-bottom:2.5em}.claim{background:#f6f8ff;padding:.5em 1em;border-left:4px solid #88f}"
              ".note{color:#444;font-size:.9em}"
              ".smoke{background:#fff3cd;border:1px solid #e0c060;padding:.5em 1em;font-weight:bold}")

_PAPER_PAGE = string.Template("""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>rfspec: Zipser (2015) reproduced</title><style>$css</style></head><body>
$smoke<h1>rfspec: Zipser (2015) reproduced</h1>
<p>Zipser (2015), <i>Node Specificity in Convolutional Deep Nets Depends on Receptive Field Position and Size</i>,
reproduced on BVLC GoogLeNet with rfspec. Each image is a visualization: gradient ascent on the input for one node
(or, tiled, every position of a channel at once). Around each image, never over it: the node's receptive field (RF)
box in red, dashed where it runs off the image (that part of the RF is clipped), with solid ticks where an edge
crosses the image; the off-image part hatched. An RF smaller than a quarter of the image side is also shown zoomed
beside the image (nearest neighbour, its zoom stated). Rows: positions, labelled with the node's (i, j) = (row, col)
on its tap's grid and the share of its RF inside the image; columns: node type and seed; under each image its final
activation. Node types are chosen by a rule, not by eye (the paper's own person-trained net is not public).</p>
<p>$run</p>
$recipes
<p>$legend</p>
<ul>$toc</ul>
$figures
</body></html>
""")

_PAPER_FIGURE = string.Template("""<section id="$id"><h2>$title</h2>
<p><img src="$png" alt="$alt"></p>
<p class="claim"><b>Paper:</b> $claim</p>
<h3>Measured</h3>
$numbers
<h3>Node types and receptive fields</h3>
$geometry
<p class="note">$details</p>
</section>
""")


def estimate_text(e) -> str:
  """An `rfspec.runs.figures.Estimate` in words: "0.83 [0.50, 1.00]"; "1.00 (n = 3, no interval)"
  when every bootstrap draw agreed; "n/a: <why>" when undefined."""
  if e.why:
    return f"n/a: {e.why}"
  if e.value != e.value:  # NaN without a reason: nothing to compare
    return "n/a"
  if e.degenerate or e.lo != e.lo:
    return f"{e.value:.2f} (n = {e.n}, no interval)"
  return f"{e.value:.2f} [{e.lo:.2f}, {e.hi:.2f}]"


def _where(panel, p: int) -> str:
  i, j = (int(v) for v in panel.positions[p])
  return f"{panel.position_names[p]} ({i}, {j})"


def _figure_numbers_html(fig) -> str:
  esc = html.escape
  parts = []
  pair_rows = []
  for panel in fig.panels:
    for e in panel.psi_auc:
      value = "n/a (see below)" if fig.psi_why else estimate_text(e.psi_auc)
      p = "-" if e.psi_auc.p_value != e.psi_auc.p_value else f"{e.psi_auc.p_value:.3f}"
      pair_rows.append([f"{panel.tap} ch{panel.channel}", f"{_where(panel, e.p)} vs {_where(panel, e.q)}",
                        f"{e.window_share:.0%}", value, p])
  if pair_rows:
    parts.append(_html_table(["node type", "positions compared", "common RF-frame window (share of the RF)",
                              "psi_auc [95 % CI]", "permutation p"], pair_rows))
  auc_rows = [[f"{panel.tap} ch{panel.channel}", _where(panel, p), estimate_text(e)]
              for panel in fig.panels for p, e in enumerate(panel.auc_id) if not fig.auc_id_why]
  if auc_rows:
    parts.append(_html_table(["node type", "position", "auc_id [95 % CI]"], auc_rows))
  if fig.psi_why:
    parts.append(f"<p class='note'>psi_auc not computed: {esc(fig.psi_why)}.</p>")
  if fig.auc_id_why:
    parts.append(f"<p class='note'>auc_id not computed: {esc(fig.auc_id_why)}.</p>")
  return "\n".join(parts)


def _figure_geometry_html(fig) -> str:
  rows = []
  for panel in fig.panels:
    fin = lambda r: ", ".join(f"{v:.4g}" for v in panel.final_activation[r])  # noqa: E731
    if fig.tiled:
      rows.append([panel.tap, panel.channel, "tiled", f"all {panel.grid[0]} x {panel.grid[1]}", panel.rf_size,
                   panel.rf_stride, "-", "-", fin(0)])
    for p in range(len(panel.positions)):
      rows.append([panel.tap, panel.channel, panel.position_names[p], str(tuple(int(v) for v in panel.positions[p])),
                   panel.rf_size, panel.rf_stride, str(tuple(int(v) for v in panel.boxes[p])),
                   f"{panel.inside[p]:.0%}", fin(p)])
  return _html_table(["tap", "channel", "position", "(i, j)", "RF px", "stride", "RF box (t, l, b, r)", "RF inside",
                      "final activation per seed"], rows)


def _figure_details(fig, name_json: str, name_npz: str) -> str:
  esc = html.escape
  rules = " ".join(f"{esc(p.tap)} channel {p.channel}: {esc(p.rule)}." for p in fig.panels)
  made = "restored from the store; " if fig.resumed else ""
  return (f"Seeds {[int(s) for s in fig.panels[0].seeds]}. {rules} Made in {fig.seconds:.0f} s ({made}panels: "
          + ", ".join(f"{p.seconds:.0f} s" for p in fig.panels)
          + f"). Every number, and how to regenerate any image bit for bit: <a href=\"{esc(name_json)}\">"
          f"{esc(name_json)}</a>; the images: <a href=\"{esc(name_npz)}\">{esc(name_npz)}</a>.")


def paper_html(result, *, files_of: Mapping[str, Mapping[str, str]], weights: str = "") -> str:
  """report.html of a figures run (`rfspec.runs.figures.FiguresResult`): per figure its PNG, the
  paper's claim, the numbers (psi_auc between positions on their common RF-frame window with 95 %
  intervals, auc_id where there is a floor, or why not, once), the RF geometry, the channel rule
  and the timing. Offline, no scripts.

  Args:
    result: the run.
    files_of: {figure name: {"png", "json", "npz"}: paths relative to the page}.
    weights: what --weights named.
  """
  esc = html.escape
  st = result.settings
  vis = st["vis"]
  smoke = f"<p class='smoke'>{esc(SMOKE_TEST)}</p>" if st.get("smoke_test") else ""
  run = (f"Config variant <code>{esc(st.get('variant') or '-')}</code>: {vis['image_hw'][0]}x{vis['image_hw'][1]} px, "
         f"recipe <code>{esc(vis.get('recipe', ''))}</code>, {vis['steps']} steps; "
         f"weights <code>{esc(weights)}</code>; "
         f"numbers from {st['n_boot']} bootstrap draws and {st['n_perm']} permutations (analysis seed "
         f"{st['analysis_seed']}). run_figures took {result.seconds:.0f} s in this process; the figures took "
         + ", ".join(f"{esc(f.name)} {f.seconds:.0f} s" for f in result.figures) + " to make.")
  recipes = "".join(f"<p><b>Recipe <code>{esc(r)}</code></b>: {esc(RECIPE_NOTES.get(r, 'see rfspec/recipes.py.'))}</p>"
                    for r in sorted({vis.get("recipe", "")}) if r)
  legend = ("psi_auc = 2 P(W > B) - 1, W = judge similarities between seeds at one position, B = between the two "
            "positions, both on the pair's common RF-frame window (the RF offsets that lie inside the image at both), "
            f"judge layer {_judge()}: 0 = the positions' patterns are indistinguishable, 1 = every within-position "
            "pair is more alike than every between pair. auc_id = P(W > F), F = pairs with another channel of the "
            "same tap at the same position (0.5: no more alike than unrelated node types). 95 % bootstrap intervals "
            "over seeds; '(n = 3, no interval)' where every resample gave the same value, so the sample is too small "
            "to say how precise it is.")
  sections, toc = [], []
  for fig in result.figures:
    f = files_of[fig.name]
    toc.append(f"<li><a href=\"#{esc(fig.name)}\">{esc(fig.title)}</a></li>")
    sections.append(_PAPER_FIGURE.substitute(
        id=esc(fig.name), title=esc(fig.title), png=esc(f["png"]),
        alt=esc(f"{fig.title}: " + ("one row, every position at once" if fig.tiled else "rows are RF positions")
                + "; columns are node type and seed"), claim=esc(fig.claim),
        numbers=_figure_numbers_html(fig), geometry=_figure_geometry_html(fig),
        details=_figure_details(fig, f["json"], f["npz"])))
  return _PAPER_PAGE.substitute(css=_PAPER_CSS, smoke=smoke, run=run, recipes=recipes, legend=esc(legend),
                                toc="".join(toc), figures="\n".join(sections))


def _judge() -> str:
  from rfspec import metrics

  return metrics.JUDGE_TAP

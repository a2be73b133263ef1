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
import math
import string
from typing import Any, Mapping, Sequence

import numpy as np

__all__ = ["SMOKE_TEST", "atlas_html", "census_markdown", "estimate_text", "image_data_uri", "paper_html", "smoke_head",
           "specificity_html", "specificity_markdown"]


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

ATLAS_REPORT_VERSION = 4  # bump when the atlas page or figures change (stored batches stay valid)

_ATLAS_CSS = """
body{font-family:system-ui,sans-serif;margin:1.2em 1.5em;color:#222}
h1{font-size:1.3em;margin:.2em 0}h2{font-size:1.1em;margin:1em 0 .3em}h3{font-size:1em;margin:.2em 0}
.meta{font-size:.9em;color:#444;max-width:75em;margin:.3em 0}.small{font-size:.8em;color:#555}
.smoke{background:#fff3cd;border:1px solid #e0c060;padding:.5em 1em;font-weight:bold}
.top{display:flex;flex-wrap:wrap;gap:1.5em;align-items:flex-start}
.heat{position:relative;display:inline-block;line-height:0;max-width:100%}.heat img{max-width:100%;height:auto}
.heat a.cell{position:absolute;display:block;box-sizing:border-box}
.heat a.cell:hover,.heat a.cell.sel{outline:3px solid #1a5fd0;outline-offset:-3px}
#pair{min-width:24em;max-width:60em;flex:1}#pair .hint{color:#555;font-style:italic}
.lab2{font-size:.85em;margin:.5em 0 .2em}.cuts{display:flex;gap:8px;align-items:flex-end}
.cut{position:relative;overflow:hidden;outline:1px solid #888;flex:none}
.cut img,.big img{position:absolute;max-width:none;image-rendering:pixelated}
.ctxs{display:flex;gap:12px;align-items:flex-start;font-size:.8em;color:#555;margin-top:10px}
.ctx{position:relative;display:block}.ctx img{display:block}
.ctx .win{position:absolute;border:2px solid #1a5fd0;box-sizing:border-box}
#mosaic{display:grid;gap:4px;margin:.6em 0;align-items:center;justify-content:start}
#mosaic .lab{font-size:.8em;color:#555;text-align:center}
.tile{display:block;text-decoration:none;color:#222;border:2px solid transparent;cursor:pointer}
.tile:hover,.tile.sel{border-color:#1a5fd0}
.frame{position:relative;overflow:hidden;background:#fff}
.frame img{position:absolute;z-index:1;outline:1px solid #999}
.frame .rf{position:absolute;z-index:0;border:2px dashed #dc1e1e;box-sizing:border-box}
.frame .clip{position:absolute;z-index:2;overflow:hidden;pointer-events:none}
.frame .rfin{position:absolute;border:1px solid rgba(220,30,30,.75);box-sizing:border-box}
.tile .cap{display:block;font-size:.8em;text-align:center;margin-top:2px}
#detail{position:fixed;inset:3%;z-index:10;background:#fff;overflow:auto;padding:1em 1.5em;
 border:1px solid #999;box-shadow:0 4px 24px rgba(0,0,0,.35)}#detail[hidden],#pairbody[hidden]{display:none}
#detail .close{float:right;font-size:1.1em}
.seeds{display:flex;flex-wrap:wrap;gap:12px}.big .rf{background:repeating-linear-gradient(45deg,#f3b0b0 0 1px,transparent 1px 7px)}
figure{margin:0}figcaption{font-size:.85em;margin-top:.3em}
table{border-collapse:collapse;font-size:.9em;margin:.6em 0}td,th{border:1px solid #ccc;padding:2px 8px;text-align:left}
"""

_ATLAS_PAGE = string.Template("""<!doctype html><html lang="en"><head><meta charset="utf-8">
<title>$title</title><style>$css</style></head><body>
$smoke<h1>$title</h1>
<p class="meta">$facts</p>
<details class="meta"><summary>How the channel and the starts were chosen</summary><p>$rule</p></details>
<h2>psi_auc of every position against the centre</h2>
<p class="meta">$measure</p>
<div class="top">
<div class="heat"><img id="heatmap" src="$heat_src" alt="$heat_alt" width="$heat_w" height="$heat_h">$cells</div>
<section id="pair"><p class="hint" id="pairhint">Click a cell of the heat map (or open this page with
<code>?cell=I,J</code>) to see that position's images and the centre's side by side, each cut to the common
RF-frame window the measure compares.</p><div id="pairbody" hidden></div></section>
</div>
<h2>The mosaic</h2>
<p class="meta">$mosaic_legend</p>
<div id="mosaic" style="grid-template-columns:max-content repeat($n_cols, max-content)">$mosaic</div>
<section id="detail" hidden><a class="close" href="#">close (Esc)</a><h3 id="dtitle"></h3>
<div class="seeds" id="dseeds"></div><table id="dinfo"></table></section>
<p class="small">Files beside this page: <a href="atlas.json">atlas.json</a> (every number, and how to remake any
tile bit for bit), <a href="atlas.png">atlas.png</a> (the mosaic), <a href="atlas_psi.png">atlas_psi.png</a> (the
heat map); atlas.npz holds the exact images.</p>
<noscript><p>The heat map and mosaic work without JavaScript; the detail views need it.</p></noscript>
<script type="application/json" id="atlas-data">$payload</script>
<script>$js</script>
</body></html>
""")

_ATLAS_TILE = string.Template("""<a class="tile" id="tile-link-$i-$j" href="#tile-$i-$j" title="$label">\
<div class="frame" style="width:${fw}px;height:${fh}px"><div class="rf" style="$box"></div>\
<img src="$src" alt="$alt" style="left:${m}px;top:${m}px;width:${tw}px;height:${th}px">\
<div class="clip" style="left:${m}px;top:${m}px;width:${tw}px;height:${th}px"><div class="rfin" style="$inbox"></div></div>\
</div><span class="cap">$cap</span></a>""")

# Which view a URL asks for; kept apart so tests can run it (in Node) without a browser.
ATLAS_VIEW_JS = r"""
// The view a URL addresses: #cell-I-J or #tile-I-J (the page's links), else ?cell=I,J or ?tile=I,J (a page
// opened from disk or by a screenshot tool). Returns {kind: 'cell' | 'tile', i, j} or null.
function atlasView(search, hash){
  let m = /^#(cell|tile)-(\d+)-(\d+)$/.exec(hash || '');
  if (m) return {kind: m[1], i: Number(m[2]), j: Number(m[3])};
  const q = new URLSearchParams(search || '');
  for (const kind of ['cell', 'tile']) {
    m = /^(\d+),(\d+)$/.exec(q.get(kind) || '');
    if (m) return {kind: kind, i: Number(m[1]), j: Number(m[2])};
  }
  return null;
}
"""

_ATLAS_JS = ATLAS_VIEW_JS + r"""
(function(){
const D = JSON.parse(document.getElementById('atlas-data').textContent);
const H = D.image_hw[0], W = D.image_hw[1];
const byKey = {};
D.tiles.forEach((t, k) => { byKey[t.position[0] + '-' + t.position[1]] = k; });
const fmt = v => (v === null || v === undefined) ? 'n/a' : (Math.abs(v) >= 100 ? v.toFixed(0) : v.toPrecision(3));
const el = (tag, props) => Object.assign(document.createElement(tag), props || {});
const px = v => v + 'px';
const ref = D.tiles[D.reference];
// An interval only where the bootstrap spread: else the value stands alone (as report.estimate_text writes it).
const interval = (t, d) => t.degenerate ?
  '(n = ' + t.seeds.length + ', no interval; exact bound [' + t.ci.map(v => v.toFixed(d || 2)).join(', ') + '])' :
  '[' + t.ci.map(v => v.toFixed(d || 2)).join(', ') + ']';
// A cut: image `src` shown only inside rect (top, left, bottom, right), scaled by k.
function cut(src, rect, k, alt){
  const d = el('div', {className: 'cut'});
  Object.assign(d.style, {width: px((rect[3] - rect[1]) * k), height: px((rect[2] - rect[0]) * k)});
  const img = el('img', {src: src, alt: alt});
  Object.assign(img.style, {left: px(-rect[1] * k), top: px(-rect[0] * k), width: px(W * k), height: px(H * k)});
  d.appendChild(img); return d;
}
// A small whole image with the window outlined.
function context(src, rect, alt){
  const k = 112 / Math.max(H, W), d = el('span', {className: 'ctx'});
  const img = el('img', {src: src, alt: alt}); Object.assign(img.style, {width: px(W * k), height: px(H * k)});
  const w = el('span', {className: 'win'});
  Object.assign(w.style, {top: px(rect[0] * k), left: px(rect[1] * k), height: px((rect[2] - rect[0]) * k), width: px((rect[3] - rect[1]) * k)});
  d.appendChild(img); d.appendChild(w); return d;
}
function showPair(k){
  const t = D.tiles[k], body = document.getElementById('pairbody');
  document.getElementById('pairhint').hidden = true; body.hidden = false; body.textContent = '';
  document.querySelectorAll('a.cell.sel').forEach(e => e.classList.remove('sel'));
  const a = document.getElementById('cell-' + t.position.join('-')); if (a) a.classList.add('sel');
  const pos = '(' + t.position.join(', ') + ')', rp = '(' + ref.position.join(', ') + ')';
  body.appendChild(el('h3', {textContent: 'Position ' + pos + ' vs the centre ' + rp}));
  const r = t.rect, c = t.centre_rect, wh = (r[2] - r[0]) + ' x ' + (r[3] - r[1]) + ' px';
  let what = t.psi === null ? 'psi_auc n/a: ' + t.reason :
    'psi_auc ' + t.psi.toFixed(2) + ' ' + interval(t) +
    ', permutation p = ' + fmt(t.p);
  body.appendChild(el('p', {textContent: what + '. Common RF-frame window: ' + wh + ', ' + Math.round(100 * t.share) + ' % of the RF area. ' +
    'Each row is one position\'s starts, cut to that window; psi_auc asks whether the images within a row are more alike than images across the rows.'}));
  const empty = r[2] <= r[0] || r[3] <= r[1];
  if (empty) return;
  // As large as 4x or 220 px a side allow, with every start of a row side by side in the panel.
  const room = (body.clientWidth - 8 * t.seeds.length) / (t.seeds.length * (r[3] - r[1]));
  const k2 = Math.max(0.25, Math.min(4, 220 / Math.max(r[2] - r[0], r[3] - r[1]), room));
  [[t, r, 'position ' + pos], [ref, c, 'the centre ' + rp]].forEach(([tt, rect, name]) => {
    body.appendChild(el('div', {className: 'lab2', textContent: name + ', starts ' + tt.seeds.join(', ') + ':'}));
    const row = el('div', {className: 'cuts'});
    D.images[D.tiles.indexOf(tt)].forEach((src, s) => row.appendChild(cut(src, rect, k2, name + ' start ' + tt.seeds[s] + ', cut to the common window')));
    body.appendChild(row);
  });
  const ctx = el('div', {className: 'ctxs'});
  ctx.appendChild(el('span', {textContent: 'Where the window lies:'}));
  ctx.appendChild(context(D.images[k][0], r, pos + ' whole image, window outlined'));
  ctx.appendChild(context(D.images[D.reference][0], c, 'centre whole image, window outlined'));
  body.appendChild(ctx);
}
function showTile(k){
  const t = D.tiles[k], det = document.getElementById('detail');
  document.getElementById('tile-link-' + t.position.join('-')).classList.add('sel');
  det.hidden = false;
  // A margin on each side that holds the box's overhang there (up to 70 % of the image side, enough for
  // inception_4c's 299 px RF on 224 px; further off it is cut), and two starts a row when there are more.
  const bx = t.box, cap = 0.7 * Math.max(H, W);
  const over = [-bx[0], -bx[1], bx[2] - H, bx[3] - W].map(v => Math.max(v, 0));  // top, left, bottom, right
  const [mt, ml, mb, mr] = over.map(v => Math.round(Math.max(4, Math.min(v + 4, cap))));
  const perRow = t.seeds.length <= 2 ? t.seeds.length : Math.ceil(t.seeds.length / 2);
  document.getElementById('dtitle').textContent = 'Position (i, j) = (' + t.position.join(', ') + '): every start, ' +
    'its RF box in red (a thin line over the image, hatched where the RF lies off it' +
    (Math.max(...over) + 4 > cap ? ', cut at the frame\'s edge)' : ')');
  const fit = (0.94 * window.innerWidth - 80) / (perRow * (W + ml + mr + 12));
  const k2 = Math.max(0.25, Math.min(D.detail_px / Math.max(H, W), fit));
  const seeds = document.getElementById('dseeds'); seeds.textContent = '';
  t.seeds.forEach((s, n) => {
    const fig = el('figure'), fr = el('div', {className: 'frame big'});
    Object.assign(fr.style, {width: px((W + ml + mr) * k2), height: px((H + mt + mb) * k2)});
    const b = t.box, box = {top: px((b[0] + mt) * k2), left: px((b[1] + ml) * k2), height: px((b[2] - b[0]) * k2), width: px((b[3] - b[1]) * k2)};
    const rf = el('div', {className: 'rf'}); Object.assign(rf.style, box); fr.appendChild(rf);
    const img = el('img', {src: D.images[k][n], alt: 'position (' + t.position.join(', ') + '), start ' + s});
    const on = {left: px(ml * k2), top: px(mt * k2), width: px(W * k2), height: px(H * k2)};
    Object.assign(img.style, on); fr.appendChild(img);
    // The RF edge where it crosses the image: a thin line over the image, cut to it (as on the tiles).
    const clip = el('div', {className: 'clip'}); Object.assign(clip.style, on);
    const rfin = el('div', {className: 'rfin'});
    Object.assign(rfin.style, {top: px(b[0] * k2), left: px(b[1] * k2), height: px((b[2] - b[0]) * k2), width: px((b[3] - b[1]) * k2)});
    clip.appendChild(rfin); fr.appendChild(clip);
    fig.appendChild(fr);
    fig.appendChild(el('figcaption', {textContent: 'start ' + s + ': activation ' + fmt(t.start_activation[n]) + ' at the start \u2192 ' + fmt(t.final_activation[n]) + ' final'}));
    seeds.appendChild(fig);
  });
  const rows = [['RF box (top, left, bottom, right), px', '(' + t.box.join(', ') + ')'],
                ['RF share inside the image', t.inside.toFixed(3)],
                ['psi_auc vs the centre', t.psi === null ? 'n/a (' + t.reason + ')' : t.psi.toFixed(3) + ' ' + interval(t, 3)],
                ['common window with the centre', Math.round(100 * t.share) + ' % of the RF area']];
  const tb = document.getElementById('dinfo'); tb.textContent = '';
  rows.forEach(([a, v]) => { const tr = tb.insertRow(); tr.insertCell().textContent = a; tr.insertCell().textContent = v; });
}
function route(){
  document.querySelectorAll('.tile.sel').forEach(e => e.classList.remove('sel'));
  document.getElementById('detail').hidden = true;
  const v = atlasView(location.search, location.hash);
  if (!v || byKey[v.i + '-' + v.j] === undefined) return;
  if (v.kind === 'cell') showPair(byKey[v.i + '-' + v.j]); else showTile(byKey[v.i + '-' + v.j]);
}
window.addEventListener('hashchange', route);
document.addEventListener('keydown', e => { if (e.key === 'Escape') location.hash = ''; });
route();
})();
"""


def _css_box(box, margin: float, k: float) -> str:
  """CSS position of a box (top, left, bottom, right) in image px, inside a frame with `margin`, scaled by k."""
  t, l, b, r = box
  return (f"top:{(t + margin) * k:.1f}px;left:{(l + margin) * k:.1f}px;"
          f"height:{(b - t) * k:.1f}px;width:{(r - l) * k:.1f}px")


def atlas_html(summary: Mapping[str, Any], images, *, heatmap, heatmap_cells, detail_px: int = 448) -> str:
  """The position atlas page (`atlas.html`), self-contained: images are embedded, nothing is fetched.

  Top: the heat map of psi_auc of every tile against the centre tile (`plots.atlas_psi_heatmap`),
  each cell a link: a click (or `?cell=I,J` in the URL) shows the two positions' starts side by side,
  each cut to the common RF-frame window the measure compared, with the number, its interval and
  where the window lies. Below: the mosaic, each tile (first start, `tile` px) at its grid place in a
  margin where its RF box continues off the image (dashed), with its inside share; a click (or
  `?tile=I,J`) shows every start large with its RF box. A smoke-test run says so at the top.

  Args:
    summary: `rfspec.runs.atlas.summary(...)` (tiles in row-major order).
    images: float [R, C, S, H, W, 3] RGB in [0, 1] (JPEG q92 on the page; atlas.npz has the exact values).
    heatmap: uint8 [h, w, 3], the heat map; heatmap_cells: [R, C, 4] (left, top, right, bottom)
      fractions of it for each psi cell.
    detail_px: about how large the enlarged images are.
  """
  images = np.asarray(images)
  n_r, n_c, n_s, h, w = images.shape[:5]
  tiles = list(summary["tiles"])
  if len(tiles) != n_r * n_c:
    raise ValueError(f"summary has {len(tiles)} tiles but images hold {n_r}x{n_c} positions.")
  esc = html.escape
  st = summary["settings"]
  t_px = int(st["mosaic_tile"])
  k = t_px / max(h, w)
  over = max(max(-t["box"][0], -t["box"][1], t["box"][2] - h, t["box"][3] - w, 0) for t in tiles)
  margin = float(min(over + 4, 0.3 * max(h, w)))  # image px of margin around each tile: room for the off-image RF
  uris = [[image_data_uri(images[t["r"], t["c"], s]) for s in range(n_s)] for t in tiles]
  cells, mosaic = [], ["<div class='lab'>i \\ j</div>"] + [f"<div class='lab'>j = {j}</div>" for j in summary["cols"]]
  for n, t in enumerate(tiles):
    i, j = t["position"]
    if t["c"] == 0:
      mosaic.append(f"<div class='lab'>i = {i}</div>")
    psi = "n/a (" + t["psi_reason"] + ")" if t["psi_auc"] is None else f"{t['psi_auc']:.2f}"
    left, top, right, bottom = (100 * float(v) for v in heatmap_cells[t["r"]][t["c"]])
    cells.append(f"<a class='cell' id='cell-{i}-{j}' href='#cell-{i}-{j}' title='({i}, {j}): psi_auc {esc(psi)}' "
                 f"aria-label='position ({i}, {j}) against the centre: psi_auc {esc(psi)}' style='left:{left:.3f}%;"
                 f"top:{top:.3f}%;width:{right - left:.3f}%;height:{bottom - top:.3f}%'></a>")
    inside = f"RF {100 * t['inside_fraction']:.0f}% inside"
    b = t["box"]
    mosaic.append(_ATLAS_TILE.substitute(
        i=i, j=j, label=esc(f"(i, j) = ({i}, {j}): {inside}; click for every start"),
        fw=f"{(w + 2 * margin) * k:.0f}", fh=f"{(h + 2 * margin) * k:.0f}", box=_css_box(b, margin, k),
        inbox=_css_box(b, 0, k), src=uris[n][0], m=f"{margin * k:.1f}", tw=f"{w * k:.1f}", th=f"{h * k:.1f}",
        alt=esc(f"position (i, j) = ({i}, {j}), start {t['seeds'][0]}, {inside} the image"),
        cap=esc(f"({i}, {j}) · seed {t['seeds'][0]} · {inside}")))
  ref = summary["reference"]
  data = dict(image_hw=[h, w], detail_px=int(detail_px), reference=ref["r"] * n_c + ref["c"], images=uris,
              tiles=[dict(position=t["position"], seeds=t["seeds"], box=t["box"], inside=t["inside_fraction"],
                          start_activation=t["start_activation"], final_activation=t["final_activation"],
                          psi=t["psi_auc"], ci=t["psi_ci"], p=t["psi_p_value"], degenerate=t["psi_degenerate"],
                          reason=t["psi_reason"], share=t["window_share"], rect=t["window_rect"],
                          centre_rect=t["centre_window_rect"]) for t in tiles])
  m = summary["measure"]
  title = f"Position atlas: {summary['tap']} channel {summary['channel']}"
  facts = (f"{n_r} x {n_c} positions of the {summary['grid'][0]} x {summary['grid'][1]} grid, {n_s} starts each "
           f"(each position its own), {summary['image_hw'][0]} x {summary['image_hw'][1]} px, recipe "
           f"{summary['recipe']}, {summary['steps']} steps. RF {summary['rf']['size']} px, stride "
           f"{summary['rf']['stride']} px. Positions are (i, j) = (row, col) of the tap's grid.")
  measure = (f"{m['what']}. The interval is a {m['ci_level']:.0%} bootstrap over the starts ({m['n_boot']} draws). "
             f"n/a where the common window is below {m['min_window_share']:.0%} of the RF area, at the centre "
             "itself, or with too few starts. The right panel gives each window's share of the RF.")
  legend = (f"Each tile is the first start at its position, {t_px} px, in a white margin: the red RF box is dashed "
            "where it lies off the image and a thin solid line where its edge crosses the image; the margin cuts "
            "what lies further off. Under each tile: its (i, j), its start seed and the share of its RF inside the "
            "image. Click a tile to see every start large.")
  heat_alt = (f"Heat map of psi_auc of each of the {n_r} x {n_c} positions against the centre position "
              f"({ref['position'][0]}, {ref['position'][1]}), on their common RF-frame window, with 95 % intervals; "
              "and the window's share of the RF")
  smoke = f"<p class='smoke'>{esc(SMOKE_TEST)}</p>\n" if summary.get("smoke_test") else ""
  payload = json.dumps(data).replace("</", "<\\/")  # never close the script element early
  return _ATLAS_PAGE.substitute(
      title=esc(title), css=_ATLAS_CSS, smoke=smoke, facts=esc(facts), rule=esc(summary["channel_rule"]),
      measure=esc(measure), heat_src=image_data_uri(heatmap, fmt="PNG"), heat_alt=esc(heat_alt),
      heat_w=heatmap.shape[1], heat_h=heatmap.shape[0], cells="".join(cells), mosaic_legend=esc(legend),
      n_cols=n_c, mosaic="".join(mosaic), payload=payload, js=_ATLAS_JS)


def atlas_summary_line(summary: Mapping[str, Any]) -> str:
  """The atlas in one line (the binary's stdout, after `smoke_head`): node type, psi_auc range."""
  psi = [t["psi_auc"] for t in summary["tiles"] if t["psi_auc"] is not None]
  spread = f"psi_auc vs the centre {min(psi):.2f}..{max(psi):.2f} over {len(psi)} tiles" if psi else "psi_auc n/a everywhere"
  return (f"{summary['tap']} channel {summary['channel']}, {len(summary['rows'])} x {len(summary['cols'])} "
          f"positions x {summary['seeds_per_position']} starts, {spread}, {summary['batches']} batches "
          f"({summary['resumed_batches']} resumed)")


# ----------------------------------------------------------------------------- the claims sweep

SMOKE_TEST = "smoke test (tiny size and steps): checks the pipeline, not the science"


def smoke_head(smoke_test: bool) -> str:
  """What a quick run's one-line stdout summary starts with: `SMOKE_TEST` and "; " ("" otherwise)."""
  return SMOKE_TEST + "; " if smoke_test else ""


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


def _sentence(text: str) -> str:
  """`text` ending in a full stop (so the next sentence does not run into it)."""
  text = str(text).rstrip()
  return text if not text or text.endswith((".", "!", "?", ":")) else text + "."


def claim_rows(claims) -> list[list[str]]:
  rows = []
  for c in claims:
    second = c.get("second") or {}
    extra = (f" Second measure, {second['name']}: {_fmt(second.get('estimate'))} {_ci(second.get('ci'))}"
             f"{'' if second.get('null') is None else ', null ' + _fmt(second.get('null'))}; {second.get('says', '')}."
             if second else "")
    rows.append([c["claim"], "n/a" if c["estimate"] is None else
                 f"{_fmt(c['estimate'])} {_ci(c['ci'], c['ci_degenerate'], c['n'])}",
                 f"{_fmt(c['null'])} ({c['null_kind']})" if c["null_kind"] else "n/a",
                 _fmt(c["p_value"], ".3f"), c["verdict"],
                 _sentence(c["why"].rstrip(". ") + f"; {c['settle']}" if c["settle"] else c["why"])
                 + f" Measure: {c['measure']}."
                 + extra])
  return rows


def _scale(st) -> str:
  return (f"config '{st['variant']}': {st['image_hw'][0]}x{st['image_hw'][1]} px, recipe {st['recipe']}, "
          f"{st['steps']} steps, taps {', '.join(st['taps'])}; K = {st['channels_per_tap']} channels per tap, "
          f"{st['seeds']}, {st['n_positions']} positions centre to corner{' + the corner mirror' if st['mirror'] else ''}"
          f"{', + tiled' if st['tiled'] else ''}; judge {st['judge']}; windows of >= {st['min_window_share']:.0%} of "
          f"the RF; {st['n_boot']} bootstrap draws (channels, then starts), {st['n_perm']} permutations")


def _per_position(values, cis=None, why=None, n_starts=None) -> str:
  """Values per position, "; "-separated, each with its interval if `cis` (a collapsed one says so,
  with the `n_starts` behind it); an undefined value says why (`why[n]`) or "-"."""
  out = []
  for n, v in enumerate(values):
    if v is None:
      out.append(why[n] if why else "-")
    else:
      out.append(_fmt(v) + ("" if cis is None else " " + _ci(cis[n]["ci"], cis[n]["degenerate"], n_starts)))
  return "; ".join(out)


TAP_HEADER = ["tap", "RF px", "channels (eligible)", "positions (RF inside)", "psi_auc vs centre [95 % CI]",
              "truncation null", "auc_id", "transfer T", "dead runs"]


def _vs_centre_why(t) -> list[str]:
  """Why a position has no number against the centre: it is the centre, or their common window is too small."""
  defined = t.get("window_defined_with_centre") or [True] * len(t["roles"])
  share = t.get("window_share_with_centre") or [None] * len(t["roles"])
  return ["centre" if role == "centre" else "n/a" if ok or s is None else f"n/a (window {s:.0%})"
          for role, ok, s in zip(t["roles"], defined, share)]


def tap_rows(taps) -> list[list[str]]:
  rows = []
  for t in taps:
    pos = "; ".join(f"{tuple(p)} {r} {i:.0%}" for p, r, i in zip(t["positions"], t["roles"], t["inside"]))
    why, s = _vs_centre_why(t), t.get("starts_per_position")
    rows.append([t["tap"], str(t["rf_size"]), f"{', '.join(map(str, t['channels']))} ({t['channels_eligible']})", pos,
                 _per_position(t["psi_vs_centre"], t["psi_vs_centre_ci"], why, s),
                 _per_position(t["psi_truncation_null"], why=why),
                 _per_position(t["auc_id"], t.get("auc_id_ci"), None, s),
                 _per_position(t["transfer"], why=why), f"{t['dead_runs']} of {t['runs']}"])
  return rows


def _tap_note(st) -> str:
  return (f"Per tap, against the centre: 'centre' is the reference itself; 'n/a (window X%)': the position's common "
          f"RF-frame window with the centre is X% of the RF, below the {st['min_window_share']:.0%} the measure "
          "needs, so nothing is compared there.")


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
      "## Per tap", "", _table(TAP_HEADER, tap_rows(summary["taps"])), "", _tap_note(st), "",
      "## Ablations", ""] + (_ablations(summary) or ["None run."]) + [""]
      + ([f"Natural photos for claim 5: {nat['n']} (median spectrum slope {_fmt(nat['slope_median'])}).", ""]
         if nat else []) + _pilot(summary))


SWEEP_REPORT_VERSION = 3  # bump when the sweep's rendered outputs change (stored units stay valid)


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
<p>$tap_note</p>
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
      taps=_html_table(TAP_HEADER, tap_rows(summary["taps"])), tap_note=html.escape(_tap_note(st)),
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


# ----------------------------------------------------------------------------- RF census


def _census_num(v: float | None, spec: str = ".1f") -> str:
  """Formats a statistic; None / NaN (a dead node's all-zero ERF) prints as a dash."""
  return "–" if v is None or not math.isfinite(v) else format(v, spec)


def _census_hw_label(hw: Sequence[int]) -> str:
  return f"{hw[0]}" if hw[0] == hw[1] else f"{hw[0]}x{hw[1]}"


def census_markdown(rows: Sequence[dict[str, Any]], erf_rows: Sequence[dict[str, Any]] | None = None,
                    erf_image_hw: Sequence[int] | None = None) -> str:
  """The census (and optional ERF summary) as markdown tables, one census table per input size."""
  out = ["# Receptive-field census", "",
         "RF boxes are exact (box ∩ image = the pixels that can influence a node). *Offset* is the "
         "centre (y = x) of node (0, 0)'s RF in pixels; *fully inside* is the share of grid "
         "positions whose whole RF lies in the image.", ""]
  for hw in dict.fromkeys(tuple(r["image_hw"]) for r in rows):
    out += [f"## Input {hw[0]}x{hw[1]}", "",
            "| tap | RF (px) | stride | offset | grid | % fully inside | mean inside fraction |",
            "| --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    for r in rows:
      if tuple(r["image_hw"]) == hw:
        out.append(f"| `{r['tap']}` | {r['rf_size']} | {r['stride']} | {r['offset']:g} | "
                   f"{r['grid'][0]}x{r['grid'][1]} | {r['pct_fully_inside']:.1f} | {r['mean_inside_fraction']:.3f} |")
    out.append("")
  if erf_rows:
    size = f" at {erf_image_hw[0]}x{erf_image_hw[1]}" if erf_image_hw is not None else ""
    out += [f"## Effective RF{size}", "",
            "Mean |∂act/∂input| over noise images (Luo et al. 2016). *Shift*: distance from the analytic "
            "RF centre to the ERF centroid; *r95*: radius around the centroid holding 95 % of the "
            "gradient mass. Positions are (row, col); pixels (y, x).", "",
            "| tap | node | position | RF (px) | inside fraction | centre (y, x) | centroid (y, x) | shift (px) "
            "| r95 (px) |",
            "| --- | --- | --- | ---: | ---: | --- | --- | ---: | ---: |"]
    for r in erf_rows:
      c, m = r["centre"], r["centroid"]
      out.append(f"| `{r['tap']}` | {r['node']} | ({r['position'][0]}, {r['position'][1]}) | {r['rf_size']} | "
                 f"{r['inside_fraction']:.3f} | ({c[0]:.1f}, {c[1]:.1f}) | ({_census_num(m[0])}, {_census_num(m[1])}) | "
                 f"{_census_num(r['centroid_shift'])} | {_census_num(r['radius95'])} |")
    out.append("")
  return "\n".join(out)

/**
 * `moekit report`: one self-contained HTML page (inline CSS + SVG, no scripts, nothing loaded from the
 * network) showing the numbers of `analyzeTrace`. Every number shown is a `<span class="num">` carrying
 * `data-key` (its path in the inspect JSON) and `data-value`, so a test can check page against JSON.
 */
import type { InspectResult } from './analyze.js';
import type { Trace } from './trace.js';

/** Tokens shown in the token × layer view. */
const MAX_TOKENS_SHOWN = 240;
/** Co-activation matrices shown (evenly spread over the layers). */
const MAX_COACT = 12;

const esc = (s: string): string => s.replace(/[&<>"']/g, (c) => ({ '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' })[c]!);

/** A number bound to its JSON path: shown with `digits` decimals, or as a percentage with pct. */
function num(key: string, v: number | null, digits = 3, pct = false): string {
  if (v === null || Number.isNaN(v)) return `<span class="num na" data-key="${key}" data-value="null">—</span>`;
  const text = pct ? `${(100 * v).toFixed(digits)}%` : v.toFixed(digits);
  return `<span class="num" data-key="${key}" data-value="${v}" data-fmt="${pct ? 'pct' : 'fixed'}" data-digits="${digits}">${text}</span>`;
}

// viridis, sampled at 8 stops
const VIRIDIS = ['#440154', '#46327e', '#365c8d', '#277f8e', '#1fa187', '#4ac16d', '#a0da39', '#fde725'];
function seq(t: number): string {
  const x = Math.max(0, Math.min(1, t)) * (VIRIDIS.length - 1);
  const i = Math.min(Math.floor(x), VIRIDIS.length - 2);
  const f = x - i;
  const a = hex(VIRIDIS[i]);
  const b = hex(VIRIDIS[i + 1]);
  return `rgb(${a.map((v, k) => Math.round(v + (b[k] - v) * f)).join(',')})`;
}
const hex = (h: string): number[] => [1, 3, 5].map((i) => parseInt(h.slice(i, i + 2), 16));
/** distinct hue per expert id (golden-angle spacing) */
const expertColor = (e: number): string => (e < 0 ? '#ddd' : `hsl(${Math.round((e * 137.508) % 360)} 65% ${e % 2 ? 45 : 58}%)`);

function legend(label: string, lo: string, hi: string): string {
  const stops = VIRIDIS.map((c, i) => `<stop offset="${(i / (VIRIDIS.length - 1)) * 100}%" stop-color="${c}"/>`).join('');
  return `<div class="legend"><span>${esc(label)}</span><span>${esc(lo)}</span><svg width="160" height="12"><defs><linearGradient id="lg-${label.length}-${lo}">${stops}</linearGradient></defs><rect width="160" height="12" rx="2" fill="url(#lg-${label.length}-${lo})"/></svg><span>${esc(hi)}</span></div>`;
}

/** Layer × expert load heatmap, colour = share relative to uniform (1/E), log-scaled over [1/4, 4]. */
function loadHeatmap(r: InspectResult): string {
  const cell = Math.max(6, Math.min(22, Math.floor(880 / r.E)));
  const left = 44;
  const top = 18;
  const w = left + r.E * cell + 4;
  const h = top + r.layers.length * cell + 4;
  const parts: string[] = [];
  r.layers.forEach((l, li) => {
    parts.push(`<text x="${left - 6}" y="${top + li * cell + cell * 0.7}" text-anchor="end" class="ax">L${l.layer}</text>`);
    l.shares.forEach((s, e) => {
      const rel = s * r.E;
      const t = rel > 0 ? (Math.log2(rel) + 2) / 4 : 0;
      parts.push(`<rect x="${left + e * cell}" y="${top + li * cell}" width="${cell - 1}" height="${cell - 1}" fill="${seq(t)}"><title>layer ${l.layer}, expert ${e}: ${l.counts[e]} tokens (${(100 * s).toFixed(2)}%, ${rel.toFixed(2)}× uniform)</title></rect>`);
    });
  });
  const step = Math.ceil(r.E / 16);
  for (let e = 0; e < r.E; e += step) parts.push(`<text x="${left + e * cell + cell / 2}" y="12" text-anchor="middle" class="ax">${e}</text>`);
  return `<svg width="${w}" height="${h}" role="img" aria-label="expert load heatmap">${parts.join('')}</svg>` + legend('load vs uniform', '¼×', '4×');
}

/** Line chart of hit rate vs cache size. */
function hitChart(r: InspectResult): string {
  const W = 630;
  const H = 300;
  const m = { l: 44, r: 150, t: 14, b: 40 };
  const pw = W - m.l - m.r;
  const ph = H - m.t - m.b;
  const x = (c: number): number => m.l + ((c - 1) / Math.max(r.E - 1, 1)) * pw;
  const y = (v: number): number => m.t + (1 - v) * ph;
  const si = r.segLengths.indexOf(16);
  const series: Array<[string, number[], string, string]> = [
    ['Belady (optimal)', r.meanCache.belady, '#1b7837', ''],
    ['LFU', r.meanCache.lfu, '#e08214', ''],
    ['LRU', r.meanCache.lru, '#2166ac', ''],
  ];
  if (si >= 0) series.push(['SCH (m = 16)', r.meanCache.sch[si], '#762a83', '5 4']);
  const parts: string[] = [];
  for (let v = 0; v <= 1.0001; v += 0.2) {
    parts.push(`<line x1="${m.l}" x2="${m.l + pw}" y1="${y(v)}" y2="${y(v)}" class="grid"/><text x="${m.l - 6}" y="${y(v) + 4}" text-anchor="end" class="ax">${Math.round(v * 100)}%</text>`);
  }
  const step = Math.max(1, Math.ceil(r.E / 16 / r.K) * r.K);
  for (let c = r.K; c <= r.E; c += step) parts.push(`<line x1="${x(c)}" x2="${x(c)}" y1="${m.t + ph}" y2="${m.t + ph + 4}" class="axl"/><text x="${x(c)}" y="${m.t + ph + 16}" text-anchor="middle" class="ax">${c}</text>`);
  parts.push(`<text x="${m.l + pw / 2}" y="${H - 6}" text-anchor="middle" class="ax">cache size (experts per layer)</text>`);
  const c2 = r.offloading.twoK;
  parts.push(`<line x1="${x(c2)}" x2="${x(c2)}" y1="${m.t}" y2="${m.t + ph}" class="mark"/><text x="${x(c2) + 4}" y="${m.t + 12}" class="ax mk">2K = ${c2}</text>`);
  series.forEach(([name, curve, col, dash], i) => {
    const d = curve.map((v, c) => `${c ? 'L' : 'M'}${x(c + 1).toFixed(1)},${y(v).toFixed(1)}`).join('');
    parts.push(`<path d="${d}" fill="none" stroke="${col}" stroke-width="2.2" ${dash ? `stroke-dasharray="${dash}"` : ''}/>`);
    parts.push(`<circle cx="${x(c2)}" cy="${y(curve[c2 - 1])}" r="3.5" fill="${col}"><title>${esc(name)} at C=${c2}: ${(100 * curve[c2 - 1]).toFixed(1)}%</title></circle>`);
    const ly = m.t + 10 + i * 20;
    parts.push(`<line x1="${m.l + pw + 14}" x2="${m.l + pw + 34}" y1="${ly}" y2="${ly}" stroke="${col}" stroke-width="2.2" ${dash ? `stroke-dasharray="${dash}"` : ''}/><text x="${m.l + pw + 40}" y="${ly + 4}" class="lg">${esc(name)}</text>`);
  });
  parts.push(`<rect x="${m.l}" y="${m.t}" width="${pw}" height="${ph}" class="frame"/>`);
  return `<svg width="${W}" height="${H}" role="img" aria-label="hit rate versus cache size">${parts.join('')}</svg>`;
}

/** Co-activation as P(j | i) = C[i][j] / c_i, diagonal blank. */
function coactMatrix(r: InspectResult, li: number): string {
  const l = r.layers[li];
  const size = 168;
  const cell = size / r.E;
  const parts: string[] = [];
  for (let i = 0; i < r.E; i++) {
    for (let j = 0; j < r.E; j++) {
      if (i === j) { parts.push(`<rect x="${j * cell}" y="${i * cell}" width="${cell}" height="${cell}" fill="#f3f3f3"/>`); continue; }
      const p = l.counts[i] ? l.coactivation[i][j] / l.counts[i] : 0;
      parts.push(`<rect x="${j * cell}" y="${i * cell}" width="${cell}" height="${cell}" fill="${seq(Math.sqrt(p))}"/>`);
    }
  }
  return `<figure class="mini"><svg width="${size}" height="${size}" role="img" aria-label="co-activation layer ${l.layer}">${parts.join('')}</svg><figcaption>layer ${l.layer}</figcaption></figure>`;
}

/** The prompt text, one box per token, with a column of L swatches: the top-1 expert of each layer. */
function tokenView(tr: Trace): string {
  const L = tr.layers.length;
  const n = Math.min(tr.T, MAX_TOKENS_SHOWN);
  const sw = Math.max(3, Math.min(8, Math.floor(96 / Math.max(L, 1))));
  const out: string[] = [];
  for (let t = 0; t < n; t++) {
    const sw_: string[] = [];
    const tip: string[] = [];
    for (let li = 0; li < L; li++) {
      const o = (li * tr.T + t) * tr.K;
      const top = tr.ids[o];
      sw_.push(`<i style="background:${expertColor(top)};height:${sw}px"></i>`);
      tip.push(`L${tr.layers[li]}: ${Array.from(tr.ids.subarray(o, o + tr.K)).filter((e) => e >= 0).join(' ')}`);
    }
    const piece = tr.pieces[t].replace(/\n/g, '↵').replace(/ /g, '\u00a0') || '∅';
    out.push(`<span class="tok" title="${esc(`token ${t} (${tr.tokens[t]}) ${JSON.stringify(tr.pieces[t])}\n${tip.join('\n')}`)}"><b>${esc(piece)}</b>${sw_.join('')}</span>`);
  }
  const more = tr.T > n ? `<p class="note">First ${n} of ${tr.T} tokens shown.</p>` : '';
  return `<div class="toks">${out.join('')}</div>${more}`;
}

function layerTable(r: InspectResult): string {
  const c2 = r.offloading.twoK - 1;
  const head = `<tr><th>layer</th><th>CV</th><th>max / mean</th><th>router entropy</th><th>entropy / log E</th>${r.segLengths.map((m) => `<th>SRP m=${m}</th>`).join('')}<th>LRU @2K</th><th>LFU @2K</th><th>Belady @2K</th></tr>`;
  const rows = r.layers.map((l, i) =>
    `<tr><td>${l.layer}</td><td>${num(`layers.${i}.cv`, l.cv)}</td><td>${num(`layers.${i}.maxOverMean`, l.maxOverMean, 2)}</td>` +
    `<td>${num(`layers.${i}.entropy`, l.entropy)}</td><td>${num(`layers.${i}.entropyNorm`, l.entropyNorm)}</td>` +
    l.srp.map((v, si) => `<td>${num(`layers.${i}.srp.${si}`, v)}</td>`).join('') +
    `<td>${num(`layers.${i}.cache.lru.${c2}`, l.cache.lru[c2], 1, true)}</td><td>${num(`layers.${i}.cache.lfu.${c2}`, l.cache.lfu[c2], 1, true)}</td><td>${num(`layers.${i}.cache.belady.${c2}`, l.cache.belady[c2], 1, true)}</td></tr>`,
  );
  const model = `<tr class="tot"><td>model</td><td></td><td></td><td></td><td></td>${r.modelSrp.map((v, si) => `<td>${num(`modelSrp.${si}`, v)}</td>`).join('')}<td>${num(`meanCache.lru.${c2}`, r.meanCache.lru[c2], 1, true)}</td><td>${num(`meanCache.lfu.${c2}`, r.meanCache.lfu[c2], 1, true)}</td><td>${num(`meanCache.belady.${c2}`, r.meanCache.belady[c2], 1, true)}</td></tr>`;
  return `<table><thead>${head}</thead><tbody>${rows.join('')}${model}</tbody></table>`;
}

function hitTable(r: InspectResult): string {
  const sizes = Array.from({ length: r.E }, (_, i) => i + 1).filter((c) => c % r.K === 0 || c === 1).slice(0, 12);
  const rows: Array<[string, string, number[]]> = [
    ['LRU', 'meanCache.lru', r.meanCache.lru],
    ['LFU', 'meanCache.lfu', r.meanCache.lfu],
    ['Belady', 'meanCache.belady', r.meanCache.belady],
    ...r.segLengths.map((m, si) => [`SCH m=${m}`, `meanCache.sch.${si}`, r.meanCache.sch[si]] as [string, string, number[]]),
  ];
  return `<table class="compact"><thead><tr><th>policy \\ C</th>${sizes.map((c) => `<th>${c}${c === r.offloading.twoK ? ' (2K)' : ''}</th>`).join('')}</tr></thead><tbody>` +
    rows.map(([n, k, curve]) => `<tr><td>${n}</td>${sizes.map((c) => `<td>${num(`${k}.${c - 1}`, curve[c - 1], 1, true)}</td>`).join('')}</tr>`).join('') + '</tbody></table>';
}

function transitionsView(r: InspectResult): string {
  if (!r.transitions.length) return '<p class="note">Only one MoE layer: no transitions.</p>';
  const rows = r.transitions.map((t, i) => {
    const w = (v: number): number => Math.round(v * 220);
    return `<tr><td>${t.from} → ${t.to}</td><td>${num(`transitions.${i}.precision`, t.precision, 1, true)}</td><td>${num(`transitions.${i}.baseline`, t.baseline, 1, true)}</td>` +
      `<td><svg width="230" height="16"><rect width="${w(t.baseline)}" height="6" y="9" fill="#bbb"/><rect width="${w(t.precision)}" height="7" y="1" fill="#2166ac"/></svg></td></tr>`;
  });
  return `<table class="compact"><thead><tr><th>layers</th><th>predicted from previous layer</th><th>most-loaded guess</th><th></th></tr></thead><tbody>${rows.join('')}</tbody></table>`;
}

function superView(r: InspectResult): string {
  const s = r.superExperts;
  if (!s) return '<p class="note">Not recorded. Run <code>moekit trace … --super-experts</code> to measure max |expert output|.</p>';
  const rule = `<p>Rule (Su et al. 2025): output max &gt; P99.5 = ${num('superExperts.p995', s.p995, 2)} and &gt; ⌊max/10⌋ = ${num('superExperts.maxOver10', s.maxOver10, 0)}, over layers &lt; ${num('superExperts.layerLimit', s.layerLimit, 0)}; largest output max ${num('superExperts.max', s.max, 2)}.</p>`;
  if (!s.experts.length) return rule + '<p class="note">No super experts found.</p>';
  return rule + `<table class="compact"><thead><tr><th>layer</th><th>expert</th><th>max |output|</th><th>× P99.5</th></tr></thead><tbody>` +
    s.experts.map((e, i) => `<tr><td>${num(`superExperts.experts.${i}.layer`, e.layer, 0)}</td><td>${num(`superExperts.experts.${i}.expert`, e.expert, 0)}</td><td>${num(`superExperts.experts.${i}.outputMax`, e.outputMax, 2)}</td><td>${(e.outputMax / s.p995).toFixed(1)}×</td></tr>`).join('') +
    '</tbody></table>';
}

function tiles(r: InspectResult): string {
  const L = r.layers.length;
  const meanOf = (f: (l: InspectResult['layers'][number]) => number): number => r.layers.reduce((s, l) => s + f(l), 0) / L;
  const si = r.segLengths.indexOf(16);
  const t = (label: string, body: string, sub = ''): string => `<div class="tile"><div class="tl">${label}</div><div class="tv">${body}</div><div class="ts">${sub}</div></div>`;
  const o = r.offloading;
  return `<div class="tiles">` +
    t('LRU hit rate at 2K', num('offloading.hitAt2K.lru', o.hitAt2K.lru, 1, true), `cache of ${o.twoK} of ${r.E} experts per layer`) +
    t('Belady hit rate at 2K', num('offloading.hitAt2K.belady', o.hitAt2K.belady, 1, true), 'optimal eviction (upper bound)') +
    t(`LRU cache for ${(100 * o.target).toFixed(0)}%`, o.lruCacheForTarget === null ? '<span class="num na" data-key="offloading.lruCacheForTarget" data-value="null">&gt; E</span>' : num('offloading.lruCacheForTarget', o.lruCacheForTarget, 0), 'experts per layer') +
    (si >= 0 ? t('SRP, 16-token segments', num(`modelSrp.${si}`, r.modelSrp[si]), 'local routing consistency (model)') : '') +
    t('load imbalance (mean CV)', meanOf((l) => l.cv).toFixed(3), `max/mean ${meanOf((l) => l.maxOverMean).toFixed(2)}`) +
    t('router entropy / log E', meanOf((l) => l.entropyNorm).toFixed(3), '1 = uniform router') +
    '</div>';
}

const CSS = `
*{box-sizing:border-box}body{margin:0;font:14px/1.5 system-ui,-apple-system,"Segoe UI",Roboto,Helvetica,Arial,sans-serif;color:#1d2330;background:#f5f6f8}
header{background:#1d2330;color:#fff;padding:22px 36px}header h1{margin:0;font-size:22px;font-weight:600}header p{margin:4px 0 0;color:#b8c0cf}
main{max-width:1180px;margin:0 auto;padding:20px 28px 48px}
section{background:#fff;border-radius:10px;box-shadow:0 1px 3px rgba(0,0,0,.08);padding:18px 22px;margin:18px 0}
h2{font-size:17px;margin:0 0 4px}p.sub{margin:0 0 12px;color:#5b6476}p.note{color:#6b7486;font-style:italic}
.verdict{display:inline-block;padding:3px 12px;border-radius:999px;font-weight:600;font-size:13px;text-transform:uppercase;letter-spacing:.04em;margin-right:10px}
.v-good{background:#d9f2e1;color:#17603a}.v-fair{background:#fff1cc;color:#7a5a00}.v-poor{background:#fde0dc;color:#9b2c1f}.v-trivial{background:#e3e8f0;color:#3a4a66}
.summary{font-size:15px}
.tiles{display:grid;grid-template-columns:repeat(auto-fill,minmax(170px,1fr));gap:12px;margin-top:14px}
.tile{border:1px solid #e3e6eb;border-radius:8px;padding:10px 12px}.tl{font-size:12px;color:#5b6476}.tv{font-size:24px;font-weight:600;margin:2px 0}.ts{font-size:11.5px;color:#7b8496}
table{border-collapse:collapse;width:100%;font-variant-numeric:tabular-nums}th,td{padding:5px 8px;border-bottom:1px solid #eceef2;text-align:right;white-space:nowrap}
th{font-weight:600;color:#4a5366;font-size:12.5px;background:#fafbfc}td:first-child,th:first-child{text-align:left}tr.tot td{font-weight:600;border-top:2px solid #d5d9e0}
table.compact{width:auto}
.row{display:flex;gap:18px;flex-wrap:wrap;align-items:flex-start}
svg text.ax{font-size:11px;fill:#5b6476}svg text.lg{font-size:12px;fill:#1d2330}svg .grid{stroke:#eceef2}svg .axl{stroke:#999}svg .frame{fill:none;stroke:#c9ced6}
svg .mark{stroke:#b2182b;stroke-dasharray:3 3}svg text.mk{fill:#b2182b}
.legend{display:flex;align-items:center;gap:8px;font-size:12px;color:#5b6476;margin-top:6px}
.minis{display:flex;flex-wrap:wrap;gap:14px}figure.mini{margin:0}figure.mini figcaption{text-align:center;font-size:12px;color:#5b6476}
.toks{display:flex;flex-wrap:wrap;gap:3px 2px;font:12.5px/1.2 ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.tok{display:inline-flex;flex-direction:column;min-width:10px;border-radius:3px;overflow:hidden;background:#fafbfc;border:1px solid #e6e8ec}
.tok b{font-weight:400;padding:1px 3px;white-space:pre}.tok i{display:block}
code{background:#f0f2f5;padding:1px 5px;border-radius:4px}
`;

export function renderReport(tr: Trace, r: InspectResult): string {
  const L = r.layers.length;
  const pick = L <= MAX_COACT ? r.layers.map((_, i) => i) : Array.from({ length: MAX_COACT }, (_, i) => Math.round((i * (L - 1)) / (MAX_COACT - 1)));
  const o = r.offloading;
  const title = `${r.model.name ?? r.model.path.split('/').pop()} — routing report`;
  return `<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>${esc(title)}</title><style>${CSS}</style></head>
<body>
<header><h1>${esc(title)}</h1><p>${esc(r.model.path)} · ${esc(r.model.arch)} · ${r.T} tokens in ${r.windows} window${r.windows === 1 ? '' : 's'} · ${L} MoE layers · E = ${r.E} experts, K = ${r.K} per token</p></header>
<main>
<section><h2>Will expert offloading work?</h2>
<p class="summary"><span class="verdict v-${o.verdict}" data-key="offloading.verdict">${o.verdict}</span>${esc(o.summary)}</p>
${tiles(r)}
<p class="note">Rule of thumb from moe-lrc (arXiv 2505.16056): a per-layer cache of about 2× the active experts suffices when routing is locally consistent. Hit rates count the first use of an expert as a hit while the cache has a free slot, as moe-lrc does.</p>
</section>
<section><h2>Hit rate vs cache size</h2><p class="sub">Mean over layers. SCH is moe-lrc's lookahead cache (future use in the next 16 tokens, then recency).</p>
<div class="row">${hitChart(r)}<div>${hitTable(r)}</div></div></section>
<section><h2>Expert load</h2><p class="sub">Share of tokens routed to each expert, relative to a uniform router (yellow: hot, purple: cold).</p>
${loadHeatmap(r)}</section>
<section><h2>Per-layer statistics</h2><p class="sub">CV and max/mean of expert loads (population std), mean router entropy in nats, segment routing best performance (SRP), cache hit rates at C = 2K = ${o.twoK}.</p>
${layerTable(r)}</section>
<section><h2>Experts over the text</h2><p class="sub">Each token with one swatch per MoE layer (top to bottom: layer ${r.layers[0]?.layer ?? 0} … ${r.layers[L - 1]?.layer ?? 0}); colour = its top-1 expert. Hover a token for all its experts.</p>
${tokenView(tr)}</section>
<section><h2>Co-activation</h2><p class="sub">P(expert j selected | expert i selected), row i, column j; diagonal blank. ${L > MAX_COACT ? `${MAX_COACT} of ${L} layers shown.` : ''}</p>
<div class="minis">${pick.map((li) => coactMatrix(r, li)).join('')}</div>${legend('P(j | i)', '0', '1 (√ scale)')}</section>
<section><h2>Layer to layer</h2><p class="sub">Share of the next layer's experts predicted from this layer's experts (top-K of summed transition counts), against guessing the next layer's most-loaded experts.</p>
${transitionsView(r)}</section>
<section><h2>Super experts</h2>${superView(r)}</section>
</main></body></html>
`;
}

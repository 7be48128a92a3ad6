/**
 * The HTML report: self-contained (no network, no scripts), every number shown equals the inspect JSON,
 * and it renders in headless Chromium with no console errors (skipped when chromium or playwright-core
 * is absent).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { analyzeTrace, type InspectResult } from '../src/analysis/analyze.js';
import { renderReport } from '../src/analysis/report.js';
import type { Trace } from '../src/analysis/trace.js';

const CACHE = join(import.meta.dirname, '..', '.cache', 'test-report');
mkdirSync(CACHE, { recursive: true });
const CHROMIUM = '/usr/bin/chromium';

/** A synthetic trace with local routing (sticky experts) and one planted super expert. */
function syntheticTrace(): Trace {
  let s = 12345;
  const rnd = (): number => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const L = 6, E = 16, K = 2, T = 300;
  const ids = new Int16Array(L * T * K);
  for (let l = 0; l < L; l++) {
    const pref = [0, 1];
    for (let t = 0; t < T; t++) {
      if (rnd() < 0.2) pref[Math.floor(rnd() * 2)] = Math.floor(rnd() * E);
      const a = rnd() < 0.8 ? pref[0] : Math.floor(rnd() * E);
      let b = rnd() < 0.8 ? pref[1] : Math.floor(rnd() * E);
      while (b === a) b = (b + 1) % E;
      ids[(l * T + t) * K] = a;
      ids[(l * T + t) * K + 1] = b;
    }
  }
  const expertMax = Float32Array.from({ length: L * E }, () => 1 + rnd());
  expertMax[1 * E + 5] = 80;
  const words = ['The', ' whale', ' <b>', ' & ', 'sea', '\n', ' "Call', " me'"];
  return {
    model: { path: '/tmp/x.gguf', arch: 'qwen3moe', name: 'synthetic <model>', nLayer: 6 },
    layers: [0, 1, 2, 3, 4, 5], E, K, T, windows: [256, 44],
    tokens: Uint32Array.from({ length: T }, (_, i) => i),
    pieces: Array.from({ length: T }, (_, i) => words[i % words.length]),
    ids, weights: new Float32Array(L * T * K).fill(0.5), entropy: Float32Array.from({ length: L * T }, () => rnd() * 2),
    expertMax,
  };
}

function lookup(r: InspectResult, key: string): unknown {
  return key.split('.').reduce<unknown>((o, k) => (o as Record<string, unknown>)[k], r);
}

function expectText(v: number, fmt: string, digits: number): string {
  return fmt === 'pct' ? `${(100 * v).toFixed(digits)}%` : v.toFixed(digits);
}

test('report: self-contained, escapes text, numbers equal the inspect JSON', () => {
  const tr = syntheticTrace();
  const r = JSON.parse(JSON.stringify(analyzeTrace(tr))) as InspectResult; // exactly what --json prints
  const html = renderReport(tr, r);
  assert.doesNotMatch(html, /<script|<link|@import|url\(http|src="http/i);
  assert.doesNotMatch(html, / <b>/, 'token text must be escaped');
  assert.match(html, /synthetic &lt;model&gt;/);
  const spans = [...html.matchAll(/<span class="num[^"]*" data-key="([^"]+)" data-value="([^"]+)"(?: data-fmt="(\w+)" data-digits="(\d+)")?>([^<]*)<\/span>/g)];
  assert.ok(spans.length > 80, `only ${spans.length} numbers found`);
  for (const [, key, value, fmt, digits, text] of spans) {
    const j = lookup(r, key);
    if (value === 'null') { assert.equal(j, null, key); continue; }
    assert.equal(Number(value), j, key);
    assert.equal(text, expectText(j as number, fmt, Number(digits)), key);
  }
  assert.equal(r.superExperts!.experts[0].expert, 5);
  assert.match(html, new RegExp(`data-key="offloading.verdict">${r.offloading.verdict}<`));
  writeFileSync(join(CACHE, 'report.html'), html);
});

test('report renders in headless Chromium without console errors', async (t) => {
  // playwright-core is optional: imported by a computed name so the typecheck does not need it
  let pw: any;
  const mod = 'playwright-core';
  try {
    pw = await import(mod);
  } catch {
    /* absent */
  }
  if (!pw || !existsSync(CHROMIUM)) {
    t.skip(`needs ${CHROMIUM} and the playwright-core package (apt-get install chromium; npm install --no-save playwright-core)`);
    return;
  }
  const tr = syntheticTrace();
  const r = JSON.parse(JSON.stringify(analyzeTrace(tr))) as InspectResult;
  const path = join(CACHE, 'render.html');
  writeFileSync(path, renderReport(tr, r));
  const browser = await pw.chromium.launch({
    executablePath: CHROMIUM,
    args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-background-networking', '--disable-component-update', '--disable-sync'],
  });
  try {
    const page = await browser.newPage({ viewport: { width: 1280, height: 900 } });
    const errors: string[] = [];
    const requests: string[] = [];
    page.on('console', (m: any) => { if (m.type() === 'error') errors.push(m.text()); });
    page.on('pageerror', (e: unknown) => errors.push(String(e)));
    page.on('request', (q: any) => { if (!q.url().startsWith('file:')) requests.push(q.url()); });
    await page.goto(`file://${path}`);
    assert.deepEqual(errors, []);
    assert.deepEqual(requests, []);
    const shown: string[][] = await page.$$eval('span.num', (els: Element[]) => els.map((e) => [e.getAttribute('data-key')!, (e as HTMLElement).innerText, e.getAttribute('data-fmt'), e.getAttribute('data-digits')]));
    assert.ok(shown.length > 80);
    for (const [key, text, fmt, digits] of shown) {
      const j = lookup(r, key!);
      if (j === null) assert.equal(text, key === 'offloading.lruCacheForTarget' ? '> E' : '—', key!);
      else assert.equal(text, expectText(j as number, fmt!, Number(digits)), key!);
    }
    // every section drew something
    assert.ok((await page.$$('svg rect')).length > 300);
    assert.equal(await page.$$eval('.tok', (e: Element[]) => e.length), 240);
    await page.screenshot({ path: join(CACHE, 'report.png'), fullPage: true });
  } finally {
    await browser.close();
  }
});

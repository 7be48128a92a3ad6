// `moekit eval` / evaluate(): sliding-window perplexity and KL / top-1 / Δppl against a reference equal
// direct computations from forward() logits; `moekit calibrate` hits its skip share.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { main } from '../src/cli/main.js';
import { loadModel, type Model } from '../src/engine/model.js';
import { UsageError } from '../src/errors.js';
import { calibrateSkip } from '../src/routing/calibrate.js';
import { makePolicy } from '../src/routing/controls.js';
import { evaluate, windowPlan, type EvalResult } from '../src/routing/eval.js';
import { formatEval } from '../src/cli/eval.js';
import { generateModel, makeSpec, sampleText } from '../src/testing/generate-model.js';

const CACHE = join(import.meta.dirname, '..', '.cache', 'routing-tests');
const PATH = join(CACHE, 'eval-olmoe-f32.gguf');
let model: Model;
let ids: number[];

before(async () => {
  mkdirSync(CACHE, { recursive: true });
  if (!existsSync(PATH)) await generateModel(makeSpec('olmoe', { seed: 3 }), { gguf: PATH, type: 'f32' });
  model = await loadModel(PATH, { threads: 2 });
  ids = model.tokenize(sampleText(1), { addSpecial: false }).slice(0, 200);
});
after(async () => model?.close());

/** Plain per-row log-softmax, written independently of src/routing/eval.ts. */
function logProbs(logits: Float32Array, row: number, V: number): number[] {
  const z = Array.from(logits.subarray(row * V, (row + 1) * V));
  const m = Math.max(...z);
  const lse = m + Math.log(z.reduce((s, v) => s + Math.exp(v - m), 0));
  return z.map((v) => v - lse);
}

test('windows: every scored token once, stride ≤ ctx − 1, text at least one window', () => {
  assert.deepEqual(windowPlan(100, 32, 16), [0, 16, 32, 48, 64]);
  assert.deepEqual(windowPlan(32, 32, 31), [0]);
  assert.throws(() => windowPlan(100, 32, 32), (e: unknown) => e instanceof UsageError && /--stride/.test(e.message));
  assert.throws(() => windowPlan(10, 32, 16), (e: unknown) => e instanceof UsageError && /--ctx 32/.test(e.message));
});

test('perplexity, KL, top-1 and Δppl equal a direct computation from forward() logits', async () => {
  const ctx = 32;
  const stride = 16;
  const V = model.decoder.V;
  const r = await evaluate(model, ids, [{ label: 'default' }, { label: 'experts=1', controls: { experts: 1 } }, { label: 'same', controls: { experts: 2 } }], { ctx, stride, maxWindows: 3 });
  assert.equal(r.windows, 3);
  assert.equal(r.scored, 3 * stride);
  const bos = model.tokenize('', { addSpecial: true });
  let nllRef = 0;
  let nllOne = 0;
  let kl = 0;
  let top1 = 0;
  for (const s of [0, stride, 2 * stride]) {
    const win = ids.slice(s, s + ctx);
    if (bos.length === 1) win[0] = bos[0];
    const ref = await model.forward(win);
    const one = await model.forward(win, { hooks: { routePolicy: makePolicy({ experts: 1 }) } });
    for (let i = ctx - 1 - stride; i < ctx - 1; i++) {
      const p = logProbs(ref, i, V);
      const q = logProbs(one, i, V);
      nllRef -= p[win[i + 1]];
      nllOne -= q[win[i + 1]];
      kl += p.reduce((acc, lp, v) => acc + Math.exp(lp) * (lp - q[v]), 0);
      if (p.indexOf(Math.max(...p)) === q.indexOf(Math.max(...q))) top1++;
    }
  }
  const n = 3 * stride;
  const close = (a: number, b: number, what: string) => assert.ok(Math.abs(a - b) <= 1e-9 * Math.max(1, Math.abs(b)), `${what}: ${a} vs ${b}`);
  const [d, e1, same] = r.rows;
  close(d.ppl, Math.exp(nllRef / n), 'ppl');
  close(e1.ppl, Math.exp(nllOne / n), 'ppl experts=1');
  close(e1.vsRef!.kl, kl / n, 'KL');
  close(e1.vsRef!.top1, top1 / n, 'top-1');
  close(e1.vsRef!.dppl, Math.exp(nllOne / n) - Math.exp(nllRef / n), 'Δppl');
  assert.ok(e1.vsRef!.kl > 0);
  assert.equal(d.activeExperts, 2);
  assert.equal(e1.activeExperts, 1);
  // a setting equal to the default: exactly no difference
  assert.equal(same.vsRef!.kl, 0);
  assert.equal(same.vsRef!.top1, 1);
  assert.equal(same.vsRef!.dppl, 0);
  assert.ok(d.tokPerSec > 0);
});

test('moekit eval: JSON and table, reference as a model file or a routing setting', async () => {
  const data = join(CACHE, 'eval-text.txt');
  const json = join(CACHE, 'eval-out.json');
  writeFileSync(data, sampleText(1).slice(0, 1500));
  const base = ['node', 'moekit', 'eval', PATH, '--data', data, '--ctx', '32', '--stride', '16', '--max-windows', '2', '-t', '2', '-o', json];
  assert.equal(await main([...base, '--reference', PATH, '--settings', 'experts=1;topP=0.5;threshold=0.3', '--experts', '3']), 0);
  let r = JSON.parse(readFileSync(json, 'utf8')) as EvalResult;
  assert.deepEqual(r.rows.map((x) => x.label), [PATH, 'default', 'flags', 'experts=1', 'topP=0.5', 'threshold=0.3']);
  assert.equal(r.rows[1].vsRef!.kl, 0, 'the same model as reference');
  assert.equal(r.rows[2].activeExperts, 3);
  assert.ok(r.rows[5].activeExperts <= 2 && r.rows[5].activeExperts >= 1);
  assert.equal(await main([...base, '--reference', 'experts=4', '--settings', 'experts=1']), 0);
  r = JSON.parse(readFileSync(json, 'utf8')) as EvalResult;
  const table = formatEval(r, 2);
  assert.match(table, /setting\s+active experts\s+tok\/s\s+ppl\s+Δppl\s+KL\s+top-1/);
  assert.match(table, /^experts=4\s+4\.00 .* ref\s+ref\s+ref$/m);
  assert.match(table, new RegExp(`^experts=1\\s+1\\.00 .* ${r.rows[2].ppl.toFixed(4)}\\s+[+-]\\d`, 'm'));
  assert.equal(await main(['node', 'moekit', 'eval', PATH, '--data', data, '--ctx', '32', '--stride', '32']), 2);
  assert.equal(await main(['node', 'moekit', 'eval', PATH, '--data', data, '--settings', 'experts=x']), 2);
});

test('calibrate: per-layer thresholds skip about the target share', async () => {
  const c = await calibrateSkip(model, ids, { share: 0.25, ctx: 100 });
  assert.equal(c.thresholds.length, model.hparams.nLayer);
  assert.ok(c.thresholds.every((t) => t > 0));
  // layer 0 sees the same inputs with and without skipping, so it hits the target up to ties
  assert.ok(Math.abs(c.perLayerShare[0] - 0.25) < 0.01, `layer 0 skipped ${c.perLayerShare[0]}`);
  assert.ok(Math.abs(c.measuredShare - 0.25) < 0.1, `skipped ${c.measuredShare}`);
  await assert.rejects(calibrateSkip(model, ids, { share: 0.6 }), (e: unknown) => e instanceof UsageError && /--skip-share/.test(e.message));

  const data = join(CACHE, 'calib-text.txt');
  const outFile = join(CACHE, 'thresholds.json');
  writeFileSync(data, sampleText(1).slice(0, 800));
  assert.equal(await main(['node', 'moekit', 'calibrate', PATH, '--data', data, '--skip-share', '0.2', '-o', outFile, '-t', '2']), 0);
  const j = JSON.parse(readFileSync(outFile, 'utf8'));
  assert.equal(j.share, 0.2);
  assert.equal(j.thresholds.length, model.hparams.nLayer);
});

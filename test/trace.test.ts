/**
 * Trace format: round trip, JSONL, typed errors for bad files, and recording on a random-weight model
 * (ids equal what a plain forward pass routes; the super-expert slow path leaves routing untouched and
 * measures the experts' own outputs).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { decodeTrace, encodeTrace, readTrace, TraceError, writeTrace, writeTraceJsonl, type Trace } from '../src/analysis/trace.js';
import { recordTrace } from '../src/analysis/record.js';
import { loadModel } from '../src/engine/model.js';
import { generateModel, makeSpec, sampleText } from '../src/testing/generate-model.js';
import { main } from '../src/cli/main.js';

const CACHE = join(import.meta.dirname, '..', '.cache', 'test-trace');
mkdirSync(CACHE, { recursive: true });

function randomTrace(seed: number, withMax: boolean): Trace {
  let s = seed;
  const rnd = (): number => ((s = (s * 1103515245 + 12345) >>> 0) / 2 ** 32);
  const L = 3, E = 8, K = 2, T = 11;
  const ids = new Int16Array(L * T * K);
  for (let i = 0; i < ids.length; i++) ids[i] = i % 7 === 6 ? -1 : Math.floor(rnd() * E);
  return {
    model: { path: 'm.gguf', arch: 'olmoe', name: 'test ü', nLayer: 4 },
    layers: [1, 2, 3], E, K, T, windows: [5, 6],
    tokens: Uint32Array.from({ length: T }, () => Math.floor(rnd() * 50000)),
    pieces: Array.from({ length: T }, (_, i) => ['Hello', ' wörld', '\n', '', '🙂'][i % 5]),
    ids,
    weights: Float32Array.from({ length: L * T * K }, rnd),
    entropy: Float32Array.from({ length: L * T }, rnd),
    expertMax: withMax ? Float32Array.from({ length: L * E }, () => rnd() * 100) : undefined,
  };
}

test('trace round trip: write, read, equal', () => {
  for (const withMax of [false, true]) {
    const tr = randomTrace(withMax ? 7 : 3, withMax);
    const path = join(CACHE, `rt-${withMax}.mkt`);
    writeTrace(path, tr);
    assert.deepEqual(readTrace(path), tr);
    const bytes = readFileSync(path);
    assert.equal(bytes.subarray(0, 8).toString('latin1'), 'MKTRACE\0');
    // columnar: ids are i16 — the file is much smaller than the JSONL
    writeTraceJsonl(`${path}.jsonl`, tr);
    const lines = readFileSync(`${path}.jsonl`, 'utf8').trim().split('\n').map((l) => JSON.parse(l));
    assert.deepEqual(lines[0].header.windows, [5, 6]);
    const tokLines = lines.filter((l) => 't' in l);
    assert.equal(tokLines.length, tr.T);
    assert.deepEqual(tokLines[4].layers[2].ids, Array.from(tr.ids.subarray((2 * tr.T + 4) * 2, (2 * tr.T + 4) * 2 + 2)));
    assert.equal(tokLines[1].piece, ' wörld');
  }
});

/** Re-write the JSON header in place (padded with spaces to the same length). */
function patchHeader(bytes: Uint8Array, f: (h: Record<string, any>) => void): Uint8Array {
  const out = bytes.slice();
  const dv = new DataView(out.buffer);
  const n = dv.getUint32(12, true);
  const h = JSON.parse(new TextDecoder().decode(out.subarray(16, 16 + n)));
  f(h);
  const j = new TextEncoder().encode(JSON.stringify(h));
  assert.ok(j.length <= n, 'patched header must not grow');
  out.fill(0x20, 16, 16 + n);
  out.set(j, 16);
  return out;
}

test('bad trace files give typed errors that say what is wrong', () => {
  const good = encodeTrace(randomTrace(5, true));
  const bad = (bytes: Uint8Array, re: RegExp): void => {
    assert.throws(() => decodeTrace(bytes, 'x.mkt'), (e: unknown) => e instanceof TraceError && /^x\.mkt: /.test(e.message) && re.test(e.message));
  };
  bad(good.subarray(0, 10), /truncated/);
  bad(good.subarray(0, good.length - 9), /truncated/);
  bad(good.subarray(0, 40), /truncated/);
  const magic = good.slice();
  magic[0] = 0x47;
  bad(magic, /bad magic.*not a moekit trace/);
  const ver = good.slice();
  new DataView(ver.buffer).setUint32(8, 9, true);
  bad(ver, /version 9.*re-record/);
  bad(patchHeader(good, (h) => { h.windows = [5, 5]; }), /window lengths sum to 10 but T is 11/);
  bad(patchHeader(good, (h) => { h.columns.find((c: any) => c.name === 'ids').shape = [3, 11, 1]; }), /column 'ids' has shape \[3,11,1\].*inconsistent/);
  bad(patchHeader(good, (h) => { h.columns.find((c: any) => c.name === 'entropy').byteLength = 4; }), /entropy.*claims 4 bytes/);
  bad(patchHeader(good, (h) => { h.columns = h.columns.filter((c: any) => c.name !== 'weights'); }), /required column 'weights' is missing/);
  bad(patchHeader(good, (h) => { delete h.model.name; h.E = 'x'; }), /'E' must be an integer/);
  const json = good.slice();
  json[17] = 0x7d; // '}' inside the JSON
  bad(json, /does not parse/);
  // an expert id outside [-1, E)
  const h = JSON.parse(new TextDecoder().decode(good.subarray(16, 16 + new DataView(good.buffer).getUint32(12, true))));
  const idsCol = h.columns.find((c: any) => c.name === 'ids');
  const oob = good.slice();
  new DataView(oob.buffer).setInt16(idsCol.offset + 2, 8, true);
  bad(oob, /expert 8 at element 1, outside \[-1, 8\)/);
  assert.throws(() => readTrace(join(CACHE, 'does-not-exist.mkt')), (e: unknown) => e instanceof TraceError && /cannot read it/.test(e.message));
});

const MODEL = join(CACHE, 'olmoe-tiny.gguf');

async function ensureModel(): Promise<void> {
  if (!existsSync(MODEL)) await generateModel(makeSpec('olmoe', { nLayer: 3, E: 8, K: 2, seed: 11 }), { gguf: MODEL, type: 'f32' });
}

test('recordTrace matches forward() routing; super-expert path leaves routing untouched', async () => {
  await ensureModel();
  const model = await loadModel(MODEL, { threads: 1, backend: 'reference' });
  try {
    const text = sampleText().slice(0, 600);
    const tr = await recordTrace(model, text, { maxTokens: 40, window: 16 });
    assert.deepEqual(tr.windows, [16, 16, 8]);
    assert.equal(tr.T, 40);
    assert.deepEqual(tr.layers, [0, 1, 2]);
    // the second window, forwarded on its own, routes exactly as recorded
    const ids = model.tokenize(text).slice(16, 32);
    const seen: Int32Array[] = [];
    const ent: number[] = [];
    await model.forward(ids, { hooks: { onRouting: (l, r, T) => { seen[l] = r.ids.slice(); if (l === 1) for (let t = 0; t < T; t++) ent.push(-Array.from(r.scores.subarray(t * 8, t * 8 + 8)).reduce((s, p) => s + (p > 0 ? p * Math.log(p) : 0), 0)); } } });
    for (let l = 0; l < 3; l++) assert.deepEqual(Array.from(tr.ids.subarray((l * 40 + 16) * 2, (l * 40 + 32) * 2)), Array.from(seen[l]));
    for (let t = 0; t < 16; t++) assert.ok(Math.abs(tr.entropy[40 + 16 + t] - ent[t]) < 1e-5);
    assert.equal(tr.pieces.join(''), model.detokenize(model.tokenize(text).slice(0, 40)));

    const trS = await recordTrace(model, text, { maxTokens: 40, window: 16, superExperts: true });
    assert.deepEqual(trS.ids, tr.ids);
    assert.deepEqual(trS.weights, tr.weights);
    // the backend is restored
    assert.equal(Object.prototype.hasOwnProperty.call(model.decoder.be, 'moeFfn'), false);
    const used = new Set(Array.from(tr.ids.subarray(0, 80)));
    for (let e = 0; e < 8; e++) assert.equal(trS.expertMax![e] > 0, used.has(e), `layer 0 expert ${e}`);
    // max |output| bounds the fused output: |Σ_j w_j y_j| ≤ Σ_j w_j max|y_j|
    let fusedMax = 0;
    const be = model.decoder.be;
    const orig = be.moeFfn;
    let first = true;
    be.moeFfn = (a) => { orig.call(be, a); if (first) { for (const v of a.out) fusedMax = Math.max(fusedMax, Math.abs(v)); first = false; } };
    try { await model.forward(model.tokenize(text).slice(0, 16)); } finally { delete (be as { moeFfn?: unknown }).moeFfn; }
    const layer0Max = Math.max(...trS.expertMax!.subarray(0, 8));
    assert.ok(fusedMax <= layer0Max + 1e-6, `${fusedMax} ≤ ${layer0Max}`);
  } finally {
    await model.close();
  }
});

test('CLI: trace → inspect --json → report', async () => {
  await ensureModel();
  const data = join(CACHE, 'text.txt');
  writeFileSync(data, sampleText().slice(0, 2000));
  const out = join(CACHE, 'cli.mkt');
  assert.equal(await main(['node', 'moekit', 'trace', MODEL, '--data', data, '-n', '48', '--window', '24', '-o', out, '--jsonl', '--super-experts', '-t', '1']), 0);
  const tr = readTrace(out);
  assert.equal(tr.T, 48);
  assert.ok(tr.expertMax);
  assert.ok(existsSync(`${out}.jsonl`));
  assert.equal(await main(['node', 'moekit', 'inspect', join(CACHE, 'nope.mkt')]), 2);
  writeFileSync(join(CACHE, 'garbage.mkt'), 'hello world, not a trace');
  assert.equal(await main(['node', 'moekit', 'report', join(CACHE, 'garbage.mkt'), '-o', join(CACHE, 'g.html')]), 2);
});

// SCMoE self-contrast decoding: the formula on a hand-built row, and lockstep decoding on a tiny model
// against a direct two-pass computation from forward() logits.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { argmax, loadModel, type Model } from '../src/engine/model.js';
import { UsageError } from '../src/errors.js';
import { rankPolicy } from '../src/routing/controls.js';
import { contrastLogits, scmoeGenerate, scmoeGenerateTokens } from '../src/routing/scmoe.js';
import { generateModel, makeSpec } from '../src/testing/generate-model.js';

const CACHE = join(import.meta.dirname, '..', '.cache', 'routing-tests');

test('contrast: (1+β)·z_s − β·z_w, tokens below log α + max z_s excluded', () => {
  const z = contrastLogits(new Float32Array([2, 1, -5]), new Float32Array([1, 2, 0]), 0.1, 0.5);
  assert.ok(Math.abs(z[0] - 2.5) < 1e-6 && Math.abs(z[1] - 0.5) < 1e-6);
  assert.equal(z[2], -Infinity);
  // α = 1 keeps only the strong argmax
  assert.deepEqual([...contrastLogits(new Float32Array([2, 1]), new Float32Array([0, 0]), 1, 0.5)].map(Number.isFinite), [true, false]);
});

let model: Model;
before(async () => {
  mkdirSync(CACHE, { recursive: true });
  const path = join(CACHE, 'scmoe-olmoe-f32.gguf');
  // 8 experts, K = 2; the weak pass uses only the rank-2 expert
  if (!existsSync(path)) await generateModel(makeSpec('olmoe', { seed: 11 }), { gguf: path, type: 'f32' });
  model = await loadModel(path, { threads: 2 });
});
after(async () => model?.close());

async function collect(gen: AsyncGenerator<number, unknown>): Promise<number[]> {
  const out: number[] = [];
  for await (const id of gen) out.push(id);
  return out;
}

test('lockstep SCMoE decoding equals a direct two-pass computation', async (t) => {
  const prompt = model.tokenize('Call me Ishmael. Some years ago', { addSpecial: true });
  const alpha = 0.1;
  const beta = 0.5;
  const gen = await collect(scmoeGenerateTokens(model, prompt, { alpha, beta, rank: 2, maxTokens: 6, temperature: 0 }));
  assert.equal(gen.length, 6);
  const V = model.decoder.V;
  const weak = { routePolicy: rankPolicy(2) };
  let differsFromStrong = 0;
  for (let i = 0; i < gen.length; i++) {
    const ids = [...prompt, ...gen.slice(0, i)];
    const T = ids.length;
    const zs = (await model.forward(ids)).subarray((T - 1) * V, T * V);
    const zw = (await model.forward(ids, { hooks: weak })).subarray((T - 1) * V, T * V);
    assert.notDeepEqual(zs, zw, 'the weak pass must differ from the strong one');
    const z = contrastLogits(zs, zw, alpha, beta);
    assert.equal(gen[i], argmax(z), `step ${i}`);
    if (argmax(zs) !== gen[i]) differsFromStrong++;
  }
  // β = 0 is plain greedy decoding with the model's own routing
  const plain = await collect(model.generateTokens(prompt, { maxTokens: 6, temperature: 0 }));
  const beta0 = await collect(scmoeGenerateTokens(model, prompt, { beta: 0, maxTokens: 6 }));
  assert.deepEqual(beta0, plain);
  // the contrast must matter somewhere, or the check above would pass with the weak pass ignored
  t.diagnostic(`scmoe changed the greedy token at ${differsFromStrong} of ${gen.length} steps`);
  assert.ok(differsFromStrong >= 1, 'SCMoE never changed the greedy token: pick a prompt where it does');
});

test('bad SCMoE options are UsageErrors', async () => {
  const ids = model.tokenize('Hi', { addSpecial: true });
  for (const o of [{ alpha: 0 }, { beta: -1 }, { rank: 8 }, { rank: 1.5 }]) {
    await assert.rejects(collect(scmoeGenerateTokens(model, ids, { ...o, maxTokens: 1 })), UsageError, JSON.stringify(o));
  }
});

test('SCMoE text honours stop strings (not emitted, stopReason "stop") like Model.generate', async () => {
  const prompt = 'Call me Ishmael. Some years ago';
  const opts = { maxTokens: 24, temperature: 0 };
  let full = '';
  for await (const piece of scmoeGenerate(model, prompt, opts)) full += piece;
  assert.equal(model.lastStats?.stopReason, 'length');
  const stop = full.slice(Math.floor(full.length / 2), Math.floor(full.length / 2) + 3);
  assert.ok(stop.length === 3, `too little text generated: ${JSON.stringify(full)}`);
  let cut = '';
  for await (const piece of scmoeGenerate(model, prompt, { ...opts, stop: [stop] })) cut += piece;
  assert.equal(cut, full.slice(0, full.indexOf(stop)));
  assert.equal(model.lastStats?.stopReason, 'stop');
  // the plain path shares the streamer: same contract
  let plain = '';
  for await (const piece of model.generate(prompt, { ...opts })) plain += piece;
  const stop2 = plain.slice(Math.floor(plain.length / 2), Math.floor(plain.length / 2) + 3);
  let plainCut = '';
  for await (const piece of model.generate(prompt, { ...opts, stop: [stop2] })) plainCut += piece;
  assert.equal(plainCut, plain.slice(0, plain.indexOf(stop2)));
  assert.equal(model.lastStats?.stopReason, 'stop');
});

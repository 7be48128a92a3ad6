/**
 * `moekit train` end to end on a small slice of Moby Dick: the BPE tokenizer loads in
 * @huggingface/tokenizers, `--resume` continues bit-exactly, the exported GGUF (olmoe and qwen2moe)
 * loads in moekit with the trainer's own probabilities, and llama.cpp agrees with moekit on it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { readFileSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../src/engine/model.js';
import { compareLogits, oracleAvailable, openOracle } from '../src/testing/llama-oracle.js';
import { tokenizerFromHF } from '../src/tokenizer/index.js';
import { BpeEncoder, bpeFromTokenizerJson } from '../src/train/bpe.js';
import { train, type TrainConfig } from '../src/train/trainer.js';

const root = new URL('..', import.meta.url).pathname;
const dir = join(root, '.cache', 'train-e2e');
const quiet = () => {};

const config = (over: Partial<TrainConfig['model']> = {}): TrainConfig => ({
  model: {
    dim: 32, nLayer: 2, nHead: 2, seqLen: 16, nExpert: 4, ffnDim: 32, qkNorm: true, initStd: 0.05,
    router: { scoring: 'softmax', K: 2, normalize: false, lbCoef: 0.01, zCoef: 0.001 }, ...over,
  },
  tokenizer: { vocabSize: 320 },
  data: { source: 'moby-dick', valFraction: 0.25, maxChars: 40000 },
  optim: { lr: 3e-3, warmup: 2, weightDecay: 0.1, gradClip: 1 },
  train: { steps: 8, batchSize: 4, seed: 5, evalEvery: 4, evalTokens: 256, ckptEvery: 2, logEvery: 4 },
});

test('train → resume is bit-exact; tokenizer.json loads in @huggingface/tokenizers', async () => {
  const a = join(dir, 'straight');
  const b = join(dir, 'resumed');
  rmSync(dir, { recursive: true, force: true });
  const ra = await train(config(), { out: a, log: quiet, threads: 0 });
  assert.equal(ra.steps, 8);
  assert.ok(ra.valLoss !== null && ra.valLoss < Math.log(320), `val loss ${ra.valLoss} not below uniform`);
  const r1 = await train(config(), { out: b, log: quiet, stopAt: 5, exportGguf: false, threads: 0 });
  assert.equal(r1.steps, 5);
  const rb = await train(config(), { out: b, resume: true, log: quiet, threads: 0 });
  assert.equal(rb.steps, 8);
  assert.deepEqual(rb.model.params, ra.model.params, 'resumed weights differ from the straight run');
  assert.equal(rb.finalLoss, ra.finalLoss);

  const tj = JSON.parse(readFileSync(join(a, 'last', 'tokenizer.json'), 'utf8'));
  const hf = tokenizerFromHF(tj, JSON.parse(readFileSync(join(a, 'last', 'tokenizer_config.json'), 'utf8')));
  const text = 'Call me Ishmael. Some years ago—never mind how long precisely—';
  const enc = new BpeEncoder(bpeFromTokenizerJson(tj));
  assert.deepEqual(hf.encode(text, { addSpecial: false }), enc.encode(text));
  assert.equal(hf.decode(enc.encode(text)), text);
  assert.equal(hf.vocabSize, 320);
});

for (const [name, over, arch] of [
  ['olmoe', {}, 'olmoe'],
  ['qwen2moe (gated shared expert, tied)', { qkNorm: false, sharedDim: 24, sharedGate: true, tied: true }, 'qwen2moe'],
] as const) {
  test(`GGUF export (${name}): moekit reproduces the trainer, llama.cpp reproduces moekit`, async (t) => {
    const out = join(dir, `export-${arch}`);
    rmSync(out, { recursive: true, force: true });
    const r = await train(config(over), { out, log: quiet, threads: 0 });
    assert.ok(r.gguf);
    const m = await loadModel(r.gguf!, { threads: 1 });
    try {
      assert.equal(m.info.arch, arch);
      const ids = m.tokenize('It was the Bible and the whale, upon the deep sea of the ship.', { addSpecial: false }).slice(0, 16);
      const T = ids.length;
      const V = 320;
      const logits = await m.forward(ids);
      const inputs = Int32Array.from(ids);
      const { cache } = r.model.forward(inputs, new Int32Array(T), 1);
      let worst = 0;
      for (let tt = 0; tt < T; tt++) {
        let max = -Infinity;
        for (let v = 0; v < V; v++) max = Math.max(max, logits[tt * V + v]);
        let s = 0;
        for (let v = 0; v < V; v++) s += Math.exp(logits[tt * V + v] - max);
        for (let v = 0; v < V; v++) worst = Math.max(worst, Math.abs(Math.exp(logits[tt * V + v] - max) / s - cache.probs[tt * V + v]));
      }
      t.diagnostic(`${arch}: max |Δp| trainer vs moekit ${worst.toExponential(2)}`);
      assert.ok(worst < 1e-4, `probabilities differ by ${worst}`);

      const ok = await oracleAvailable();
      if (!ok.ok) return t.skip(ok.reason);
      const o = await openOracle(r.gguf!, { ctx: 64 });
      try {
        assert.deepEqual(o.tokenize('It was the Bible and the whale, upon the deep sea of the ship.').slice(0, 16), ids);
        const ref = await o.logitsAll(ids);
        const c = compareLogits(ref, logits, T, V);
        t.diagnostic(`${arch}: llama.cpp vs moekit max|Δ| ${c.maxAbsDiff.toExponential(2)} top-1 ${c.top1Agreement} KL ${c.meanKL.toExponential(2)}`);
        assert.equal(c.top1Agreement, 1);
        assert.ok(c.meanKL < 1e-4);
      } finally {
        await o.close();
      }
    } finally {
      await m.close();
    }
  });
}

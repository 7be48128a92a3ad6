/**
 * The shipped default model (models/default.gguf, see models/MODEL_CARD.md): it is what `npm start`
 * runs; the engine's tokenizer reproduces the trainer's tokens; it beats unigram and bigram baselines
 * on the held-out Moby-Dick chapters; and llama.cpp loads it and computes the same logits.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import { defaultModelPath } from '../src/engine/default-model.js';
import { loadModel } from '../src/engine/model.js';
import { logSoftmax } from '../src/routing/eval.js';
import { compareLogits, oracleAvailable, openOracle } from '../src/testing/llama-oracle.js';
import { ngramBaselines } from '../src/train/baselines.js';
import { BpeEncoder, trainBpe } from '../src/train/bpe.js';
import { loadCorpus, splitDocs, tokenizeDocs, valBatches } from '../src/train/data.js';
import type { TrainConfig } from '../src/train/trainer.js';

const path = process.env.MOEKIT_DEFAULT_MODEL ?? 'models/default.gguf';
const cfgPath = path.replace(/default\.gguf$/, 'train-config.json');
const skip = (!existsSync(path) || !existsSync(cfgPath)) && `${path} or ${cfgPath} is missing`;

test('npm start runs the trained default model', { skip: process.env.MOEKIT_DEFAULT_MODEL ? 'custom model' : skip }, async () => {
  const d = await defaultModelPath();
  assert.match(d.path, /models\/default\.gguf$/);
  assert.match(d.label, /trained/);
});

test('the default model beats unigram and bigram baselines on held-out chapters, through the inference engine', { skip }, async (t) => {
  const cfg = JSON.parse(readFileSync(cfgPath, 'utf8')) as TrainConfig;
  const split = splitDocs(loadCorpus(cfg.data), cfg.data.valFraction);
  const m = await loadModel(path, { threads: 2 });
  try {
    // the trainer's BPE, retrained (deterministic), and the GGUF's tokenizer through the engine agree
    const enc = new BpeEncoder(trainBpe(split.train, cfg.tokenizer.vocabSize));
    const doc = split.val[0]!.slice(0, 4000);
    assert.deepEqual(m.tokenize(doc, { addSpecial: false }), enc.encode(doc));

    const trainTok = tokenizeDocs(enc, split.train), valTok = tokenizeDocs(enc, split.val);
    const S = cfg.model.seqLen, V = m.decoder.V;
    const windows = valBatches(valTok, 8, S, 2048);
    const { unigram: pUni, bigram: pBig } = ngramBaselines(trainTok, V);
    let nll = 0, nllU = 0, nllB = 0, n = 0;
    for (const b of windows) for (let w = 0; w < b.B; w++) {
      const ids = Array.from(b.inputs.subarray(w * S, (w + 1) * S));
      const logits = await m.forward(ids);
      for (let i = 0; i < S; i++) {
        const y = b.targets[w * S + i];
        nll -= logSoftmax(logits, i, V)[y];
        nllU -= Math.log(pUni(y));
        nllB -= Math.log(pBig(ids[i]!, y));
        n++;
      }
    }
    const [ppl, pplU, pplB] = [nll, nllU, nllB].map((x) => Math.exp(x / n));
    t.diagnostic(`validation ppl over ${n} targets: model ${ppl.toFixed(2)}, bigram ${pplB.toFixed(2)}, unigram ${pplU.toFixed(2)}`);
    assert.ok(ppl < pplB && ppl < pplU, `model ppl ${ppl} must be below bigram ${pplB} and unigram ${pplU}`);
  } finally {
    await m.close();
  }
});

test('llama.cpp loads the default model and computes the same logits', { skip }, async (t) => {
  const ok = await oracleAvailable();
  if (!ok.ok) return t.skip(ok.reason);
  const m = await loadModel(path, { threads: 1 });
  const o = await openOracle(path, { ctx: 128 });
  try {
    const text = 'Call me Ishmael. Some years ago, never mind how long precisely, having little or no money in my purse';
    const ids = m.tokenize(text, { addSpecial: false });
    assert.deepEqual(o.tokenize(text), ids);
    const V = m.decoder.V;
    const c = compareLogits(await o.logitsAll(ids), await m.forward(ids), ids.length, V);
    t.diagnostic(`llama.cpp vs moekit: max|Δ| ${c.maxAbsDiff.toExponential(2)} (range ${c.range.toFixed(1)}), top-1 ${c.top1Agreement}, KL ${c.meanKL.toExponential(2)}`);
    assert.equal(c.top1Agreement, 1);
    assert.ok(c.maxAbsDiff <= 1e-3 * c.range, `max|Δ| ${c.maxAbsDiff}`);
    const greedy = await o.greedy(ids, 16, { stopAtEog: false });
    let ours = '';
    for await (const piece of m.generate(text, { maxTokens: 16, temperature: 0, addSpecial: false })) ours += piece;
    assert.equal(ours, o.detokenize(greedy));
  } finally {
    await o.close();
    await m.close();
  }
});

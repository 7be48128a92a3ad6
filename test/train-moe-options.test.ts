/**
 * Fine-grained experts (DeepSeekMoE), dense → MoE upcycling (Sparse Upcycling), and `moekit run` /
 * `eval` on a training checkpoint folder. Each check compares against an independently computed
 * quantity, so a wrong layout, a wrong copy or a wrong export makes it fail.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { copyFileSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { loadModel } from '../src/engine/model.js';
import { CheckpointError, UnsupportedError, UsageError } from '../src/errors.js';
import { BpeEncoder, bpeFromTokenizerJson } from '../src/train/bpe.js';
import { loadCorpus, splitDocs, tokenizeDocs, trainBatch } from '../src/train/data.js';
import { MoeLM, resolveModelConfig, type ModelConfig } from '../src/train/model.js';
import { train, type TrainConfig } from '../src/train/trainer.js';
import { readDenseCheckpoint, upcycle } from '../src/train/upcycle.js';
import { Rng } from '../src/testing/generate-model.js';
import { compareLogits, oracleAvailable, openOracle } from '../src/testing/llama-oracle.js';

const root = new URL('..', import.meta.url).pathname;
const dir = join(root, '.cache', 'train-moe-options');
const quiet = () => {};

const BASE: ModelConfig = {
  vocab: 48, dim: 16, nLayer: 2, nHead: 2, seqLen: 8, nExpert: 4, ffnDim: 16, qkNorm: true, initStd: 0.2,
  router: { scoring: 'softmax', K: 2, normalize: false },
};

function batch(V: number, B: number, S: number, seed: number) {
  const rng = new Rng(seed);
  const inputs = Int32Array.from({ length: B * S }, () => Math.floor(rng.uniform() * V));
  const targets = Int32Array.from({ length: B * S }, () => Math.floor(rng.uniform() * V));
  return { inputs, targets };
}

const relDiff = (a: number, b: number) => Math.abs(a - b) / Math.max(Math.abs(b), 1e-12);

test('fine-grained experts: config resolves to E·m experts of F/m, top-(K·m); bad values are UsageErrors', () => {
  const r = resolveModelConfig({ ...BASE, fineGrained: 4, router: { ...BASE.router, nullExperts: 1 } });
  assert.equal(r.nExpert, 16);
  assert.equal(r.ffnDim, 4);
  assert.equal(r.router.K, 8);
  assert.equal(r.router.nullExperts, 4);
  assert.equal(r.fineGrained, undefined);
  assert.deepEqual(resolveModelConfig(r), r, 'resolving is idempotent');
  const m = new MoeLM({ ...BASE, fineGrained: 2 });
  assert.deepEqual(m.layout.find((p) => p.name === 'blk.0.ffn_gate_exps.weight')!.shape, [8, 8, 16]);
  assert.deepEqual(m.layout.find((p) => p.name === 'blk.0.ffn_down_exps.weight')!.shape, [8, 16, 8]);
  assert.deepEqual(m.layout.find((p) => p.name === 'blk.0.ffn_gate_inp.weight')!.shape, [8, 16]);
  // same expert parameters and the same routed FLOPs per token as the coarse model
  const coarse = new MoeLM(BASE);
  const expertParams = (x: MoeLM) => x.layout.filter((p) => /_exps/.test(p.name)).reduce((a, p) => a + p.size, 0);
  assert.equal(expertParams(m), expertParams(coarse));
  assert.equal(m.activeParams - coarse.activeParams, 2 * 16 * (8 - 4), 'only the router rows differ');
  for (const [bad, re] of [
    [0, /integer ≥ 1/], [1.5, /integer ≥ 1/], ['2', /integer ≥ 1/], [3, /must divide model.ffnDim 16/],
  ] as const) {
    assert.throws(() => new MoeLM({ ...BASE, fineGrained: bad as number }), (e: unknown) => e instanceof UsageError && re.test((e as Error).message), `fineGrained ${bad}`);
  }
  assert.throws(() => new MoeLM({ ...BASE, nExpert: 0, fineGrained: 2 }), (e: unknown) => e instanceof UsageError && /nExpert is 0/.test((e as Error).message));
  assert.throws(() => new MoeLM({ ...BASE, fineGrained: 2, router: { ...BASE.router, K: 5 } }), UsageError);
  assert.throws(() => new MoeLM({ ...BASE, router: undefined as never }), (e: unknown) => e instanceof UsageError && /model.router is missing/.test((e as Error).message));
});

test('fine-grained experts compute the coarse MoE when each expert is split into slices (router rows duplicated, down ×m)', () => {
  // A SwiGLU FFN of width F is the sum of its m column slices; duplicating router row e m times gives
  // each slice p_e/m, and top-(K·m) then picks exactly the m slices of the top-K experts. Scaling the
  // slices' down projections by m makes the fine-grained model equal the coarse one.
  for (const normalize of [false, true]) {
    const m = 2;
    const cfg: ModelConfig = { ...BASE, router: { scoring: 'softmax', K: 2, normalize } };
    const coarse = new MoeLM(cfg);
    coarse.init(7);
    const fine = new MoeLM({ ...cfg, fineGrained: m });
    fine.init(8);
    const { nExpert: E, ffnDim: F, dim: D } = cfg;
    const Fm = F / m;
    for (const p of fine.layout) {
      const dst = fine.tensor(p.name);
      const mm = /^blk\.(\d+)\.ffn_(gate|up|down)_exps\.weight$/.exec(p.name);
      if (/ffn_gate_inp/.test(p.name)) {
        const src = coarse.tensor(p.name);
        for (let e = 0; e < E; e++) for (let j = 0; j < m; j++) dst.set(src.subarray(e * D, (e + 1) * D), (e * m + j) * D);
      } else if (mm && mm[2] !== 'down') {
        dst.set(coarse.tensor(p.name)); // [E, F, D] rows split in order = [E·m, F/m, D]
      } else if (mm) {
        const src = coarse.tensor(p.name); // [E, D, F] → [E·m, D, F/m], ×m
        for (let e = 0; e < E; e++) for (let j = 0; j < m; j++) for (let d = 0; d < D; d++) for (let f = 0; f < Fm; f++) {
          dst[((e * m + j) * D + d) * Fm + f] = m * src[(e * D + d) * F + j * Fm + f];
        }
      } else dst.set(coarse.tensor(p.name));
    }
    const b = batch(cfg.vocab, 3, 8, 11);
    const a = coarse.forward(b.inputs, b.targets, 3);
    const f = fine.forward(b.inputs, b.targets, 3);
    assert.ok(relDiff(f.stats.lm, a.stats.lm) < 1e-5, `normalize ${normalize}: fine ${f.stats.lm} vs coarse ${a.stats.lm}`);
    assert.ok(Math.abs(f.stats.activeExperts - 2 * a.stats.activeExperts) < 1e-9, 'K·m slices active');
    // and the check is sensitive: break one slice and the losses part
    fine.tensor('blk.1.ffn_down_exps.weight').fill(0, 0, D * Fm);
    assert.ok(relDiff(fine.forward(b.inputs, b.targets, 3).stats.lm, a.stats.lm) > 1e-4);
  }
});

test('upcycling: every expert copies the dense FFN, so with renormalised top-k the MoE computes the dense model', () => {
  const dense = new MoeLM({ ...BASE, nExpert: 0, ffnDim: 24, router: undefined as never });
  dense.init(3);
  const b = batch(BASE.vocab, 4, 8, 12);
  const ref = dense.forward(b.inputs, b.targets, 4).stats.lm;
  const moeCfg: ModelConfig = { ...BASE, ffnDim: 24, nExpert: 4, router: { scoring: 'softmax', K: 2, normalize: true } };
  const moe = new MoeLM(moeCfg);
  moe.init(4);
  const before = moe.forward(b.inputs, b.targets, 4).stats.lm;
  const u = upcycle(dense, moe, { routerStd: 0.5, seed: 1 });
  assert.deepEqual(u.fresh, ['blk.0.ffn_gate_inp.weight', 'blk.1.ffn_gate_inp.weight']);
  const s = moe.forward(b.inputs, b.targets, 4).stats;
  assert.ok(relDiff(s.lm, ref) < 1e-6, `upcycled ${s.lm} vs dense ${ref} (fresh MoE: ${before})`);
  assert.ok(relDiff(before, ref) > 1e-3, 'the fresh MoE differs from the dense model (the check can fail)');
  // a router at std 0.5 spreads the tokens: the equality does not come from one expert taking all
  assert.ok(s.counts.every((c) => [...c].filter((x) => x > 0).length === 4), 'every expert receives tokens');
  // fine-grained target whose small experts are whole copies (ffnDim = m × dense ffnDim)
  const fg = new MoeLM({ ...moeCfg, ffnDim: 48, fineGrained: 2 });
  fg.init(5);
  upcycle(dense, fg, { seed: 2 });
  assert.ok(relDiff(fg.forward(b.inputs, b.targets, 4).stats.lm, ref) < 1e-6);
  // without renormalisation the output is Σ top-k p × dense: not equal (documented)
  const un = new MoeLM({ ...moeCfg, router: { ...moeCfg.router, normalize: false } });
  un.init(4);
  upcycle(dense, un, { seed: 1 });
  assert.ok(relDiff(un.forward(b.inputs, b.targets, 4).stats.lm, ref) > 1e-4);
  // mismatched shapes are UsageErrors that name the field
  for (const [over, re] of [
    [{ ffnDim: 16 }, /must be a copy of the dense FFN \(width 24\)/], [{ dim: 32 }, /model.dim 32/], [{ qkNorm: false }, /model.qkNorm/],
  ] as const) {
    const t = new MoeLM({ ...moeCfg, ...over });
    assert.throws(() => upcycle(dense, t), (e: unknown) => e instanceof UsageError && re.test((e as Error).message));
  }
  assert.throws(() => upcycle(moe, new MoeLM(moeCfg)), (e: unknown) => e instanceof UsageError && /must be dense/.test((e as Error).message));
});

const trainCfg = (model: Partial<TrainConfig['model']>, steps = 4): TrainConfig => ({
  model: {
    dim: 32, nLayer: 2, nHead: 2, seqLen: 16, nExpert: 4, ffnDim: 32, qkNorm: true, initStd: 0.05,
    router: { scoring: 'softmax', K: 2, normalize: false, lbCoef: 0.01, zCoef: 0.001 }, ...model,
  },
  tokenizer: { vocabSize: 300 },
  data: { source: 'moby-dick', valFraction: 0.5, maxChars: 30000 },
  optim: { lr: 3e-3, warmup: 2, weightDecay: 0.1, gradClip: 1 },
  train: { steps, batchSize: 4, seed: 5, evalEvery: 0, evalTokens: 256, ckptEvery: 2, logEvery: 2 },
});

test('moekit train --upcycle-from: the upcycled run starts at the dense model\'s loss and uses its tokenizer', async () => {
  const denseOut = join(dir, 'dense');
  const moeOut = join(dir, 'upcycled');
  rmSync(dir, { recursive: true, force: true });
  const lines: string[] = [];
  const d = await train(trainCfg({ nExpert: 0, router: undefined as never }), { out: denseOut, log: (l) => lines.push(l), threads: 0 });
  assert.equal(d.steps, 4);
  assert.ok(lines.some((l) => /dense FFN 32/.test(l)), lines.join('\n'));
  const cfg = trainCfg({ router: { scoring: 'softmax', K: 2, normalize: true, lbCoef: 0, zCoef: 0 } }, 3);
  const r = await train(cfg, { out: moeOut, log: quiet, threads: 0, stopAt: 1, exportGguf: false, upcycleFrom: join(denseOut, 'last') });
  // the loss of the first step (computed before the update) equals the dense model's on that batch
  const src = readDenseCheckpoint(join(denseOut, 'last'));
  const enc = new BpeEncoder(bpeFromTokenizerJson(src.tokenizerJson));
  const tok = tokenizeDocs(enc, splitDocs(loadCorpus(cfg.data), cfg.data.valFraction).train);
  const b0 = trainBatch(tok, cfg.train.batchSize, 16, cfg.train.seed, 0);
  const denseLoss = src.model.forward(b0.inputs, b0.targets, cfg.train.batchSize).stats.lm;
  assert.ok(relDiff(r.finalLoss, denseLoss) < 1e-5, `upcycled first-step loss ${r.finalLoss} vs dense ${denseLoss}`);
  assert.equal(readFileSync(join(moeOut, 'last', 'tokenizer.json'), 'utf8'), readFileSync(join(denseOut, 'last', 'tokenizer.json'), 'utf8'));
  assert.equal(JSON.parse(readFileSync(join(moeOut, 'last', 'config.json'), 'utf8')).init.upcycleFrom, join(denseOut, 'last'));
  // --resume continues from the MoE checkpoint (the dense source is not read again)
  const rr = await train(cfg, { out: moeOut, log: quiet, threads: 0, resume: true, exportGguf: false, upcycleFrom: join(dir, 'nowhere') });
  assert.equal(rr.steps, 3);
  // bad sources are typed errors
  await assert.rejects(train(cfg, { out: join(dir, 'x'), log: quiet, threads: 0, upcycleFrom: denseOut }), (e: unknown) => e instanceof CheckpointError && /pass .*best or .*last/.test((e as Error).message));
  await assert.rejects(train(cfg, { out: join(dir, 'y'), log: quiet, threads: 0, upcycleFrom: join(moeOut, 'last') }), (e: unknown) => e instanceof UsageError && /is a MoE model/.test((e as Error).message));
});

test('moekit run / eval accept a training checkpoint folder: same logits as the exported model.gguf', async () => {
  const out = join(dir, 'ckpt-folder');
  rmSync(out, { recursive: true, force: true });
  const r = await train(trainCfg({ fineGrained: 2 }), { out, log: quiet, threads: 0 });
  assert.ok(r.gguf);
  const a = await loadModel(join(out, 'last'), { threads: 1 });
  const g = await loadModel(r.gguf!, { threads: 1 });
  try {
    assert.equal(a.info.arch, 'olmoe');
    assert.equal(a.hparams.nExpert, 8);
    const text = 'Call me Ishmael. Some years ago, never mind how long precisely.';
    const ids = a.tokenize(text, { addSpecial: false });
    assert.deepEqual(ids, g.tokenize(text, { addSpecial: false }));
    const la = await a.forward(ids.slice(0, 16));
    const lg = await g.forward(ids.slice(0, 16));
    assert.deepEqual(la, lg, 'checkpoint folder and model.gguf give different logits');
    // and both are the trainer's own model
    const { cache } = r.model.forward(Int32Array.from(ids.slice(0, 16)), new Int32Array(16), 1);
    const V = 300;
    let worst = 0;
    for (let t = 0; t < 16; t++) {
      let max = -Infinity;
      for (let v = 0; v < V; v++) max = Math.max(max, la[t * V + v]);
      let s = 0;
      for (let v = 0; v < V; v++) s += Math.exp(la[t * V + v] - max);
      for (let v = 0; v < V; v++) worst = Math.max(worst, Math.abs(Math.exp(la[t * V + v] - max) / s - cache.probs[t * V + v]));
    }
    assert.ok(worst < 1e-4, `probabilities differ from the trainer by ${worst}`);
  } finally {
    await a.close();
    await g.close();
  }
  await assert.rejects(loadModel(out), (e: unknown) => e instanceof CheckpointError && /training run folder/.test((e as Error).message));
  // the three files the issue names are enough (no state.json, optimizer or tokenizer_config.json)
  const bare = join(out, 'bare');
  mkdirSync(bare);
  for (const f of ['model.safetensors', 'config.json', 'tokenizer.json']) copyFileSync(join(out, 'last', f), join(bare, f));
  const b = await loadModel(bare, { threads: 1 });
  const g2 = await loadModel(r.gguf!, { threads: 1 });
  try {
    const ids = g2.tokenize('It was the Bible and the whale', { addSpecial: false });
    assert.deepEqual(await b.forward(ids), await g2.forward(ids));
  } finally {
    await b.close();
    await g2.close();
  }
  // a checkpoint that has no GGUF form says why
  const cfgPath = join(bare, 'config.json');
  const c = JSON.parse(readFileSync(cfgPath, 'utf8'));
  writeFileSync(cfgPath, JSON.stringify({ ...c, model: { ...c.model, router: { ...c.model.router, normalize: true } } }));
  await assert.rejects(loadModel(bare), (e: unknown) => e instanceof UnsupportedError && /runs a training checkpoint as its GGUF export.*renormalisation/.test((e as Error).message));
  // the CLI end to end: greedy text from the folder equals greedy text from the GGUF
  const cli = (m: string) => execFileSync(process.execPath, [join(root, 'bin', 'moekit.js'), 'run', m, '-p', 'Call me', '-n', '8', '--temp', '0', '-t', '1'], { encoding: 'utf8', stdio: ['ignore', 'pipe', 'ignore'] });
  assert.equal(cli(join(out, 'best')), cli(r.gguf!));
});

for (const [name, over, arch] of [
  ['olmoe-shaped (QK-norm)', { qkNorm: true }, 'olmoe'],
  ['qwen2moe-shaped (no QK-norm)', { qkNorm: false, tied: true }, 'qwen2moe'],
] as const) {
  test(`a dense model (nExpert 0) exports as a 1-expert ${arch}: moekit and llama.cpp reproduce the trainer (${name})`, async (t) => {
    const out = join(dir, `dense-export-${arch}`);
    rmSync(out, { recursive: true, force: true });
    const r = await train(trainCfg({ nExpert: 0, router: undefined as never, ...over }, 3), { out, log: quiet, threads: 0 });
    assert.ok(r.gguf, 'no GGUF written');
    for (const path of [r.gguf!, join(out, 'last')]) {
      const m = await loadModel(path, { threads: 1 });
      try {
        assert.equal(m.info.arch, arch);
        const ids = m.tokenize('It was the Bible and the whale, upon the deep sea of the ship.', { addSpecial: false }).slice(0, 16);
        const logits = await m.forward(ids);
        const { cache } = r.model.forward(Int32Array.from(ids), new Int32Array(ids.length), 1);
        const V = 300;
        let worst = 0;
        for (let tt = 0; tt < ids.length; tt++) {
          let max = -Infinity;
          for (let v = 0; v < V; v++) max = Math.max(max, logits[tt * V + v]);
          let s = 0;
          for (let v = 0; v < V; v++) s += Math.exp(logits[tt * V + v] - max);
          for (let v = 0; v < V; v++) worst = Math.max(worst, Math.abs(Math.exp(logits[tt * V + v] - max) / s - cache.probs[tt * V + v]));
        }
        assert.ok(worst < 1e-4, `${path}: probabilities differ from the trainer by ${worst}`);
        if (path !== r.gguf) continue;
        const ok = await oracleAvailable();
        if (!ok.ok) { t.diagnostic(`llama.cpp check skipped: ${ok.reason}`); continue; }
        const o = await openOracle(r.gguf!, { ctx: 64 });
        try {
          const c = compareLogits(await o.logitsAll(ids), logits, ids.length, V);
          t.diagnostic(`${arch} dense: llama.cpp vs moekit max|Δ| ${c.maxAbsDiff.toExponential(2)} top-1 ${c.top1Agreement}`);
          assert.equal(c.top1Agreement, 1);
          assert.ok(c.meanKL < 1e-4);
        } finally {
          await o.close();
        }
      } finally {
        await m.close();
      }
    }
  });
}

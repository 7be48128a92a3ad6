/**
 * `moekit train`: corpus → BPE tokenizer → seeded MoE LM → AdamW steps with progress, validation,
 * best/last checkpoints and `--resume`, then a GGUF export of the final weights.
 *
 * Layout of a run folder:
 *   <out>/last/   the latest checkpoint (every `ckptEvery` steps, on Ctrl-C, and at the end)
 *   <out>/best/   the checkpoint with the lowest validation loss so far
 *   <out>/model.gguf   the exported final model (when the config can be exported)
 *   <out>/log.jsonl    one line per logged step / evaluation
 */
import { appendFileSync, existsSync, mkdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { physicalCores } from '../backend/index.js';
import { nativeAvailable } from '../backend/native.js';
import { UsageError } from '../errors.js';
import { useNativeKernels } from './layers.js';
import { BpeEncoder, bpeFromTokenizerJson, bpeTokenizerConfig, bpeTokenizerJson, trainBpe } from './bpe.js';
import { exportArch, exportGGUF, loadCheckpoint, saveCheckpoint, type TrainState } from './checkpoint.js';
import { loadCorpus, splitDocs, tokenizeDocs, trainBatch, valBatches, type DataConfig } from './data.js';
import { checkModelConfig, MoeLM, type ModelConfig } from './model.js';
import { AdamW, type OptimConfig } from './optim.js';
import { trainStep } from './step.js';
import { readDenseCheckpoint, upcycle, type DenseCheckpoint, type InitConfig } from './upcycle.js';

export interface TrainConfig {
  /** model shape and router; `vocab` comes from the tokenizer */
  model: Omit<ModelConfig, 'vocab'> & { vocab?: number };
  tokenizer: { vocabSize: number };
  data: DataConfig;
  optim: Omit<OptimConfig, 'steps'>;
  /** where the weights start: fresh (default) or upcycled from a dense checkpoint (src/train/upcycle.ts) */
  init?: InitConfig;
  train: {
    steps: number;
    batchSize: number;
    seed: number;
    /** validate every N steps (0 = only at the end) */
    evalEvery?: number;
    /** validation targets per evaluation (default 16384) */
    evalTokens?: number;
    /** checkpoint every N steps (default evalEvery or 100) */
    ckptEvery?: number;
    /** print a progress line every N steps (default 10) */
    logEvery?: number;
  };
}

export interface TrainOptions {
  out: string;
  resume?: boolean;
  /** progress lines go here (default stderr) */
  log?: (line: string) => void;
  /** stop after this step even if config.train.steps is larger (tests, time boxes) */
  stopAt?: number;
  /** write the final GGUF (default true) */
  exportGguf?: boolean;
  /** threads of the native training kernels (default: physical cores); 0 = the plain TypeScript kernels */
  threads?: number;
  /** upcycle from this dense checkpoint folder (overrides config.init.upcycleFrom) */
  upcycleFrom?: string;
}

export interface TrainResult {
  steps: number;
  finalLoss: number;
  valLoss: number | null;
  bestValLoss: number | null;
  tokensSeen: number;
  seconds: number;
  gguf?: string;
  model: MoeLM;
}

export function readTrainConfig(path: string): TrainConfig {
  if (!existsSync(path)) throw new UsageError(`config ${path}: no such file`);
  let c: TrainConfig;
  try {
    c = JSON.parse(readFileSync(path, 'utf8')) as TrainConfig;
  } catch (e) {
    throw new UsageError(`config ${path}: not valid JSON (${(e as Error).message})`);
  }
  for (const k of ['model', 'tokenizer', 'data', 'optim', 'train'] as const) if (!c[k]) throw new UsageError(`config ${path}: missing section "${k}"`);
  return c;
}

/**
 * Switch on the kernels a training run uses (the native ones on `threads` threads, default physical
 * cores; 0 or no addon = plain TypeScript); returns the switch-off and a label of what runs. bench/train.ts uses this too, so
 * the benchmark measures whatever the trainer runs.
 */
export function trainKernels(threads?: number): { release(): void; label: string } {
  const n = threads ?? physicalCores();
  const native = n > 0 && nativeAvailable();
  useNativeKernels(native ? n : 0);
  return {
    release: () => useNativeKernels(0),
    label: native ? `native kernels, ${n} thread${n > 1 ? 's' : ''}` : n > 0 ? 'TypeScript kernels (native addon not built: npm run build:native)' : 'TypeScript kernels',
  };
}

/** Validation loss (mean next-token NLL) over fixed windows. */
export function evaluate(model: MoeLM, batches: ReturnType<typeof valBatches>): number {
  let sum = 0;
  let n = 0;
  for (const b of batches) {
    const { stats } = model.forward(b.inputs, b.targets, b.B);
    sum += stats.lm * b.inputs.length;
    n += b.inputs.length;
  }
  return sum / n;
}

const fmtTime = (s: number) => (s >= 3600 ? `${Math.floor(s / 3600)}h${String(Math.floor((s % 3600) / 60)).padStart(2, '0')}m` : `${Math.floor(s / 60)}m${String(Math.floor(s % 60)).padStart(2, '0')}s`);

export async function train(cfg: TrainConfig, o: TrainOptions): Promise<TrainResult> {
  const log = o.log ?? ((l: string) => process.stderr.write(l + '\n'));
  mkdirSync(o.out, { recursive: true });
  const lastDir = join(o.out, 'last');
  const bestDir = join(o.out, 'best');
  const resuming = o.resume && existsSync(join(lastDir, 'state.json'));
  if (o.resume && !resuming) log(`no checkpoint in ${lastDir}: starting from scratch`);

  // bad model options fail now, before minutes of tokenizer training
  checkModelConfig({ ...cfg.model, vocab: cfg.model.vocab ?? cfg.tokenizer.vocabSize } as ModelConfig);
  // tokenizer: trained on the training documents, or the checkpoint's own
  const docs = loadCorpus(cfg.data);
  const split = splitDocs(docs, cfg.data.valFraction);
  let tokenizerJson: Record<string, unknown>;
  const upcycleFrom = o.upcycleFrom ?? cfg.init?.upcycleFrom;
  if (upcycleFrom !== undefined && (typeof upcycleFrom !== 'string' || !upcycleFrom)) throw new UsageError(`init.upcycleFrom must be a checkpoint folder path, got ${JSON.stringify(upcycleFrom)}`);
  if (upcycleFrom) cfg = { ...cfg, init: { ...cfg.init, upcycleFrom } };
  let dense: DenseCheckpoint | undefined;
  if (resuming) {
    const saved = JSON.parse(readFileSync(join(lastDir, 'config.json'), 'utf8')) as TrainConfig;
    if (JSON.stringify(saved.model) !== JSON.stringify({ ...cfg.model, vocab: saved.model.vocab })) {
      throw new UsageError(`--resume: the model section of the config differs from the checkpoint's (${lastDir}/config.json)`);
    }
    tokenizerJson = JSON.parse(readFileSync(join(lastDir, 'tokenizer.json'), 'utf8'));
  } else if (upcycleFrom) {
    dense = readDenseCheckpoint(upcycleFrom);
    tokenizerJson = dense.tokenizerJson;
    log(`upcycling from the dense checkpoint ${upcycleFrom} (its tokenizer, ${dense.model.config.vocab} tokens; tokenizer.vocabSize is ignored)`);
  } else {
    const t0 = Date.now();
    tokenizerJson = bpeTokenizerJson(trainBpe(split.train, cfg.tokenizer.vocabSize));
    log(`tokenizer: byte-level BPE, ${cfg.tokenizer.vocabSize} tokens, trained in ${((Date.now() - t0) / 1000).toFixed(1)} s`);
  }
  const tokenizerConfig = bpeTokenizerConfig();
  const vocab = bpeFromTokenizerJson(tokenizerJson);
  const enc = new BpeEncoder(vocab);
  const trainTok = tokenizeDocs(enc, split.train);
  const valTok = tokenizeDocs(enc, split.val);
  const modelCfg: ModelConfig = { ...cfg.model, vocab: vocab.tokens.length };
  const fullCfg = { ...cfg, model: modelCfg };
  const S = modelCfg.seqLen;
  const B = cfg.train.batchSize;
  const steps = cfg.train.steps;
  const optim: OptimConfig = { ...cfg.optim, steps };
  const model = new MoeLM(modelCfg);
  const mc = model.config; // resolved: fine-grained segmentation applied
  const opt = new AdamW(model.layout, model.nParams, optim);
  let state: TrainState = { step: 0, bestValLoss: null, log: [] };
  if (resuming) {
    state = loadCheckpoint(lastDir, model, opt);
    log(`resumed from ${lastDir} at step ${state.step}`);
  } else {
    model.init(cfg.train.seed);
    if (dense) {
      const u = upcycle(dense.model, model, { routerStd: cfg.init?.routerStd, seed: cfg.train.seed });
      log(`upcycled: ${mc.nExpert} experts = copies of the dense FFN; ${u.copied.length} tensors copied, fresh: ${u.fresh.join(', ')}`);
      if (!mc.router.normalize) log('note: router.normalize is false, so the upcycled FFN output starts scaled by Σ top-k p (≈ K/E), not equal to the dense FFN');
    }
  }
  try { exportArch(mc); } catch (e) { log(`note: ${(e as Error).message}`); }
  log(`data: ${cfg.data.source}, ${split.train.length} train / ${split.val.length} val documents, ${trainTok.length} / ${valTok.length} tokens`);
  const ffnDesc = mc.nExpert === 0 ? `dense FFN ${mc.ffnDim}` : `${mc.nExpert} experts of ${mc.ffnDim} top-${mc.router.K}${(cfg.model.fineGrained ?? 1) > 1 ? ` (fine-grained ×${cfg.model.fineGrained})` : ''}${mc.sharedDim ? ` + shared ${mc.sharedDim}` : ''}`;
  log(`model: ${mc.nLayer} layers, D ${mc.dim}, ${ffnDesc}, ${(model.nParams / 1e6).toFixed(2)}M params (${(model.activeParams / 1e6).toFixed(2)}M active)`);

  const vb = valBatches(valTok, B, S, cfg.train.evalTokens ?? 16384);
  const evalEvery = cfg.train.evalEvery ?? 0;
  const ckptEvery = cfg.train.ckptEvery ?? (evalEvery || 100);
  const logEvery = cfg.train.logEvery ?? 10;
  const stopAt = Math.min(steps, o.stopAt ?? steps);
  const save = (dir: string) => saveCheckpoint(dir, { model, opt, config: fullCfg, tokenizerJson, tokenizerConfig, state });
  const logFile = join(o.out, 'log.jsonl');

  let interrupted = false;
  const onSig = () => { interrupted = true; log('interrupt: saving a checkpoint after this step (Ctrl-C again to abort)'); process.off('SIGINT', onSig); };
  process.on('SIGINT', onSig);
  const kernels = trainKernels(o.threads);
  log(`kernels: ${kernels.label}`);
  const t0 = Date.now();
  const step0 = state.step;
  let last = { loss: NaN, lm: NaN };
  let valLoss: number | null = null;
  let lastSaved = state.step;
  try {
    while (state.step < stopAt && !interrupted) {
      const it = state.step;
      const batch = trainBatch(trainTok, B, S, cfg.train.seed, it);
      const r = trainStep(model, opt, batch.inputs, batch.targets, B, it);
      state.step++;
      last = r;
      if (!Number.isFinite(r.loss)) throw new UsageError(`step ${it}: the loss is ${r.loss}; lower optim.lr or raise optim.gradClip`);
      const elapsed = (Date.now() - t0) / 1000;
      const done = state.step - step0;
      if (state.step % logEvery === 0 || state.step === stopAt) {
        const tokS = (done * B * S) / elapsed;
        const loads = r.counts.map((c) => { let mx = 0, s = 0; for (let i = 0; i < mc.nExpert; i++) { mx = Math.max(mx, c[i]); s += c[i]; } return mx / (s / mc.nExpert || 1); });
        const eta = ((stopAt - state.step) * elapsed) / done;
        log(
          `step ${state.step}/${steps} | ${tokS.toFixed(0)} tok/s | loss ${r.loss.toFixed(4)} (lm ${r.lm.toFixed(4)} lb ${r.lb.toFixed(4)} z ${r.z.toFixed(4)})` +
            (loads.length ? ` | load max/mean ${loads.map((x) => x.toFixed(2)).join(' ')}` : '') +
            ` | gnorm ${r.gradNorm.toFixed(2)} | lr ${r.lr.toExponential(2)} | ETA ${fmtTime(eta)}`,
        );
        const row = { step: state.step, loss: r.loss, lm: r.lm, lb: r.lb, z: r.z, gradNorm: r.gradNorm, lr: r.lr, tokS, loadMax: Math.max(0, ...loads), seconds: elapsed };
        state.log.push(row);
        appendFileSync(logFile, JSON.stringify(row) + '\n');
      }
      const evalNow = (evalEvery > 0 && state.step % evalEvery === 0) || state.step === stopAt;
      if (evalNow && vb.length) {
        valLoss = evaluate(model, vb);
        const best = state.bestValLoss === null || valLoss < state.bestValLoss;
        log(`  val loss ${valLoss.toFixed(4)} | ppl ${Math.exp(valLoss).toFixed(2)}${best ? ' (best)' : ''}`);
        const row = { step: state.step, valLoss, valPpl: Math.exp(valLoss) };
        state.log.push(row);
        appendFileSync(logFile, JSON.stringify(row) + '\n');
        if (best) { state.bestValLoss = valLoss; save(bestDir); }
      }
      if (state.step % ckptEvery === 0) { save(lastDir); lastSaved = state.step; }
    }
  } finally {
    process.off('SIGINT', onSig);
    if (state.step !== lastSaved || !existsSync(lastDir)) save(lastDir);
    kernels.release();
  }
  let gguf: string | undefined;
  if ((o.exportGguf ?? true) && state.step >= stopAt && !interrupted) {
    try {
      gguf = join(o.out, 'model.gguf');
      const a = exportGGUF(gguf, model, tokenizerJson, tokenizerConfig, `moekit ${mc.nLayer}L-${mc.nExpert}E trained on ${cfg.data.source}`);
      log(`exported ${gguf} (${a})`);
    } catch (e) {
      gguf = undefined;
      log(`no GGUF export: ${(e as Error).message}`);
    }
  }
  return {
    steps: state.step, finalLoss: last.loss, valLoss, bestValLoss: state.bestValLoss,
    tokensSeen: state.step * B * S, seconds: (Date.now() - t0) / 1000, gguf, model,
  };
}

/**
 * Dense → MoE upcycling (Sparse Upcycling, Komatsuzaki et al. 2023, arXiv 2212.05055): an MoE run
 * starts from a trained dense checkpoint (a `nExpert: 0` run of `moekit train`). Every expert is an
 * exact copy of the dense layer's SwiGLU FFN, every other weight (embeddings, attention, norms,
 * output) is carried over unchanged, and only the new routing parameters are initialised fresh:
 * the router at a small std (N(0, routerStd²), default the model's initStd), so the first routing
 * is close to uniform and the copies diverge as training assigns them different tokens. The run
 * reuses the dense checkpoint's tokenizer (the embeddings belong to it).
 *
 * With identical experts the MoE output is (Σ_selected gate weights) × the dense FFN output: with
 * `router.normalize: true` that sum is 1 and the upcycled model computes exactly the dense model at
 * step 0; without renormalisation (softmax → top-k, the exportable olmoe/qwen2moe routers) it is
 * Σ top-k p ≈ K/E for a near-uniform router, so the first steps have to recover the scale.
 * A shared expert (sharedDim > 0) is new capacity and keeps its fresh init (residual-scaled, small).
 *
 * Fine-grained experts (model.fineGrained m) upcycle when the resolved expert width ffnDim/m equals
 * the dense ffnDim, i.e. each of the E·m small experts is a whole copy.
 */
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { CheckpointError, UsageError } from '../errors.js';
import { Rng } from '../rng.js';
import { loadCheckpoint } from './checkpoint.js';
import { MoeLM, type ModelConfig } from './model.js';

export interface InitConfig {
  /** a trained dense checkpoint folder (runs/<dense>/best or runs/<dense>/last) to upcycle from */
  upcycleFrom?: string;
  /** std of the fresh router weights when upcycling (default model.initStd, 0.02) */
  routerStd?: number;
}

export interface DenseCheckpoint {
  dir: string;
  model: MoeLM;
  tokenizerJson: Record<string, unknown>;
}

/** Open a training checkpoint folder of a dense model (weights + tokenizer). */
export function readDenseCheckpoint(dir: string): DenseCheckpoint {
  if (!existsSync(join(dir, 'model.safetensors'))) {
    const hint = existsSync(join(dir, 'last', 'model.safetensors')) ? `; this looks like a run folder: pass ${join(dir, 'best')} or ${join(dir, 'last')}` : '';
    throw new CheckpointError(dir, `init.upcycleFrom: no model.safetensors here, so it is not a moekit training checkpoint${hint}`);
  }
  let cfg: { model?: ModelConfig };
  try {
    cfg = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
  } catch (e) {
    throw new CheckpointError(join(dir, 'config.json'), `init.upcycleFrom: cannot read the training config (${(e as Error).message})`);
  }
  if (!cfg.model || typeof cfg.model.vocab !== 'number') throw new CheckpointError(join(dir, 'config.json'), 'init.upcycleFrom: config.json has no model section with a vocab; not a moekit training checkpoint');
  if (cfg.model.nExpert !== 0) {
    throw new UsageError(`init.upcycleFrom: ${dir} is a MoE model (nExpert ${cfg.model.nExpert}); upcycling starts from a dense model (a run with model.nExpert 0)`);
  }
  const model = new MoeLM(cfg.model);
  loadCheckpoint(dir, model);
  const tokenizerJson = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as Record<string, unknown>;
  return { dir, model, tokenizerJson };
}

/** Why `moe` cannot be upcycled from `dense` (empty = compatible). Both are resolved configs. */
export function upcycleMismatches(dense: ModelConfig, moe: ModelConfig): string[] {
  const why: string[] = [];
  if (dense.nExpert !== 0) why.push(`the source has nExpert ${dense.nExpert}; it must be dense (0)`);
  if (moe.nExpert === 0) why.push('the target has nExpert 0; upcycling makes a MoE (nExpert > 0)');
  for (const k of ['vocab', 'dim', 'nLayer', 'nHead'] as const) if (dense[k] !== moe[k]) why.push(`model.${k} ${moe[k]} ≠ the dense model's ${dense[k]}`);
  for (const k of ['qkNorm', 'qkvBias', 'tied'] as const) if (!!dense[k] !== !!moe[k]) why.push(`model.${k} ${!!moe[k]} ≠ the dense model's ${!!dense[k]}`);
  if ((dense.ropeTheta ?? 10000) !== (moe.ropeTheta ?? 10000)) why.push(`model.ropeTheta ${moe.ropeTheta ?? 10000} ≠ the dense model's ${dense.ropeTheta ?? 10000}`);
  if ((dense.rmsEps ?? 1e-5) !== (moe.rmsEps ?? 1e-5)) why.push(`model.rmsEps ${moe.rmsEps ?? 1e-5} ≠ the dense model's ${dense.rmsEps ?? 1e-5}`);
  if (moe.nExpert > 0 && moe.ffnDim !== dense.ffnDim) {
    why.push(`each expert (width ${moe.ffnDim}) must be a copy of the dense FFN (width ${dense.ffnDim}): set model.ffnDim ${dense.ffnDim} (× fineGrained when splitting)`);
  }
  return why;
}

/**
 * Initialise `moe` from the trained dense model: experts = copies of the dense FFN, all other
 * shared-name weights copied, router N(0, routerStd²) seeded, shared expert and its gate left as
 * `moe` has them (call moe.init(seed) first). Returns what was copied and what is fresh.
 */
export function upcycle(dense: MoeLM, moe: MoeLM, o: { routerStd?: number; seed?: number } = {}): { copied: string[]; fresh: string[] } {
  const why = upcycleMismatches(dense.config, moe.config);
  if (why.length) throw new UsageError(`cannot upcycle this model from the dense checkpoint: ${why.join('; ')}`);
  const std = o.routerStd ?? moe.config.initStd ?? 0.02;
  if (!(std >= 0) || !Number.isFinite(std)) throw new UsageError(`init.routerStd must be a finite number ≥ 0, got ${o.routerStd}`);
  const E = moe.config.nExpert;
  const copied: string[] = [];
  const fresh: string[] = [];
  const src = new Map(dense.layout.map((p) => [p.name, p]));
  for (const p of moe.layout) {
    const dst = moe.params.subarray(p.offset, p.offset + p.size);
    const m = /^blk\.(\d+)\.ffn_(gate|up|down)_exps\.weight$/.exec(p.name);
    if (m) {
      const d = dense.tensor(`blk.${m[1]}.ffn_${m[2]}.weight`);
      for (let e = 0; e < E; e++) dst.set(d, e * d.length);
      copied.push(p.name);
      continue;
    }
    if (/\.ffn_gate_inp\.weight$/.test(p.name)) {
      const rng = new Rng(hashSeed(p.name, o.seed ?? 0));
      for (let i = 0; i < dst.length; i++) dst[i] = std * rng.normal();
      fresh.push(p.name);
      continue;
    }
    const s = src.get(p.name);
    if (s && s.size === p.size) {
      dst.set(dense.params.subarray(s.offset, s.offset + s.size));
      copied.push(p.name);
    } else fresh.push(p.name);
  }
  for (const b of moe.routerBias) b.fill(0);
  return { copied, fresh };
}

function hashSeed(s: string, seed: number): number {
  let h = (0x9e3779b9 ^ seed) >>> 0;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

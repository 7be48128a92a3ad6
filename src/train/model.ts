/**
 * The trainable decoder-only MoE LM, in the layout moekit runs (src/models/standard.ts): pre-norm
 * blocks of RMSNorm → attention (optional q/k/v biases, optional RMSNorm over the whole q and k
 * projections, NeoX RoPE) → RMSNorm → MoE FFN (or a dense SwiGLU FFN when E = 0), then RMSNorm and
 * the output projection (tied to the embeddings or not).
 *
 * All parameters live in one flat Float32Array (f32 master weights) with named views, in GGUF tensor
 * names and row-major shapes, so the optimizer, clipping and checkpoints see a single array.
 */
import { UsageError } from '../errors.js';
import { Rng } from '../rng.js';
import {
  attention_backward, attention_forward, crossentropy_backward, crossentropy_forward, embedding_backward, embedding_forward,
  matmul_backward, matmul_forward, rmsnorm_backward, rmsnorm_forward, rope_backward, rope_forward, rope_table, type RopeTable,
} from './layers.js';
import { ffn_backward, ffn_forward, moe_backward, moe_forward, type FfnCache, type FfnParams, type MoeCache, type MoeParams, type MoeShape } from './moe.js';
import type { RouterConfig } from './router.js';

export interface ModelConfig {
  /** V */
  vocab: number;
  /** D */
  dim: number;
  nLayer: number;
  /** H (no GQA: the KV heads equal the query heads) */
  nHead: number;
  /** training context S */
  seqLen: number;
  /** routed experts E; 0 = a dense SwiGLU FFN of width F (the dense baseline, and the source of upcycling) */
  nExpert: number;
  /** expert (or dense) FFN width F */
  ffnDim: number;
  /**
   * Fine-grained expert segmentation m (DeepSeekMoE, Dai et al. 2024, arXiv 2401.06066 §3.1): each of
   * the E experts of width F is split into m experts of width F/m and m·K of them are active, so the
   * parameters and the FLOPs per token stay those of the E-expert top-K model while the number of
   * possible expert combinations grows. The model built is E·m experts of width F/m, top-(K·m)
   * (null experts, if any, are split too: N·m). Default 1 (off). See `resolveModelConfig`.
   */
  fineGrained?: number;
  /** shared expert width (0 = none), DeepSeekMoE / Qwen2-MoE */
  sharedDim?: number;
  /** sigmoid gate on the shared expert (Qwen2-MoE `shared_expert_gate`) */
  sharedGate?: boolean;
  /** RMSNorm over the whole q and k projections before RoPE (OLMoE) */
  qkNorm?: boolean;
  /** q/k/v biases (Qwen2) */
  qkvBias?: boolean;
  /** output projection = token embeddings */
  tied?: boolean;
  ropeTheta?: number;
  rmsEps?: number;
  /** std of the weight init (GPT-2: 0.02; residual projections get std/sqrt(2·nLayer)) */
  initStd?: number;
  /** required when nExpert > 0; a dense model (nExpert 0) may leave it out */
  router: RouterConfig;
}

/** The router a dense model carries when its config has none (unused: a dense FFN has no router). */
const DENSE_ROUTER: RouterConfig = { scoring: 'softmax', K: 1, normalize: false };

/**
 * The config of the model actually built: fine-grained segmentation applied (E·m experts of width
 * F/m, top-(K·m), N·m null experts; DeepSeekMoE §3.1) and a placeholder router for dense models.
 * Validates first, with UsageErrors that name the field. Idempotent.
 */
export function resolveModelConfig(c: ModelConfig): ModelConfig {
  const m = c.fineGrained ?? 1;
  if (!Number.isInteger(m) || m < 1) throw new UsageError(`model.fineGrained must be an integer ≥ 1 (the number of pieces each expert is split into), got ${JSON.stringify(c.fineGrained)}`);
  if (!Number.isInteger(c.nExpert) || c.nExpert < 0) throw new UsageError(`model.nExpert must be an integer ≥ 0, got ${c.nExpert}`);
  if (c.nExpert > 0 && (typeof c.router !== 'object' || c.router === null)) throw new UsageError('model.router is missing: a MoE model (nExpert > 0) needs a router section (see configs/tiny.json)');
  const router = c.router ?? DENSE_ROUTER;
  if (c.nExpert === 0) {
    if (m !== 1) throw new UsageError(`model.fineGrained ${m} needs experts to split, but model.nExpert is 0 (a dense model); remove fineGrained or set nExpert`);
    const { fineGrained: _, ...rest } = c;
    return { ...rest, router };
  }
  if (m === 1) {
    const { fineGrained: _, ...rest } = c;
    return { ...rest, router };
  }
  if (!Number.isInteger(c.ffnDim) || c.ffnDim % m !== 0) {
    throw new UsageError(`model.fineGrained ${m} must divide model.ffnDim ${c.ffnDim} (each expert of width ${c.ffnDim} is split into ${m} experts of width ffnDim/${m}); use an ffnDim that is a multiple of ${m}`);
  }
  if (!Number.isInteger(router.K) || router.K < 1 || router.K > c.nExpert + (router.nullExperts ?? 0)) {
    throw new UsageError(`router.K must be in 1..${c.nExpert} (before the fine-grained ×${m}), got ${router.K}`);
  }
  const { fineGrained: _, ...rest } = c;
  return {
    ...rest,
    nExpert: c.nExpert * m,
    ffnDim: c.ffnDim / m,
    router: { ...router, K: router.K * m, ...(router.nullExperts ? { nullExperts: router.nullExperts * m } : {}) },
  };
}

export interface ParamInfo {
  name: string;
  shape: number[];
  offset: number;
  size: number;
  /** weight decay applies (matrices), not to norms and biases */
  decay: boolean;
  init: 'normal' | 'residual' | 'ones' | 'zeros';
}

export function checkModelConfig(c: ModelConfig): void {
  c = resolveModelConfig(c);
  const ints: Array<[string, number]> = [['vocab', c.vocab], ['dim', c.dim], ['nLayer', c.nLayer], ['nHead', c.nHead], ['seqLen', c.seqLen], ['ffnDim', c.ffnDim]];
  for (const [k, v] of ints) if (!Number.isInteger(v) || v <= 0) throw new UsageError(`model.${k} must be a positive integer, got ${v}`);
  if (!Number.isInteger(c.nExpert) || c.nExpert < 0) throw new UsageError(`model.nExpert must be an integer ≥ 0, got ${c.nExpert}`);
  if (c.dim % c.nHead !== 0 || (c.dim / c.nHead) % 2 !== 0) throw new UsageError(`model.dim ${c.dim} must be nHead × an even head size`);
  const r = c.router;
  if (c.nExpert > 0) {
    if (!Number.isInteger(r.K) || r.K < 1 || r.K > c.nExpert + (r.nullExperts ?? 0)) throw new UsageError(`router.K must be in 1..${c.nExpert}, got ${r.K}`);
    if (r.topP !== undefined && (r.topP <= 0 || r.topP > 1 || r.scoring !== 'softmax')) throw new UsageError('router.topP must be in (0, 1] with softmax scoring');
  }
}

/** Every parameter tensor, in GGUF names and row-major shapes. */
export function paramLayout(c: ModelConfig): ParamInfo[] {
  c = resolveModelConfig(c);
  const { vocab: V, dim: D, nLayer: L, nExpert: E, ffnDim: F } = c;
  const R = E + (c.router.nullExperts ?? 0);
  const Fs = c.sharedDim ?? 0;
  const out: ParamInfo[] = [];
  let off = 0;
  const add = (name: string, shape: number[], init: ParamInfo['init']) => {
    const size = shape.reduce((a, b) => a * b, 1);
    out.push({ name, shape, offset: off, size, decay: shape.length >= 2, init });
    off += size;
  };
  add('token_embd.weight', [V, D], 'normal');
  for (let l = 0; l < L; l++) {
    const p = `blk.${l}.`;
    add(p + 'attn_norm.weight', [D], 'ones');
    for (const n of ['q', 'k', 'v']) {
      add(p + `attn_${n}.weight`, [D, D], 'normal');
      if (c.qkvBias) add(p + `attn_${n}.bias`, [D], 'zeros');
    }
    if (c.qkNorm) {
      add(p + 'attn_q_norm.weight', [D], 'ones');
      add(p + 'attn_k_norm.weight', [D], 'ones');
    }
    add(p + 'attn_output.weight', [D, D], 'residual');
    add(p + 'ffn_norm.weight', [D], 'ones');
    if (E === 0) {
      add(p + 'ffn_gate.weight', [F, D], 'normal');
      add(p + 'ffn_up.weight', [F, D], 'normal');
      add(p + 'ffn_down.weight', [D, F], 'residual');
      continue;
    }
    add(p + 'ffn_gate_inp.weight', [R, D], 'normal');
    add(p + 'ffn_gate_exps.weight', [E, F, D], 'normal');
    add(p + 'ffn_up_exps.weight', [E, F, D], 'normal');
    add(p + 'ffn_down_exps.weight', [E, D, F], 'residual');
    if (Fs > 0) {
      add(p + 'ffn_gate_shexp.weight', [Fs, D], 'normal');
      add(p + 'ffn_up_shexp.weight', [Fs, D], 'normal');
      add(p + 'ffn_down_shexp.weight', [D, Fs], 'residual');
      if (c.sharedGate) add(p + 'ffn_gate_inp_shexp.weight', [D], 'zeros');
    }
  }
  add('output_norm.weight', [D], 'ones');
  if (!c.tied) add('output.weight', [V, D], 'normal');
  return out;
}

interface LayerParams {
  attnNorm: Float32Array;
  q: Float32Array; k: Float32Array; v: Float32Array; o: Float32Array;
  qb?: Float32Array; kb?: Float32Array; vb?: Float32Array;
  qNorm?: Float32Array; kNorm?: Float32Array;
  ffnNorm: Float32Array;
  moe?: MoeParams;
  dense?: FfnParams;
}

interface Views {
  tokEmbd: Float32Array;
  layers: LayerParams[];
  outputNorm: Float32Array;
  output: Float32Array;
}

function views(c: ModelConfig, layout: ParamInfo[], flat: Float32Array): Views {
  const m = new Map(layout.map((p) => [p.name, flat.subarray(p.offset, p.offset + p.size)]));
  const get = (n: string) => m.get(n)!;
  const opt = (n: string) => m.get(n);
  const layers: LayerParams[] = [];
  for (let l = 0; l < c.nLayer; l++) {
    const p = `blk.${l}.`;
    const lp: LayerParams = {
      attnNorm: get(p + 'attn_norm.weight'),
      q: get(p + 'attn_q.weight'), k: get(p + 'attn_k.weight'), v: get(p + 'attn_v.weight'), o: get(p + 'attn_output.weight'),
      qb: opt(p + 'attn_q.bias'), kb: opt(p + 'attn_k.bias'), vb: opt(p + 'attn_v.bias'),
      qNorm: opt(p + 'attn_q_norm.weight'), kNorm: opt(p + 'attn_k_norm.weight'),
      ffnNorm: get(p + 'ffn_norm.weight'),
    };
    if (c.nExpert === 0) lp.dense = { gate: get(p + 'ffn_gate.weight'), up: get(p + 'ffn_up.weight'), down: get(p + 'ffn_down.weight') };
    else {
      const sh = opt(p + 'ffn_gate_shexp.weight');
      lp.moe = {
        router: get(p + 'ffn_gate_inp.weight'),
        gateExps: get(p + 'ffn_gate_exps.weight'), upExps: get(p + 'ffn_up_exps.weight'), downExps: get(p + 'ffn_down_exps.weight'),
        shared: sh ? { gate: sh, up: get(p + 'ffn_up_shexp.weight'), down: get(p + 'ffn_down_shexp.weight') } : undefined,
        sharedGate: opt(p + 'ffn_gate_inp_shexp.weight'),
      };
    }
    layers.push(lp);
  }
  return { tokEmbd: get('token_embd.weight'), layers, outputNorm: get('output_norm.weight'), output: opt('output.weight') ?? get('token_embd.weight') };
}

/** Per-step statistics of one forward pass. */
export interface StepStats {
  /** total loss = lm + Σ layers (lb + z) */
  loss: number;
  lm: number;
  lb: number;
  z: number;
  /** [L][R] assignments per router output (before dropping) */
  counts: Float64Array[];
  /** slots dropped by capacity, all layers */
  dropped: number;
  /** mean routed (real, kept) experts per token, over layers */
  activeExperts: number;
}

interface LayerCache {
  x0: Float32Array; h1: Float32Array; rstd1: Float32Array;
  qPre: Float32Array; kPre: Float32Array; qRstd?: Float32Array; kRstd?: Float32Array;
  qN: Float32Array; kN: Float32Array;
  q: Float32Array; k: Float32Array; v: Float32Array; att: Float32Array; ao: Float32Array;
  x1: Float32Array; h2: Float32Array; rstd2: Float32Array;
  moe?: MoeCache; dense?: FfnCache;
}

export interface ForwardCache {
  B: number; S: number; T: number;
  inputs: Int32Array; targets: Int32Array;
  layers: LayerCache[];
  xL: Float32Array; hf: Float32Array; rstdf: Float32Array;
  probs: Float32Array;
}

export class MoeLM {
  /** the resolved config (fine-grained segmentation applied; see resolveModelConfig) */
  readonly config: ModelConfig;
  readonly layout: ParamInfo[];
  readonly params: Float32Array;
  readonly grads: Float32Array;
  /** per layer [R] selection-only router bias (a buffer; DeepSeek-V3 `e_score_correction_bias`) */
  readonly routerBias: Float32Array[];
  private readonly p: Views;
  private readonly g: Views;
  private rope: RopeTable;
  readonly shape: MoeShape;

  constructor(config: ModelConfig) {
    config = resolveModelConfig(config);
    checkModelConfig(config);
    this.config = config;
    this.layout = paramLayout(config);
    const n = this.layout.reduce((a, p) => a + p.size, 0);
    this.params = new Float32Array(n);
    this.grads = new Float32Array(n);
    this.p = views(config, this.layout, this.params);
    this.g = views(config, this.layout, this.grads);
    const R = config.nExpert + (config.router.nullExperts ?? 0);
    this.routerBias = Array.from({ length: config.nLayer }, () => new Float32Array(R));
    this.rope = rope_table(config.seqLen, config.dim / config.nHead, config.ropeTheta ?? 10000);
    this.shape = { D: config.dim, E: config.nExpert, R, F: config.ffnDim, Fs: config.sharedDim ?? 0 };
  }

  get nParams(): number {
    return this.params.length;
  }

  /** Active parameters per token (embeddings excluded; routed experts counted K times). */
  get activeParams(): number {
    const { dim: D, nLayer: L, ffnDim: F, nExpert: E } = this.config;
    const ffn = E === 0 ? 3 * D * F : this.config.router.K * 3 * D * F + 3 * D * (this.config.sharedDim ?? 0) + D * this.shape.R;
    return L * (4 * D * D + ffn) + this.config.vocab * D;
  }

  /** Seeded init: N(0, std²) matrices, std/sqrt(2L) for residual projections (GPT-2), norms 1, biases 0. */
  init(seed: number): void {
    const std = this.config.initStd ?? 0.02;
    const rstd = std / Math.sqrt(2 * this.config.nLayer);
    for (const p of this.layout) {
      const rng = new Rng(hashName(p.name, seed));
      const v = this.params.subarray(p.offset, p.offset + p.size);
      if (p.init === 'ones') v.fill(1);
      else if (p.init === 'zeros') v.fill(0);
      else {
        const s = p.init === 'residual' ? rstd : std;
        for (let i = 0; i < v.length; i++) v[i] = s * rng.normal();
      }
    }
    for (const b of this.routerBias) b.fill(0);
  }

  /** View of one named parameter (or its gradient). */
  tensor(name: string, grad = false): Float32Array {
    const p = this.layout.find((x) => x.name === name);
    if (!p) throw new UsageError(`no parameter ${name}`);
    return (grad ? this.grads : this.params).subarray(p.offset, p.offset + p.size);
  }

  /** Loss of next-token prediction on B sequences of S tokens (inputs/targets [B·S]). */
  forward(inputs: Int32Array, targets: Int32Array, B: number): { stats: StepStats; cache: ForwardCache } {
    const c = this.config;
    const { dim: D, nHead: H, vocab: V } = c;
    const Dh = D / H;
    const S = inputs.length / B;
    if (S > c.seqLen || !Number.isInteger(S)) throw new UsageError(`batch of ${inputs.length} tokens is not ${B} sequences of ≤ ${c.seqLen}`);
    if (S !== this.rope.S) this.rope = rope_table(S, Dh, c.ropeTheta ?? 10000);
    const T = B * S;
    const eps = c.rmsEps ?? 1e-5;
    const P = this.p;
    let x = new Float32Array(T * D);
    embedding_forward(x, inputs, P.tokEmbd, T, D);
    const layers: LayerCache[] = [];
    const stats: StepStats = { loss: 0, lm: 0, lb: 0, z: 0, counts: [], dropped: 0, activeExperts: 0 };
    for (let l = 0; l < c.nLayer; l++) {
      const W = P.layers[l];
      const x0 = x;
      const h1 = new Float32Array(T * D);
      const rstd1 = new Float32Array(T);
      rmsnorm_forward(h1, rstd1, x0, W.attnNorm, T, D, eps);
      const qPre = new Float32Array(T * D);
      const kPre = new Float32Array(T * D);
      const v = new Float32Array(T * D);
      matmul_forward(qPre, h1, W.q, T, D, D, W.qb);
      matmul_forward(kPre, h1, W.k, T, D, D, W.kb);
      matmul_forward(v, h1, W.v, T, D, D, W.vb);
      let qN = qPre;
      let kN = kPre;
      let qRstd: Float32Array | undefined;
      let kRstd: Float32Array | undefined;
      if (W.qNorm && W.kNorm) {
        qN = new Float32Array(T * D); kN = new Float32Array(T * D);
        qRstd = new Float32Array(T); kRstd = new Float32Array(T);
        rmsnorm_forward(qN, qRstd, qPre, W.qNorm, T, D, eps);
        rmsnorm_forward(kN, kRstd, kPre, W.kNorm, T, D, eps);
      }
      const q = qN.slice();
      const k = kN.slice();
      rope_forward(q, T, H, Dh, this.rope);
      rope_forward(k, T, H, Dh, this.rope);
      const att = new Float32Array(B * H * S * S);
      const ao = new Float32Array(T * D);
      attention_forward(ao, att, q, k, v, B, S, H, Dh);
      const x1 = new Float32Array(T * D);
      matmul_forward(x1, ao, W.o, T, D, D);
      for (let i = 0; i < x1.length; i++) x1[i] += x0[i];
      const h2 = new Float32Array(T * D);
      const rstd2 = new Float32Array(T);
      rmsnorm_forward(h2, rstd2, x1, W.ffnNorm, T, D, eps);
      const y = new Float32Array(T * D);
      const lc: LayerCache = { x0, h1, rstd1, qPre, kPre, qRstd, kRstd, qN, kN, q, k, v, att, ao, x1, h2, rstd2 };
      if (W.moe) {
        const mc = moe_forward(y, h2, T, W.moe, this.shape, c.router, this.routerBias[l]);
        lc.moe = mc;
        stats.lb += mc.route.lb;
        stats.z += mc.route.z;
        stats.counts.push(mc.route.counts);
        stats.dropped += mc.route.dropped;
        let kept = 0;
        for (let i = 0; i < mc.route.keep.length; i++) kept += mc.route.keep[i];
        stats.activeExperts += kept / T / c.nLayer;
      } else if (W.dense) {
        lc.dense = ffn_forward(y, h2, W.dense, T, D, c.ffnDim);
      }
      for (let i = 0; i < y.length; i++) y[i] += x1[i];
      x = y;
      layers.push(lc);
    }
    const hf = new Float32Array(T * D);
    const rstdf = new Float32Array(T);
    rmsnorm_forward(hf, rstdf, x, P.outputNorm, T, D, eps);
    const logits = new Float32Array(T * V);
    matmul_forward(logits, hf, P.output, T, D, V);
    const probs = logits; // softmax written in place of the logits (not needed afterwards)
    stats.lm = crossentropy_forward(probs, logits, targets, T, V);
    stats.loss = stats.lm + stats.lb + stats.z;
    return { stats, cache: { B, S, T, inputs, targets, layers, xL: x, hf, rstdf, probs } };
  }

  /** Accumulate ∂loss/∂params into `grads` (call zeroGrads first). `scale` multiplies the loss (grad accumulation). */
  backward(cache: ForwardCache, scale = 1): void {
    const c = this.config;
    const { dim: D, nHead: H, vocab: V } = c;
    const Dh = D / H;
    const { B, S, T } = cache;
    const P = this.p;
    const G = this.g;
    const dlogits = new Float32Array(T * V);
    crossentropy_backward(dlogits, cache.probs, cache.targets, T, V, scale);
    const dhf = new Float32Array(T * D);
    matmul_backward(dhf, G.output, null, dlogits, cache.hf, P.output, T, D, V);
    let dx = new Float32Array(T * D);
    rmsnorm_backward(dx, G.outputNorm, dhf, cache.xL, P.outputNorm, cache.rstdf, T, D);
    for (let l = c.nLayer - 1; l >= 0; l--) {
      const W = P.layers[l];
      const GW = G.layers[l];
      const lc = cache.layers[l];
      // FFN branch: x2 = x1 + ffn(norm(x1)); dx is ∂/∂x2
      const dh2 = new Float32Array(T * D);
      if (lc.moe && W.moe && GW.moe) moe_backward(dh2, GW.moe, dx, W.moe, lc.moe, this.shape, c.router, scale);
      else if (lc.dense && W.dense && GW.dense) ffn_backward(dh2, GW.dense, dx, W.dense, lc.dense, D, c.ffnDim);
      const dx1 = dx; // residual
      rmsnorm_backward(dx1, GW.ffnNorm, dh2, lc.x1, W.ffnNorm, lc.rstd2, T, D);
      // attention branch: x1 = x0 + o(attn(norm(x0)))
      const dao = new Float32Array(T * D);
      matmul_backward(dao, GW.o, null, dx1, lc.ao, W.o, T, D, D);
      const dq = new Float32Array(T * D);
      const dk = new Float32Array(T * D);
      const dv = new Float32Array(T * D);
      attention_backward(dq, dk, dv, dao, lc.q, lc.k, lc.v, lc.att, B, S, H, Dh);
      rope_backward(dq, T, H, Dh, this.rope);
      rope_backward(dk, T, H, Dh, this.rope);
      let dqPre = dq;
      let dkPre = dk;
      if (W.qNorm && W.kNorm && GW.qNorm && GW.kNorm && lc.qRstd && lc.kRstd) {
        dqPre = new Float32Array(T * D);
        dkPre = new Float32Array(T * D);
        rmsnorm_backward(dqPre, GW.qNorm, dq, lc.qPre, W.qNorm, lc.qRstd, T, D);
        rmsnorm_backward(dkPre, GW.kNorm, dk, lc.kPre, W.kNorm, lc.kRstd, T, D);
      }
      const dh1 = new Float32Array(T * D);
      matmul_backward(dh1, GW.q, GW.qb ?? null, dqPre, lc.h1, W.q, T, D, D);
      matmul_backward(dh1, GW.k, GW.kb ?? null, dkPre, lc.h1, W.k, T, D, D);
      matmul_backward(dh1, GW.v, GW.vb ?? null, dv, lc.h1, W.v, T, D, D);
      rmsnorm_backward(dx1, GW.attnNorm, dh1, lc.x0, W.attnNorm, lc.rstd1, T, D);
      dx = dx1;
    }
    embedding_backward(G.tokEmbd, dx, cache.inputs, T, D);
  }

  zeroGrads(): void {
    this.grads.fill(0);
  }
}

/** FNV-1a of a parameter name, mixed with the seed: each tensor's init is independent of the others. */
function hashName(s: string, seed: number): number {
  let h = (0x811c9dc5 ^ seed) >>> 0;
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}

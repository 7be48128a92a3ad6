/**
 * Causal self-attention with RoPE, GQA, optional q/k/v biases and QK-norm, over a batch of rows that
 * may belong to several sequences (each with its own KV cache).
 */
import type { Backend } from '../backend/backend.js';
import { f32ArrayToF16At } from '../formats/half.js';
import type { Tensor } from '../tensor.js';
import type { KVCache } from './kv-cache.js';
import { addBias, rmsNorm, ropeApply, ropeTable, type RopeTable, type RopeType } from './ops.js';
import { Workspace } from './workspace.js';

export interface AttentionWeights {
  /** [H·Dh, D] */
  q: Tensor;
  /** [Hkv·Dh, D] */
  k: Tensor;
  /** [Hkv·Dh, D] */
  v: Tensor;
  /** [D, H·Dh] */
  o: Tensor;
  qBias?: Float32Array;
  kBias?: Float32Array;
  vBias?: Float32Array;
  oBias?: Float32Array;
  /** QK-norm weight: [Dh] when per head (Qwen3), [H·Dh] when over the whole projection (OLMoE) */
  qNorm?: Float32Array;
  kNorm?: Float32Array;
}

export interface AttentionOptions {
  nHead: number;
  nHeadKv: number;
  headDim: number;
  /** multiplier on q·k; 1/sqrt(Dh) unless the architecture says otherwise */
  scale: number;
  rope: { type: RopeType; base: number; dims: number; freqScale?: number } | null;
  /** eps of the QK RMSNorm */
  normEps: number;
}

/** Rows [start, start+n) of the batch belong to the sequence whose cache is `cache`. */
export interface Segment {
  cache: KVCache;
  start: number;
  n: number;
}

/** Position of each batch row (its segment's cache position plus its offset in the segment): [T]. */
export function rowPositions(segments: Segment[], T: number, out: Int32Array = new Int32Array(T)): Int32Array {
  for (const s of segments) for (let i = 0; i < s.n; i++) out[s.start + i] = s.cache.pos + i;
  return out;
}

/** The RoPE table of the batch rows (null when the model has no RoPE): the same for every layer of a pass. */
export function attentionRope(o: AttentionOptions, segments: Segment[], T: number, ws?: Workspace, into?: RopeTable): RopeTable | null {
  if (!o.rope) return null;
  const positions = rowPositions(segments, T, ws?.i32('attn.pos', T));
  return ropeTable(positions, T, o.rope.dims, o.rope.base, o.rope.freqScale, into);
}

/**
 * x: [T, D] (already normalised) → [T, D]. Writes this batch's K/V into each segment's cache at its current pos.
 * With a workspace `ws` the intermediates and the result are its buffers (valid until the next call with
 * the same workspace); `rot` is the batch's `attentionRope` table when the caller computed it once for all layers.
 */
export function attention(
  be: Backend,
  layer: number,
  x: Float32Array,
  T: number,
  w: AttentionWeights,
  o: AttentionOptions,
  segments: Segment[],
  ws: Workspace = new Workspace(),
  rot: RopeTable | null = attentionRope(o, segments, T, ws),
): Float32Array {
  const { nHead: H, nHeadKv: Hkv, headDim: Dh } = o;
  const qDim = H * Dh;
  const kvDim = Hkv * Dh;
  const q = ws.f32('attn.q', T * qDim);
  const k = ws.f32('attn.k', T * kvDim);
  const v = ws.f32('attn.v', T * kvDim);
  be.matmuls({ x, outs: [{ y: q, w: w.q }, { y: k, w: w.k }, { y: v, w: w.v }], T });
  if (w.qBias) addBias(q, w.qBias, T);
  if (w.kBias) addBias(k, w.kBias, T);
  if (w.vBias) addBias(v, w.vBias, T);
  if (be.qkPrep && segments.length === 1 && segments[0]!.start === 0 && segments[0]!.n === T) {
    // one sequence (decode steps, prompts): the same steps as below in one native call
    const s = segments[0]!;
    be.qkPrep({
      q, k, v, T, nHead: H, nHeadKv: Hkv, headDim: Dh, qNorm: w.qNorm, kNorm: w.kNorm, eps: o.normEps,
      rope: o.rope && rot ? { cos: rot.cos, sin: rot.sin, half: rot.half, neox: o.rope.type === 'neox' } : null,
      kCache: s.cache.k[layer], vCache: s.cache.v[layer], cacheRow: s.cache.pos,
    });
  } else {
    if (w.qNorm) rmsNorm(q, q, w.qNorm, (T * qDim) / w.qNorm.length, w.qNorm.length, o.normEps);
    if (w.kNorm) rmsNorm(k, k, w.kNorm, (T * kvDim) / w.kNorm.length, w.kNorm.length, o.normEps);
    if (o.rope && rot) {
      ropeApply(q, rot, H, Dh, o.rope.type);
      ropeApply(k, rot, Hkv, Dh, o.rope.type);
    }
    for (const s of segments) {
      f32ArrayToF16At(k, s.start * kvDim, s.cache.k[layer], s.cache.pos * kvDim, s.n * kvDim);
      f32ArrayToF16At(v, s.start * kvDim, s.cache.v[layer], s.cache.pos * kvDim, s.n * kvDim);
    }
  }

  const out = ws.f32('attn.out', T * qDim);
  for (const s of segments) {
    const p0 = s.cache.pos;
    const whole = s.start === 0 && s.n === T;
    be.attention({
      out: whole ? out : out.subarray(s.start * qDim, (s.start + s.n) * qDim),
      q: whole ? q : q.subarray(s.start * qDim, (s.start + s.n) * qDim),
      kCache: s.cache.k[layer],
      vCache: s.cache.v[layer],
      T: s.n,
      pos0: p0,
      nHead: H,
      nHeadKv: Hkv,
      headDim: Dh,
      scale: o.scale,
    });
  }
  const D = w.o.shape[0];
  const y = ws.f32('attn.y', T * D);
  be.matmul({ y, x: out, w: w.o, T });
  if (w.oBias) addBias(y, w.oBias, T);
  return y;
}

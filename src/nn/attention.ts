/**
 * Causal self-attention with RoPE, GQA, optional q/k/v biases and QK-norm, over a batch of rows that
 * may belong to several sequences (each with its own KV cache).
 */
import type { Backend } from '../backend/backend.js';
import { f32ArrayToF16 } from '../formats/half.js';
import type { Tensor } from '../tensor.js';
import type { KVCache } from './kv-cache.js';
import { addBias, rmsNorm, rope, type RopeType } from './ops.js';

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

/** x: [T, D] (already normalised) → [T, D]. Writes this batch's K/V into each segment's cache at its current pos. */
export function attention(
  be: Backend,
  layer: number,
  x: Float32Array,
  T: number,
  w: AttentionWeights,
  o: AttentionOptions,
  segments: Segment[],
): Float32Array {
  const { nHead: H, nHeadKv: Hkv, headDim: Dh } = o;
  const qDim = H * Dh;
  const kvDim = Hkv * Dh;
  const q = new Float32Array(T * qDim);
  const k = new Float32Array(T * kvDim);
  const v = new Float32Array(T * kvDim);
  be.matmuls({ x, outs: [{ y: q, w: w.q }, { y: k, w: w.k }, { y: v, w: w.v }], T });
  if (w.qBias) addBias(q, w.qBias, T);
  if (w.kBias) addBias(k, w.kBias, T);
  if (w.vBias) addBias(v, w.vBias, T);
  if (w.qNorm) rmsNorm(q, q, w.qNorm, (T * qDim) / w.qNorm.length, w.qNorm.length, o.normEps);
  if (w.kNorm) rmsNorm(k, k, w.kNorm, (T * kvDim) / w.kNorm.length, w.kNorm.length, o.normEps);

  const positions = new Int32Array(T);
  for (const s of segments) for (let i = 0; i < s.n; i++) positions[s.start + i] = s.cache.pos + i;
  if (o.rope) {
    rope(q, positions, { T, nHeads: H, headDim: Dh, ...o.rope });
    rope(k, positions, { T, nHeads: Hkv, headDim: Dh, ...o.rope });
  }

  const out = new Float32Array(T * qDim);
  for (const s of segments) {
    const p0 = s.cache.pos;
    f32ArrayToF16(k.subarray(s.start * kvDim, (s.start + s.n) * kvDim), s.cache.k[layer].subarray(p0 * kvDim, (p0 + s.n) * kvDim));
    f32ArrayToF16(v.subarray(s.start * kvDim, (s.start + s.n) * kvDim), s.cache.v[layer].subarray(p0 * kvDim, (p0 + s.n) * kvDim));
    be.attention({
      out: out.subarray(s.start * qDim, (s.start + s.n) * qDim),
      q: q.subarray(s.start * qDim, (s.start + s.n) * qDim),
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
  const y = new Float32Array(T * D);
  be.matmul({ y, x: out, w: w.o, T });
  if (w.oBias) addBias(y, w.oBias, T);
  return y;
}

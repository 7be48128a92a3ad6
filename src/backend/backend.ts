/**
 * The one small interface between model code and compute kernels.
 *
 * Two implementations: `ReferenceBackend` (plain TypeScript, readable, slow; the algorithmic
 * reference) and `NativeBackend` (C addon, AVX2/FMA with a portable fallback, own thread pool).
 * Tests run both on the same inputs. Model code only ever sees this interface.
 *
 * Numerics follow llama.cpp's CPU backend so that logits match it:
 *  - matmul activations are converted to the weight's "vec-dot type" before the dot product:
 *    F32 -> f32, F16 -> f16, BF16 -> bf16, Q8_0/Q4_0 -> Q8_0 blocks, Q4_K/Q5_K/Q6_K -> Q8_K blocks;
 *  - attention follows ggml-cpu flash attention: for T < 64, q rounded to f16 and an f16 online-softmax
 *    accumulator; for T ≥ 64, all in f32 (see ReferenceBackend.attention).
 * All calls are synchronous and write into caller-owned output arrays.
 */
import type { Tensor } from '../tensor.js';

export interface MatmulArgs {
  /** [T, N] output, overwritten */
  y: Float32Array;
  /** [T, K] input rows */
  x: Float32Array;
  /** [N, K] weight, any supported type */
  w: Tensor;
  T: number;
}

/** Most weights one `matmuls` call takes (native/src/ops.h MK_MAX_MATMULS). */
export const MAX_MATMULS = 8;

export interface MatmulsArgs {
  /** [T, K] input rows, shared by every product */
  x: Float32Array;
  /** y_i [T, N_i] = x · w_iᵀ, w_i [N_i, K]; each y_i is overwritten */
  outs: { y: Float32Array; w: Tensor }[];
  T: number;
}

export interface MoeFfnArgs {
  /** [T, D] output, overwritten: out[t] = Σ_j weights[t,j] · down_e( act(gate_e·x_t) ⊙ (up_e·x_t) ), e = ids[t,j] */
  out: Float32Array;
  /** [T, D] input rows */
  x: Float32Array;
  /** [E, F, D] */
  gate: Tensor;
  /** [E, F, D] */
  up: Tensor;
  /** [E, D, F] */
  down: Tensor;
  /** [T, K] selected expert ids; an id < 0 means "slot unused" (skipped, contributes nothing) */
  ids: Int32Array;
  /** [T, K] gate weights of the selected experts */
  weights: Float32Array;
  T: number;
  /** experts per token (slots per row of ids/weights) */
  K: number;
}

/**
 * Attention's element-wise prologue for one sequence's rows (nn/attention.ts is the reference and the
 * fallback): QK-norm, RoPE, then K and V as f16 into the caches at rows cacheRow .. cacheRow+T-1.
 */
export interface QkPrepArgs {
  /** [T, nHead·headDim], normalised and rotated in place */
  q: Float32Array;
  /** [T, nHeadKv·headDim], normalised and rotated in place */
  k: Float32Array;
  /** [T, nHeadKv·headDim] */
  v: Float32Array;
  T: number;
  nHead: number;
  nHeadKv: number;
  headDim: number;
  /** RMSNorm weights over groups of their length (a head, or the whole projection) */
  qNorm?: Float32Array;
  kNorm?: Float32Array;
  eps: number;
  /** cos/sin [T, half] of the rows' positions; neox: pairs (i, i+half), else (2i, 2i+1) */
  rope: { cos: Float32Array; sin: Float32Array; half: number; neox: boolean } | null;
  kCache: Uint16Array;
  vCache: Uint16Array;
  cacheRow: number;
}

export interface AddNormArgs {
  /** [T, D] residual stream, += y·scale in place */
  x: Float32Array;
  /** [T, D] branch output */
  y: Float32Array;
  /** 1: plain add; else each y·scale is rounded to f32 first (Granite residual multiplier) */
  scale: number;
  /** [T, D] output: RMSNorm(x) ⊙ w */
  out: Float32Array;
  /** [D] */
  w: Float32Array;
  T: number;
  eps: number;
}

export interface RouteSoftmaxArgs {
  /** [T, E] router logits */
  logits: Float32Array;
  T: number;
  E: number;
  K: number;
  normalize: boolean;
  scale: number;
  /** [E] added for selection only */
  bias?: Float32Array;
  /** [T, K] out */
  ids: Int32Array;
  /** [T, K] out */
  weights: Float32Array;
  /** [T, E] out: softmax probabilities */
  scores: Float32Array;
}

export interface AttentionArgs {
  /** [T, H, Dh] output, overwritten */
  out: Float32Array;
  /** [T, H, Dh] queries for positions pos0 .. pos0+T-1, RoPE already applied */
  q: Float32Array;
  /** [ctx, Hkv, Dh] f16 bit patterns; rows 0 .. pos0+T-1 are filled (incl. this batch) */
  kCache: Uint16Array;
  /** [ctx, Hkv, Dh] f16 bit patterns */
  vCache: Uint16Array;
  T: number;
  pos0: number;
  nHead: number;
  nHeadKv: number;
  headDim: number;
  /** multiplier applied to q·k (usually 1/sqrt(Dh)) */
  scale: number;
}

export interface GetRowsArgs {
  /** [n, K] output rows, dequantized to f32 */
  out: Float32Array;
  /** [R, K] table (e.g. token embeddings) */
  w: Tensor;
  rows: ArrayLike<number>;
}

export interface Backend {
  readonly name: string;
  readonly threads: number;
  /** y = x · Wᵀ */
  matmul(a: MatmulArgs): void;
  /**
   * Several matmuls on the same input (q/k/v, gate/up) in one pass: y_i = x · w_iᵀ for at most
   * MAX_MATMULS weights, each y_i bit-identical to `matmul({ y: y_i, x, w: w_i, T })`.
   */
  matmuls(a: MatmulsArgs): void;
  /** Fused SwiGLU MoE FFN over the selected experts only, tokens grouped by expert (ggml mul_mat_id). */
  moeFfn(a: MoeFfnArgs): void;
  /** Causal multi-head attention (GQA: head h reads KV head floor(h / (H/Hkv))). */
  attention(a: AttentionArgs): void;
  /** Optional: attention's prologue in one native call (bit-identical to the TypeScript in nn/attention.ts). */
  qkPrep?(a: QkPrepArgs): void;
  /**
   * Optional: the residual add and the next RMSNorm in one native call, bit-identical to nn/ops.ts
   * addInPlace then rmsNorm (the reference and the fallback).
   */
  addNorm?(a: AddNormArgs): void;
  /**
   * Optional: softmax top-K routing in one native call, bit-identical to nn/moe.ts routeInto with softmax
   * scoring (the reference and the fallback); only for E a multiple of 16.
   */
  routeSoftmax?(a: RouteSoftmaxArgs): void;
  /** Embedding lookup with dequantization. */
  getRows(a: GetRowsArgs): void;
  /**
   * Optional: map the pages of `buf` for writing now, in one call, instead of one page fault per 4 KiB at
   * the first write (the KV cache grows through this; a fault costs ~40 µs on the VMs we measure on).
   */
  touchPages?(buf: Uint8Array): void;
  /** Release threads and native resources. Idempotent. */
  dispose(): void;
}

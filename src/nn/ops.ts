/**
 * Cheap element-wise ops, in TypeScript. They are O(T·D) per layer, small next to the matmuls the
 * backend runs, and they are their own reference. Numerics follow ggml-cpu so logits match llama.cpp.
 */
import { ggmlSoftMaxExp, ggmlSwiglu } from '../backend/ggml-math.js';

/** out[t] = x[t] / sqrt(mean(x[t]²) + eps) ⊙ w  — ggml rms_norm (f32 squares summed in double, scale in f32) then mul. x: [T, D], w: [D]. */
export function rmsNorm(out: Float32Array, x: Float32Array, w: Float32Array, T: number, D: number, eps: number): void {
  for (let t = 0; t < T; t++) {
    const o = t * D;
    let sum = 0;
    for (let i = 0; i < D; i++) sum += Math.fround(x[o + i] * x[o + i]);
    const scale = Math.fround(1 / Math.fround(Math.sqrt(Math.fround(Math.fround(sum / D) + Math.fround(eps)))));
    for (let i = 0; i < D; i++) out[o + i] = Math.fround(x[o + i] * scale) * w[i];
  }
}

/** In-place RMSNorm of `n` consecutive groups of size `G` (per-head QK-norm), all with weight w: [G]. */
export function rmsNormGroups(x: Float32Array, w: Float32Array, n: number, G: number, eps: number): void {
  rmsNorm(x, x, w, n, G, eps);
}

export type RopeType = 'norm' | 'neox';

/**
 * Rotary position embedding, in place. x: [T, nHeads, Dh]; positions: [T].
 * 'norm' rotates adjacent pairs (x[2i], x[2i+1]) (GGUF llama layout); 'neox' rotates (x[i], x[i+Dh/2]) (HF layout).
 * θ_i = pos · base^(−2i/dims), built by repeated f32 multiplication as ggml's rope cache does (ggml-cpu ops.cpp).
 */
export function rope(
  x: Float32Array,
  positions: ArrayLike<number>,
  o: { T: number; nHeads: number; headDim: number; dims: number; base: number; type: RopeType; freqScale?: number },
): void {
  ropeApply(x, ropeTable(positions, o.T, o.dims, o.base, o.freqScale), o.nHeads, o.headDim, o.type);
}

/** cos/sin of θ_i for each of T positions: [T, dims/2] each, f32 (what `rope` multiplies by). */
export interface RopeTable {
  T: number;
  /** dims / 2 */
  half: number;
  cos: Float32Array;
  sin: Float32Array;
}

/**
 * The rotation table of `rope` for `positions` (it depends only on the positions and the rope options, so
 * one table serves q and k of every layer of a forward pass). `into` is reused when large enough.
 */
export function ropeTable(positions: ArrayLike<number>, T: number, dims: number, base: number, freqScale = 1, into?: RopeTable): RopeTable {
  const half = dims / 2;
  const n = T * half;
  let tab = into;
  if (tab === undefined || tab.cos.length < n) tab = { T, half, cos: new Float32Array(n), sin: new Float32Array(n) };
  tab.T = T;
  tab.half = half;
  const { cos, sin } = tab;
  const thetaScale = Math.fround(Math.pow(base, -2 / dims));
  for (let t = 0; t < T; t++) {
    let theta = Math.fround(positions[t]);
    const c0 = t * half;
    for (let i = 0; i < half; i++) {
      const th = Math.fround(theta * freqScale);
      cos[c0 + i] = Math.cos(th);
      sin[c0 + i] = Math.sin(th);
      theta = Math.fround(theta * thetaScale);
    }
  }
  return tab;
}

/** Apply a `ropeTable` to x: [tab.T, nHeads, headDim], in place (the rotation of `rope`). */
export function ropeApply(x: Float32Array, tab: RopeTable, nHeads: number, headDim: number, type: RopeType): void {
  const { T, half, cos, sin } = tab;
  // 'norm': pairs (2i, 2i+1); 'neox': pairs (i, i+half)
  const step = type === 'norm' ? 2 : 1;
  const pair = type === 'norm' ? 1 : half;
  for (let t = 0; t < T; t++) {
    const c0 = t * half;
    for (let h = 0; h < nHeads; h++) {
      const base = (t * nHeads + h) * headDim;
      for (let i = 0; i < half; i++) {
        const a = base + step * i;
        const b = a + pair;
        const x0 = x[a];
        const x1 = x[b];
        const c = cos[c0 + i];
        const s = sin[c0 + i];
        x[a] = x0 * c - x1 * s;
        x[b] = x0 * s + x1 * c;
      }
    }
  }
}

/** silu(g) ⊙ u, in place into g; rows of F values, with ggml's numerics (ggml_vec_swiglu_f32). */
export function siluMul(g: Float32Array, u: Float32Array, F: number): void {
  for (let o = 0; o < g.length; o += F) ggmlSwiglu(F, g.subarray(o, o + F), g.subarray(o, o + F), u.subarray(o, o + F));
}

/** a += b (optionally b scaled). */
export function addInPlace(a: Float32Array, b: Float32Array, scale = 1): void {
  if (scale === 1) for (let i = 0; i < a.length; i++) a[i] += b[i];
  else for (let i = 0; i < a.length; i++) a[i] += Math.fround(b[i] * scale);
}

export function scaleInPlace(a: Float32Array, s: number): void {
  for (let i = 0; i < a.length; i++) a[i] *= s;
}

/** Row-wise bias add: x: [T, N] += b: [N]. */
export function addBias(x: Float32Array, b: Float32Array, T: number): void {
  const N = b.length;
  for (let t = 0; t < T; t++) for (let i = 0; i < N; i++) x[t * N + i] += b[i];
}

/** Numerically stable softmax of x[off..off+n) into out[outOff..] (may alias), as ggml_soft_max computes it. */
export function softmax(out: Float32Array, x: ArrayLike<number>, n: number, off = 0, outOff = 0): void {
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (x[off + i] > max) max = x[off + i];
  const sum = ggmlSoftMaxExp(n, out, outOff, x, off, max);
  const inv = Math.fround(1 / sum);
  for (let i = 0; i < n; i++) out[outOff + i] = Math.fround(out[outOff + i] * inv);
}

export function sigmoid(x: number): number {
  return 1 / (1 + Math.exp(-x));
}


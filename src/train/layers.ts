/**
 * Training layers as `*_forward` / `*_backward` pairs on Float32Array (karpathy/llm.c style).
 *
 * Letters: T tokens (= B·S), B sequences, S positions, D model dim, H heads, Dh head dim, F FFN dim,
 * V vocab, I/O a linear layer's input/output width. Row-major, last dim contiguous.
 * Backward functions ACCUMULATE into their gradient outputs (`+=`), so a tensor used twice (tied
 * embeddings, the residual stream) gets the sum; callers zero the gradients once per step.
 * Sums run in double and are stored in f32, so results are within f32 rounding of PyTorch's.
 */

import { loadAddon, type Addon } from '../backend/native.js';

// ---- linear: out[T,O] = x[T,I]·wᵀ (+ b) with w [O,I] ----------------------------------------

/**
 * The native path: the C training kernels (native/src/train.c: register-blocked f32 GEMM,
 * fused softmax cross-entropy, causal attention) on the addon's thread pool. Off by default: the
 * plain loops below are the reference, and what the PyTorch and finite-difference tests check;
 * test/train-native.test.ts compares the two. The trainer turns it on for a run (a per-run
 * setting, like torch.set_num_threads); results do not depend on the thread count.
 */
let nat: { addon: Addon; threads: number } | null = null;
const NATIVE_MIN_WORK = 1 << 12;

/** Use the native kernels with `threads` threads (0 = the plain TypeScript kernels). */
export function useNativeKernels(threads: number): void {
  nat = threads > 0 ? { addon: loadAddon(), threads } : null;
}

/** The native kernels in use, if any (the optimizer's step uses them too). */
export function nativeKernels(): { addon: Addon; threads: number } | null {
  return nat;
}

const i32 = (a: ArrayLike<number>): Int32Array => (a instanceof Int32Array ? a : Int32Array.from(a));

export function matmul_forward(out: Float32Array, x: Float32Array, w: Float32Array, T: number, I: number, O: number, b?: Float32Array): void {
  if (nat && T * I * O >= NATIVE_MIN_WORK) {
    nat.addon.trainGemm(out, x, w, T, O, I, 0, 1, 0, nat.threads); // x[T,I]·w[O,I]ᵀ
    if (b) for (let t = 0; t < T; t++) for (let o = 0; o < O; o++) out[t * O + o] += b[o];
    return;
  }
  for (let t = 0; t < T; t++) {
    const xo = t * I;
    for (let o = 0; o < O; o++) {
      const wo = o * I;
      let s0 = 0, s1 = 0, s2 = 0, s3 = 0;
      let i = 0;
      for (; i + 3 < I; i += 4) {
        s0 += x[xo + i] * w[wo + i];
        s1 += x[xo + i + 1] * w[wo + i + 1];
        s2 += x[xo + i + 2] * w[wo + i + 2];
        s3 += x[xo + i + 3] * w[wo + i + 3];
      }
      for (; i < I; i++) s0 += x[xo + i] * w[wo + i];
      out[t * O + o] = s0 + s1 + s2 + s3 + (b ? b[o] : 0);
    }
  }
}

/** dx[T,I] += dout·w; dw[O,I] += doutᵀ·x; db[O] += Σ_t dout. `dx` may be null (input needs no gradient). */
export function matmul_backward(
  dx: Float32Array | null, dw: Float32Array, db: Float32Array | null,
  dout: Float32Array, x: Float32Array, w: Float32Array, T: number, I: number, O: number,
): void {
  if (nat && T * I * O >= NATIVE_MIN_WORK) {
    if (dx) nat.addon.trainGemm(dx, dout, w, T, I, O, 0, 0, 1, nat.threads); // dx += dout[T,O]·w[O,I]
    nat.addon.trainGemm(dw, dout, x, O, I, T, 1, 0, 1, nat.threads); // dw += dout[T,O]ᵀ·x[T,I]
    if (db) for (let t = 0; t < T; t++) for (let o = 0; o < O; o++) db[o] += dout[t * O + o];
    return;
  }
  if (dx) {
    const acc = new Float64Array(I);
    for (let t = 0; t < T; t++) {
      acc.fill(0);
      for (let o = 0; o < O; o++) {
        const d = dout[t * O + o];
        if (d === 0) continue;
        const wo = o * I;
        for (let i = 0; i < I; i++) acc[i] += d * w[wo + i];
      }
      const xo = t * I;
      for (let i = 0; i < I; i++) dx[xo + i] += acc[i];
    }
  }
  const acc = new Float64Array(I);
  for (let o = 0; o < O; o++) {
    acc.fill(0);
    let bsum = 0;
    for (let t = 0; t < T; t++) {
      const d = dout[t * O + o];
      if (d === 0) continue;
      bsum += d;
      const xo = t * I;
      for (let i = 0; i < I; i++) acc[i] += d * x[xo + i];
    }
    const wo = o * I;
    for (let i = 0; i < I; i++) dw[wo + i] += acc[i];
    if (db) db[o] += bsum;
  }
}

// ---- RMSNorm: out = x / sqrt(mean(x²) + eps) ⊙ w, rows of N --------------------------------

/** rstd[R] is saved for the backward pass. */
export function rmsnorm_forward(out: Float32Array, rstd: Float32Array, x: Float32Array, w: Float32Array, R: number, N: number, eps: number): void {
  for (let r = 0; r < R; r++) {
    const o = r * N;
    let ss = 0;
    for (let i = 0; i < N; i++) ss += x[o + i] * x[o + i];
    const s = 1 / Math.sqrt(ss / N + eps);
    rstd[r] = s;
    for (let i = 0; i < N; i++) out[o + i] = x[o + i] * s * w[i];
  }
}

/** dx += (w⊙dout)·s − x·s³/N·Σ(w⊙dout⊙x); dw += Σ_r dout⊙x·s */
export function rmsnorm_backward(dx: Float32Array, dw: Float32Array, dout: Float32Array, x: Float32Array, w: Float32Array, rstd: Float32Array, R: number, N: number): void {
  for (let r = 0; r < R; r++) {
    const o = r * N;
    const s = rstd[r];
    let dot = 0;
    for (let i = 0; i < N; i++) dot += w[i] * dout[o + i] * x[o + i];
    const c = (dot * s * s * s) / N;
    for (let i = 0; i < N; i++) {
      dx[o + i] += w[i] * dout[o + i] * s - x[o + i] * c;
      dw[i] += dout[o + i] * x[o + i] * s;
    }
  }
}

// ---- RoPE, NeoX layout: rotate (x[i], x[i+Dh/2]) by θ_i = pos·base^(−2i/Dh) ------------------

export interface RopeTable {
  /** [S, Dh/2] */
  cos: Float64Array;
  sin: Float64Array;
  S: number;
  half: number;
}

export function rope_table(S: number, Dh: number, base: number): RopeTable {
  const half = Dh / 2;
  const cos = new Float64Array(S * half);
  const sin = new Float64Array(S * half);
  for (let p = 0; p < S; p++) {
    for (let i = 0; i < half; i++) {
      const th = p * Math.pow(base, (-2 * i) / Dh);
      cos[p * half + i] = Math.cos(th);
      sin[p * half + i] = Math.sin(th);
    }
  }
  return { cos, sin, S, half };
}

/** In place on x [B·S, nH, Dh]; row t has position t mod S. `inverse` rotates by −θ (the backward pass). */
export function rope_forward(x: Float32Array, T: number, nH: number, Dh: number, tab: RopeTable, inverse = false): void {
  const { half } = tab;
  const sg = inverse ? -1 : 1;
  for (let t = 0; t < T; t++) {
    const p = t % tab.S;
    for (let h = 0; h < nH; h++) {
      const base = (t * nH + h) * Dh;
      for (let i = 0; i < half; i++) {
        const c = tab.cos[p * half + i];
        const s = sg * tab.sin[p * half + i];
        const a = x[base + i];
        const b = x[base + i + half];
        x[base + i] = a * c - b * s;
        x[base + i + half] = a * s + b * c;
      }
    }
  }
}

/** The gradient of a rotation is the inverse rotation of the gradient (in place on dx). */
export function rope_backward(dx: Float32Array, T: number, nH: number, Dh: number, tab: RopeTable): void {
  rope_forward(dx, T, nH, Dh, tab, true);
}

// ---- causal self-attention over B sequences of S (q, k, v: [T, H·Dh], no GQA) ---------------

/** out[T, H·Dh]; att[B, H, S, S] keeps the softmax probabilities for the backward pass. */
export function attention_forward(out: Float32Array, att: Float32Array, q: Float32Array, k: Float32Array, v: Float32Array, B: number, S: number, H: number, Dh: number): void {
  if (nat) {
    nat.addon.trainAttention(0, out, out, out, out, q, k, v, att, B, S, H, Dh, nat.threads);
    return;
  }
  const C = H * Dh;
  const scale = 1 / Math.sqrt(Dh);
  const row = new Float64Array(S);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < S; i++) {
        const qo = (b * S + i) * C + h * Dh;
        let max = -Infinity;
        for (let j = 0; j <= i; j++) {
          const ko = (b * S + j) * C + h * Dh;
          let s = 0;
          for (let d = 0; d < Dh; d++) s += q[qo + d] * k[ko + d];
          row[j] = s * scale;
          if (row[j] > max) max = row[j];
        }
        let sum = 0;
        for (let j = 0; j <= i; j++) { row[j] = Math.exp(row[j] - max); sum += row[j]; }
        const ao = ((b * H + h) * S + i) * S;
        for (let j = 0; j < S; j++) att[ao + j] = j <= i ? row[j] / sum : 0;
        for (let d = 0; d < Dh; d++) {
          let acc = 0;
          for (let j = 0; j <= i; j++) acc += att[ao + j] * v[(b * S + j) * C + h * Dh + d];
          out[qo + d] = acc;
        }
      }
    }
  }
}

export function attention_backward(
  dq: Float32Array, dk: Float32Array, dv: Float32Array, dout: Float32Array,
  q: Float32Array, k: Float32Array, v: Float32Array, att: Float32Array, B: number, S: number, H: number, Dh: number,
): void {
  if (nat) {
    nat.addon.trainAttention(1, dq, dk, dv, dout, q, k, v, att, B, S, H, Dh, nat.threads);
    return;
  }
  const C = H * Dh;
  const scale = 1 / Math.sqrt(Dh);
  const dp = new Float64Array(S);
  for (let b = 0; b < B; b++) {
    for (let h = 0; h < H; h++) {
      for (let i = 0; i < S; i++) {
        const qo = (b * S + i) * C + h * Dh;
        const ao = ((b * H + h) * S + i) * S;
        // dv_j += p_ij·dout_i; dp_ij = dout_i·v_j
        let pdp = 0;
        for (let j = 0; j <= i; j++) {
          const vo = (b * S + j) * C + h * Dh;
          const p = att[ao + j];
          let s = 0;
          for (let d = 0; d < Dh; d++) { s += dout[qo + d] * v[vo + d]; dv[vo + d] += p * dout[qo + d]; }
          dp[j] = s;
          pdp += p * s;
        }
        // softmax backward, then the two sides of q·k
        for (let j = 0; j <= i; j++) {
          const ds = att[ao + j] * (dp[j] - pdp) * scale;
          if (ds === 0) continue;
          const ko = (b * S + j) * C + h * Dh;
          for (let d = 0; d < Dh; d++) { dq[qo + d] += ds * k[ko + d]; dk[ko + d] += ds * q[qo + d]; }
        }
      }
    }
  }
}

// ---- SwiGLU: a = silu(g) ⊙ u --------------------------------------------------------------

export function swiglu_forward(out: Float32Array, g: Float32Array, u: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) out[i] = (g[i] / (1 + Math.exp(-g[i]))) * u[i];
}

/** silu'(g) = σ(g)·(1 + g·(1 − σ(g))) */
export function swiglu_backward(dg: Float32Array, du: Float32Array, dout: Float32Array, g: Float32Array, u: Float32Array, n: number): void {
  for (let i = 0; i < n; i++) {
    const s = 1 / (1 + Math.exp(-g[i]));
    du[i] += dout[i] * g[i] * s;
    dg[i] += dout[i] * u[i] * s * (1 + g[i] * (1 - s));
  }
}

// ---- embedding ----------------------------------------------------------------------------

export function embedding_forward(out: Float32Array, ids: ArrayLike<number>, wte: Float32Array, T: number, D: number): void {
  for (let t = 0; t < T; t++) out.set(wte.subarray(ids[t] * D, ids[t] * D + D), t * D);
}

export function embedding_backward(dwte: Float32Array, dout: Float32Array, ids: ArrayLike<number>, T: number, D: number): void {
  for (let t = 0; t < T; t++) {
    const o = ids[t] * D;
    for (let i = 0; i < D; i++) dwte[o + i] += dout[t * D + i];
  }
}

// ---- cross-entropy over logits [T, V], mean over the T targets -------------------------------

/** Returns the mean loss; probs [T, V] (softmax; may alias logits) are written for the backward pass. */
export function crossentropy_forward(probs: Float32Array, logits: Float32Array, targets: ArrayLike<number>, T: number, V: number): number {
  if (nat) {
    if (probs !== logits) probs.set(logits.subarray(0, T * V));
    const losses = new Float32Array(T);
    nat.addon.trainXent(probs, i32(targets), losses, T, V, nat.threads);
    let sum = 0;
    for (let t = 0; t < T; t++) sum += losses[t];
    return sum / T;
  }
  let loss = 0;
  for (let t = 0; t < T; t++) {
    const o = t * V;
    let max = -Infinity;
    for (let i = 0; i < V; i++) if (logits[o + i] > max) max = logits[o + i];
    let sum = 0;
    for (let i = 0; i < V; i++) sum += Math.exp(logits[o + i] - max);
    loss += Math.log(sum) + max - logits[o + targets[t]]; // before probs may overwrite logits
    for (let i = 0; i < V; i++) probs[o + i] = Math.exp(logits[o + i] - max) / sum;
  }
  return loss / T;
}

/** dlogits = (softmax − onehot)·scale/T (overwrites). */
export function crossentropy_backward(dlogits: Float32Array, probs: Float32Array, targets: ArrayLike<number>, T: number, V: number, scale = 1): void {
  const c = scale / T;
  for (let t = 0; t < T; t++) {
    const o = t * V;
    for (let i = 0; i < V; i++) dlogits[o + i] = probs[o + i] * c;
    dlogits[o + targets[t]] -= c;
  }
}

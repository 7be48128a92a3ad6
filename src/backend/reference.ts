/**
 * ReferenceBackend: the algorithmic reference for every kernel behind `Backend`, in plain TypeScript.
 * Slow and readable; the native C backend is tested against it on random inputs.
 *
 * Exports:
 *   class ReferenceBackend implements Backend   (name 'reference', threads 1)
 *
 * Numerics follow llama.cpp's CPU backend (see backend.ts): activations are converted to the
 * weight's vec-dot type and dotted with ggml's scalar arithmetic (formats/quants.ts, bit-exact with
 * ggml's generic paths); f32 element-wise math is rounded to f32 after each operation.
 *
 * Layering note: the block formats live in formats/quants.ts and formats/half.ts, which import only
 * tensor.ts / errors.ts, so this file uses them as leaf modules.
 */
import type { AttentionArgs, Backend, GetRowsArgs, MatmulArgs, MoeFfnArgs } from './backend.js';
import { rowBytes, type GGMLType } from '../tensor.js';
import { dequantize, quantizeActivations, vecDotAt, vecDotTypeOf } from '../formats/quants.js';
import { f16ToF32, f32ToF16 } from '../formats/half.js';

const F = Math.fround;

/** ggml_silu_f32: x / (1 + e^-x), in f32. */
function silu(x: number): number {
  return F(x / F(1 + F(Math.exp(-x))));
}

function assert(cond: boolean, msg: string): asserts cond {
  if (!cond) throw new Error(`ReferenceBackend: ${msg}`);
}

/**
 * y[t, n] = W[n, :] · xq[t, :] for the N rows of a weight matrix that starts at byte `wOff` of `w`.
 * xq holds T activation rows already in vecDotTypeOf(wType), `xStride` bytes apart.
 */
function matmulRows(
  wType: GGMLType, w: Uint8Array, wOff: number, N: number, K: number,
  xq: Uint8Array, xStride: number, T: number, y: Float32Array, yOff: number,
): void {
  const wStride = rowBytes(wType, K);
  for (let t = 0; t < T; t++) {
    for (let n = 0; n < N; n++) {
      y[yOff + t * N + n] = vecDotAt(wType, w, wOff + n * wStride, xq, t * xStride, K);
    }
  }
}

export class ReferenceBackend implements Backend {
  readonly name = 'reference';
  readonly threads = 1;

  /** y [T, N] = x [T, K] · Wᵀ, W [N, K]. */
  matmul({ y, x, w, T }: MatmulArgs): void {
    assert(w.shape.length === 2, `matmul weight ${w.name} must be 2-D, got [${w.shape}]`);
    const [N, K] = w.shape as [number, number];
    assert(x.length >= T * K && y.length >= T * N, `matmul ${w.name}: x or y too small for T=${T}`);
    // 1. activations -> the weight's vec-dot type (f16 / bf16 / Q8_0 / Q8_K blocks), as ggml does
    const xq = quantizeActivations(w.type, x, T, K);
    // 2. one vec-dot per output element
    matmulRows(w.type, w.data, 0, N, K, xq, rowBytes(vecDotTypeOf(w.type), K), T, y, 0);
  }

  /**
   * out[t] = Σ_j weights[t,j] · down_e( silu(gate_e · x_t) ⊙ (up_e · x_t) ), e = ids[t,j].
   * Like llama.cpp's build_moe_ffn: expert outputs are scaled by their weight, then added in slot
   * order j = 0..K-1 in f32. Slots with id < 0 contribute nothing.
   */
  moeFfn({ out, x, gate, up, down, ids, weights, T, K }: MoeFfnArgs): void {
    const [E, Fdim, D] = gate.shape as [number, number, number];
    assert(gate.shape.length === 3 && up.shape.join() === gate.shape.join(), `moeFfn: gate/up shapes [${gate.shape}] / [${up.shape}]`);
    assert(down.shape.length === 3 && down.shape[0] === E && down.shape[1] === D && down.shape[2] === Fdim,
      `moeFfn: down shape [${down.shape}] does not match [${E}, ${D}, ${Fdim}]`);
    const gateExpertBytes = Fdim * rowBytes(gate.type, D);
    const upExpertBytes = Fdim * rowBytes(up.type, D);
    const downExpertBytes = D * rowBytes(down.type, Fdim);

    const g = new Float32Array(Fdim); // [F]
    const u = new Float32Array(Fdim); // [F]
    const h = new Float32Array(Fdim); // [F] silu(g) * u
    const y = new Float32Array(D); // [D] one expert's output
    out.fill(0, 0, T * D);
    for (let t = 0; t < T; t++) {
      const xt = x.subarray(t * D, (t + 1) * D);
      // x_t in the vec-dot types of gate and up (usually the same type: convert once)
      const xg = quantizeActivations(gate.type, xt, 1, D);
      const xu = up.type === gate.type ? xg : quantizeActivations(up.type, xt, 1, D);
      for (let j = 0; j < K; j++) {
        const e = ids[t * K + j];
        if (e < 0) continue;
        assert(e < E, `moeFfn: expert id ${e} out of range [0, ${E})`);
        matmulRows(gate.type, gate.data, e * gateExpertBytes, Fdim, D, xg, 0, 1, g, 0);
        matmulRows(up.type, up.data, e * upExpertBytes, Fdim, D, xu, 0, 1, u, 0);
        for (let f = 0; f < Fdim; f++) h[f] = F(silu(g[f]) * u[f]); // ggml_vec_swiglu_f32
        // the hidden activations are converted again, now for the down weight's type
        const hq = quantizeActivations(down.type, h, 1, Fdim);
        matmulRows(down.type, down.data, e * downExpertBytes, D, Fdim, hq, 0, 1, y, 0);
        const wj = weights[t * K + j];
        for (let d = 0; d < D; d++) out[t * D + d] = F(out[t * D + d] + F(y[d] * wj));
      }
    }
  }

  /**
   * Causal attention with GQA, for queries at positions pos0 .. pos0+T-1, with the numerics of
   * ggml-cpu's flash attention (ops.cpp `ggml_compute_forward_flash_attn_ext_f16`), which llama.cpp uses
   * on CPU by default. ggml picks one of two paths by batch size:
   *  - T < 64 (decode, short prompts; `..._f16_one_chunk`): q is rounded to f16 (the K cache's vec-dot
   *    type), s_j = scale·(q·k_j), and an online softmax accumulates Σ e^{s_j−M}·v_j in an **f16**
   *    accumulator (each rescale and multiply-add rounds to f16), divided by the f32 sum at the end;
   *  - T ≥ 64 (`..._tiled`): everything in f32 — q stays f32, K/V are widened to f32.
   */
  attention({ out, q, kCache, vCache, T, pos0, nHead, nHeadKv, headDim, scale }: AttentionArgs): void {
    assert(nHead % nHeadKv === 0, `attention: ${nHead} heads is not a multiple of ${nHeadKv} KV heads`);
    const Dh = headDim;
    const group = nHead / nHeadKv; // query heads per KV head
    const rowKv = nHeadKv * Dh; // one cache position [Hkv, Dh]
    assert(kCache.length >= (pos0 + T) * rowKv && vCache.length >= (pos0 + T) * rowKv, 'attention: KV cache too small');
    const f16Path = T < 64;
    const qv = new Float32Array(Dh);
    const acc = new Float32Array(Dh);
    const r16 = (x: number) => f16ToF32(f32ToF16(x));
    for (let t = 0; t < T; t++) {
      const pos = pos0 + t;
      for (let h = 0; h < nHead; h++) {
        const kvh = Math.floor(h / group);
        const qo = (t * nHead + h) * Dh;
        for (let d = 0; d < Dh; d++) qv[d] = f16Path ? r16(q[qo + d]) : q[qo + d];
        acc.fill(0);
        let M = -Infinity; // running max of scores
        let S = 0; // running Σ e^{s−M}
        for (let j = 0; j <= pos; j++) {
          const ko = j * rowKv + kvh * Dh;
          let s = 0;
          for (let d = 0; d < Dh; d++) s += F(qv[d] * f16ToF32(kCache[ko + d]));
          s = F(F(s) * scale);
          let ms = 1; // rescale of what was accumulated, when the max grows
          let vs = 1; // weight of this value row
          if (s > M) {
            ms = M === -Infinity ? 0 : F(Math.exp(M - s));
            M = s;
            for (let d = 0; d < Dh; d++) acc[d] = f16Path ? r16(acc[d] * ms) : F(acc[d] * ms);
          } else {
            vs = F(Math.exp(s - M));
          }
          const vo = j * rowKv + kvh * Dh;
          for (let d = 0; d < Dh; d++) {
            const a = acc[d] + F(f16ToF32(vCache[vo + d]) * vs);
            acc[d] = f16Path ? r16(a) : F(a);
          }
          S = F(F(S * ms) + vs);
        }
        const inv = S === 0 ? 0 : F(1 / S);
        for (let d = 0; d < Dh; d++) out[qo + d] = F(acc[d] * inv);
      }
    }
  }

  /** out[i, :] = dequantize(w[rows[i], :]). */
  getRows({ out, w, rows }: GetRowsArgs): void {
    const R = w.shape[0], K = w.shape[w.shape.length - 1];
    assert(w.shape.length === 2, `getRows ${w.name}: weight must be 2-D, got [${w.shape}]`);
    const rb = rowBytes(w.type, K);
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i];
      assert(Number.isInteger(r) && r >= 0 && r < R, `getRows ${w.name}: row ${r} out of range [0, ${R})`);
      dequantize(w.type, w.data.subarray(r * rb, (r + 1) * rb), K, out.subarray(i * K, (i + 1) * K));
    }
  }

  dispose(): void {}
}


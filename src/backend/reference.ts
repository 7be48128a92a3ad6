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
import { MAX_MATMULS, type AttentionArgs, type Backend, type GetRowsArgs, type MatmulArgs, type MatmulsArgs, type MoeFfnArgs } from './backend.js';
import { GGMLType, rowBytes } from '../tensor.js';
import {
  dequantize, dotQ4KRepackAt, gemmRows, q4KRepacked, quantizeActivations, quantizeActivationsQ8KRepack, vecDotAt, vecDotTypeOf,
} from '../formats/quants.js';
import { f16ToF32, f32ToF16 } from '../formats/half.js';
import { dotF16, dotF32, f32UsesSgemm, fma32, ggmlSoftMaxExp, ggmlSwiglu } from './ggml-math.js';

const F = Math.fround;


function assert(cond: boolean, msg: string): asserts cond {
  if (!cond) throw new Error(`ReferenceBackend: ${msg}`);
}

/**
 * y[t, n] = W[n, :] · xq[t, :] for the N rows of a weight matrix that starts at byte `wOff` of `w`.
 * xq holds T activation rows already in vecDotTypeOf(wType), `xStride` bytes apart.
 */
function matmulRows(
  wType: GGMLType, w: Uint8Array, wOff: number, N: number, K: number,
  xq: Uint8Array, xStride: number, T: number, y: Float32Array, yOff: number, gemmT = 0,
): void {
  const wStride = rowBytes(wType, K);
  if (wType === GGMLType.Q4_K && q4KRepacked(N)) {
    // llama.cpp's repacked Q4_K kernels (see quants.ts q4KRepacked): rows t < gemmT via gemm
    for (let t = 0; t < T; t++) {
      for (let n = 0; n < N; n++) y[yOff + t * N + n] = dotQ4KRepackAt(w, wOff + n * wStride, xq, t * xStride, K, t < gemmT);
    }
    return;
  }
  if (wType === GGMLType.F32) {
    // ggml_vec_dot_f32 (mul_mat_id never goes through tinyBLAS)
    const wf = dequantize(GGMLType.F32, w.subarray(wOff, wOff + N * wStride), N * K);
    const xf = dequantize(GGMLType.F32, xq, ((T - 1) * xStride) / 4 + K);
    for (let t = 0; t < T; t++) for (let n = 0; n < N; n++) y[yOff + t * N + n] = dotF32(wf, n * K, xf, (t * xStride) / 4, K, false);
    return;
  }
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
    if (w.type === GGMLType.F32) {
      // f32 sums depend on order: follow llama.cpp's (tinyBLAS for batches, ggml_vec_dot_f32 otherwise)
      const wf = dequantize(GGMLType.F32, w.data, N * K);
      const sgemm = f32UsesSgemm(N, K, T);
      for (let t = 0; t < T; t++) for (let n = 0; n < N; n++) y[t * N + n] = dotF32(wf, n * K, x, t * K, K, sgemm);
      return;
    }
    // 1. activations -> the weight's vec-dot type (f16 / bf16 / Q8_0 / Q8_K blocks), as ggml does
    //    (repacked Q4_K: rows of 4-row gemm groups are quantized by ggml_quantize_mat_q8_K_4x8)
    const repack = w.type === GGMLType.Q4_K && q4KRepacked(N);
    const xq = repack ? quantizeActivationsQ8KRepack(x, T, K) : quantizeActivations(w.type, x, T, K);
    // 2. one vec-dot per output element
    matmulRows(w.type, w.data, 0, N, K, xq, rowBytes(vecDotTypeOf(w.type), K), T, y, 0, repack ? gemmRows(T) : 0);
  }

  /** Each product on its own: the definition of `matmuls` (one pass is only a scheduling matter). */
  matmuls({ x, outs, T }: MatmulsArgs): void {
    assert(outs.length >= 1 && outs.length <= MAX_MATMULS, `matmuls: 1 to ${MAX_MATMULS} weights, got ${outs.length}`);
    for (const { y, w } of outs) this.matmul({ y, x, w, T });
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
        ggmlSwiglu(Fdim, h, g, u);
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
  attention(a: AttentionArgs): void {
    const { nHead, nHeadKv, headDim, T, pos0, kCache, vCache } = a;
    assert(nHead % nHeadKv === 0, `attention: ${nHead} heads is not a multiple of ${nHeadKv} KV heads`);
    const rowKv = nHeadKv * headDim; // one cache position [Hkv, Dh]
    assert(kCache.length >= (pos0 + T) * rowKv && vCache.length >= (pos0 + T) * rowKv, 'attention: KV cache too small');
    if (T < 64) this.attentionOneChunk(a);
    else this.attentionTiled(a);
  }

  /** T < 64: ggml `flash_attn_ext_f16_one_chunk` — f16 q, online softmax, f16 value accumulator. */
  private attentionOneChunk({ out, q, kCache, vCache, T, pos0, nHead, nHeadKv, headDim: Dh, scale }: AttentionArgs): void {
    const group = nHead / nHeadKv; // query heads per KV head
    const rowKv = nHeadKv * Dh;
    const qv = new Float32Array(Dh);
    const kv = new Float32Array(Dh);
    const acc = new Float32Array(Dh);
    const r16 = (x: number) => f16ToF32(f32ToF16(x));
    for (let t = 0; t < T; t++) {
      const pos = pos0 + t;
      for (let h = 0; h < nHead; h++) {
        const kvh = Math.floor(h / group);
        const qo = (t * nHead + h) * Dh;
        for (let d = 0; d < Dh; d++) qv[d] = r16(q[qo + d]);
        acc.fill(0);
        let M = -Infinity; // running max of scores
        let S = 0; // running Σ e^{s−M}
        for (let j = 0; j <= pos; j++) {
          const ko = j * rowKv + kvh * Dh;
          for (let d = 0; d < Dh; d++) kv[d] = f16ToF32(kCache[ko + d]);
          const s = F(dotF16(qv, 0, kv, 0, Dh) * scale);
          let ms = 1; // rescale of what was accumulated, when the max grows
          let vs = 1; // weight of this value row
          if (s > M) {
            ms = M === -Infinity ? 0 : F(Math.exp(M - s));
            M = s;
            for (let d = 0; d < Dh; d++) acc[d] = r16(F(acc[d] * ms));
          } else {
            vs = F(Math.exp(s - M));
          }
          // ggml_vec_mad_f16: f32 fused multiply-add, then rounded to f16
          const vo = j * rowKv + kvh * Dh;
          for (let d = 0; d < Dh; d++) acc[d] = r16(fma32(f16ToF32(vCache[vo + d]), vs, acc[d]));
          S = fma32(S, ms, vs);
        }
        const inv = S === 0 ? 0 : F(1 / S);
        for (let d = 0; d < Dh; d++) out[qo + d] = F(acc[d] * inv);
      }
    }
  }

  /**
   * T ≥ 64: ggml `flash_attn_ext_tiled` — all f32. Per KV tile of 64 positions: scores as sequential
   * FMA chains (simd_gemm), online max, exponentials by ggml_v_expf with 16-lane partial sums, then
   * the value accumulator as sequential FMA chains; finally scaled by 1/S.
   */
  private attentionTiled({ out, q, kCache, vCache, T, pos0, nHead, nHeadKv, headDim: Dh, scale }: AttentionArgs): void {
    const TILE = 64;
    const group = nHead / nHeadKv;
    const rowKv = nHeadKv * Dh;
    const p = new Float32Array(TILE);
    const acc = new Float32Array(Dh);
    for (let t = 0; t < T; t++) {
      const pos = pos0 + t;
      for (let h = 0; h < nHead; h++) {
        const kvh = Math.floor(h / group);
        const qo = (t * nHead + h) * Dh;
        acc.fill(0);
        let M = -Infinity;
        let S = 0;
        for (let ic = 0; ic <= pos; ic += TILE) {
          let tileMax = -Infinity;
          for (let tk = 0; tk < TILE; tk++) {
            const j = ic + tk;
            if (j > pos) { p[tk] = -Infinity; continue; }
            const ko = j * rowKv + kvh * Dh;
            let s = 0;
            for (let d = 0; d < Dh; d++) s = fma32(q[qo + d], f16ToF32(kCache[ko + d]), s);
            p[tk] = F(s * scale);
            if (p[tk] > tileMax) tileMax = p[tk];
          }
          const Mnew = Math.max(M, tileMax);
          if (Mnew > M) {
            const ms = F(Math.exp(M - Mnew));
            for (let d = 0; d < Dh; d++) acc[d] = F(acc[d] * ms);
            S = F(S * ms);
          }
          M = Mnew;
          S = F(S + ggmlSoftMaxExp(TILE, p, 0, p, 0, M));
          for (let tk = 0; tk < TILE; tk++) {
            const j = ic + tk;
            if (j > pos) break;
            const vo = j * rowKv + kvh * Dh;
            for (let d = 0; d < Dh; d++) acc[d] = fma32(p[tk], f16ToF32(vCache[vo + d]), acc[d]);
          }
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


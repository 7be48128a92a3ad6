// ReferenceBackend: matmul vs plain f32 math, moeFfn on hand-built experts with known answers,
// attention vs a naive per-head softmax (GQA, pos0 > 0, causality), getRows.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GGMLType, type Tensor } from '../src/tensor.js';
import { ReferenceBackend } from '../src/backend/reference.js';
import { dequantize, quantize } from '../src/formats/quants.js';
import { f16ToF32, f32ArrayToF16 } from '../src/formats/half.js';
import { ggmlSwiglu } from '../src/backend/ggml-math.js';

function gaussian(n: number, seed: number, sigma = 1): Float32Array {
  let a = seed >>> 0;
  const r = (): number => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = Math.imul(a ^ (a >>> 15), a | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = sigma * Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  return out;
}

function tensor(name: string, type: GGMLType, shape: number[], values: Float32Array): Tensor {
  return { name, type, shape, data: quantize(type, values) };
}

const silu = (x: number): number => x / (1 + Math.exp(-x));
const be = new ReferenceBackend();

test('matmul: y = x·Wᵀ within the activation/weight quantization error, every type', () => {
  const T = 3, K = 512, N = 8;
  const x = gaussian(T * K, 1);
  const w = gaussian(N * K, 2, 0.05);
  // relative tolerance of the activation conversion (f32, f16, bf16, Q8_0, Q8_K)
  const tol: Record<number, number> = {
    [GGMLType.F32]: 1e-6, [GGMLType.F16]: 1e-3, [GGMLType.BF16]: 8e-3, [GGMLType.Q4_0]: 1e-2,
    [GGMLType.Q8_0]: 1e-2, [GGMLType.Q4_K]: 1e-2, [GGMLType.Q5_K]: 1e-2, [GGMLType.Q6_K]: 1e-2,
  };
  for (const type of [GGMLType.F32, GGMLType.F16, GGMLType.BF16, GGMLType.Q4_0, GGMLType.Q8_0, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K]) {
    const W = tensor('w', type, [N, K], w);
    const wd = dequantize(type, W.data, N * K); // what the weights really are
    const y = new Float32Array(T * N).fill(NaN);
    be.matmul({ y, x, w: W, T });
    for (let t = 0; t < T; t++) {
      for (let n = 0; n < N; n++) {
        let ref = 0, mag = 0;
        for (let k = 0; k < K; k++) { ref += x[t * K + k] * wd[n * K + k]; mag += Math.abs(x[t * K + k] * wd[n * K + k]); }
        const err = Math.abs(y[t * N + n] - ref);
        assert.ok(err <= tol[type] * mag, `${GGMLType[type]} y[${t},${n}] = ${y[t * N + n]}, f32 math ${ref}`);
      }
    }
  }
});

/**
 * E = 4 experts, D = F = 32, x = ones. Expert e: gate = (e/D)·1 so every g_f = e; up = (1/D)·1 so
 * u_f = 1; down = (1/F)·1 so every output is mean_f silu(e) = silu(e).
 */
function identityLikeExperts(type: GGMLType): { gate: Tensor; up: Tensor; down: Tensor } {
  const E = 4, D = 32, Fd = 32;
  const g = new Float32Array(E * Fd * D), u = new Float32Array(E * Fd * D), d = new Float32Array(E * D * Fd);
  for (let e = 0; e < E; e++) {
    g.fill(e / D, e * Fd * D, (e + 1) * Fd * D);
    u.fill(1 / D, e * Fd * D, (e + 1) * Fd * D);
    d.fill(1 / Fd, e * D * Fd, (e + 1) * D * Fd);
  }
  return {
    gate: tensor('gate', type, [E, Fd, D], g), up: tensor('up', type, [E, Fd, D], u), down: tensor('down', type, [E, D, Fd], d),
  };
}

test('moeFfn: hand-built experts give w1*silu(1) + w3*silu(3); unused slots (id < 0) are skipped', () => {
  for (const [type, tol] of [[GGMLType.F32, 1e-6], [GGMLType.F16, 1e-3], [GGMLType.Q8_0, 1e-2]] as const) {
    const { gate, up, down } = identityLikeExperts(type);
    const T = 3, K = 2, D = 32;
    const x = new Float32Array(T * D).fill(1);
    const ids = new Int32Array([1, 3, /* t1 */ 2, -1, /* t2 */ 0, 3]);
    const weights = new Float32Array([0.25, 0.75, /* t1 */ 0.5, 100, /* t2 */ 0.9, 0.1]);
    const out = new Float32Array(T * D).fill(NaN);
    be.moeFfn({ out, x, gate, up, down, ids, weights, T, K });
    const want = [0.25 * silu(1) + 0.75 * silu(3), 0.5 * silu(2), 0.9 * silu(0) + 0.1 * silu(3)];
    for (let t = 0; t < T; t++) {
      for (let d = 0; d < D; d++) {
        assert.ok(Math.abs(out[t * D + d] - want[t]) <= tol * Math.abs(want[t]) + 1e-7, `${GGMLType[type]} t=${t} d=${d}: ${out[t * D + d]} vs ${want[t]}`);
      }
    }
  }
});

test('moeFfn: random experts equal per-expert matmuls, weighted and summed in slot order', () => {
  const E = 5, D = 256, Fd = 512, T = 2, K = 3;
  const type = GGMLType.Q4_K;
  const gate = tensor('gate', type, [E, Fd, D], gaussian(E * Fd * D, 11, 0.1));
  const up = tensor('up', type, [E, Fd, D], gaussian(E * Fd * D, 12, 0.1));
  const down = tensor('down', GGMLType.Q6_K, [E, D, Fd], gaussian(E * D * Fd, 13, 0.1));
  const x = gaussian(T * D, 14);
  const ids = new Int32Array([4, 0, 2, /* t1 */ 1, -1, 3]);
  const weights = new Float32Array([0.5, 0.3, 0.2, 0.6, 0.1, 0.4]);
  const out = new Float32Array(T * D);
  be.moeFfn({ out, x, gate, up, down, ids, weights, T, K });
  // the same thing from matmuls over single-expert slices
  const slice = (w: Tensor, e: number): Tensor => {
    const bytes = w.data.length / E;
    return { name: `${w.name}[${e}]`, type: w.type, shape: w.shape.slice(1), data: w.data.subarray(e * bytes, (e + 1) * bytes) };
  };
  for (let t = 0; t < T; t++) {
    const acc = new Float32Array(D);
    const xt = x.subarray(t * D, (t + 1) * D);
    for (let j = 0; j < K; j++) {
      const e = ids[t * K + j];
      if (e < 0) continue;
      const g = new Float32Array(Fd), u = new Float32Array(Fd), y = new Float32Array(D);
      be.matmul({ y: g, x: xt, w: slice(gate, e), T: 1 });
      be.matmul({ y: u, x: xt, w: slice(up, e), T: 1 });
      const h = new Float32Array(Fd);
      ggmlSwiglu(Fd, h, g, u); // ggml_vec_swiglu_f32 (SIMD lanes use ggml_v_expf, not libm expf)
      be.matmul({ y, x: h, w: slice(down, e), T: 1 });
      for (let d = 0; d < D; d++) acc[d] = Math.fround(acc[d] + Math.fround(y[d] * weights[t * K + j]));
    }
    for (let d = 0; d < D; d++) assert.equal(out[t * D + d], acc[d], `t=${t} d=${d}`);
  }
});

/** Naive attention in f64 on f16-rounded q and the f16 cache. */
function naiveAttention(q: Float32Array, k: Uint16Array, v: Uint16Array, T: number, pos0: number, H: number, Hkv: number, Dh: number, scale: number, qF16 = true): Float64Array {
  const out = new Float64Array(T * H * Dh);
  for (let t = 0; t < T; t++) {
    for (let h = 0; h < H; h++) {
      const kvh = Math.floor(h / (H / Hkv));
      const qh = Array.from({ length: Dh }, (_, d) => { const x = q[(t * H + h) * Dh + d]; return qF16 ? f16ToF32(f32ArrayToF16(Float32Array.of(x))[0]) : x; });
      const s: number[] = [];
      for (let j = 0; j <= pos0 + t; j++) {
        let dot = 0;
        for (let d = 0; d < Dh; d++) dot += qh[d] * f16ToF32(k[(j * Hkv + kvh) * Dh + d]);
        s.push(dot * scale);
      }
      const m = Math.max(...s);
      const p = s.map((z) => Math.exp(z - m));
      const Z = p.reduce((a, b) => a + b, 0);
      for (let d = 0; d < Dh; d++) {
        let o = 0;
        for (let j = 0; j < p.length; j++) o += (p[j] / Z) * f16ToF32(v[(j * Hkv + kvh) * Dh + d]);
        out[(t * H + h) * Dh + d] = o;
      }
    }
  }
  return out;
}

test('attention: causal GQA softmax matches a naive computation, with pos0 > 0 and for decode', () => {
  // T < 64: ggml's one-chunk path accumulates values in f16 (relative error ~ 2^-11 per step);
  // T ≥ 64: the tiled path is all f32.
  const ctx = 80, H = 8, Hkv = 2, Dh = 64;
  const k = f32ArrayToF16(gaussian(ctx * Hkv * Dh, 21));
  const v = f32ArrayToF16(gaussian(ctx * Hkv * Dh, 22));
  for (const [T, pos0] of [[5, 0], [4, 3], [1, 9], [64, 0], [70, 5]] as const) {
    const q = gaussian(T * H * Dh, 23 + pos0, 0.5);
    const scale = 1 / Math.sqrt(Dh);
    const out = new Float32Array(T * H * Dh).fill(NaN);
    be.attention({ out, q, kCache: k, vCache: v, T, pos0, nHead: H, nHeadKv: Hkv, headDim: Dh, scale });
    const want = naiveAttention(q, k, v, T, pos0, H, Hkv, Dh, scale, T < 64);
    const tol = T < 64 ? 4e-3 : 1e-5;
    for (let i = 0; i < out.length; i++) assert.ok(Math.abs(out[i] - want[i]) < tol * Math.max(1, Math.abs(want[i])), `T=${T} pos0=${pos0} [${i}]: ${out[i]} vs ${want[i]}`);
    // causality: cache rows after the last query position do not matter
    const k2 = k.slice(), v2 = v.slice();
    k2.fill(0x7bff, (pos0 + T) * Hkv * Dh);
    v2.fill(0x7bff, (pos0 + T) * Hkv * Dh);
    const out2 = new Float32Array(out.length);
    be.attention({ out: out2, q, kCache: k2, vCache: v2, T, pos0, nHead: H, nHeadKv: Hkv, headDim: Dh, scale });
    assert.deepEqual(out2, out);
  }
});

test('attention: a query attends to its own position only at t = 0 (output = v[0])', () => {
  const H = 2, Hkv = 1, Dh = 4;
  const k = f32ArrayToF16(new Float32Array([1, 2, 3, 4]));
  const v = f32ArrayToF16(new Float32Array([0.5, -1, 2, 8]));
  const out = new Float32Array(H * Dh);
  be.attention({ out, q: gaussian(H * Dh, 3), kCache: k, vCache: v, T: 1, pos0: 0, nHead: H, nHeadKv: Hkv, headDim: Dh, scale: 0.5 });
  assert.deepEqual([...out], [0.5, -1, 2, 8, 0.5, -1, 2, 8]);
});

test('getRows: dequantized rows in the requested order', () => {
  const R = 6, K = 64;
  const values = gaussian(R * K, 31);
  for (const type of [GGMLType.F32, GGMLType.F16, GGMLType.Q8_0, GGMLType.Q4_0]) {
    const w = tensor('token_embd.weight', type, [R, K], values);
    const all = dequantize(type, w.data, R * K);
    const rows = [5, 0, 5, 2];
    const out = new Float32Array(rows.length * K);
    be.getRows({ out, w, rows });
    rows.forEach((r, i) => assert.deepEqual(out.subarray(i * K, (i + 1) * K), all.subarray(r * K, (r + 1) * K)));
  }
  assert.throws(() => be.getRows({ out: new Float32Array(K), w: tensor('e', GGMLType.F32, [R, K], values), rows: [R] }), /out of range/);
});

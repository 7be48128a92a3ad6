/**
 * NativeBackend (C addon) against ReferenceBackend (plain TS) on random inputs at real shapes,
 * for every weight type, on both the AVX2 and the scalar kernels, with 1 and 2 threads.
 * The integer math per block is the same in both, so only f32 summation order differs (and,
 * for Q8_0 activations, the x86 vs generic rounding of rare halfway cases): tolerances are
 * relative to the output scale and tight.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { GGMLType, typeName, tensorBytes, type Tensor } from '../src/tensor.js';
import { NativeBackend, nativeAvailable, loadAddon } from '../src/backend/native.js';
import { ReferenceBackend } from '../src/backend/reference.js';
import { createBackend, physicalCores } from '../src/backend/index.js';
import { quantize } from '../src/formats/quants.js';
import { f32ArrayToF16At, f32ToF16 } from '../src/formats/half.js';
import { addInPlace, rmsNorm, ropeApply, ropeTable } from '../src/nn/ops.js';
import { KVCache } from '../src/nn/kv-cache.js';
import { route } from '../src/nn/moe.js';

const skip = nativeAvailable() ? false : 'native addon not built (npm run build:native)';
const TYPES = [GGMLType.F32, GGMLType.F16, GGMLType.BF16, GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K];

function rng(seed: number): () => number {
  let s = seed >>> 0;
  return () => {
    s = (s + 0x6d2b79f5) >>> 0;
    let t = s;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

/** Roughly normal values (sum of uniforms), scaled. */
function randn(n: number, r: () => number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (r() + r() + r() - 1.5) * 2 * scale;
  return a;
}

function weight(name: string, type: GGMLType, shape: number[], r: () => number): Tensor {
  const f = randn(shape.reduce((a, b) => a * b, 1), r, 0.5);
  const data = quantize(type, f);
  assert.equal(data.byteLength, tensorBytes(type, shape));
  return { name, type, shape, data };
}

/** max |a-b| / max |b|: error relative to the output's scale. */
function relErr(a: Float32Array, b: Float32Array): number {
  assert.equal(a.length, b.length);
  let d = 0, m = 0;
  for (let i = 0; i < a.length; i++) {
    assert.ok(Number.isFinite(a[i]), `non-finite output at ${i}`);
    d = Math.max(d, Math.abs(a[i]! - b[i]!));
    m = Math.max(m, Math.abs(b[i]!));
  }
  return m === 0 ? d : d / m;
}

/**
 * Tolerance vs the TS reference. Observed: <= 2e-6 for all types (f32 summation order), except
 * Q8_0/Q4_0 at ~3e-4: the native Q8_0 activation quantizer follows ggml's x86 quantize_row_q8_0
 * (multiplier 127/amax, round half to even), the reference follows quantize_row_q8_0_ref.
 */
function tolFor(type: GGMLType): number {
  return type === GGMLType.Q8_0 || type === GGMLType.Q4_0 ? 2e-3 : 1e-5;
}

function withSimd<T>(on: boolean, f: () => T): T {
  const a = loadAddon();
  const prev = a.cpuFeatures().simd;
  a.setSimd(on);
  try {
    return f();
  } finally {
    a.setSimd(prev);
  }
}

const simdModes = (): boolean[] => (loadAddon().cpuFeatures().avx2 ? [true, false] : [false]);

const ref = new ReferenceBackend();

test('matmul: native == reference for every type, T in {1, 7, 64}, SIMD and scalar', { skip }, () => {
  const nb1 = new NativeBackend({ threads: 1 });
  const nb2 = new NativeBackend({ threads: 2 });
  const K = 2048;
  for (const type of TYPES) {
    const r = rng(1000 + type);
    for (const [T, N] of [[1, 1024], [7, 512], [64, 80]] as const) {
      const w = weight(`w.${typeName(type)}`, type, [N, K], r);
      const x = randn(T * K, r);
      const want = new Float32Array(T * N);
      ref.matmul({ y: want, x, w, T });
      const outs: Float32Array[] = [];
      for (const simd of simdModes()) {
        for (const nb of [nb1, nb2]) {
          const y = new Float32Array(T * N).fill(NaN);
          withSimd(simd, () => nb.matmul({ y, x, w, T }));
          const e = relErr(y, want);
          assert.ok(e <= tolFor(type), `${typeName(type)} T=${T} simd=${simd} threads=${nb.threads}: rel err ${e}`);
          outs.push(y);
        }
      }
      // thread count never changes results; SIMD vs scalar differ only by f32 summation order
      assert.deepEqual(outs[1], outs[0], `${typeName(type)} T=${T}: 1 vs 2 threads`);
      if (outs.length === 4) {
        assert.deepEqual(outs[3], outs[2]);
        assert.ok(relErr(outs[0]!, outs[2]!) <= 1e-5, `${typeName(type)} T=${T}: simd vs scalar`);
      }
    }
  }
});

test('matmul: a tile of tokens gives the same rows as tokens one at a time', { skip }, () => {
  const nb = new NativeBackend({ threads: 2 });
  const K = 512, N = 64, T = 11;
  // F32 is excluded on purpose: like llama.cpp, a batch of F32 rows is summed in tinyBLAS order and a
  // single row in ggml_vec_dot_f32 order (src/backend/ggml-math.ts), so the two differ in the last bits.
  // Q4_K (N % 8 == 0) likewise: llama.cpp's repacked gemm sums each group of 4 rows in another order
  // than its gemv (formats/quants.ts q4KRepacked); only the rows after the last group of 4 match.
  for (const type of TYPES.filter((t) => t !== GGMLType.F32)) {
    const r = rng(77 + type);
    const w = weight('w', type, [N, K], r);
    const x = randn(T * K, r);
    const y = new Float32Array(T * N);
    nb.matmul({ y, x, w, T });
    for (let t = type === GGMLType.Q4_K ? T - (T % 4) : 0; t < T; t++) {
      const yt = new Float32Array(N);
      nb.matmul({ y: yt, x: x.subarray(t * K, (t + 1) * K), w, T: 1 });
      assert.deepEqual(yt, y.subarray(t * N, (t + 1) * N), `${typeName(type)} token ${t}`);
    }
  }
});

test('matmuls: several weights on one input (one pool run) == one matmul each, bit for bit; == reference', { skip }, () => {
  const K = 512;
  // mixed activation formats: Q4_K repacked by 16 (N=64) and in llama.cpp's 8-row order (N=24), Q6_K and
  // Q4_K share Q8_K blocks; F32 (router-like, N=60), Q8_0, F16 each their own
  const specs: [GGMLType, number][] = [[GGMLType.Q4_K, 64], [GGMLType.Q4_K, 24], [GGMLType.Q6_K, 48], [GGMLType.F32, 60], [GGMLType.Q8_0, 32], [GGMLType.F16, 16]];
  const r = rng(4242);
  const ws = specs.map(([type, N], i) => weight(`w${i}.${typeName(type)}`, type, [N, K], r));
  for (const T of [1, 5, 64]) {
    const x = randn(T * K, r);
    const want = ws.map((w) => {
      const y = new Float32Array(T * w.shape[0]!);
      ref.matmul({ y, x, w, T });
      return y;
    });
    const refMany = ws.map((w) => new Float32Array(T * w.shape[0]!));
    ref.matmuls({ x, outs: ws.map((w, i) => ({ y: refMany[i]!, w })), T });
    assert.deepEqual(refMany, want, `reference matmuls T=${T}`);
    for (const simd of simdModes()) {
      for (const threads of [1, 2, 3]) {
        const nb = new NativeBackend({ threads });
        const ys = ws.map((w) => new Float32Array(T * w.shape[0]!).fill(NaN));
        withSimd(simd, () => nb.matmuls({ x, outs: ws.map((w, i) => ({ y: ys[i]!, w })), T }));
        ws.forEach((w, i) => {
          const one = new Float32Array(T * w.shape[0]!);
          withSimd(simd, () => nb.matmul({ y: one, x, w, T }));
          assert.deepEqual(ys[i], one, `${w.name} T=${T} simd=${simd} threads=${threads}: matmuls vs matmul`);
          const e = relErr(ys[i]!, want[i]!);
          assert.ok(e <= tolFor(w.type), `${w.name} T=${T} simd=${simd}: rel err ${e}`);
        });
      }
    }
  }
  const nb = new NativeBackend({ threads: 2 });
  const x = randn(K, r);
  const y = (w: Tensor): Float32Array => new Float32Array(w.shape[0]!);
  assert.throws(() => nb.matmuls({ x, outs: [], T: 1 }), /1 to 8 weights/);
  assert.throws(() => nb.matmuls({ x, outs: Array.from({ length: 9 }, () => ({ y: y(ws[0]!), w: ws[0]! })), T: 1 }), /1 to 8 weights/);
  assert.throws(() => nb.matmuls({ x, outs: [{ y: y(ws[0]!), w: ws[0]! }, { y: new Float32Array(3), w: ws[2]! }], T: 1 }), /y has 3 elements/);
  assert.throws(() => nb.matmuls({ x, outs: [{ y: y(ws[4]!), w: ws[4]! }, { y: new Float32Array(32), w: weight('k256', GGMLType.Q8_0, [32, 256], r) }], T: 1 }), /has K/);
  const shared = new Float32Array(64 + 24);
  assert.throws(() => nb.matmuls({ x, outs: [{ y: shared.subarray(0, 64), w: ws[0]! }, { y: shared.subarray(40, 64), w: ws[1]! }], T: 1 }), /overlap/);
  assert.throws(() => nb.matmuls({ x: x.subarray(1), outs: [{ y: y(ws[0]!), w: ws[0]! }], T: 1 }), /x has/);
  // the addon's own checks: array lengths and weight sizes
  const a = loadAddon();
  assert.throws(() => a.matmuls(x, 1, K, [ws[4]!.data], [ws[4]!.type], [], 1), RangeError);
  assert.throws(() => a.matmuls(x, 1, K, [ws[4]!.data.subarray(1)], [ws[4]!.type], [y(ws[4]!)], 1), RangeError);
});

test('moeFfn: native == reference, E=8, K=2, T in {1, 33}, with unused slots', { skip }, () => {
  const E = 8, F = 256, D = 512, K = 2;
  const nb1 = new NativeBackend({ threads: 1 });
  const nb2 = new NativeBackend({ threads: 2 });
  const nb3 = new NativeBackend({ threads: 3 }); // one token: 3 ranges of experts
  const combos: [GGMLType, GGMLType][] = [
    [GGMLType.Q4_K, GGMLType.Q6_K], [GGMLType.Q8_0, GGMLType.Q8_0], [GGMLType.F16, GGMLType.F32],
    [GGMLType.Q5_K, GGMLType.Q4_0], [GGMLType.BF16, GGMLType.Q4_K],
  ];
  for (const [gt, dt] of combos) {
    const r = rng(500 + gt * 31 + dt);
    const gate = weight('gate', gt, [E, F, D], r), up = weight('up', gt, [E, F, D], r), down = weight('down', dt, [E, D, F], r);
    for (const T of [1, 33]) {
      const x = randn(T * D, r);
      const ids = new Int32Array(T * K), weights = new Float32Array(T * K);
      for (let t = 0; t < T; t++) {
        const a = Math.floor(r() * E);
        ids[t * K] = a;
        ids[t * K + 1] = (a + 1 + Math.floor(r() * (E - 1))) % E;
        if (t % 5 === 3) ids[t * K + (t % 2)] = -1; // unused slot
        if (t === 7) ids.fill(-1, t * K, t * K + K); // token with no expert -> zeros
        weights[t * K] = r();
        weights[t * K + 1] = r();
      }
      const want = new Float32Array(T * D);
      ref.moeFfn({ out: want, x, gate, up, down, ids, weights, T, K });
      const tol = Math.max(tolFor(gt), tolFor(dt)) * 2;
      const outs: Float32Array[] = [];
      for (const simd of simdModes()) {
        for (const nb of [nb1, nb2, nb3]) {
          const out = new Float32Array(T * D).fill(NaN);
          withSimd(simd, () => nb.moeFfn({ out, x, gate, up, down, ids, weights, T, K }));
          const e = relErr(out, want);
          assert.ok(e <= tol, `moe ${typeName(gt)}/${typeName(dt)} T=${T} simd=${simd} threads=${nb.threads}: rel err ${e}`);
          outs.push(out);
        }
      }
      assert.deepEqual(outs[1], outs[0]);
      assert.deepEqual(outs[2], outs[0]);
      if (T > 7) assert.ok(outs[0]!.subarray(7 * D, 8 * D).every((v) => v === 0), 'token without experts must be 0');
    }
  }
});

test('AVX-512 (VNNI) kernels are bit-identical to the AVX2 kernels: matmul and moeFfn', { skip }, () => {
  // the addon also takes a number (0 scalar, 1 best, 2 AVX2 only) and reports avx512 / simdLevel
  const a = loadAddon() as unknown as { setSimd(on: boolean | number): boolean; cpuFeatures(): { simd: boolean; avx512?: boolean; simdLevel?: number } };
  if (!a.cpuFeatures().avx512) return; // CPU without AVX-512 F/VL/BW/VNNI (or MOEKIT_NO_AVX512 set)
  const prev = a.cpuFeatures().simd;
  // 1 = best (AVX-512 here), 2 = AVX2 only
  const both = <T>(f: () => T): [T, T] => {
    try {
      a.setSimd(1);
      assert.equal(a.cpuFeatures().simdLevel, 2);
      const x = f();
      a.setSimd(2);
      assert.equal(a.cpuFeatures().simdLevel, 1);
      return [x, f()];
    } finally {
      a.setSimd(prev);
    }
  };
  const nb = new NativeBackend({ threads: 2 });
  const K = 512;
  for (const type of TYPES) {
    const r = rng(3000 + type);
    for (const [T, N] of [[1, 1031], [3, 66], [4, 37], [5, 64], [9, 23], [64, 41]] as const) {
      const w = weight(`w.${typeName(type)}`, type, [N, K], r);
      const x = randn(T * K, r);
      const [y5, y2] = both(() => {
        const y = new Float32Array(T * N).fill(NaN);
        nb.matmul({ y, x, w, T });
        return y;
      });
      assert.deepEqual(y5, y2, `${typeName(type)} T=${T} N=${N}: AVX-512 vs AVX2`);
    }
  }
  const E = 8, F = 256, D = 512, KE = 2;
  for (const [gt, dt] of [[GGMLType.Q8_0, GGMLType.Q8_0], [GGMLType.Q4_K, GGMLType.Q6_K], [GGMLType.Q8_0, GGMLType.Q4_K]] as const) {
    const r = rng(4000 + gt * 31 + dt);
    const gate = weight('gate', gt, [E, F, D], r), up = weight('up', gt, [E, F, D], r), down = weight('down', dt, [E, D, F], r);
    for (const T of [1, 2, 33]) {
      const x = randn(T * D, r);
      const ids = new Int32Array(T * KE), weights = new Float32Array(T * KE);
      for (let t = 0; t < T; t++) {
        const e0 = Math.floor(r() * E);
        ids[t * KE] = e0;
        ids[t * KE + 1] = (e0 + 1 + Math.floor(r() * (E - 1))) % E;
        weights[t * KE] = r();
        weights[t * KE + 1] = r();
      }
      const [o5, o2] = both(() => {
        const out = new Float32Array(T * D).fill(NaN);
        nb.moeFfn({ out, x, gate, up, down, ids, weights, T, K: KE });
        return out;
      });
      assert.deepEqual(o5, o2, `moe ${typeName(gt)}/${typeName(dt)} T=${T}: AVX-512 vs AVX2`);
    }
  }
});

function q6Weight(N: number, K: number, r: () => number, raw: boolean): Tensor {
  const shape = [N, K];
  let data: Uint8Array;
  if (raw) {
    data = new Uint8Array(tensorBytes(GGMLType.Q6_K, shape));
    for (let i = 0; i < data.length; i++) data[i] = Math.floor(r() * 256);
    // block_q6_K: ql[128], qh[64], scales[16], d (fp16) at bytes 208-209: keep d finite and small
    for (let b = 0; b < data.length; b += 210) data[b + 209]! &= 0x3b;
  } else {
    data = quantize(GGMLType.Q6_K, randn(N * K, r, 0.5));
  }
  assert.equal(data.byteLength, tensorBytes(GGMLType.Q6_K, shape));
  return { name: 'w.q6_k', type: GGMLType.Q6_K, shape, data };
}

// Q6_K decode (T=1) on AVX-512 (two rows per 512-bit vector) against the AVX2 kernel, for row counts that
// leave 1, 2 or 3 rows in the last tile; weights quantized from random values and raw random blocks (any
// 6-bit quants and int8 scales, finite fp16 d)
test('Q6_K T=1: AVX-512 matmul is bit-identical to AVX2', { skip }, () => {
  const a = loadAddon() as unknown as { setSimd(on: boolean | number): boolean; cpuFeatures(): { simd: boolean; avx512?: boolean; simdLevel?: number } };
  if (!a.cpuFeatures().avx512) return; // no AVX-512 F/VL/BW/VNNI here (or MOEKIT_NO_AVX512 set)
  const prev = a.cpuFeatures().simd;
  for (const threads of [1, 2]) {
    const nb = new NativeBackend({ threads });
    for (const raw of [false, true])
      for (const K of [256, 1024, 2048])
        for (const N of [1, 2, 3, 4, 5, 64, 2048]) {
          const r = rng(K * 7919 + N * 31 + (raw ? 1 : 0) + threads * 100003);
          const w = q6Weight(N, K, r, raw);
          const x = randn(K, r);
          const run = (level: number): Float32Array => {
            a.setSimd(level);
            assert.equal(a.cpuFeatures().simdLevel, level === 1 ? 2 : 1);
            const y = new Float32Array(N).fill(NaN);
            nb.matmul({ y, x, w, T: 1 });
            return y;
          };
          try {
            const y5 = run(1), y2 = run(2);
            assert.ok(y2.every(Number.isFinite), `K=${K} N=${N}: non-finite output`);
            assert.deepEqual(y5, y2, `Q6_K K=${K} N=${N} raw=${raw} threads=${threads}: AVX-512 vs AVX2`);
          } finally {
            a.setSimd(prev);
          }
        }
  }
});

test('Q4_K, Q8_0 and Q6_K repacked by 16 rows (AVX-512, AVX2 and scalar kernels) == as stored, bit for bit', { skip }, () => {
  // NativeBackend repacks Q4_K, Q8_0 and Q6_K on AVX-512 CPUs (native.ts weightData); the addon's layout ids are 140, 141, 142
  const a = loadAddon() as unknown as {
    setSimd(on: boolean | number): boolean;
    cpuFeatures(): { simd: boolean; avx2: boolean; avx512: boolean };
    repack(dst: Uint8Array, src: Uint8Array, type: number, N: number, K: number, threads: number): void;
    matmul(y: Float32Array, x: Float32Array, w: Uint8Array, type: number, T: number, N: number, K: number, threads: number): void;
    moeFfn(out: Float32Array, x: Float32Array, g: Uint8Array, gt: number, u: Uint8Array, ut: number, d: Uint8Array, dt: number,
      ids: Int32Array, w: Float32Array, T: number, K: number, E: number, F: number, D: number, threads: number): void;
  };
  const prev = a.cpuFeatures().simd;
  const levels = a.cpuFeatures().avx512 ? [1, 2, 0] : a.cpuFeatures().avx2 ? [1, 0] : [0];
  // Q8_0 and Q6_K as stored sum in ggml's SIMD lane order (their scalar dots do not): the repacked kernels, the
  // scalar ones included, are compared with the stored layout's SIMD result
  const cases = [[GGMLType.Q4_K, 140, false],
    ...(a.cpuFeatures().avx2 ? [[GGMLType.Q8_0, 141, true] as const, [GGMLType.Q6_K, 142, true] as const] : [])] as const;
  const pack6 = (w: Tensor, N: number, K: number): Uint8Array => {
    const p = new Uint8Array(w.data.byteLength);
    a.repack(p, w.data, GGMLType.Q6_K, N, K, 2);
    return p;
  };
  const r = rng(4242);
  try {
    for (const [Q, R16, simdRef] of cases) {
      const pack = (w: Tensor, N: number, K: number): Uint8Array => {
        const p = new Uint8Array(w.data.byteLength);
        a.repack(p, w.data, Q, N, K, 2);
        return p;
      };
      const stored = (level: number, f: () => void): void => {
        a.setSimd(simdRef ? 1 : level);
        f();
        a.setSimd(level);
      };
      for (const level of levels) {
        a.setSimd(level);
        // Q8_0 and Q6_K also with N % 16 != 0 (a 50257-token output matrix): the last N % 16 rows stay as stored
        const shapes = [[16, 256], [64, 512], [1040, 768], [16, 20480], ...(Q === GGMLType.Q4_K ? [] : [[50, 256], [1043, 768]])] as const;
        for (const [N, K] of shapes) {
          const w = weight('w', Q, [N, K], r), p = pack(w, N, K), n16 = N & ~15;
          for (const T of Q === GGMLType.Q6_K ? [1, 2, 3, 4, 5, 6, 7, 8, 9, 37, 64] : [1, 3, 4, 5, 9, 64]) {
            const x = randn(T * K, r), want = new Float32Array(T * N), got = new Float32Array(T * N);
            stored(level, () => a.matmul(want, x, w.data, Q, T, N, K, 2));
            if (n16 < N) {
              // the stored tail runs the stored kernel of this level (at level 0, the scalar dot: ggml's generic order)
              const tail = new Float32Array(T * N);
              a.matmul(tail, x, w.data, Q, T, N, K, 2);
              for (let t = 0; t < T; t++) want.set(tail.subarray(t * N + n16, t * N + N), t * N + n16);
            }
            a.matmul(got, x, p, R16, T, N, K, 2);
            assert.deepEqual(got, want, `${typeName(Q)} matmul N=${N} K=${K} T=${T} setSimd(${level})`);
          }
        }
        const E = 4, F = 256, D = 512, KE = 2;
        const g = weight('g', Q, [E, F, D], r), u = weight('u', Q, [E, F, D], r), d = weight('d', Q, [E, D, F], r);
        const d6 = weight('d6', GGMLType.Q6_K, [E, D, F], r);
        const gp = pack(g, E * F, D), up = pack(u, E * F, D), dp = pack(d, E * D, F), d6p = pack6(d6, E * D, F);
        for (const T of [1, 2, 33]) {
          const x = randn(T * D, r), ids = new Int32Array(T * KE).map((_, i) => (i % 3 === 2 ? -1 : (i * 7 + (i >> 1)) % E));
          const wts = randn(T * KE, r), want = new Float32Array(T * D), got = new Float32Array(T * D);
          stored(level, () => a.moeFfn(want, x, g.data, Q, u.data, Q, d.data, Q, ids, wts, T, KE, E, F, D, 2));
          a.moeFfn(got, x, gp, R16, up, R16, dp, R16, ids, wts, T, KE, E, F, D, 2);
          assert.deepEqual(got, want, `moeFfn ${typeName(Q)} T=${T} setSimd(${level})`);
          stored(level, () => a.moeFfn(want, x, g.data, Q, u.data, Q, d6.data, GGMLType.Q6_K, ids, wts, T, KE, E, F, D, 2));
          a.moeFfn(got, x, gp, R16, u.data, Q, d6.data, GGMLType.Q6_K, ids, wts, T, KE, E, F, D, 2);
          if (!simdRef || level !== 0) assert.deepEqual(got, want, `moeFfn ${typeName(Q)}(repacked gate)/Q6_K T=${T} setSimd(${level})`);
          // Q4_K_M's MoE layers: gate/up repacked, down Q6_K repacked (142); as stored, Q6_K's scalar dot is ggml's
          // generic order, so the scalar level compares only where both stored references are SIMD
          stored(level, () => a.moeFfn(want, x, g.data, Q, u.data, Q, d6.data, GGMLType.Q6_K, ids, wts, T, KE, E, F, D, 2));
          a.moeFfn(got, x, gp, R16, up, R16, d6p, 142, ids, wts, T, KE, E, F, D, 2);
          if (simdRef || level !== 0) assert.deepEqual(got, want, `moeFfn ${typeName(Q)}(repacked)/Q6_K(repacked) T=${T} setSimd(${level})`);
        }
      }
    }
  } finally {
    a.setSimd(prev);
  }
  assert.throws(() => a.repack(new Uint8Array(144 * 24), new Uint8Array(144 * 24), GGMLType.Q4_K, 24, 256, 1), /multiple of 16/);
  assert.throws(() => a.repack(new Uint8Array(34 * 8 * 15), new Uint8Array(34 * 8 * 15), GGMLType.Q8_0, 15, 256, 1), /N must be an integer in \[16,/);
  assert.throws(() => a.repack(new Uint8Array(144 * 16), new Uint8Array(144 * 15), GGMLType.Q4_K, 16, 256, 1), /size/);
  assert.throws(() => a.repack(new Uint8Array(176 * 16), new Uint8Array(176 * 16), GGMLType.Q5_K, 16, 256, 1), /type/);
  assert.throws(() => a.repack(new Uint8Array(210 * 16), new Uint8Array(210 * 15), GGMLType.Q6_K, 16, 256, 1), /size/);
});

test('Q4_K, Q8_0 and Q6_K repack from a mapped file (read through the page cache, pages dropped) == from memory == scalar packing', { skip }, () => {
  const a = loadAddon();
  const r = rng(99);
  const K = 768;
  // Q8_0 and Q6_K also with 1043 rows: the last 3 copied as stored
  for (const [Q, N] of [[GGMLType.Q4_K, 1040], [GGMLType.Q8_0, 1040], [GGMLType.Q6_K, 1040], [GGMLType.Q8_0, 1043], [GGMLType.Q6_K, 1043]] as const) {
    const w = weight('w', Q, [N, K], r);
    const dir = mkdtempSync(join(tmpdir(), 'moekit-repack-'));
    const file = join(dir, 'w.bin');
    try {
      const pre = 96; // the tensor starts inside a page, as in a GGUF file
      writeFileSync(file, Buffer.concat([Buffer.alloc(pre, 7), Buffer.from(w.data)]));
      const h = a.mmapOpen(file);
      const view = new Uint8Array(a.mmapView(h, pre, w.data.byteLength));
      const scalar = new Uint8Array(w.data.byteLength);
      const prev = a.cpuFeatures().simd;
      a.setSimd(0); // mkc_q4K_r16_pack / mkc_q8_0_r16_pack, the references for the AVX-512 gathers (Q6_K: one memcpy packing)
      try {
        a.repack(scalar, w.data, Q, N, K, 1);
      } finally {
        a.setSimd(prev);
      }
      for (const threads of [1, 2]) {
        const fromMem = new Uint8Array(w.data.byteLength), fromFile = new Uint8Array(w.data.byteLength);
        a.repack(fromMem, w.data, Q, N, K, threads);
        a.repack(fromFile, view, Q, N, K, threads);
        assert.deepEqual(fromMem, scalar, `${typeName(Q)} threads=${threads}: from memory`);
        assert.deepEqual(fromFile, scalar, `${typeName(Q)} threads=${threads}: from the file`);
        const tail = (N - (N & ~15)) * (w.data.byteLength / N); // the rows past the whole groups: as stored
        if (tail) assert.deepEqual(fromFile.subarray(-tail), w.data.subarray(-tail), `${typeName(Q)} N=${N}: the last rows as stored`);
      }
      assert.deepEqual(view, w.data, 'the dropped pages read back from the file');
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

test('attention: native == reference with GQA and pos0 > 0, f16 (T < 64) and f32 (T >= 64) paths', { skip }, () => {
  const nb1 = new NativeBackend({ threads: 1 });
  const nb2 = new NativeBackend({ threads: 2 });
  for (const [H, Hkv, Dh, T, pos0, ctx] of [[8, 2, 64, 1, 37, 64], [4, 4, 128, 9, 5, 16], [6, 3, 80, 5, 0, 8], [4, 2, 64, 64, 3, 80]] as const) {
    const r = rng(H * 1000 + T);
    const q = randn(T * H * Dh, r);
    const kf = randn(ctx * Hkv * Dh, r), vf = randn(ctx * Hkv * Dh, r);
    const kCache = new Uint16Array(kf.length), vCache = new Uint16Array(vf.length);
    for (let i = 0; i < kf.length; i++) {
      kCache[i] = f32ToF16(kf[i]!);
      vCache[i] = f32ToF16(vf[i]!);
    }
    // positions beyond pos0+T-1 are garbage the kernel must not read (causality)
    for (let i = (pos0 + T) * Hkv * Dh; i < kCache.length; i++) kCache[i] = vCache[i] = 0x7c00; // +inf
    const args = { q, kCache, vCache, T, pos0, nHead: H, nHeadKv: Hkv, headDim: Dh, scale: 1 / Math.sqrt(Dh) };
    const want = new Float32Array(T * H * Dh);
    ref.attention({ out: want, ...args });
    for (const simd of simdModes()) {
      for (const nb of [nb1, nb2]) {
        const out = new Float32Array(T * H * Dh).fill(NaN);
        withSimd(simd, () => nb.attention({ out, ...args }));
        const e = relErr(out, want);
        // T < 64 accumulates in f16 (as ggml's flash attention): a different f32 summation order
        // of q·k can flip one f16 rounding (~5e-4 relative); the T >= 64 path is all f32
        const tol = T < 64 ? 2e-3 : 1e-5;
        assert.ok(e <= tol, `attention H=${H} Hkv=${Hkv} T=${T} simd=${simd}: rel err ${e}`);
      }
    }
  }
});

// Runs in a child per emulated ggml lane count (MOEKIT_GGML_LANES 8 = AVX2 ggml, 16 = AVX-512 ggml): the
// SIMD attention (setSimd 1 = best, 2 = AVX2 only) against the scalar reference (setSimd 0), bit for bit,
// with 1-3 threads (each takes a token's heads in runs of H / threads).
const ATTN_SIMD_PROBE = `
import { loadAddon } from './src/backend/native.ts';
import { f32ToF16 } from './src/formats/half.ts';
const a = loadAddon();
let s = 12345;
const rnd = () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return s / 4294967296; };
const randn = (n, k) => Float32Array.from({ length: n }, () => k * Math.sqrt(-2 * Math.log(1 - rnd())) * Math.cos(2 * Math.PI * rnd()));
const bad = [];
let cases = 0;
for (const [H, Hkv] of [[8, 2], [4, 4]])
  for (const Dh of [32, 64, 128, 80, 20])
    for (const T of [1, 5, 64, 70])
      for (const [pos0, qk] of [[0, 1], [37, 4], [230, 1]]) {
        const ctx = pos0 + T + 3, scale = 1 / Math.sqrt(Dh);
        const q = randn(T * H * Dh, qk), kf = randn(ctx * Hkv * Dh, 1), vf = randn(ctx * Hkv * Dh, 1);
        const k = Uint16Array.from(kf, f32ToF16), v = Uint16Array.from(vf, f32ToF16);
        const outs = [0, 2, 1].map((mode) => {
          a.setSimd(mode);
          const out = new Float32Array(T * H * Dh).fill(NaN);
          a.attention(out, q, k, v, T, pos0, H, Hkv, Dh, ctx, scale, 1 + (cases % 3)); // 1-3 threads: runs of 8, 4, 3 or 2 heads
          return new Uint32Array(out.buffer);
        });
        cases++;
        for (const [m, o] of [[2, outs[1]], [1, outs[2]]]) {
          const i = o.findIndex((x, j) => x !== outs[0][j]);
          if (i >= 0) bad.push({ H, Hkv, Dh, T, pos0, setSimd: m, i });
        }
      }
a.setSimd(1);
console.log(JSON.stringify({ avx2: a.cpuFeatures().avx2, cases, bad: bad.slice(0, 5), nbad: bad.length }));
`;

test('attention: SIMD == scalar bit for bit (one-chunk and tiled, GQA, pos0 > 0, ggml lanes 8 and 16)', { skip }, () => {
  for (const lanes of ['8', '16']) {
    const p = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', ATTN_SIMD_PROBE], {
      env: { ...process.env, MOEKIT_GGML_LANES: lanes, MOEKIT_NO_SIMD: '' },
      encoding: 'utf8',
    });
    assert.equal(p.status, 0, p.stderr);
    const r = JSON.parse(p.stdout.trim().split('\n').pop()!) as { avx2: boolean; cases: number; bad: unknown[]; nbad: number };
    assert.equal(r.cases, 120);
    assert.equal(r.nbad, 0, `lanes=${lanes}: ${r.nbad} SIMD outputs differ from scalar, first ${JSON.stringify(r.bad)}`);
  }
});

test('getRows: native == reference for every type', { skip }, () => {
  const nb = new NativeBackend({ threads: 2 });
  for (const type of TYPES) {
    const r = rng(9 + type);
    const w = weight('token_embd.weight', type, [50, 512], r);
    const rows = [3, 0, 49, 3, 17];
    const want = new Float32Array(rows.length * 512), got = new Float32Array(rows.length * 512);
    ref.getRows({ out: want, w, rows });
    for (const simd of simdModes()) {
      withSimd(simd, () => nb.getRows({ out: got, w, rows }));
      assert.deepEqual(got, want, typeName(type));
    }
  }
});

test('getRows of a mapped table (its copy as stored) == reference, before and after a matmul repacked it (tied embeddings)', { skip }, () => {
  const a = loadAddon();
  const nb = new NativeBackend({ threads: 2 });
  for (const Q of [GGMLType.Q4_K, GGMLType.Q8_0, GGMLType.Q6_K]) {
    const r = rng(300 + Q);
    const w = weight('token_embd.weight', Q, [48, 512], r);
    const dir = mkdtempSync(join(tmpdir(), 'moekit-rows-'));
    const file = join(dir, 'w.bin');
    try {
      writeFileSync(file, Buffer.concat([Buffer.alloc(96, 7), Buffer.from(w.data), Buffer.from(w.data)]));
      const h = a.mmapOpen(file);
      // two mapped tables: rows first, then a matmul (embeddings); a matmul first, then rows (tied output)
      const rowsFirst: Tensor = { ...w, data: new Uint8Array(a.mmapView(h, 96, w.data.byteLength)) };
      const matmulFirst: Tensor = { ...w, data: new Uint8Array(a.mmapView(h, 96 + w.data.byteLength, w.data.byteLength)) };
      const rows = [5, 0, 47, 5, 30];
      const want = new Float32Array(rows.length * 512);
      ref.getRows({ out: want, w, rows });
      const x = randn(512, r);
      const yWant = new Float32Array(48);
      nb.matmul({ y: yWant, x, w, T: 1 });
      for (const t of [rowsFirst, matmulFirst]) {
        const y = new Float32Array(48);
        if (t === matmulFirst) nb.matmul({ y, x, w: t, T: 1 });
        for (let rep = 0; rep < 2; rep++) {
          const got = new Float32Array(rows.length * 512);
          nb.getRows({ out: got, w: t, rows });
          assert.deepEqual(got, want, `${typeName(Q)} ${t === rowsFirst ? 'rows first' : 'matmul first'} rep ${rep}`);
        }
        nb.matmul({ y, x, w: t, T: 1 });
        assert.deepEqual(y, yWant, `${typeName(Q)}: the matmul of the mapped table`);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  }
});

test('validation: bad arguments throw before the native call', { skip }, () => {
  const nb = new NativeBackend({ threads: 2 });
  const r = rng(3);
  const w = weight('w', GGMLType.Q4_K, [16, 256], r);
  const x = randn(2 * 256, r);
  assert.throws(() => nb.matmul({ y: new Float32Array(31), x, w, T: 2 }), /y has 31 elements/);
  assert.throws(() => nb.matmul({ y: new Float32Array(32), x: x.subarray(1), w, T: 2 }), /x has/);
  assert.throws(() => nb.matmul({ y: new Float32Array(32), x, w: { ...w, data: w.data.subarray(1) }, T: 2 }), /bytes/);
  assert.throws(() => nb.matmul({ y: new Float32Array(32), x, w: { ...w, type: GGMLType.Q2_K }, T: 2 }), /not supported/);
  assert.throws(() => nb.matmul({ y: new Float32Array(32), x, w: { ...w, shape: [16, 200] }, T: 2 }), /multiple/);
  assert.throws(() => nb.matmul({ y: new Float32Array(0), x: new Float32Array(0), w, T: 0 }), /T must be/);

  const E = 2, F = 512, D = 256;
  const gate = weight('g', GGMLType.Q8_0, [E, F, D], r), down = weight('d', GGMLType.Q8_0, [E, D, F], r);
  const moe = (ids: number[], extra: Partial<Parameters<NativeBackend['moeFfn']>[0]> = {}): void =>
    nb.moeFfn({ out: new Float32Array(D), x: randn(D, r), gate, up: gate, down, ids: Int32Array.from(ids), weights: new Float32Array(2), T: 1, K: 2, ...extra });
  moe([0, -1]);
  assert.throws(() => moe([0, 2]), /expert id 2/);
  assert.throws(() => moe([0]), /ids has 1/);
  assert.throws(() => moe([0, 1], { down: gate }), /down/);

  const kv = new Uint16Array(4 * 2 * 64);
  const att = (o: Record<string, number>): void => {
    const a = { T: 1, pos0: 3, nHead: 4, nHeadKv: 2, headDim: 64, scale: 0.125, ...o };
    nb.attention({ out: new Float32Array(a.T * a.nHead * a.headDim), q: new Float32Array(a.T * a.nHead * a.headDim), kCache: kv, vCache: kv, ...a } as never);
  };
  att({});
  assert.throws(() => att({ pos0: 4 }), /exceed the cache/);
  assert.throws(() => att({ nHead: 3 }), /multiple/);

  const emb = weight('e', GGMLType.F16, [4, 32], r);
  assert.throws(() => nb.getRows({ out: new Float32Array(32), w: emb, rows: [4] }), /out of range/);
  assert.throws(() => nb.getRows({ out: new Float32Array(32), w: emb, rows: [-1] }), /out of range/);
  assert.throws(() => nb.getRows({ out: new Float32Array(32), w: emb, rows: [1.5] }), /out of range/);

  // the addon's own size checks (second line of defence) also refuse mismatched sizes
  const a = loadAddon();
  assert.throws(() => a.matmul(new Float32Array(32), x, w.data.subarray(0, 10), GGMLType.Q4_K, 2, 16, 256, 1), RangeError);
});

test('createBackend / physicalCores; MOEKIT_NO_SIMD=1 selects the scalar kernels', { skip }, () => {
  assert.ok(physicalCores() >= 1);
  const b = createBackend({ threads: 2 });
  assert.equal(b.name, 'native');
  assert.equal(b.threads, 2);
  assert.equal(createBackend({ kind: 'reference' }).name, 'reference');
  const probe = `import { loadAddon } from './src/backend/native.ts'; console.log(JSON.stringify(loadAddon().cpuFeatures()));`;
  const run = (env: NodeJS.ProcessEnv): { simd: boolean; avx2: boolean } => {
    const p = spawnSync(process.execPath, ['--import', 'tsx', '--input-type=module', '-e', probe], { env: { ...process.env, ...env }, encoding: 'utf8' });
    assert.equal(p.status, 0, p.stderr);
    return JSON.parse(p.stdout.trim().split('\n').pop()!) as { simd: boolean; avx2: boolean };
  };
  const off = run({ MOEKIT_NO_SIMD: '1' });
  assert.equal(off.simd, false);
  const on = run({ MOEKIT_NO_SIMD: '' });
  assert.equal(on.simd, on.avx2);
  const no512 = run({ MOEKIT_NO_SIMD: '', MOEKIT_NO_AVX512: '1' }) as { simd: boolean; avx2: boolean; avx512?: boolean; simdLevel?: number };
  assert.equal(no512.avx512, false);
  assert.equal(no512.simdLevel, no512.avx2 ? 1 : 0);
});

test('allocPages gives zeroed writable memory; touchPages maps pages for writing; the KV cache grows through it', { skip }, () => {
  const a = loadAddon();
  const buf = new Uint8Array(a.allocPages(3 * 4096 + 5));
  assert.equal(buf.length, 3 * 4096 + 5);
  assert.ok(buf.every((b) => b === 0));
  buf[buf.length - 1] = 7;
  assert.equal(buf[buf.length - 1], 7);
  for (const bad of [0, -1, 1.5, 2 ** 50]) assert.throws(() => a.allocPages(bad), RangeError);

  // MADV_POPULATE_WRITE makes the pages resident without a write from JS (a read-populate would map the shared zero page)
  const nb = new NativeBackend({ threads: 1 });
  const big = new Uint8Array(a.allocPages(64 << 20));
  const rss0 = process.memoryUsage().rss;
  nb.touchPages(big);
  assert.ok(process.memoryUsage().rss - rss0 > 48 << 20, 'touchPages made the pages resident');

  const calls: Array<[number, number]> = [];
  const kv = new KVCache(2, 600, 4, (b) => calls.push([b.byteOffset, b.byteLength]));
  kv.ensureRoom(10);
  assert.equal(calls.length, 4); // K and V of 2 layers
  assert.deepEqual(calls[0], [0, 2 * 4 * (10 + 256)]);
  kv.pos = 10;
  kv.ensureRoom(200);
  assert.equal(calls.length, 4, 'already mapped');
  kv.pos = 260;
  kv.ensureRoom(10);
  assert.equal(calls.length, 8);
  assert.deepEqual(calls[4], [2 * 4 * 266, 2 * 4 * (270 + 256 - 266)], 'the next range');
  kv.pos = 520;
  kv.ensureRoom(10);
  assert.deepEqual(calls[8], [2 * 4 * 526, 2 * 4 * (600 - 526)], 'capped at ctx');
});

test('qkPrep (QK-norm, RoPE, f16 K/V store in one call) is bit-identical to the TypeScript steps', { skip }, () => {
  const nb = new NativeBackend({ threads: 1 });
  const r = rng(5);
  for (const [T, H, Hkv, Dh, dims, neox, perHead] of [
    [1, 4, 2, 16, 16, false, true], [3, 4, 4, 16, 8, true, false], [5, 2, 1, 32, 32, true, true], [2, 3, 3, 8, 4, false, false],
  ] as const) {
    const qd = H * Dh, kd = Hkv * Dh, ctx = 12, row = 4;
    // a spread of magnitudes: f16 subnormals, normal values, and values beyond the f16 range
    const fill = (n: number): Float32Array => new Float32Array(n).map(() => (r() - 0.5) * 10 ** Math.floor(r() * 12 - 7));
    const q = fill(T * qd), k = fill(T * kd), v = fill(T * kd);
    const qNorm = fill(perHead ? Dh : qd), kNorm = fill(perHead ? Dh : kd);
    const tab = ropeTable(Array.from({ length: T }, (_, t) => 7 + 3 * t), T, dims, 10000);
    const want = { q: q.slice(), k: k.slice(), kc: new Uint16Array(ctx * kd), vc: new Uint16Array(ctx * kd) };
    rmsNorm(want.q, want.q, qNorm, (T * qd) / qNorm.length, qNorm.length, 1e-6);
    rmsNorm(want.k, want.k, kNorm, (T * kd) / kNorm.length, kNorm.length, 1e-6);
    ropeApply(want.q, tab, H, Dh, neox ? 'neox' : 'norm');
    ropeApply(want.k, tab, Hkv, Dh, neox ? 'neox' : 'norm');
    f32ArrayToF16At(want.k, 0, want.kc, row * kd, T * kd);
    f32ArrayToF16At(v, 0, want.vc, row * kd, T * kd);
    const kc = new Uint16Array(ctx * kd), vc = new Uint16Array(ctx * kd);
    nb.qkPrep({ q, k, v, T, nHead: H, nHeadKv: Hkv, headDim: Dh, qNorm, kNorm, eps: 1e-6, rope: { cos: tab.cos, sin: tab.sin, half: tab.half, neox }, kCache: kc, vCache: vc, cacheRow: row });
    const shape = `T=${T} H=${H} Hkv=${Hkv} Dh=${Dh} dims=${dims} neox=${neox}`;
    assert.deepEqual(q, want.q, `q ${shape}`);
    assert.deepEqual(k, want.k, `k ${shape}`);
    assert.deepEqual(kc, want.kc, `k cache ${shape}`);
    assert.deepEqual(vc, want.vc, `v cache ${shape}`);
  }
  const z = new Float32Array(16);
  assert.throws(() => nb.qkPrep({ q: z, k: z, v: z, T: 1, nHead: 1, nHeadKv: 1, headDim: 16, eps: 1e-6, rope: null, kCache: new Uint16Array(16), vCache: new Uint16Array(16), cacheRow: 1 }), /cache rows/);
});

test('addNorm (residual add, then RMSNorm, in one call) is bit-identical to addInPlace then rmsNorm', { skip }, () => {
  const nb = new NativeBackend({ threads: 1 });
  const r = rng(8);
  const fill = (n: number): Float32Array => new Float32Array(n).map(() => (r() - 0.5) * 10 ** Math.floor(r() * 12 - 6));
  for (const [T, D, scale, eps] of [[1, 2048, 1, 1e-5], [3, 96, 0.22, 1e-6], [2, 7, 1.7, 1e-5], [1, 512, 1 / 3, 1e-6]] as const) {
    const x = fill(T * D), y = fill(T * D), w = fill(D);
    const wantX = x.slice(), wantH = new Float32Array(T * D);
    addInPlace(wantX, y, scale);
    rmsNorm(wantH, wantX, w, T, D, eps);
    const h = new Float32Array(T * D);
    nb.addNorm({ x, y, scale, out: h, w, T, eps });
    assert.deepEqual(x, wantX, `x T=${T} D=${D} scale=${scale}`);
    assert.deepEqual(h, wantH, `out T=${T} D=${D} scale=${scale}`);
  }
  const z = new Float32Array(8);
  assert.throws(() => nb.addNorm({ x: z, y: new Float32Array(7), scale: 1, out: z.slice(), w: new Float32Array(4), T: 2, eps: 1e-5 }), /addNorm y has 7/);
});

test('routeSoftmax (softmax top-K routing in one call) is bit-identical to route() in TypeScript', { skip }, () => {
  const nb = new NativeBackend({ threads: 1 });
  const r = rng(12);
  for (const [T, E, K, normalize, scale, withBias, ties] of [
    [1, 64, 8, false, 1, false, false], [3, 128, 8, true, 1, false, true], [5, 16, 2, true, 2.5, true, false],
    [2, 64, 6, false, 16, true, true], [1, 32, 32, true, 1, false, false],
  ] as const) {
    // logits over several magnitudes; with `ties`, groups of equal logits (the lower id must win)
    const logits = new Float32Array(T * E).map(() => (r() - 0.5) * 10 ** Math.floor(r() * 4 - 1));
    if (ties) for (let i = 0; i < logits.length; i += 3) logits[i] = logits[i - (i % 9)];
    const bias = withBias ? new Float32Array(E).map(() => (r() - 0.5) * 0.1) : undefined;
    const o = { scoring: 'softmax' as const, normalize, scale, selectionBias: bias };
    const want = route(logits, T, E, K, o);
    const got = { ids: new Int32Array(T * K), weights: new Float32Array(T * K), scores: new Float32Array(T * E) };
    nb.routeSoftmax({ logits, T, E, K, normalize, scale, bias, ...got });
    const shape = `T=${T} E=${E} K=${K} normalize=${normalize} scale=${scale} bias=${withBias}`;
    assert.deepEqual(got.scores, want.scores, `scores ${shape}`);
    assert.deepEqual(got.ids, want.ids, `ids ${shape}`);
    assert.deepEqual(got.weights, want.weights, `weights ${shape}`);
  }
  const z = new Float32Array(24);
  assert.throws(() => nb.routeSoftmax({ logits: z, T: 1, E: 24, K: 2, normalize: false, scale: 1, ids: new Int32Array(2), weights: new Float32Array(2), scores: z.slice() }), /multiple of 16/);
});

test('residentCopy copies a mapped tensor (16-row and single-row groups, 1 and 2 threads), and refuses memory that is not a file mapping', { skip }, () => {
  const a = loadAddon();
  const r = rng(21);
  const dir = mkdtempSync(join(tmpdir(), 'moekit-copy-'));
  try {
    for (const [N, K] of [[48, 512], [37, 256]] as const) {
      const w = weight('w', GGMLType.Q6_K, [N, K], r);
      const file = join(dir, `w${N}.bin`);
      writeFileSync(file, Buffer.concat([Buffer.alloc(160, 3), Buffer.from(w.data)]));
      const view = new Uint8Array(a.mmapView(a.mmapOpen(file), 160, w.data.byteLength));
      const rowBytes = w.data.byteLength / N;
      for (const threads of [1, 2]) {
        const dst = new Uint8Array(a.allocPages(w.data.byteLength));
        assert.equal(a.residentCopy(dst, view, N, rowBytes, threads), true);
        assert.deepEqual(dst, w.data, `N=${N} threads=${threads}`);
      }
      assert.deepEqual(view, w.data, 'the dropped pages read back from the file');
      const heap = new Uint8Array(w.data.byteLength);
      assert.equal(a.residentCopy(heap, w.data, N, rowBytes, 1), false, 'not a file mapping');
      assert.ok(heap.every((b) => b === 0), 'nothing copied');
      assert.throws(() => a.residentCopy(heap, view, N + 1, rowBytes, 1), /size/);
    }
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('readProbe sums every 64-bit word (low 32 bits) with the 512-bit, 256-bit and portable loops, 1-3 threads', { skip }, () => {
  const a = loadAddon() as unknown as { readProbe(b: Uint8Array, t: number): number; setSimd(on: number | boolean): boolean; cpuFeatures(): { simd: boolean } };
  const prev = a.cpuFeatures().simd;
  const r = rng(33);
  try {
    for (const n of [8, 1000, 4096 + 8, (1 << 20) + 24, 3 * (1 << 20) + 40]) {
      const buf = new Uint8Array(n);
      for (let i = 0; i < n; i++) buf[i] = (r() * 256) | 0;
      const dv = new DataView(buf.buffer);
      let want = 0n;
      for (let i = 0; i + 8 <= n; i += 8) want += dv.getBigUint64(i, true);
      for (const level of [1, 2, 0]) { // best (AVX-512 where the CPU has it), AVX2 only, portable
        a.setSimd(level);
        for (const threads of [1, 2, 3]) assert.equal(a.readProbe(buf, threads), Number(want & 0xffffffffn), `n=${n} simd=${level} threads=${threads}`);
      }
    }
  } finally {
    a.setSimd(prev);
  }
});

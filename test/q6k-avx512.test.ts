/**
 * Q6_K decode (T=1) on AVX-512 (two rows per 512-bit vector) against the AVX2 kernel, bit for bit, for
 * row counts that leave 1, 2 or 3 rows in the last tile and several row lengths; weights both quantized
 * from random values and raw random blocks (any 6-bit quants and int8 scales, finite fp16 d).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GGMLType, tensorBytes, type Tensor } from '../src/tensor.js';
import { NativeBackend, nativeAvailable, loadAddon } from '../src/backend/native.js';
import { quantize } from '../src/formats/quants.js';

const skip = nativeAvailable() ? false : 'native addon not built (npm run build:native)';

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

function randn(n: number, r: () => number, scale = 1): Float32Array {
  const a = new Float32Array(n);
  for (let i = 0; i < n; i++) a[i] = (r() + r() + r() - 1.5) * 2 * scale;
  return a;
}

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

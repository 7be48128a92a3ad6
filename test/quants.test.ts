// Block formats: f16/bf16 conversion, one hand-built block per type, quantize -> dequantize error
// bounds, Q8_K activations, and vecDot against the dequantized dot product.
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { GGMLType, rowBytes } from '../src/tensor.js';
import { UnsupportedError } from '../src/errors.js';
import {
  bf16ToF32, f16ArrayToF32, f16ToF32, f32ArrayToBf16, f32ArrayToF16, f32ToBf16, f32ToF16, bf16ArrayToF32,
} from '../src/formats/half.js';
import { dequantize, quantize, quantizeActivations, vecDot, vecDotTypeOf } from '../src/formats/quants.js';
import { makeRng } from '../src/engine/sampler.js';

const rng = makeRng; // mulberry32 (src/engine/sampler.ts)
function gaussian(n: number, seed: number, sigma = 1): Float32Array {
  const r = rng(seed);
  const out = new Float32Array(n);
  for (let i = 0; i < n; i++) out[i] = sigma * Math.sqrt(-2 * Math.log(1 - r())) * Math.cos(2 * Math.PI * r());
  return out;
}
const le16 = (v: number): [number, number] => [v & 0xff, v >> 8];

// ---- half ----------------------------------------------------------------------------------

test('f16: every finite bit pattern round-trips, NaN stays NaN', () => {
  for (let h = 0; h < 65536; h++) {
    const v = f16ToF32(h);
    if (Number.isNaN(v)) {
      assert.ok((h & 0x7c00) === 0x7c00 && (h & 0x3ff) !== 0);
      assert.ok(Number.isNaN(f16ToF32(f32ToF16(v))));
    } else {
      assert.equal(f32ToF16(v), h, `bits 0x${h.toString(16)}`);
    }
  }
  assert.equal(f16ToF32(0x3c00), 1);
  assert.equal(f16ToF32(0xc000), -2);
  assert.equal(f16ToF32(0x7bff), 65504);
  assert.equal(f16ToF32(0x0001), 2 ** -24);
});

test('f16: round to nearest even, overflow to inf, subnormals', () => {
  assert.equal(f32ToF16(1 + 2 ** -11), 0x3c00); // tie -> even (down)
  assert.equal(f32ToF16(1 + 3 * 2 ** -11), 0x3c02); // tie -> even (up)
  assert.equal(f32ToF16(1 + 2 ** -11 + 2 ** -20), 0x3c01); // above the tie
  assert.equal(f32ToF16(65519), 0x7bff);
  assert.equal(f32ToF16(65520), 0x7c00); // rounds past the largest finite value
  assert.equal(f32ToF16(-1e10), 0xfc00);
  assert.equal(f32ToF16(2 ** -25), 0x0000); // tie between 0 and the smallest subnormal -> 0
  assert.equal(f32ToF16(1.5 * 2 ** -25), 0x0001);
  assert.equal(f32ToF16(3 * 2 ** -25), 0x0002); // tie 1.5 ulp -> even 2
  assert.equal(f32ToF16(-0), 0x8000);
  assert.equal(f32ToF16(2 ** -14 - 2 ** -25), 0x0400); // largest subnormal + tie carries into the exponent
  assert.equal(f32ToF16(NaN) & 0x7e00, 0x7e00);
});

test('bf16: round to nearest even, NaN forced quiet, arrays match scalars', () => {
  assert.equal(f32ToBf16(1), 0x3f80);
  assert.equal(f32ToBf16(1 + 2 ** -8), 0x3f80); // tie -> even
  assert.equal(f32ToBf16(1 + 3 * 2 ** -8), 0x3f82);
  assert.equal(f32ToBf16(-5), 0xc0a0);
  assert.equal(bf16ToF32(0xc0a0), -5);
  assert.ok(Number.isNaN(bf16ToF32(f32ToBf16(NaN))));
  const x = gaussian(1000, 1, 100);
  const b = f32ArrayToBf16(x), h = f32ArrayToF16(x);
  const bf = bf16ArrayToF32(b), hf = f16ArrayToF32(h);
  for (let i = 0; i < x.length; i++) {
    assert.equal(b[i], f32ToBf16(x[i]));
    assert.equal(h[i], f32ToF16(x[i]));
    assert.equal(bf[i], bf16ToF32(b[i]));
    assert.equal(hf[i], f16ToF32(h[i]));
    assert.ok(Math.abs(bf[i] - x[i]) <= Math.abs(x[i]) * 2 ** -8);
    assert.ok(Math.abs(hf[i] - x[i]) <= Math.abs(x[i]) * 2 ** -11 + 2 ** -25);
  }
});

// ---- one hand-built block per type ----------------------------------------------------------

function expectBlock(type: GGMLType, bytes: Uint8Array, n: number, nonzero: Record<number, number>, fill = 0): void {
  assert.equal(bytes.length, rowBytes(type, n));
  const y = dequantize(type, bytes, n);
  for (let i = 0; i < n; i++) assert.equal(y[i] + 0, nonzero[i] ?? fill, `${GGMLType[type]} element ${i}`); // + 0: -0 -> 0
}

test('hand block: F32 / F16 / BF16', () => {
  expectBlock(GGMLType.F32, new Uint8Array([0, 0, 0xc0, 0x3f, 0, 0, 0x20, 0xc1]), 2, { 0: 1.5, 1: -10 });
  expectBlock(GGMLType.F16, new Uint8Array([0x00, 0x3c, 0x00, 0xc0, 0x55, 0x35, 0x01, 0x00]), 4,
    { 0: 1, 1: -2, 2: 0.333251953125, 3: 2 ** -24 });
  expectBlock(GGMLType.BF16, new Uint8Array([0x80, 0x3f, 0xa0, 0xc0]), 2, { 0: 1, 1: -5 });
});

test('hand block: Q4_0 (x = d*(q-8); element j low nibble of qs[j], j+16 high nibble)', () => {
  const b = new Uint8Array(18);
  b.set(le16(0x3800), 0); // d = 0.5
  b.fill(0x88, 2); // q = 8 -> 0 everywhere
  b[2 + 0] = 0x1f; // x[0] = (15-8)*0.5 = 3.5, x[16] = (1-8)*0.5 = -3.5
  b[2 + 15] = 0x80; // x[15] = (0-8)*0.5 = -4, x[31] = 0
  expectBlock(GGMLType.Q4_0, b, 32, { 0: 3.5, 16: -3.5, 15: -4 });
});

test('hand block: Q8_0 (x = d*q, q int8)', () => {
  const b = new Uint8Array(34);
  b.set(le16(0x3400), 0); // d = 0.25
  b[2 + 0] = 4; // 1
  b[2 + 1] = 0x80; // -128 -> -32
  b[2 + 31] = 127; // 31.75
  expectBlock(GGMLType.Q8_0, b, 32, { 0: 1, 1: -32, 31: 31.75 });
});

/** Q4_K/Q5_K header: d = 1, dmin = 0.5; sub-block 0: sc 2, m 4; sub-block 5: sc 19 = 0b01_0011, m 37 = 0b10_0101. */
function kHeader(b: Uint8Array): void {
  b.set(le16(0x3c00), 0);
  b.set(le16(0x3800), 2);
  const s = 4;
  b[s + 0] = 2; // sc0
  b[s + 4] = 4; // m0
  b[s + 9] = 0x53; // sub-block 5: low nibble of sc (3) | low nibble of m (5) << 4
  b[s + 1] |= 1 << 6; // high 2 bits of sc5 (1) in bits 6..7 of scales[1]
  b[s + 5] |= 2 << 6; // high 2 bits of m5 (2) in bits 6..7 of scales[5]
}

test('hand block: Q4_K (x = d*sc*q - dmin*m; six-bit packed scales)', () => {
  const b = new Uint8Array(144);
  kHeader(b);
  b[16 + 0] = 0x07; // sub-block 0 (low nibbles of qs[0..31]): x[0] = 2*7 - 0.5*4 = 12; x[1..31] = -2
  b[16 + 64] = 0xa0; // sub-block 5 (high nibbles of qs[64..95]): x[160] = 19*10 - 0.5*37 = 171.5
  const nz: Record<number, number> = { 0: 12, 160: 171.5 };
  for (let i = 1; i < 32; i++) nz[i] = -2;
  for (let i = 161; i < 192; i++) nz[i] = -18.5;
  expectBlock(GGMLType.Q4_K, b, 256, nz);
});

test('hand block: Q5_K (as Q4_K plus a 5th bit per element in qh)', () => {
  const b = new Uint8Array(176);
  kHeader(b);
  const qh = 16, qs = 48;
  b[qs + 0] = 0x07;
  b[qh + 0] = 1 | (1 << 5); // x[0]: bit 0 (group 0 low) -> q = 23; x[160]: bit 5 (group 2 high) -> q = 26
  b[qh + 1] = 1; // x[1]: q = 16
  b[qs + 64] = 0xa0;
  const nz: Record<number, number> = { 0: 2 * 23 - 2, 1: 2 * 16 - 2, 160: 19 * 26 - 18.5 };
  for (let i = 2; i < 32; i++) nz[i] = -2;
  for (let i = 161; i < 192; i++) nz[i] = -18.5;
  expectBlock(GGMLType.Q5_K, b, 256, nz);
});

test('hand block: Q6_K (x = d*sc*(q-32); 4 low bits in ql, 2 high bits in qh; int8 scales)', () => {
  const b = new Uint8Array(210);
  const ql = 0, qh = 128, sc = 192;
  b.fill(0xaa, qh, qh + 64); // high bits 2 everywhere -> q = 32 -> 0
  b.set(le16(0x3800), 208); // d = 0.5
  b[sc + 0] = 2;
  b[sc + 2] = 0xfd; // -3
  b[sc + 15] = 1;
  b[ql + 0] = 0x05; // x[0]: q = 5 | 2<<4 = 37 -> 0.5*2*5 = 5
  b[qh + 0] = 0xae; // bits 2..3 = 3: x[32]: q = 0 | 3<<4 = 48 -> 0.5*(-3)*16 = -24
  b[ql + 127] = 0xf0; // x[255] (2nd half, l = 31, 4th quarter): high nibble 15 ...
  b[qh + 63] = 0x2a; // ... and high bits (bits 6..7) 0: q = 15 -> 0.5*1*(15-32) = -8.5
  expectBlock(GGMLType.Q6_K, b, 256, { 0: 5, 32: -24, 255: -8.5 });
});

test('hand block: Q8_K (f32 d, int8 qs)', () => {
  const b = new Uint8Array(292);
  b.set([0, 0, 0, 0x3e], 0); // d = 0.125 (0x3e000000)
  b[4 + 0] = 8; // 1
  b[4 + 255] = 0xf0; // -16 -> -2
  expectBlock(GGMLType.Q8_K, b, 256, { 0: 1, 255: -2 });
});

// ---- quantize -> dequantize ---------------------------------------------------------------

const QUANT_TYPES = [GGMLType.Q4_0, GGMLType.Q8_0, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K, GGMLType.Q8_K];

test('quantize -> dequantize: per-block max error and relative RMSE within the format bounds', () => {
  const n = 256 * 16;
  // relative RMSE for Gaussian data (a 4-bit grid over ±2.5σ gives ≈ 0.1, each extra bit halves it)
  const rmseBound: Record<number, number> = {
    [GGMLType.Q4_0]: 0.14, [GGMLType.Q8_0]: 0.01, [GGMLType.Q4_K]: 0.11, [GGMLType.Q5_K]: 0.055,
    [GGMLType.Q6_K]: 0.03, [GGMLType.Q8_K]: 0.01, [GGMLType.F16]: 1e-3, [GGMLType.BF16]: 5e-3,
  };
  for (const type of [...QUANT_TYPES, GGMLType.F16, GGMLType.BF16, GGMLType.F32]) {
    const x = gaussian(n, 42 + type, 3);
    const q = quantize(type, x);
    assert.equal(q.length, rowBytes(type, n));
    const y = dequantize(type, q, n);
    let se = 0, sx = 0;
    for (let i = 0; i < n; i++) { se += (y[i] - x[i]) ** 2; sx += x[i] ** 2; }
    const rel = Math.sqrt(se / sx);
    if (type === GGMLType.F32) assert.equal(rel, 0);
    else assert.ok(rel < rmseBound[type], `${GGMLType[type]}: relative RMSE ${rel}`);
    assert.ok(rel > 0 || type === GGMLType.F32, `${GGMLType[type]}: lossless on random data is suspicious`);
    // symmetric block formats: error at most half a step (+ f16 rounding of d); Q4_0's positive end clamps at 7 steps
    const B = type === GGMLType.Q8_K ? 256 : 32;
    const steps: Record<number, number> = { [GGMLType.Q4_0]: 8, [GGMLType.Q8_0]: 127, [GGMLType.Q8_K]: 127 };
    if (steps[type]) {
      for (let b0 = 0; b0 < n; b0 += B) {
        let amax = 0;
        for (let i = b0; i < b0 + B; i++) amax = Math.max(amax, Math.abs(x[i]));
        const step = amax / steps[type];
        const bound = type === GGMLType.Q4_0 ? 1.01 * step : 0.51 * step + 127 * step * 2 ** -11;
        for (let i = b0; i < b0 + B; i++) assert.ok(Math.abs(y[i] - x[i]) <= bound, `${GGMLType[type]} [${i}]`);
      }
    }
  }
});

test('quantize: all-zero and constant blocks', () => {
  for (const type of QUANT_TYPES) {
    const z = dequantize(type, quantize(type, new Float32Array(256)), 256);
    assert.ok(z.every((v) => v === 0), `${GGMLType[type]} zeros`);
    const c = dequantize(type, quantize(type, new Float32Array(256).fill(-0.75)), 256);
    for (const v of c) assert.ok(Math.abs(v + 0.75) < 0.75 * 0.02, `${GGMLType[type]} constant: ${v}`);
  }
});

test('quantize / dequantize reject bad sizes and unsupported types', () => {
  assert.throws(() => quantize(GGMLType.Q4_K, new Float32Array(100)), /multiple/);
  assert.throws(() => dequantize(GGMLType.Q8_0, new Uint8Array(10), 32), RangeError);
  assert.throws(() => quantize(GGMLType.Q2_K, new Float32Array(256)), UnsupportedError);
  assert.throws(() => vecDotTypeOf(GGMLType.Q8_K), UnsupportedError);
});

test('Q8_K activations: d = max/-127, the largest magnitude maps to -127, bsums are group sums', () => {
  const x = gaussian(512, 5);
  x[300] = -9; // largest magnitude in block 1, negative
  const q = quantize(GGMLType.Q8_K, x);
  for (let b = 0; b < 2; b++) {
    const o = b * 292;
    const view = new DataView(q.buffer, q.byteOffset + o, 292);
    let max = 0;
    for (let i = 0; i < 256; i++) if (Math.abs(x[256 * b + i]) > Math.abs(max)) max = x[256 * b + i];
    assert.equal(view.getFloat32(0, true), Math.fround(1 / Math.fround(-127 / max)));
    for (let g = 0; g < 16; g++) {
      let s = 0;
      for (let i = 0; i < 16; i++) s += view.getInt8(4 + 16 * g + i);
      assert.equal(view.getInt16(260 + 2 * g, true), s);
    }
    const imax = [...x.subarray(256 * b, 256 * b + 256)].indexOf(max);
    assert.equal(view.getInt8(4 + imax), -127);
  }
  assert.equal(new DataView(q.buffer).getInt8(292 + 4 + 44), -127); // x[300] = -9: d = -9/-127 > 0
});

// ---- vec dot --------------------------------------------------------------------------------

test('vecDotTypeOf follows ggml-cpu type_traits', () => {
  assert.equal(vecDotTypeOf(GGMLType.F32), GGMLType.F32);
  assert.equal(vecDotTypeOf(GGMLType.F16), GGMLType.F16);
  assert.equal(vecDotTypeOf(GGMLType.BF16), GGMLType.BF16);
  assert.equal(vecDotTypeOf(GGMLType.Q4_0), GGMLType.Q8_0);
  assert.equal(vecDotTypeOf(GGMLType.Q8_0), GGMLType.Q8_0);
  for (const t of [GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K]) assert.equal(vecDotTypeOf(t), GGMLType.Q8_K);
});

test('vecDot equals dot(dequantize(w), dequantize(xq)) for every weight type', () => {
  const n = 256 * 8;
  for (const type of [GGMLType.F32, GGMLType.F16, GGMLType.BF16, GGMLType.Q4_0, GGMLType.Q8_0, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K]) {
    for (let trial = 0; trial < 3; trial++) {
      const w = gaussian(n, 100 * type + trial, 0.5);
      const x = gaussian(n, 7 + trial, 2);
      if (trial === 2) for (let i = 0; i < n; i++) w[i] = Math.abs(w[i]) + 0.1; // non-zero block minimums
      const wq = quantize(type, w);
      const xq = quantizeActivations(type, x, 1, n);
      assert.equal(xq.length, rowBytes(vecDotTypeOf(type), n));
      const wd = dequantize(type, wq, n), xd = dequantize(vecDotTypeOf(type), xq, n);
      let ref = 0, mag = 0, exact = 0;
      for (let i = 0; i < n; i++) { ref += wd[i] * xd[i]; mag += Math.abs(wd[i] * xd[i]); exact += w[i] * x[i]; }
      const got = vecDot(type, wq, xq, n);
      assert.ok(Math.abs(got - ref) <= 2e-6 * mag, `${GGMLType[type]} trial ${trial}: ${got} vs ${ref}`);
      // and it is close to the unquantized dot product (a broken layout would not be)
      assert.ok(Math.abs(got - exact) <= 0.1 * mag, `${GGMLType[type]}: ${got} vs exact ${exact}`);
    }
  }
});

test('quantizeActivations: rows back to back at rowBytes(vecDotType, K)', () => {
  const T = 3, K = 512;
  const x = gaussian(T * K, 9);
  for (const type of [GGMLType.F16, GGMLType.Q4_0, GGMLType.Q6_K]) {
    const all = quantizeActivations(type, x, T, K);
    const vt = vecDotTypeOf(type), rb = rowBytes(vt, K);
    assert.equal(all.length, T * rb);
    for (let t = 0; t < T; t++) assert.deepEqual(all.subarray(t * rb, (t + 1) * rb), quantize(vt, x.subarray(t * K, (t + 1) * K)));
  }
});

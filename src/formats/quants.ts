/**
 * ggml block formats in plain TypeScript: dequantize, the reference quantizers, and the vec-dot
 * reference used by the CPU matmul. Bit-exact with ggml where ggml is deterministic.
 *
 * Exports:
 *   dequantize(type, src: Uint8Array, n, out?: Float32Array): Float32Array
 *       n elements (a multiple of the block size) from bytes starting at a block boundary.
 *   quantize(type, src: Float32Array, out?: Uint8Array): Uint8Array
 *       src.length elements (multiple of the block size) -> rowBytes(type, src.length) bytes,
 *       following ggml's `quantize_row_*_ref` (ggml/src/ggml-quants.c).
 *   vecDotTypeOf(type): GGMLType
 *       the type activations are converted to before a dot product with a `type` weight row
 *       (ggml-cpu type_traits `vec_dot_type`).
 *   vecDot(wType, wRow: Uint8Array, xq: Uint8Array, n): number
 *       one weight row · one activation row already in vecDotTypeOf(wType), with the arithmetic of
 *       ggml-cpu's scalar `ggml_vec_dot_*` (generic) paths.
 *   quantizeActivations(wType, x: Float32Array [T, K], T, K): Uint8Array
 *       rows of x converted to vecDotTypeOf(wType), back to back (stride rowBytes(vecDotType, K)).
 *   SUPPORTED_QUANT_TYPES: readonly GGMLType[]
 *
 * Float arithmetic: ggml computes in f32, JS in f64. Every f32 operation is emulated with
 * Math.fround (`F`) on the result of one f64 operation, which rounds correctly for + - * / sqrt.
 * (ggml built with FMA contraction may differ from this in the last bit of rare ties.)
 *
 * Block layouts (ggml/src/ggml-common.h), all little-endian, "f16" = IEEE half:
 *   Q4_0 (32 el, 18 B): d f16 | qs[16]: element j in low nibble of qs[j], j+16 in high nibble;
 *                        x = d * (q - 8)
 *   Q8_0 (32 el, 34 B): d f16 | qs int8[32]; x = d * q
 *   Q4_K (256 el, 144 B): d f16 | dmin f16 | scales[12] (8 six-bit scales + 8 six-bit mins) |
 *                        qs[128]; 8 sub-blocks of 32; x = d*sc[s]*q - dmin*m[s]
 *   Q5_K (256 el, 176 B): d | dmin | scales[12] | qh[32] (5th bits) | qs[128]; as Q4_K with q in 0..31
 *   Q6_K (256 el, 210 B): ql[128] (low 4 bits) | qh[64] (high 2 bits) | scales int8[16] | d f16;
 *                        16 sub-blocks of 16; x = d*sc[s]*(q - 32)
 *   Q8_K (256 el, 292 B): d f32 | qs int8[256] | bsums int16[16] (sums of 16 consecutive qs);
 *                        activation-only type used for K-quant dot products.
 */
import { GGMLType, TYPE_TRAITS, rowBytes, typeName } from '../tensor.js';
import { UnsupportedError } from '../errors.js';
import { bf16ToF32, f16ToF32, f32ToBf16, f32ToF16 } from './half.js';

const F = Math.fround;
const QK = 32; // QK4_0 = QK8_0
const QK_K = 256;

export const SUPPORTED_QUANT_TYPES: readonly GGMLType[] = [
  GGMLType.F32, GGMLType.F16, GGMLType.BF16, GGMLType.Q4_0, GGMLType.Q8_0,
  GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K, GGMLType.Q8_K,
];

function unsupported(type: GGMLType, what: string): never {
  const names = SUPPORTED_QUANT_TYPES.map(typeName).join(', ');
  throw new UnsupportedError(`${what}: tensor type ${typeName(type)} is not supported (supported: ${names})`);
}

function checkSize(type: GGMLType, n: number, bytes: number, what: string): number {
  const tr = TYPE_TRAITS[type];
  if (!tr) unsupported(type, what);
  const need = rowBytes(type, n); // throws if n is not a multiple of the block size
  if (bytes < need) throw new RangeError(`${what}: ${n} ${tr.name} elements need ${need} bytes, got ${bytes}`);
  return need;
}

// ---- little-endian field access --------------------------------------------------------------

const scratchF32 = new Float32Array(1);
const scratchU32 = new Uint32Array(scratchF32.buffer);

function rdF16(b: Uint8Array, o: number): number {
  return f16ToF32(b[o] | (b[o + 1] << 8));
}
function wrF16(b: Uint8Array, o: number, v: number): void {
  const h = f32ToF16(v);
  b[o] = h & 0xff;
  b[o + 1] = h >> 8;
}
function rdF32(b: Uint8Array, o: number): number {
  scratchU32[0] = b[o] | (b[o + 1] << 8) | (b[o + 2] << 16) | (b[o + 3] << 24);
  return scratchF32[0];
}
function wrF32(b: Uint8Array, o: number, v: number): void {
  scratchF32[0] = v;
  const u = scratchU32[0];
  b[o] = u & 0xff;
  b[o + 1] = (u >>> 8) & 0xff;
  b[o + 2] = (u >>> 16) & 0xff;
  b[o + 3] = u >>> 24;
}
/** int8 at b[o] */
function rdI8(b: Uint8Array, o: number): number {
  return (b[o] << 24) >> 24;
}
/** int16 LE at b[o] */
function rdI16(b: Uint8Array, o: number): number {
  return ((b[o] | (b[o + 1] << 8)) << 16) >> 16;
}

/** ggml-quants.c `nearest_int`: round-half-even of an f32 via the 1.5*2^23 trick (|v| < 2^22). */
function nearestInt(v: number): number {
  return F(F(v) + 12582912) - 12582912;
}

/**
 * ggml-quants.c `get_scale_min_k4`: the j-th (0..7) six-bit scale and min of a Q4_K/Q5_K block.
 * scales[0..3] low 6 bits: sc 0..3; scales[4..7] low 6 bits: m 0..3;
 * scales[8..11]: low nibble sc 4..7, high nibble m 4..7, whose top 2 bits sit in bits 6..7 of
 * scales[0..3] (sc) and scales[4..7] (m).
 */
function scaleMinK4(j: number, b: Uint8Array, o: number): [sc: number, m: number] {
  if (j < 4) return [b[o + j] & 63, b[o + j + 4] & 63];
  return [(b[o + j + 4] & 0xf) | ((b[o + j - 4] >> 6) << 4), (b[o + j + 4] >> 4) | ((b[o + j] >> 6) << 4)];
}

// ---- dequantize -------------------------------------------------------------------------------

export function dequantize(type: GGMLType, src: Uint8Array, n: number, out: Float32Array = new Float32Array(n)): Float32Array {
  checkSize(type, n, src.length, 'dequantize');
  if (out.length < n) throw new RangeError(`dequantize: output holds ${out.length} elements, need ${n}`);
  switch (type) {
    case GGMLType.F32:
      for (let i = 0; i < n; i++) out[i] = rdF32(src, 4 * i);
      break;
    case GGMLType.F16:
      for (let i = 0; i < n; i++) out[i] = rdF16(src, 2 * i);
      break;
    case GGMLType.BF16:
      for (let i = 0; i < n; i++) out[i] = bf16ToF32(src[2 * i] | (src[2 * i + 1] << 8));
      break;
    case GGMLType.Q4_0: // dequantize_row_q4_0
      for (let ib = 0; ib < n / QK; ib++) {
        const o = ib * 18, d = rdF16(src, o), y = ib * QK;
        for (let j = 0; j < 16; j++) {
          const q = src[o + 2 + j];
          out[y + j] = ((q & 0xf) - 8) * d;
          out[y + j + 16] = ((q >> 4) - 8) * d;
        }
      }
      break;
    case GGMLType.Q8_0: // dequantize_row_q8_0
      for (let ib = 0; ib < n / QK; ib++) {
        const o = ib * 34, d = rdF16(src, o), y = ib * QK;
        for (let j = 0; j < QK; j++) out[y + j] = rdI8(src, o + 2 + j) * d;
      }
      break;
    case GGMLType.Q4_K: // dequantize_row_q4_K: 4 groups of 64 = (32 low nibbles, 32 high nibbles)
      for (let ib = 0; ib < n / QK_K; ib++) {
        const o = ib * 144, d = rdF16(src, o), dmin = rdF16(src, o + 2);
        let y = ib * QK_K, q = o + 16;
        for (let s = 0; s < 8; s += 2) {
          const [sc1, m1] = scaleMinK4(s, src, o + 4), [sc2, m2] = scaleMinK4(s + 1, src, o + 4);
          const d1 = F(d * sc1), mm1 = F(dmin * m1), d2 = F(d * sc2), mm2 = F(dmin * m2);
          for (let l = 0; l < 32; l++) out[y++] = F(d1 * (src[q + l] & 0xf)) - mm1;
          for (let l = 0; l < 32; l++) out[y++] = F(d2 * (src[q + l] >> 4)) - mm2;
          q += 32;
        }
      }
      break;
    case GGMLType.Q5_K: // dequantize_row_q5_K: as Q4_K plus one high bit per element from qh
      for (let ib = 0; ib < n / QK_K; ib++) {
        const o = ib * 176, d = rdF16(src, o), dmin = rdF16(src, o + 2), qh = o + 16;
        let y = ib * QK_K, ql = o + 48, u1 = 1, u2 = 2;
        for (let s = 0; s < 8; s += 2) {
          const [sc1, m1] = scaleMinK4(s, src, o + 4), [sc2, m2] = scaleMinK4(s + 1, src, o + 4);
          const d1 = F(d * sc1), mm1 = F(dmin * m1), d2 = F(d * sc2), mm2 = F(dmin * m2);
          for (let l = 0; l < 32; l++) out[y++] = F(d1 * ((src[ql + l] & 0xf) + (src[qh + l] & u1 ? 16 : 0))) - mm1;
          for (let l = 0; l < 32; l++) out[y++] = F(d2 * ((src[ql + l] >> 4) + (src[qh + l] & u2 ? 16 : 0))) - mm2;
          ql += 32;
          u1 <<= 2;
          u2 <<= 2;
        }
      }
      break;
    case GGMLType.Q6_K: // dequantize_row_q6_K: 2 halves of 128; each ql/qh byte feeds 4 elements
      for (let ib = 0; ib < n / QK_K; ib++) {
        const o = ib * 210, d = rdF16(src, o + 208);
        for (let half = 0; half < 2; half++) {
          const ql = o + 64 * half, qh = o + 128 + 32 * half, sc = o + 192 + 8 * half, y = ib * QK_K + 128 * half;
          for (let l = 0; l < 32; l++) {
            const is = l >> 4, h = src[qh + l];
            const q1 = ((src[ql + l] & 0xf) | ((h & 3) << 4)) - 32;
            const q2 = ((src[ql + l + 32] & 0xf) | (((h >> 2) & 3) << 4)) - 32;
            const q3 = ((src[ql + l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
            const q4 = ((src[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
            out[y + l] = F(d * rdI8(src, sc + is)) * q1;
            out[y + l + 32] = F(d * rdI8(src, sc + is + 2)) * q2;
            out[y + l + 64] = F(d * rdI8(src, sc + is + 4)) * q3;
            out[y + l + 96] = F(d * rdI8(src, sc + is + 6)) * q4;
          }
        }
      }
      break;
    case GGMLType.Q8_K: // dequantize_row_q8_K
      for (let ib = 0; ib < n / QK_K; ib++) {
        const o = ib * 292, d = rdF32(src, o), y = ib * QK_K;
        for (let j = 0; j < QK_K; j++) out[y + j] = d * rdI8(src, o + 4 + j);
      }
      break;
    default:
      unsupported(type, 'dequantize');
  }
  return out;
}

// ---- quantize (reference quantizers) -------------------------------------------------------

export function quantize(type: GGMLType, src: Float32Array, out?: Uint8Array): Uint8Array {
  const n = src.length;
  if (!TYPE_TRAITS[type]) unsupported(type, 'quantize');
  const bytes = rowBytes(type, n);
  out ??= new Uint8Array(bytes);
  if (out.length < bytes) throw new RangeError(`quantize: output holds ${out.length} bytes, need ${bytes}`);
  switch (type) {
    case GGMLType.F32:
      for (let i = 0; i < n; i++) wrF32(out, 4 * i, src[i]);
      break;
    case GGMLType.F16:
      for (let i = 0; i < n; i++) wrF16(out, 2 * i, src[i]);
      break;
    case GGMLType.BF16:
      for (let i = 0; i < n; i++) {
        const h = f32ToBf16(src[i]);
        out[2 * i] = h & 0xff;
        out[2 * i + 1] = h >> 8;
      }
      break;
    case GGMLType.Q4_0:
      for (let ib = 0; ib < n / QK; ib++) quantizeQ4_0Block(src, ib * QK, out, ib * 18);
      break;
    case GGMLType.Q8_0:
      for (let ib = 0; ib < n / QK; ib++) quantizeQ8_0Block(src, ib * QK, out, ib * 34);
      break;
    case GGMLType.Q4_K:
      for (let ib = 0; ib < n / QK_K; ib++) quantizeQ45KBlock(src, ib * QK_K, out, ib * 144, 15);
      break;
    case GGMLType.Q5_K:
      for (let ib = 0; ib < n / QK_K; ib++) quantizeQ45KBlock(src, ib * QK_K, out, ib * 176, 31);
      break;
    case GGMLType.Q6_K:
      for (let ib = 0; ib < n / QK_K; ib++) quantizeQ6KBlock(src, ib * QK_K, out, ib * 210);
      break;
    case GGMLType.Q8_K:
      for (let ib = 0; ib < n / QK_K; ib++) quantizeQ8KBlock(src, ib * QK_K, out, ib * 292);
      break;
    default:
      unsupported(type, 'quantize');
  }
  return out;
}

/** quantize_row_q4_0_ref: d = max/-8 where max is the signed value of largest magnitude. */
function quantizeQ4_0Block(x: Float32Array, xo: number, y: Uint8Array, yo: number): void {
  let amax = 0, max = 0;
  for (let j = 0; j < QK; j++) {
    const v = x[xo + j];
    if (amax < Math.abs(v)) { amax = Math.abs(v); max = v; }
  }
  const d = F(max / -8);
  const id = d ? F(1 / d) : 0;
  wrF16(y, yo, d);
  for (let j = 0; j < 16; j++) {
    // (int8_t)(x*id + 8.5f) truncates toward zero, then MIN(15, ·)
    const q0 = Math.min(15, Math.trunc(F(F(x[xo + j] * id) + 8.5)));
    const q1 = Math.min(15, Math.trunc(F(F(x[xo + j + 16] * id) + 8.5)));
    y[yo + 2 + j] = q0 | (q1 << 4);
  }
}

/** quantize_row_q8_0_ref: d = amax/127, q = roundf(x/d) (half away from zero). */
function quantizeQ8_0Block(x: Float32Array, xo: number, y: Uint8Array, yo: number): void {
  let amax = 0;
  for (let j = 0; j < QK; j++) amax = Math.max(amax, Math.abs(x[xo + j]));
  const d = F(amax / 127);
  const id = d ? F(1 / d) : 0;
  wrF16(y, yo, d);
  for (let j = 0; j < QK; j++) {
    const v = F(x[xo + j] * id);
    y[yo + 2 + j] = (Math.sign(v) * Math.round(Math.abs(v))) & 0xff;
  }
}

/**
 * make_qkx2_quants (ggml-quants.c): fit x ≈ scale*L - min with L in 0..nmax, weighted least squares,
 * trying nstep+1 candidate inverse scales. Writes L[0..n), returns [scale, theMin = -min].
 */
function makeQkx2Quants(
  n: number, nmax: number, x: Float32Array, xo: number, w: Float32Array, L: Uint8Array, lo: number, Laux: Uint8Array,
  rmin: number, rdelta: number, nstep: number,
): [scale: number, theMin: number] {
  let min = x[xo], max = x[xo], sumW = w[0], sumX = F(sumW * x[xo]);
  for (let i = 1; i < n; i++) {
    const xi = x[xo + i];
    if (xi < min) min = xi;
    if (xi > max) max = xi;
    sumW = F(sumW + w[i]);
    sumX = F(sumX + F(w[i] * xi));
  }
  if (min > 0) min = 0;
  if (max === min) {
    L.fill(0, lo, lo + n);
    return [0, -min];
  }
  let iscale = F(nmax / F(max - min));
  let scale = F(1 / iscale);
  let bestError = 0;
  for (let i = 0; i < n; i++) {
    const l = Math.max(0, Math.min(nmax, nearestInt(F(iscale * F(x[xo + i] - min)))));
    L[lo + i] = l;
    const diff = F(F(F(scale * l) + min) - x[xo + i]);
    bestError = F(bestError + F(w[i] * F(diff * diff)));
  }
  // NB: as in ggml, `min` is updated when a candidate wins, and later candidates use the new min
  for (let is = 0; is <= nstep; is++) {
    iscale = F(F(F(rmin + F(rdelta * is)) + nmax) / F(max - min));
    let sumL = 0, sumL2 = 0, sumXL = 0;
    for (let i = 0; i < n; i++) {
      const l = Math.max(0, Math.min(nmax, nearestInt(F(iscale * F(x[xo + i] - min)))));
      Laux[i] = l;
      const wl = F(w[i] * l);
      sumL = F(sumL + wl);
      sumL2 = F(sumL2 + F(wl * l));
      sumXL = F(sumXL + F(wl * x[xo + i]));
    }
    const D = F(F(sumW * sumL2) - F(sumL * sumL));
    if (D > 0) {
      let thisScale = F(F(F(sumW * sumXL) - F(sumX * sumL)) / D);
      let thisMin = F(F(F(sumL2 * sumX) - F(sumL * sumXL)) / D);
      if (thisMin > 0) {
        thisMin = 0;
        thisScale = F(sumXL / sumL2);
      }
      let curError = 0;
      for (let i = 0; i < n; i++) {
        const diff = F(F(F(thisScale * Laux[i]) + thisMin) - x[xo + i]);
        curError = F(curError + F(w[i] * F(diff * diff)));
      }
      if (curError < bestError) {
        for (let i = 0; i < n; i++) L[lo + i] = Laux[i];
        bestError = curError;
        scale = thisScale;
        min = thisMin;
      }
    }
  }
  return [scale, -min];
}

/** quantize_row_q4_K_ref (nmax 15) and quantize_row_q5_K_ref (nmax 31). */
function quantizeQ45KBlock(x: Float32Array, xo: number, y: Uint8Array, yo: number, nmax: 15 | 31): void {
  const L = new Uint8Array(QK_K), Laux = new Uint8Array(32), weights = new Float32Array(32);
  const scales = new Float32Array(8), mins = new Float32Array(8);
  let maxScale = 0, maxMin = 0;
  for (let j = 0; j < 8; j++) {
    const o = xo + 32 * j;
    let sumX2 = 0;
    for (let l = 0; l < 32; l++) sumX2 = F(sumX2 + F(x[o + l] * x[o + l]));
    const avX = F(Math.sqrt(F(sumX2 / 32)));
    for (let l = 0; l < 32; l++) weights[l] = F(avX + Math.abs(x[o + l]));
    const [sc, m] = nmax === 15
      ? makeQkx2Quants(32, 15, x, o, weights, L, 32 * j, Laux, -1, F(0.1), 20)
      : makeQkx2Quants(32, 31, x, o, weights, L, 32 * j, Laux, -0.5, F(0.1), 15);
    scales[j] = sc;
    mins[j] = m;
    if (sc > maxScale) maxScale = sc;
    if (m > maxMin) maxMin = m;
  }
  // six-bit scales and mins, packed as read back by get_scale_min_k4
  const invScale = maxScale > 0 ? F(63 / maxScale) : 0;
  const invMin = maxMin > 0 ? F(63 / maxMin) : 0;
  const s = yo + 4;
  for (let j = 0; j < 8; j++) {
    const ls = Math.min(63, nearestInt(F(invScale * scales[j])) & 0xff);
    const lm = Math.min(63, nearestInt(F(invMin * mins[j])) & 0xff);
    if (j < 4) {
      y[s + j] = ls;
      y[s + j + 4] = lm;
    } else {
      y[s + j + 4] = (ls & 0xf) | ((lm & 0xf) << 4);
      y[s + j - 4] |= (ls >> 4) << 6;
      y[s + j] |= (lm >> 4) << 6;
    }
  }
  wrF16(y, yo, F(maxScale / 63));
  wrF16(y, yo + 2, F(maxMin / 63));
  // re-quantize every element against the rounded scales
  const dAll = rdF16(y, yo), dminAll = rdF16(y, yo + 2);
  for (let j = 0; j < 8; j++) {
    const [sc, m] = scaleMinK4(j, y, s);
    const d = F(dAll * sc);
    if (!d) continue; // keep make_qkx2_quants' L
    const dm = F(dminAll * m);
    for (let ii = 0; ii < 32; ii++) {
      L[32 * j + ii] = Math.max(0, Math.min(nmax, nearestInt(F(F(x[xo + 32 * j + ii] + dm) / d))));
    }
  }
  if (nmax === 15) {
    // qs: each 64-element group = 32 bytes, low nibble element l, high nibble element l+32
    for (let g = 0; g < 4; g++) {
      for (let l = 0; l < 32; l++) y[yo + 16 + 32 * g + l] = L[64 * g + l] | (L[64 * g + l + 32] << 4);
    }
  } else {
    // Q5_K: low 4 bits as Q4_K in qs (at +48); 5th bit of group g's halves in qh bits 2g, 2g+1
    const qh = yo + 16, ql = yo + 48;
    y.fill(0, qh, qh + 32);
    for (let g = 0; g < 4; g++) {
      for (let l = 0; l < 32; l++) {
        let l1 = L[64 * g + l], l2 = L[64 * g + l + 32];
        if (l1 > 15) { l1 -= 16; y[qh + l] |= 1 << (2 * g); }
        if (l2 > 15) { l2 -= 16; y[qh + l] |= 2 << (2 * g); }
        y[ql + 32 * g + l] = l1 | (l2 << 4);
      }
    }
  }
}

const GROUP_MAX_EPS = F(1e-15);

/**
 * make_qx_quants with rmse_type 1 and no importance weights (as quantize_row_q6_K_ref calls it):
 * symmetric L in 0..2*nmax-1 (stored with +nmax offset), weights x², 19 candidate scales.
 */
function makeQxQuants(n: number, nmax: number, x: Float32Array, xo: number, L: Uint8Array, lo: number): number {
  let max = 0, amax = 0;
  for (let i = 0; i < n; i++) {
    const ax = Math.abs(x[xo + i]);
    if (ax > amax) { amax = ax; max = x[xo + i]; }
  }
  if (amax < GROUP_MAX_EPS) {
    L.fill(0, lo, lo + n);
    return 0;
  }
  let iscale = F(-nmax / max);
  let sumlx = 0, suml2 = 0;
  for (let i = 0; i < n; i++) {
    const xi = x[xo + i];
    const l = Math.max(-nmax, Math.min(nmax - 1, nearestInt(F(iscale * xi))));
    L[lo + i] = l + nmax;
    const w = F(xi * xi);
    sumlx = F(sumlx + F(F(w * xi) * l));
    suml2 = F(suml2 + F(F(w * l) * l));
  }
  let scale = suml2 ? F(sumlx / suml2) : 0;
  let best = F(scale * sumlx);
  for (let is = -9; is <= 9; is++) {
    if (is === 0) continue;
    iscale = F(-F(nmax + F(F(0.1) * is)) / max);
    sumlx = 0;
    suml2 = 0;
    for (let i = 0; i < n; i++) {
      const xi = x[xo + i];
      const l = Math.max(-nmax, Math.min(nmax - 1, nearestInt(F(iscale * xi))));
      const w = F(xi * xi);
      sumlx = F(sumlx + F(F(w * xi) * l));
      suml2 = F(suml2 + F(F(w * l) * l));
    }
    if (suml2 > 0 && F(sumlx * sumlx) > F(best * suml2)) {
      for (let i = 0; i < n; i++) {
        L[lo + i] = nmax + Math.max(-nmax, Math.min(nmax - 1, nearestInt(F(iscale * x[xo + i]))));
      }
      scale = F(sumlx / suml2);
      best = F(scale * sumlx);
    }
  }
  return scale;
}

/** quantize_row_q6_K_ref */
function quantizeQ6KBlock(x: Float32Array, xo: number, y: Uint8Array, yo: number): void {
  const L = new Uint8Array(QK_K), scales = new Float32Array(16);
  let maxScale = 0, maxAbsScale = 0;
  for (let ib = 0; ib < 16; ib++) {
    const scale = makeQxQuants(16, 32, x, xo + 16 * ib, L, 16 * ib);
    scales[ib] = scale;
    if (Math.abs(scale) > maxAbsScale) { maxAbsScale = Math.abs(scale); maxScale = scale; }
  }
  if (maxAbsScale < GROUP_MAX_EPS) {
    y.fill(0, yo, yo + 210);
    return;
  }
  const iscale = F(-128 / maxScale);
  wrF16(y, yo + 208, F(1 / iscale));
  for (let ib = 0; ib < 16; ib++) y[yo + 192 + ib] = Math.min(127, nearestInt(F(iscale * scales[ib]))) & 0xff;
  const dAll = rdF16(y, yo + 208);
  for (let j = 0; j < 16; j++) {
    const d = F(dAll * rdI8(y, yo + 192 + j));
    if (!d) continue;
    for (let ii = 0; ii < 16; ii++) {
      L[16 * j + ii] = 32 + Math.max(-32, Math.min(31, nearestInt(F(x[xo + 16 * j + ii] / d))));
    }
  }
  // pack: per half of 128, ql[l] = q[l] | q[l+64]<<4, ql[l+32] = q[l+32] | q[l+96]<<4,
  // qh[l] = the high 2 bits of q[l], q[l+32], q[l+64], q[l+96] at bits 0, 2, 4, 6
  for (let half = 0; half < 2; half++) {
    const ql = yo + 64 * half, qh = yo + 128 + 32 * half, j = 128 * half;
    for (let l = 0; l < 32; l++) {
      const a = L[j + l], b = L[j + l + 32], c = L[j + l + 64], e = L[j + l + 96];
      y[ql + l] = (a & 0xf) | ((c & 0xf) << 4);
      y[ql + l + 32] = (b & 0xf) | ((e & 0xf) << 4);
      y[qh + l] = (a >> 4) | ((b >> 4) << 2) | ((c >> 4) << 4) | ((e >> 4) << 6);
    }
  }
}

/**
 * quantize_row_q8_K_ref: d = max/-127 (max = signed value of largest magnitude), plus bsums.
 * `preferPositive`: ggml_quantize_mat_q8_K_4x8 (x86, the 4-row form used by the repacked Q4_K
 * gemm), which differs only in a tie: when both +amax and -amax occur it takes max = +amax, where
 * the reference takes the first occurrence.
 */
function quantizeQ8KBlock(x: Float32Array, xo: number, y: Uint8Array, yo: number, preferPositive = false): void {
  let max = 0, amax = 0;
  for (let j = 0; j < QK_K; j++) {
    const ax = Math.abs(x[xo + j]);
    if (ax > amax) { amax = ax; max = x[xo + j]; }
  }
  if (preferPositive && max < 0) {
    for (let j = 0; j < QK_K; j++) if (x[xo + j] === amax) { max = amax; break; }
  }
  if (!amax) {
    y.fill(0, yo, yo + 292); // ggml leaves bsums unset here; zero is their true value
    return;
  }
  const iscale = F(-127 / max);
  for (let j = 0; j < QK_K; j++) y[yo + 4 + j] = Math.min(127, nearestInt(F(iscale * x[xo + j]))) & 0xff;
  for (let g = 0; g < 16; g++) {
    let sum = 0;
    for (let ii = 0; ii < 16; ii++) sum += rdI8(y, yo + 4 + 16 * g + ii);
    y[yo + 260 + 2 * g] = sum & 0xff;
    y[yo + 261 + 2 * g] = (sum >> 8) & 0xff;
  }
  wrF32(y, yo, F(1 / iscale));
}

// ---- vec dot ------------------------------------------------------------------------------

/** ggml-cpu/ggml-cpu.c type_traits_cpu[...].vec_dot_type */
export function vecDotTypeOf(type: GGMLType): GGMLType {
  switch (type) {
    case GGMLType.F32: return GGMLType.F32;
    case GGMLType.F16: return GGMLType.F16;
    case GGMLType.BF16: return GGMLType.BF16;
    case GGMLType.Q4_0:
    case GGMLType.Q8_0: return GGMLType.Q8_0;
    case GGMLType.Q4_K:
    case GGMLType.Q5_K:
    case GGMLType.Q6_K: return GGMLType.Q8_K;
    default: return unsupported(type, 'matmul');
  }
}

export function quantizeActivations(wType: GGMLType, x: Float32Array, T: number, K: number): Uint8Array {
  const vt = vecDotTypeOf(wType);
  const stride = rowBytes(vt, K);
  if (x.length < T * K) throw new RangeError(`quantizeActivations: x holds ${x.length} values, need T*K = ${T * K}`);
  const out = new Uint8Array(T * stride);
  for (let t = 0; t < T; t++) quantize(vt, x.subarray(t * K, (t + 1) * K), out.subarray(t * stride, (t + 1) * stride));
  return out;
}

/**
 * x86 ggml-cpu repacks every Q4_K weight with a row count N % 8 == 0 into block_q4_Kx8 and runs
 * the repack kernels (ggml-cpu/repack.cpp, arch/x86/repack.cpp) instead of ggml_vec_dot_q4_K_q8_K.
 * Their integer sums are exact; only the f32 accumulation order differs:
 *  - gemv (ggml_gemv_q4_K_8x8_q8_K; 1–3 activation rows, the rows after the last multiple of 4,
 *    and every mul_mat_id): per 256-block, acc = fma(f32(Σ_s sc_s·(q·y)_s), d_w·d_x, acc) and
 *    accm = fma(f32(Σ_s m_s·bsum_s), dmin_w·d_x, accm);
 *  - gemm (ggml_gemm_q4_K_8x8_q8_K; groups of 4 activation rows when a mul_mat has ≥ 4): the same
 *    two FMAs once per pair of 32-element sub-blocks (s = 2p, 2p+1), 4 per block;
 * result acc − accm.
 */
export function q4KRepacked(N: number): boolean {
  return N % 8 === 0;
}

/** Activation rows [T, K] → Q8_K as llama.cpp's repacked mul_mat quantizes them (see q4KRepacked). */
export function quantizeActivationsQ8KRepack(x: Float32Array, T: number, K: number): Uint8Array {
  const stride = rowBytes(GGMLType.Q8_K, K);
  const out = new Uint8Array(T * stride);
  const tg = gemmRows(T);
  for (let t = 0; t < T; t++)
    for (let ib = 0; ib < K / QK_K; ib++) quantizeQ8KBlock(x, t * K + ib * QK_K, out, t * stride + ib * 292, t < tg);
  return out;
}

/** Rows [0, gemmRows(T)) of a repacked mul_mat go through gemm, the rest through gemv. */
export function gemmRows(T: number): number {
  return T > 3 ? T - (T % 4) : 0;
}

/** One Q4_K row · one Q8_K row with the repack kernels' order; `gemm` picks the per-pair form. */
export function dotQ4KRepackAt(w: Uint8Array, wo: number, x: Uint8Array, xo: number, n: number, gemm: boolean): number {
  let acc = 0, accm = 0;
  for (let i = 0; i < n / QK_K; i++) {
    const a = wo + 144 * i, b = xo + 292 * i;
    const dx = rdF32(x, b);
    const d = F(rdF16(w, a) * dx);
    const dm = F(rdF16(w, a + 2) * dx);
    let ib = 0, im = 0;
    for (let p = 0; p < 4; p++) {
      let ip = 0, mp = 0;
      for (let h = 0; h < 2; h++) {
        const s = 2 * p + h;
        const [sc, m] = scaleMinK4(s, w, a + 4);
        let dot = 0;
        const q = a + 16 + 32 * p, y = b + 4 + 32 * s;
        if (h === 0) for (let l = 0; l < 32; l++) dot += (w[q + l] & 0xf) * rdI8(x, y + l);
        else for (let l = 0; l < 32; l++) dot += (w[q + l] >> 4) * rdI8(x, y + l);
        ip += sc * dot;
        mp += m * (rdI16(x, b + 260 + 4 * s) + rdI16(x, b + 262 + 4 * s));
      }
      if (gemm) {
        acc = F(F(ip) * d + acc);
        accm = F(F(mp) * dm + accm);
      } else {
        ib += ip;
        im += mp;
      }
    }
    if (!gemm) {
      acc = F(F(ib) * d + acc);
      accm = F(F(im) * dm + accm);
    }
  }
  return F(acc - accm);
}

export function vecDot(wType: GGMLType, wRow: Uint8Array, xq: Uint8Array, n: number): number {
  checkSize(wType, n, wRow.length, 'vecDot weight row');
  checkSize(vecDotTypeOf(wType), n, xq.length, 'vecDot activation row');
  return vecDotAt(wType, wRow, 0, xq, 0, n);
}

/**
 * vecDot on rows at byte offsets (no checks, no allocation): the form the reference backend calls.
 * Reduced types F32/F16/BF16: f32 products summed in f64 (ggml_float), result rounded to f32.
 */
export function vecDotAt(wType: GGMLType, w: Uint8Array, wo: number, x: Uint8Array, xo: number, n: number): number {
  switch (wType) {
    case GGMLType.F32: { // ggml_vec_dot_f32 (generic)
      const a = f32View(w, wo, n), b = f32View(x, xo, n);
      let sum = 0;
      for (let i = 0; i < n; i++) sum += F(a[i] * b[i]);
      return F(sum);
    }
    case GGMLType.F16: { // ggml_vec_dot_f16 (generic)
      const a = u16View(w, wo, n), b = u16View(x, xo, n);
      let sum = 0;
      for (let i = 0; i < n; i++) sum += F(f16ToF32(a[i]) * f16ToF32(b[i]));
      return F(sum);
    }
    case GGMLType.BF16: { // ggml_vec_dot_bf16 (generic)
      const a = u16View(w, wo, n), b = u16View(x, xo, n);
      let sum = 0;
      for (let i = 0; i < n; i++) sum += F(bf16ToF32(a[i]) * bf16ToF32(b[i]));
      return F(sum);
    }
    case GGMLType.Q4_0: return dotQ4_0Q8_0(w, wo, x, xo, n / QK);
    case GGMLType.Q8_0: return dotQ8_0Q8_0(w, wo, x, xo, n / QK);
    case GGMLType.Q4_K: return dotQ45KQ8K(w, wo, x, xo, n / QK_K, false);
    case GGMLType.Q5_K: return dotQ45KQ8K(w, wo, x, xo, n / QK_K, true);
    case GGMLType.Q6_K: return dotQ6KQ8K(w, wo, x, xo, n / QK_K);
    default: return unsupported(wType, 'vecDot');
  }
}

/** n f32 values at byte offset o of b: a view when 4-byte aligned, else a copy. */
function f32View(b: Uint8Array, o: number, n: number): Float32Array {
  const off = b.byteOffset + o;
  if (off % 4 === 0) return new Float32Array(b.buffer, off, n);
  return new Float32Array(b.slice(o, o + 4 * n).buffer);
}
/** n u16 values at byte offset o of b: a view when 2-byte aligned, else a copy. */
function u16View(b: Uint8Array, o: number, n: number): Uint16Array {
  const off = b.byteOffset + o;
  if (off % 2 === 0) return new Uint16Array(b.buffer, off, n);
  return new Uint16Array(b.slice(o, o + 2 * n).buffer);
}

/** ggml_vec_dot_q4_0_q8_0_generic: integer block sums, then sumf += sumi*dx*dy in f32. */
function dotQ4_0Q8_0(w: Uint8Array, wo: number, x: Uint8Array, xo: number, nb: number): number {
  let sumf = 0;
  for (let ib = 0; ib < nb; ib++) {
    const a = wo + 18 * ib, b = xo + 34 * ib;
    let sumi = 0;
    for (let j = 0; j < 16; j++) {
      const q = w[a + 2 + j];
      sumi += ((q & 0xf) - 8) * rdI8(x, b + 2 + j) + ((q >> 4) - 8) * rdI8(x, b + 2 + j + 16);
    }
    sumf = F(sumf + F(F(sumi * rdF16(w, a)) * rdF16(x, b)));
  }
  return sumf;
}

/** ggml_vec_dot_q8_0_q8_0_generic: sumf += sumi*(dx*dy) in f32. */
function dotQ8_0Q8_0(w: Uint8Array, wo: number, x: Uint8Array, xo: number, nb: number): number {
  let sumf = 0;
  for (let ib = 0; ib < nb; ib++) {
    const a = wo + 34 * ib, b = xo + 34 * ib;
    let sumi = 0;
    for (let j = 0; j < QK; j++) sumi += rdI8(w, a + 2 + j) * rdI8(x, b + 2 + j);
    sumf = F(sumf + F(sumi * F(rdF16(w, a) * rdF16(x, b))));
  }
  return sumf;
}

const aux8 = new Int8Array(QK_K);
const aux32 = new Int32Array(8);
const sums = new Float32Array(8);

/**
 * ggml_vec_dot_q4_K_q8_K_generic / ..._q5_K_...: the scale term is integer per block in 8 lanes
 * (aux32[l] collects elements ≡ l mod 8), folded into f32 lane sums with d = d_w*d_x; the min term
 * uses the Q8_K bsums: Σ_j bsums[j]*m[j/2], subtracted as dmin*d_x*sumi. Lanes summed at the end.
 */
function dotQ45KQ8K(w: Uint8Array, wo: number, x: Uint8Array, xo: number, nb: number, q5: boolean): number {
  const bs = q5 ? 176 : 144;
  sums.fill(0);
  let sumf = 0;
  for (let i = 0; i < nb; i++) {
    const a = wo + bs * i, b = xo + 292 * i;
    const qs = a + (q5 ? 48 : 16), qh = a + 16;
    // unpack 256 quants in element order
    for (let g = 0; g < 4; g++) {
      for (let l = 0; l < 32; l++) {
        const byte = w[qs + 32 * g + l];
        let lo = byte & 0xf, hi = byte >> 4;
        if (q5) {
          if (w[qh + l] & (1 << (2 * g))) lo += 16;
          if (w[qh + l] & (2 << (2 * g))) hi += 16;
        }
        aux8[64 * g + l] = lo;
        aux8[64 * g + 32 + l] = hi;
      }
    }
    let sumi = 0;
    for (let j = 0; j < 16; j++) sumi += rdI16(x, b + 260 + 2 * j) * scaleMinK4(j >> 1, w, a + 4)[1];
    aux32.fill(0);
    for (let s = 0; s < 8; s++) {
      const scale = scaleMinK4(s, w, a + 4)[0];
      for (let k = 0; k < 32; k++) aux32[k & 7] += scale * rdI8(x, b + 4 + 32 * s + k) * aux8[32 * s + k];
    }
    const dx = rdF32(x, b);
    const d = F(rdF16(w, a) * dx);
    for (let l = 0; l < 8; l++) sums[l] = F(sums[l] + F(d * aux32[l]));
    const dmin = F(rdF16(w, a + 2) * dx);
    sumf = F(sumf - F(dmin * sumi));
  }
  for (let l = 0; l < 8; l++) sumf = F(sumf + sums[l]);
  return sumf;
}

/** ggml_vec_dot_q6_K_q8_K_generic: as Q4_K without the min term; 16 signed 8-bit scales. */
function dotQ6KQ8K(w: Uint8Array, wo: number, x: Uint8Array, xo: number, nb: number): number {
  sums.fill(0);
  for (let i = 0; i < nb; i++) {
    const a = wo + 210 * i, b = xo + 292 * i;
    for (let half = 0; half < 2; half++) {
      const ql = a + 64 * half, qh = a + 128 + 32 * half, y = 128 * half;
      for (let l = 0; l < 32; l++) {
        const h = w[qh + l];
        aux8[y + l] = ((w[ql + l] & 0xf) | ((h & 3) << 4)) - 32;
        aux8[y + l + 32] = ((w[ql + l + 32] & 0xf) | (((h >> 2) & 3) << 4)) - 32;
        aux8[y + l + 64] = ((w[ql + l] >> 4) | (((h >> 4) & 3) << 4)) - 32;
        aux8[y + l + 96] = ((w[ql + l + 32] >> 4) | (((h >> 6) & 3) << 4)) - 32;
      }
    }
    aux32.fill(0);
    for (let s = 0; s < 16; s++) {
      const scale = rdI8(w, a + 192 + s);
      for (let k = 0; k < 16; k++) aux32[k & 7] += scale * rdI8(x, b + 4 + 16 * s + k) * aux8[16 * s + k];
    }
    const d = F(rdF16(w, a + 208) * rdF32(x, b));
    for (let l = 0; l < 8; l++) sums[l] = F(sums[l] + F(d * aux32[l]));
  }
  let sumf = 0;
  for (let l = 0; l < 8; l++) sumf = F(sumf + sums[l]);
  return sumf;
}

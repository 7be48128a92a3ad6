/**
 * Bit-level emulation of the few f32 primitives in which ggml-cpu's results depend on more than the
 * IEEE basics: fused multiply-add and its vectorised expf (`ggml_v_expf` in ggml-cpu/vec.h, a
 * polynomial with FMAs). Matching them keeps moekit's logits bit-identical to llama.cpp's wherever
 * the rest of the arithmetic is identical — which matters for quantized models, where a 1-ulp
 * difference can flip an int8 rounding of the next layer's activations.
 */

import { readFileSync } from 'node:fs';

const F = Math.fround;

/**
 * Which SIMD flavour llama.cpp's CPU backend uses here: it loads the best variant for the CPU, and
 * its vectorised expf differs between the AVX-512 and AVX2 builds. 16 = AVX-512F+DQ, 8 = AVX2+FMA.
 * `MOEKIT_GGML_LANES` overrides the detection.
 */
export const GGML_LANES: 16 | 8 = detectLanes();

function detectLanes(): 16 | 8 {
  const env = process.env.MOEKIT_GGML_LANES;
  if (env === '8' || env === '16') return Number(env) as 8 | 16;
  try {
    const flags = /^flags\s*:(.*)$/m.exec(readFileSync('/proc/cpuinfo', 'utf8'))?.[1] ?? '';
    return / avx512f( |$)/.test(flags) && / avx512dq( |$)/.test(flags) ? 16 : 8;
  } catch {
    return 8;
  }
}
const f32 = new Float32Array(1);
const u32 = new Uint32Array(f32.buffer);

/** f32 fused multiply-add a·b + c with one rounding (the f32·f32 product is exact in a double). */
export function fma32(a: number, b: number, c: number): number {
  return F(a * b + c);
}

function bitsOf(x: number): number {
  f32[0] = x;
  return u32[0];
}

function fromBits(b: number): number {
  u32[0] = b >>> 0;
  return f32[0];
}

// constants of ggml_v_expf (ggml-cpu/vec.h), as f32
const R = F(12582912.0 /* 0x1.8p23 */);
const LOG2E = F(1.4426950216293335 /* 0x1.715476p+0 */);
const LN2_HI = F(0.693145751953125 /* 0x1.62e4p-1 */);
const LN2_LO = F(1.428606765330187e-06 /* 0x1.7f7d1cp-20 */);
const P0 = F(0.008247390389442444 /* 0x1.0e402p-7 */);
const P1 = F(0.04189976677298546 /* 0x1.573e2ep-5 */);
const P2 = F(0.16668395698070526 /* 0x1.555e66p-3 */);
const P3 = F(0.4999912679195404 /* 0x1.fffdb6p-2 */);
const P4 = F(0.9999994039535522 /* 0x1.ffffecp-1 */);
const ONE_BITS = 0x3f800000;

/** One lane of ggml_v_expf: exp(x) as ggml's SIMD softmax / SiLU compute it. */
export function ggmlVExpf(x: number): number {
  return GGML_LANES === 16 ? vExpf512(x) : vExpf256(x);
}

/** The AVX-512 flavour: j·2^n with a `+1` folded into the last FMA (ggml-cpu/vec.h, __m512 ggml_v_expf). */
function vExpf512(x: number): number {
  const z = fma32(x, LOG2E, R);
  const n = F(z - R);
  const b = fma32(-n, LN2_LO, fma32(-n, LN2_HI, x));
  if (Math.abs(n) > 192) return n <= 0 ? 0 : Infinity;
  const u = F(b * b);
  const j = fma32(fma32(fma32(P0, b, P1), u, fma32(P2, b, P3)), u, fma32(P4, b, 1));
  return F(j * Math.pow(2, n)); // _mm512_scalef_ps
}

/** The AVX2 flavour (__m256 ggml_v_expf). */
function vExpf256(x: number): number {
  const z = fma32(x, LOG2E, R);
  const n = F(z - R);
  const b = fma32(-n, LN2_LO, fma32(-n, LN2_HI, x));
  const e = (bitsOf(z) << 23) >>> 0;
  const k = fromBits((e + ONE_BITS) >>> 0);
  const u = F(b * b);
  const j = fma32(fma32(fma32(P0, b, P1), u, fma32(P2, b, P3)), u, F(P4 * b));
  if (!(Math.abs(n) > 126)) return fma32(j, k, k);
  // |n| > 126: scale in two steps to avoid overflow / reach denormals
  const g = n <= 0 ? 0x82000000 : 0;
  const s1 = fromBits((g + 0x7f000000) >>> 0);
  const s2 = fromBits((e - g) >>> 0);
  if (Math.abs(n) > 192) return F(s1 * s1);
  return F(fma32(s2, j, s2) * s1);
}

/** Horizontal sum of one SIMD register of GGML_LANES f32 lanes, in the order ggml's softmax reduces it. */
function reduceLanes(v: ArrayLike<number>, o: number): number {
  if (GGML_LANES === 16) {
    // GCC _mm512_reduce_add_ps: 16 → 8 → 4 → 2 → 1, halves added pairwise
    const t8 = new Array<number>(8);
    for (let i = 0; i < 8; i++) t8[i] = F(v[o + i + 8] + v[o + i]);
    const t4 = [F(t8[4] + t8[0]), F(t8[5] + t8[1]), F(t8[6] + t8[2]), F(t8[7] + t8[3])];
    return F(F(t4[0] + t4[2]) + F(t4[1] + t4[3]));
  }
  // AVX2 path of ggml_vec_soft_max_f32: (hi128 + lo128), then movehl, then movehdup
  const a = [F(v[o + 4] + v[o]), F(v[o + 5] + v[o + 1]), F(v[o + 6] + v[o + 2]), F(v[o + 7] + v[o + 3])];
  const b0 = F(a[0] + a[2]);
  const b1 = F(a[1] + a[3]);
  return F(b0 + b1);
}

/**
 * ggml_vec_soft_max_f32: y[i] = exp(x[i] − max), returning Σ y (in double). Full SIMD registers use
 * ggml_v_expf and a per-register f32 reduction; the tail uses libm expf.
 */
export function ggmlSoftMaxExp(n: number, y: Float32Array, yo: number, x: ArrayLike<number>, xo: number, max: number): number {
  let sum = 0;
  let i = 0;
  for (; i + GGML_LANES <= n; i += GGML_LANES) {
    for (let l = 0; l < GGML_LANES; l++) y[yo + i + l] = ggmlVExpf(F(x[xo + i + l] - max));
    sum += reduceLanes(y, yo + i);
  }
  for (; i < n; i++) {
    const v = F(Math.exp(F(x[xo + i] - max)));
    sum += v;
    y[yo + i] = v;
  }
  return sum;
}

/** ggml_vec_swiglu_f32: y[i] = silu(x[i])·g[i]; full SIMD registers use ggml_v_silu, the tail ggml_silu_f32. */
export function ggmlSwiglu(n: number, y: Float32Array, x: ArrayLike<number>, g: ArrayLike<number>): void {
  const simd = n - (n % GGML_LANES);
  for (let i = 0; i < n; i++) {
    const v = x[i];
    const e = i < simd ? ggmlVExpf(F(-v)) : F(Math.exp(-v));
    y[i] = F(F(v / F(1 + e)) * g[i]);
  }
}

/**
 * An F32 × F32 dot product as llama.cpp computes a row of an F32 matmul:
 *  - batches (T ≥ 2) go through llamafile's tinyBLAS (ggml-cpu/llamafile/sgemm.cpp `gemm_bloc`) when
 *    K is a multiple of the lane count and N of 4: GGML_LANES independent FMA chains over k ≡ lane,
 *    then one horizontal sum;
 *  - otherwise `ggml_vec_dot_f32`: 4 registers of FMA chains over blocks of 4·GGML_LANES, folded
 *    pairwise, reduced, then the tail added in f32.
 */
export function dotF32(w: Float32Array, wo: number, x: Float32Array, xo: number, K: number, sgemm: boolean): number {
  const L = GGML_LANES;
  const acc = new Float32Array(4 * L);
  if (sgemm) {
    for (let l = 0; l < K; l += L) for (let r = 0; r < L; r++) acc[r] = fma32(w[wo + l + r], x[xo + l + r], acc[r]);
    return reduceLanes(acc, 0);
  }
  const step = 4 * L;
  const np = K - (K % step);
  for (let i = 0; i < np; i += step) for (let j = 0; j < step; j++) acc[j] = fma32(x[xo + i + j], w[wo + i + j], acc[j]);
  let sum = F(fold4(acc));
  for (let i = np; i < K; i++) sum = F(sum + F(x[xo + i] * w[wo + i]));
  return sum;
}

/** Whether llama.cpp would run an F32 matmul of N rows × K through tinyBLAS for a batch of T rows. */
export function f32UsesSgemm(N: number, K: number, T: number): boolean {
  return T >= 2 && K % GGML_LANES === 0 && N % 4 === 0;
}


/**
 * ggml_vec_dot_f16 of two f16 rows given as f32 values: 4 registers of FMA chains over blocks of
 * 4·GGML_LANES, folded and reduced, then the tail added in double.
 */
export function dotF16(a: ArrayLike<number>, ao: number, b: ArrayLike<number>, bo: number, n: number): number {
  const L = GGML_LANES;
  const step = 4 * L;
  const np = n - (n % step);
  let sum = 0;
  if (np > 0) {
    const acc = new Float32Array(4 * L);
    for (let i = 0; i < np; i += step) for (let j = 0; j < step; j++) acc[j] = fma32(a[ao + i + j], b[bo + i + j], acc[j]);
    sum = fold4(acc);
  }
  for (let i = np; i < n; i++) sum += F(a[ao + i] * b[bo + i]);
  return F(sum);
}

/** GGML_F32_VEC_REDUCE of 4 registers (in place), as a double. */
function fold4(acc: Float32Array): number {
  const L = GGML_LANES;
  for (let r = 0; r < L; r++) {
    acc[r] = F(acc[r] + acc[2 * L + r]);
    acc[L + r] = F(acc[L + r] + acc[3 * L + r]);
  }
  for (let r = 0; r < L; r++) acc[r] = F(acc[r] + acc[L + r]);
  if (L === 16) return reduceLanes(acc, 0);
  // GGML_F32x8_REDUCE: (lo128 + hi128), then two hadds
  return F(F(F(acc[0] + acc[4]) + F(acc[1] + acc[5])) + F(F(acc[2] + acc[6]) + F(acc[3] + acc[7])));
}

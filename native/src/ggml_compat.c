/*
 * Bit-level emulation of ggml-cpu's f32 arithmetic where its results depend on more than IEEE basics
 * (the TypeScript twin is src/backend/ggml-math.ts; both follow llama.cpp's ggml-cpu/vec.h, vec.cpp,
 * ops.cpp flash attention and llamafile/sgemm.cpp). Matching them keeps quantized models' logits
 * bit-identical to llama.cpp's: a 1-ulp difference can flip an int8 rounding of the next activation.
 *
 * Compiled with -std=c11 (ISO), so GCC does not contract a*b+c into FMAs behind our back: every FMA
 * here is an explicit fmaf(), like ggml's intrinsics.
 */
#include <math.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "ggml_compat.h"
#include "k4_scales.h"


/* The f32 emulation calls fmaf() a lot; on FMA CPUs let GCC clone these functions with the fma target
 * so fmaf() becomes one instruction (same result, picked at load time through an ifunc). */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define MKC_FMA_CLONES __attribute__((target_clones("fma", "default")))
#else
#define MKC_FMA_CLONES
#endif

int mkc_lanes = 8;

void mkc_init(void) {
  const char *env = getenv("MOEKIT_GGML_LANES");
  if (env && (!strcmp(env, "8") || !strcmp(env, "16"))) {
    mkc_lanes = atoi(env);
    return;
  }
#if defined(__x86_64__)
  __builtin_cpu_init();
  mkc_lanes = (__builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512dq")) ? 16 : 8;
#endif
}

static float from_bits(uint32_t b) { float f; memcpy(&f, &b, 4); return f; }
static uint32_t to_bits(float f) { uint32_t b; memcpy(&b, &f, 4); return b; }

#define R_ 0x1.8p23f
#define LOG2E_ 0x1.715476p+0f
#define LN2HI_ 0x1.62e4p-1f
#define LN2LO_ 0x1.7f7d1cp-20f
#define P0_ 0x1.0e4020p-7f
#define P1_ 0x1.573e2ep-5f
#define P2_ 0x1.555e66p-3f
#define P3_ 0x1.fffdb6p-2f
#define P4_ 0x1.ffffecp-1f

/* one lane of ggml_v_expf */
MKC_FMA_CLONES float mkc_vexpf(float x) {
  const float z = fmaf(x, LOG2E_, R_);
  const float n = z - R_;
  const float b = fmaf(-n, LN2LO_, fmaf(-n, LN2HI_, x));
  const float u = b * b;
  if (mkc_lanes == 16) { /* __m512 flavour: j·2^n */
    if (fabsf(n) > 192) return n <= 0 ? 0.0f : INFINITY;
    const float j = fmaf(fmaf(fmaf(P0_, b, P1_), u, fmaf(P2_, b, P3_)), u, fmaf(P4_, b, 1.0f));
    return ldexpf(j, (int)n);
  }
  /* __m256 flavour: k + k·j with k = 2^n built from the bits of z */
  const uint32_t e = to_bits(z) << 23;
  const float k = from_bits(e + 0x3f800000u);
  const float j = fmaf(fmaf(fmaf(P0_, b, P1_), u, fmaf(P2_, b, P3_)), u, P4_ * b);
  if (!(fabsf(n) > 126)) return fmaf(j, k, k);
  const uint32_t g = n <= 0 ? 0x82000000u : 0u;
  const float s1 = from_bits(g + 0x7f000000u), s2 = from_bits(e - g);
  if (fabsf(n) > 192) return s1 * s1;
  return fmaf(s2, j, s2) * s1;
}

/* horizontal sum of one register of mkc_lanes values, as ggml reduces it */
static float reduce_lanes(const float *v) {
  if (mkc_lanes == 16) { /* GCC _mm512_reduce_add_ps */
    float t8[8], t4[4];
    for (int i = 0; i < 8; i++) t8[i] = v[i + 8] + v[i];
    for (int i = 0; i < 4; i++) t4[i] = t8[i + 4] + t8[i];
    return (t4[0] + t4[2]) + (t4[1] + t4[3]);
  }
  float a[4];
  for (int i = 0; i < 4; i++) a[i] = v[i + 4] + v[i];
  return (a[0] + a[2]) + (a[1] + a[3]);
}

/* ggml_vec_soft_max_f32: y = exp(x - max), returns Σ y in double */
MKC_FMA_CLONES double mkc_softmax_exp(int n, float *y, const float *x, float max) {
  const int L = mkc_lanes;
  double sum = 0;
  int i = 0;
  for (; i + L <= n; i += L) {
    for (int l = 0; l < L; l++) y[i + l] = mkc_vexpf(x[i + l] - max);
    sum += (double)reduce_lanes(y + i);
  }
  for (; i < n; i++) {
    const float v = expf(x[i] - max);
    sum += (double)v;
    y[i] = v;
  }
  return sum;
}

/* ggml_vec_swiglu_f32 element i of n: silu(x)·g, vectorised expf for full registers, libm for the tail */
MKC_FMA_CLONES float mkc_swiglu(float x, float g, int i, int n) {
  const int simd = n - n % mkc_lanes;
  const float e = i < simd ? mkc_vexpf(-x) : expf(-x);
  return (x / (1.0f + e)) * g;
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* mkc_swiglu on 16 lanes where ggml's AVX-512 flavour applies: the same operations lane by lane
 * (vscalefps is ldexpf's exact scaling, vdivps IEEE division) */
__attribute__((target("avx512f,avx512dq,fma"))) static int swiglu_run_512(float *h, const float *x, const float *g,
                                                                          int m, int c0, int simd_end) {
  const __m512 R = _mm512_set1_ps(R_), one = _mm512_set1_ps(1.0f), n192 = _mm512_set1_ps(192.0f);
  const int lim = simd_end - c0 < m ? (simd_end > c0 ? simd_end - c0 : 0) : m; /* columns below simd_end */
  for (int i = 0; i < lim; i += 16) {
    const int k = lim - i;
    const __mmask16 mk = k >= 16 ? 0xFFFF : (__mmask16)((1u << k) - 1);
    const __m512 xv = _mm512_maskz_loadu_ps(mk, x + i), gv = _mm512_maskz_loadu_ps(mk, g + i);
    const __m512 sign = _mm512_set1_ps(-0.0f);
    const __m512 nx = _mm512_xor_ps(xv, sign); /* -x, exactly (signed zeros too) */
    const __m512 z = _mm512_fmadd_ps(nx, _mm512_set1_ps(LOG2E_), R);
    const __m512 n = _mm512_sub_ps(z, R);
    const __m512 nn = _mm512_xor_ps(n, sign);
    const __m512 b = _mm512_fmadd_ps(nn, _mm512_set1_ps(LN2LO_), _mm512_fmadd_ps(nn, _mm512_set1_ps(LN2HI_), nx));
    const __m512 u = _mm512_mul_ps(b, b);
    const __m512 j = _mm512_fmadd_ps(
        _mm512_fmadd_ps(_mm512_fmadd_ps(_mm512_set1_ps(P0_), b, _mm512_set1_ps(P1_)), u,
                        _mm512_fmadd_ps(_mm512_set1_ps(P2_), b, _mm512_set1_ps(P3_))),
        u, _mm512_fmadd_ps(_mm512_set1_ps(P4_), b, one));
    __m512 e = _mm512_scalef_ps(j, n);
    /* |n| > 192: 0 or inf, as mkc_vexpf */
    const __mmask16 big = _mm512_cmp_ps_mask(_mm512_abs_ps(n), n192, _CMP_GT_OQ);
    const __mmask16 neg = _mm512_cmp_ps_mask(n, _mm512_setzero_ps(), _CMP_LE_OQ);
    e = _mm512_mask_mov_ps(e, big & neg, _mm512_setzero_ps());
    e = _mm512_mask_mov_ps(e, big & ~neg, _mm512_set1_ps(INFINITY));
    _mm512_mask_storeu_ps(h + i, mk, _mm512_mul_ps(_mm512_div_ps(xv, _mm512_add_ps(one, e)), gv));
  }
  return lim;
}
#endif

/* h[i] = mkc_swiglu(x[i], g[i], c0 + i, n) for i < m (a run of columns c0 .. c0+m-1 of a row of n) */
void mkc_swiglu_run(float *h, const float *x, const float *g, int m, int c0, int n, int simd) {
  int i = 0;
#if defined(__x86_64__) && defined(__GNUC__)
  if (simd >= 2 && mkc_lanes == 16) i = swiglu_run_512(h, x, g, m, c0, n - n % 16);
#else
  (void)simd;
#endif
  for (; i < m; i++) h[i] = mkc_swiglu(x[i], g[i], c0 + i, n);
}

/* the 4-register fold of GGML_F32_VEC_REDUCE into one value (ggml_float) */
static double fold4(float *acc) {
  const int L = mkc_lanes;
  for (int r = 0; r < L; r++) {
    acc[r] = acc[r] + acc[2 * L + r];
    acc[L + r] = acc[L + r] + acc[3 * L + r];
  }
  for (int r = 0; r < L; r++) acc[r] = acc[r] + acc[L + r];
  if (L == 16) return (double)reduce_lanes(acc);
  /* GGML_F32x8_REDUCE: (lo128 + hi128), then two hadds */
  const float t0 = acc[0] + acc[4], t1 = acc[1] + acc[5], t2 = acc[2] + acc[6], t3 = acc[3] + acc[7];
  return (double)((t0 + t1) + (t2 + t3));
}

/* F32 row · F32 activations, as llama.cpp: tinyBLAS lanes for batches, else ggml_vec_dot_f32 (the scalar
 * emulation, for any lane count) */
MKC_FMA_CLONES float mkc_dot_f32_scalar(const float *w, const float *x, int K, int sgemm) {
  const int L = mkc_lanes;
  float acc[64] = {0};
  if (sgemm) {
    for (int l = 0; l < K; l += L)
      for (int r = 0; r < L; r++) acc[r] = fmaf(w[l + r], x[l + r], acc[r]);
    return reduce_lanes(acc);
  }
  const int step = 4 * L, np = K - K % step;
  for (int i = 0; i < np; i += step)
    for (int j = 0; j < step; j++) acc[j] = fmaf(x[i + j], w[i + j], acc[j]);
  float sum = (float)fold4(acc);
  for (int i = np; i < K; i++) sum = sum + x[i] * w[i];
  return sum;
}

#if defined(__x86_64__) && defined(__GNUC__)
/* The same with 16 lanes in 512-bit registers (mkc_lanes == 16): the same FMAs lane by lane, the same folds */
__attribute__((target("avx512f,fma"))) static float dot_f32_512(const float *w, const float *x, int K, int sgemm) {
  float acc[64];
  if (sgemm) {
    __m512 a = _mm512_setzero_ps();
    for (int l = 0; l < K; l += 16) a = _mm512_fmadd_ps(_mm512_loadu_ps(w + l), _mm512_loadu_ps(x + l), a);
    _mm512_storeu_ps(acc, a);
    return reduce_lanes(acc);
  }
  const int np = K - K % 64;
  __m512 a0 = _mm512_setzero_ps(), a1 = a0, a2 = a0, a3 = a0;
  for (int i = 0; i < np; i += 64) {
    a0 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i), _mm512_loadu_ps(w + i), a0);
    a1 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 16), _mm512_loadu_ps(w + i + 16), a1);
    a2 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 32), _mm512_loadu_ps(w + i + 32), a2);
    a3 = _mm512_fmadd_ps(_mm512_loadu_ps(x + i + 48), _mm512_loadu_ps(w + i + 48), a3);
  }
  _mm512_storeu_ps(acc, a0);
  _mm512_storeu_ps(acc + 16, a1);
  _mm512_storeu_ps(acc + 32, a2);
  _mm512_storeu_ps(acc + 48, a3);
  float sum = (float)fold4(acc);
  for (int i = np; i < K; i++) sum = sum + x[i] * w[i];
  return sum;
}
#endif

float mkc_dot_f32(const float *w, const float *x, int K, int sgemm) {
#if defined(__x86_64__) && defined(__GNUC__)
  static int has512 = -1;
  if (has512 < 0) {
    __builtin_cpu_init();
    has512 = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("fma");
  }
  if (mkc_lanes == 16 && has512) return dot_f32_512(w, x, K, sgemm);
#endif
  return mkc_dot_f32_scalar(w, x, K, sgemm);
}

int mkc_f32_sgemm(int N, int K, int T) { return T >= 2 && K % mkc_lanes == 0 && N % 4 == 0; }

/* ggml_vec_dot_f16 of two f16 rows (q already rounded to f16) */
MKC_FMA_CLONES static float dot_f16(const uint16_t *a, const uint16_t *b, int n) {
  const int L = mkc_lanes, step = 4 * L, np = n - n % step;
  float acc[64] = {0};
  for (int i = 0; i < np; i += step)
    for (int j = 0; j < step; j++) acc[j] = fmaf(f16_to_f32(a[i + j]), f16_to_f32(b[i + j]), acc[j]);
  double sum = np ? fold4(acc) : 0.0;
  for (int i = np; i < n; i++) sum += (double)(f16_to_f32(a[i]) * f16_to_f32(b[i]));
  return (float)sum;
}

static float round16(float x) { return f16_to_f32(f32_to_f16(x)); }

/* one (token, head) row of ggml's one-chunk flash attention (T < 64) */
MKC_FMA_CLONES static void attn_one_chunk_scalar(float *out, const float *q, const uint16_t *k, const uint16_t *v,
                                                size_t kv_row, int n, int Dh, float scale, float *acc, uint16_t *q16) {
  for (int d = 0; d < Dh; d++) q16[d] = f32_to_f16(q[d]);
  memset(acc, 0, sizeof(float) * (size_t)Dh);
  float M = -INFINITY, S = 0;
  for (int s = 0; s < n; s++) {
    const uint16_t *kr = k + (size_t)s * kv_row, *vr = v + (size_t)s * kv_row;
    float sc = dot_f16(q16, kr, Dh);
    sc = sc * scale;
    float ms = 1, vs = 1;
    if (sc > M) {
      ms = M == -INFINITY ? 0.0f : expf(M - sc);
      M = sc;
      for (int d = 0; d < Dh; d++) acc[d] = round16(acc[d] * ms);
    } else {
      vs = expf(sc - M);
    }
    for (int d = 0; d < Dh; d++) acc[d] = round16(fmaf(f16_to_f32(vr[d]), vs, acc[d]));
    S = fmaf(S, ms, vs);
  }
  const float inv = S == 0 ? 0.0f : 1.0f / S;
  for (int d = 0; d < Dh; d++) out[d] = acc[d] * inv;
}

/* one (token, head) row of ggml's tiled flash attention (T >= 64): all f32, KV tiles of 64 */
MKC_FMA_CLONES static void attn_tiled_scalar(float *out, const float *q, const uint16_t *k, const uint16_t *v,
                                            size_t kv_row, int n, int Dh, float scale, float *acc) {
  float p[64];
  memset(acc, 0, sizeof(float) * (size_t)Dh);
  float M = -INFINITY, S = 0;
  for (int ic = 0; ic < n; ic += 64) {
    float tmax = -INFINITY;
    for (int tk = 0; tk < 64; tk++) {
      const int j = ic + tk;
      if (j >= n) { p[tk] = -INFINITY; continue; }
      const uint16_t *kr = k + (size_t)j * kv_row;
      float s = 0;
      for (int d = 0; d < Dh; d++) s = fmaf(q[d], f16_to_f32(kr[d]), s);
      p[tk] = s * scale;
      if (p[tk] > tmax) tmax = p[tk];
    }
    const float Mnew = fmaxf(M, tmax);
    if (Mnew > M) {
      const float ms = expf(M - Mnew);
      for (int d = 0; d < Dh; d++) acc[d] = acc[d] * ms;
      S = S * ms;
    }
    M = Mnew;
    S = (float)((double)S + mkc_softmax_exp(64, p, p, M));
    for (int tk = 0; tk < 64 && ic + tk < n; tk++) {
      const uint16_t *vr = v + (size_t)(ic + tk) * kv_row;
      for (int d = 0; d < Dh; d++) acc[d] = fmaf(p[tk], f16_to_f32(vr[d]), acc[d]);
    }
  }
  const float inv = S == 0 ? 0.0f : 1.0f / S;
  for (int d = 0; d < Dh; d++) out[d] = acc[d] * inv;
}

/* ---- Q4_K as llama.cpp's repacked kernels compute it ------------------------------------ */

/*
 * On AVX2 CPUs ggml-cpu repacks every Q4_K weight whose row count N is a multiple of 8
 * (repack.cpp ggml_repack_get_optimal_repack_type) and multiplies with ggml_gemv_q4_K_8x8_q8_K /
 * ggml_gemm_q4_K_8x8_q8_K (arch/x86/repack.cpp) instead of ggml_vec_dot_q4_K_q8_K. The integer
 * sums are exact; the f32 order (the TS twin is quants.ts dotQ4KRepackAt) is:
 *  - gemv (mul_mat with 1-3 activation rows, the rows after the last multiple of 4, and every
 *    mul_mat_id): per 256-block acc = fma(f32(Σ_s sc_s·(q·y)_s), d_w·d_x, acc), and
 *    accm = fma(f32(Σ_s m_s·bsum32_s), dmin_w·d_x, accm);
 *  - gemm (groups of 4 rows of a mul_mat with >= 4): the same two FMAs per pair of 32-element
 *    sub-blocks (2p, 2p+1), 4 per block;
 * result acc - accm. gemm rows' activations come from ggml_quantize_mat_q8_K_4x8, which differs
 * from quantize_row_q8_K_ref only when both +amax and -amax occur (it takes +amax).
 */
int mkc_q4K_repacked(int N) { return N % 8 == 0; }

static void quant_q8_K_block(const float *x, block_q8_K *y, int prefer_positive) {
  float max = 0, amax = 0;
  for (int j = 0; j < QK_K; j++) {
    const float ax = fabsf(x[j]);
    if (ax > amax) { amax = ax; max = x[j]; }
  }
  if (amax == 0) {
    memset(y, 0, sizeof *y);
    return;
  }
  if (prefer_positive && max < 0)
    for (int j = 0; j < QK_K; j++)
      if (x[j] == amax) { max = amax; break; }
  const float iscale = -127.f / max;
  for (int j = 0; j < QK_K; j++) {
    const int v = nearest_int(iscale * x[j]);
    y->qs[j] = (int8_t)(v > 127 ? 127 : v);
  }
  for (int j = 0; j < QK_K / 16; j++) {
    int s = 0;
    for (int l = 0; l < 16; l++) s += y->qs[16 * j + l];
    y->bsums[j] = (int16_t)s;
  }
  y->d = 1 / iscale;
}

int mkc_q4K_gemm_rows(int T) { return T > 3 ? T - T % 4 : 0; }

/* rows t >= mkc_q4K_gemm_rows(T) are plain Q8_K (quantize_row_q8_K_ref): ops.c quantizes those with the
 * vectorized kernels_*.c quantizers, which give the same bytes */
void mkc_quant_q8_K_rows(const float *x, int T, int K, uint8_t *dst, size_t arow) {
  const int tg = mkc_q4K_gemm_rows(T);
  for (int t = 0; t < T; t++)
    for (int i = 0; i < K / QK_K; i++)
      quant_q8_K_block(x + (size_t)t * K + (size_t)i * QK_K, (block_q8_K *)(dst + (size_t)t * arow) + i, t < tg);
}

/* Σ_s m_s·(bsums[2s] + bsums[2s+1]) for s = 2p, 2p+1 */
static inline int min_pair(const uint8_t *mins, const block_q8_K *x, int p) {
  const int16_t *b = x->bsums + 4 * p;
  return mins[2 * p] * (b[0] + b[1]) + mins[2 * p + 1] * (b[2] + b[3]);
}

#define MKC_NT 4
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define MKC_AVX2 __attribute__((target("avx2,fma,f16c")))
#define MKC_HAVE_AVX2 1


/*
 * Up to MKC_NT tokens; gemm != 0: per sub-block-pair FMAs, else per block. The f32 accumulators
 * of the tokens sit in the lanes of one __m128 (lane t = token t: each lane is its own FMA chain).
 */
static MKC_AVX2 inline void q4K_rp_dot_avx2_nt(int n, const uint8_t *w, const uint8_t *act, size_t act_stride,
                                                const int nt, float *s, const int gemm) {
  __m128 acc = _mm_setzero_ps(), accm = _mm_setzero_ps();
  float s1 = 0, s1m = 0; /* nt == 1 gemv */
  const __m256i m4 = _mm256_set1_epi8(0xF);
  for (int i = 0; i < n / QK_K; i++) {
    const block_q4_K *b = (const block_q4_K *)w + i;
    _mm_prefetch((const char *)b + 1024, _MM_HINT_T0);
    _mm_prefetch((const char *)b + 1024 + 64, _MM_HINT_T0);
    _mm_prefetch((const char *)b + 1024 + 128, _MM_HINT_T0);
    const __m128i scm = mk_unpack_k4_scales(b->scales);
    const __m128i sc16 = _mm_cvtepu8_epi16(scm);
    const __m256i sc16x2 = _mm256_set_m128i(sc16, sc16);
    const __m256i mins16 = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(scm, scm)); /* m0 m0 m1 m1 ... m7 m7 */
    __m256i pv[MKC_NT][4];
    for (int p = 0; p < 4; p++) {
      const __m256i q = _mm256_loadu_si256((const __m256i *)(b->qs + 32 * p));
      const __m256i lo = _mm256_and_si256(q, m4), hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
      const __m256i s0 = _mm256_shuffle_epi8(sc16x2, _mm256_set1_epi16((short)(((4 * p + 1) << 8) | (4 * p))));
      const __m256i s1 = _mm256_shuffle_epi8(sc16x2, _mm256_set1_epi16((short)(((4 * p + 3) << 8) | (4 * p + 2))));
      for (int t = 0; t < nt; t++) {
        const int8_t *y = ((const block_q8_K *)(act + (size_t)t * act_stride) + i)->qs + 64 * p;
        const __m256i a = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)y)), s0);
        const __m256i c = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(y + 32))), s1);
        pv[t][p] = _mm256_add_epi32(a, c);
      }
    }
    if (nt == 1 && !gemm) { /* decode: one token, scalar f32 (same FMAs as lane 0 below) */
      const block_q8_K *x = (const block_q8_K *)act + i;
      const __m256i mv = _mm256_madd_epi16(mins16, _mm256_loadu_si256((const __m256i *)x->bsums));
      const __m256i sv = _mm256_add_epi32(_mm256_add_epi32(pv[0][0], pv[0][1]), _mm256_add_epi32(pv[0][2], pv[0][3]));
      const __m256i h = _mm256_hadd_epi32(sv, mv);
      __m128i r = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
      r = _mm_hadd_epi32(r, r);
      s1 = fmaf((float)_mm_cvtsi128_si32(r), f16_to_f32(b->d) * x->d, s1);
      s1m = fmaf((float)_mm_extract_epi32(r, 1), f16_to_f32(b->dmin) * x->d, s1m);
      continue;
    }
    /* d_w·d_x and dmin_w·d_x per token (f32 products, as ggml's col_scale * row_scale) */
    float xd[MKC_NT] = {0};
    for (int t = 0; t < nt; t++) xd[t] = ((const block_q8_K *)(act + (size_t)t * act_stride) + i)->d;
    const __m128 xdv = _mm_loadu_ps(xd);
    const __m128 dv = _mm_mul_ps(_mm_set1_ps(f16_to_f32(b->d)), xdv), dmv = _mm_mul_ps(_mm_set1_ps(f16_to_f32(b->dmin)), xdv);
    __m128 P[MKC_NT], M[MKC_NT]; /* gemm: per token, the 4 pair sums / pair min terms; gemv: [Σs, Σm, ., .] */
    for (int t = 0; t < nt; t++) {
      const block_q8_K *x = (const block_q8_K *)(act + (size_t)t * act_stride) + i;
      /* lane k: m_k·bsum32_k (sub-block k) */
      const __m256i mv = _mm256_madd_epi16(mins16, _mm256_loadu_si256((const __m256i *)x->bsums));
      if (gemm) {
        const __m256i h = _mm256_hadd_epi32(_mm256_hadd_epi32(pv[t][0], pv[t][1]), _mm256_hadd_epi32(pv[t][2], pv[t][3]));
        P[t] = _mm_cvtepi32_ps(_mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1)));
        const __m256i mh = _mm256_hadd_epi32(mv, mv); /* lo: m01 m23 . . | hi: m45 m67 . . */
        M[t] = _mm_cvtepi32_ps(_mm_unpacklo_epi64(_mm256_castsi256_si128(mh), _mm256_extracti128_si256(mh, 1)));
      } else {
        const __m256i sv = _mm256_add_epi32(_mm256_add_epi32(pv[t][0], pv[t][1]), _mm256_add_epi32(pv[t][2], pv[t][3]));
        const __m256i h = _mm256_hadd_epi32(sv, mv); /* lo: s s m m | hi: s s m m */
        const __m128i r = _mm_add_epi32(_mm256_castsi256_si128(h), _mm256_extracti128_si256(h, 1));
        P[t] = _mm_cvtepi32_ps(_mm_hadd_epi32(r, r)); /* [Σs, Σm, Σs, Σm] */
      }
    }
    for (int t = nt; t < MKC_NT; t++) P[t] = M[t] = _mm_setzero_ps();
    /* transpose: lane t of column c = row t's value c */
    _MM_TRANSPOSE4_PS(P[0], P[1], P[2], P[3]);
    if (gemm) {
      _MM_TRANSPOSE4_PS(M[0], M[1], M[2], M[3]);
      for (int p = 0; p < 4; p++) {
        acc = _mm_fmadd_ps(P[p], dv, acc);
        accm = _mm_fmadd_ps(M[p], dmv, accm);
      }
    } else {
      acc = _mm_fmadd_ps(P[0], dv, acc);
      accm = _mm_fmadd_ps(P[1], dmv, accm);
    }
  }
  if (nt == 1 && !gemm) {
    s[0] = s1 - s1m;
    return;
  }
  float r[MKC_NT];
  _mm_storeu_ps(r, _mm_sub_ps(acc, accm));
  for (int t = 0; t < nt; t++) s[t] = r[t];
}

static MKC_AVX2 void q4K_rp_dot_avx2(int n, const uint8_t *w, const uint8_t *act, size_t act_stride, int nt, float *s,
                                     int gemm) {
  switch (nt) { /* constant tile widths, so the token loops unroll */
    case 1: q4K_rp_dot_avx2_nt(n, w, act, act_stride, 1, s, gemm); break;
    case 2: q4K_rp_dot_avx2_nt(n, w, act, act_stride, 2, s, gemm); break;
    case 3: q4K_rp_dot_avx2_nt(n, w, act, act_stride, 3, s, gemm); break;
    default: q4K_rp_dot_avx2_nt(n, w, act, act_stride, 4, s, gemm); break;
  }
}
#endif

/* One Q4_K block (scales unpacked, 128 bytes of nibbles in block_q4_K order) into acc / accm, in the order
 * of ggml's repacked Q4_K kernels: per sub-block pair for the gemm, per block for the gemv. */
static inline void q4K_rp_block(const uint8_t sc[8], const uint8_t mn[8], const uint8_t *qs, const block_q8_K *x,
                                float d, float dm, int gemm, float *acc, float *accm) {
  int ib = 0, im = 0;
  for (int p = 0; p < 4; p++) {
    int ip = 0;
    for (int l = 0; l < 32; l++)
      ip += sc[2 * p] * (qs[32 * p + l] & 0xF) * x->qs[64 * p + l] + sc[2 * p + 1] * (qs[32 * p + l] >> 4) * x->qs[64 * p + 32 + l];
    if (gemm) {
      *acc = fmaf((float)ip, d, *acc);
      *accm = fmaf((float)min_pair(mn, x, p), dm, *accm);
    } else {
      ib += ip;
      im += min_pair(mn, x, p);
    }
  }
  if (!gemm) {
    *acc = fmaf((float)ib, d, *acc);
    *accm = fmaf((float)im, dm, *accm);
  }
}

static void q4K_rp_dot_scalar(int n, const uint8_t *w, const uint8_t *act, size_t act_stride, int nt, float *s, int gemm) {
  for (int t = 0; t < nt; t++) {
    float acc = 0, accm = 0;
    for (int i = 0; i < n / QK_K; i++) {
      const block_q4_K *b = (const block_q4_K *)w + i;
      const block_q8_K *x = (const block_q8_K *)(act + (size_t)t * act_stride) + i;
      uint8_t sc[8], mn[8];
      for (int j = 0; j < 8; j++) scale_min_k4(j, b->scales, &sc[j], &mn[j]);
      q4K_rp_block(sc, mn, b->qs, x, f16_to_f32(b->d) * x->d, f16_to_f32(b->dmin) * x->d, gemm, &acc, &accm);
    }
    s[t] = acc - accm;
  }
}

static int q4K_avx2 = -1;

static void q4K_rp_dot(int n, const uint8_t *w, const uint8_t *act, size_t act_stride, int nt, float *s, int gemm) {
#ifdef MKC_HAVE_AVX2
  if (q4K_avx2 < 0) {
    __builtin_cpu_init();
    q4K_avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
  }
  if (q4K_avx2) {
    q4K_rp_dot_avx2(n, w, act, act_stride, nt, s, gemm);
    return;
  }
#endif
  q4K_rp_dot_scalar(n, w, act, act_stride, nt, s, gemm);
}

/* mk_dot_fn for mul_mat_id (always gemv), any nt */
void mkc_dot_q4K_gemv(int n, const void *w_row, const void *act, size_t act_stride, int nt, float *s) {
  for (int t0 = 0; t0 < nt; t0 += MKC_NT) {
    const int m = nt - t0 < MKC_NT ? nt - t0 : MKC_NT;
    q4K_rp_dot(n, w_row, (const uint8_t *)act + (size_t)t0 * act_stride, act_stride, m, s + t0, 0);
  }
}

/* y[t, r] for r in [r0, r1), all T tokens of a mul_mat: rows t < mkc_q4K_gemm_rows(T) as gemm */
void mkc_q4K_rows(const uint8_t *w, size_t wrow, int r0, int r1, const uint8_t *act, size_t arow, int T, int K,
                  float *y, size_t ystride) {
  const int tg = mkc_q4K_gemm_rows(T);
  float s[MKC_NT];
  for (int t0 = 0; t0 < T; t0 += MKC_NT) {
    /* tiles never straddle the gemm/gemv boundary (tg is a multiple of MKC_NT = 4) */
    const int nt = T - t0 < MKC_NT ? T - t0 : MKC_NT, gemm = t0 < tg;
    for (int r = r0; r < r1; r++) {
      q4K_rp_dot(K, w + (size_t)r * wrow, act + (size_t)t0 * arow, arow, nt, s, gemm);
      for (int t = 0; t < nt; t++) y[(size_t)(t0 + t) * ystride + r] = s[t];
    }
  }
}

/* ---- the same, on Q4_K rows repacked by 16 (T_Q4_K_R16, layout in common.h) ---------------- */

/* Rows [16·g0, 16·g1) of a Q4_K tensor with K columns into the repacked layout. */
void mkc_q4K_r16_pack(uint8_t *dst, const uint8_t *src, int g0, int g1, int K) {
  const int nb = K / QK_K;
  for (int g = g0; g < g1; g++)
    for (int i = 0; i < nb; i++) {
      uint8_t *o = dst + ((size_t)g * nb + i) * MK_R16_BLOCK;
      for (int r = 0; r < MK_R16; r++) {
        const block_q4_K *b = (const block_q4_K *)src + (size_t)(MK_R16 * g + r) * nb + i;
        memcpy(o + 2 * r, &b->d, 2);
        memcpy(o + 32 + 2 * r, &b->dmin, 2);
        for (int w = 0; w < 3; w++) memcpy(o + 64 + 64 * w + 4 * r, b->scales + 4 * w, 4);
        for (int v = 0; v < 32; v++) memcpy(o + 256 + 64 * v + 4 * r, b->qs + 4 * v, 4);
      }
    }
}

/* The reference for the layout: row r of the group unpacked to block_q4_K order, then q4K_rp_block. */
MKC_FMA_CLONES static void q4K_r16_group_scalar(int nb, const uint8_t *wg, const uint8_t *act, size_t act_stride,
                                                int nt, int gemm, float *s, size_t s_stride) {
  for (int t = 0; t < nt; t++)
    for (int r = 0; r < MK_R16; r++) {
      float acc = 0, accm = 0;
      for (int i = 0; i < nb; i++) {
        const uint8_t *b = wg + (size_t)i * MK_R16_BLOCK;
        const block_q8_K *x = (const block_q8_K *)(act + (size_t)t * act_stride) + i;
        uint8_t q[12], sc[8], mn[8], qs[QK_K / 2];
        uint16_t dh, mh;
        for (int w = 0; w < 3; w++) memcpy(q + 4 * w, b + 64 + 64 * w + 4 * r, 4);
        for (int j = 0; j < 8; j++) scale_min_k4(j, q, &sc[j], &mn[j]);
        for (int v = 0; v < 32; v++) memcpy(qs + 4 * v, b + 256 + 64 * v + 4 * r, 4); /* undo the interleave */
        memcpy(&dh, b + 2 * r, 2);
        memcpy(&mh, b + 32 + 2 * r, 2);
        q4K_rp_block(sc, mn, qs, x, f16_to_f32(dh) * x->d, f16_to_f32(mh) * x->d, gemm, &acc, &accm);
      }
      s[(size_t)t * s_stride + r] = acc - accm;
    }
}

void mkc_q4K_r16_rows(const uint8_t *w, int K, int ngroups, const uint8_t *act, size_t arow, int T, int tg, float *y,
                      size_t ystride, int simd) {
  const int nb = K / QK_K;
  const mk_q4K_r16_fn fn = simd >= 2 ? mk_q4K_r16_group_512 : q4K_r16_group_scalar;
  for (int t0 = 0; t0 < T; t0 += MKC_NT) {
    const int nt = T - t0 < MKC_NT ? T - t0 : MKC_NT, gemm = t0 < tg;
    for (int g = 0; g < ngroups; g++)
      fn(nb, w + (size_t)g * nb * MK_R16_BLOCK, act + (size_t)t0 * arow, arow, nt, gemm, y + (size_t)t0 * ystride + MK_R16 * g,
         ystride);
  }
}

/* ---- flash attention, SIMD ---------------------------------------------------------------
 *
 * Bit-identical to attn_one_chunk_scalar / attn_tiled_scalar above (the reference): every f32
 * operation is the same one, on the same operands, in the same order; only independent operations
 * run side by side in SIMD lanes. F16C's vcvtph2ps widens exactly like f16_to_f32 and
 * vcvtps2ph(round to nearest even) narrows like f32_to_f16 (overflow to inf, subnormals rounded).
 */
#ifdef MKC_HAVE_AVX2
#define MKC_AVX512 __attribute__((target("avx2,fma,f16c,avx512f")))
#define MKC_RNE (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

static MKC_AVX2 inline __m256 ld16x8(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
static MKC_AVX2 inline __m256 round16x8(__m256 x) { return _mm256_cvtph_ps(_mm256_cvtps_ph(x, MKC_RNE)); }
static MKC_AVX512 inline __m512 ld16x16(const uint16_t *p) { return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)p)); }
static MKC_AVX512 inline __m512 round16x16(__m512 x) { return _mm512_cvtph_ps(_mm512_cvtps_ph(x, MKC_RNE)); }
#define MKC_AI __attribute__((always_inline)) inline

/* ggml_vec_dot_f16 with the f16 q already widened (ld16x8 widens exactly): emulated lane j of ggml's 4
 * accumulators of mkc_lanes lanes = SIMD lane j (two ymm per accumulator when mkc_lanes == 16), then
 * fold4's lane-wise adds, its final reduction, the tail */
static MKC_AVX2 float dot_f16_avx2(const float *a, const uint16_t *b, int n) {
  const int L = mkc_lanes, step = 4 * L, np = n - n % step;
  double sum = 0;
  if (np) {
    const int R = L / 8; /* ymm per emulated register */
    __m256 c[4][2];
    for (int r = 0; r < 4; r++) c[r][0] = c[r][1] = _mm256_setzero_ps();
    for (int i = 0; i < np; i += step)
      for (int r = 0; r < 4; r++)
        for (int h = 0; h < R; h++) {
          const int o = i + r * L + 8 * h;
          c[r][h] = _mm256_fmadd_ps(_mm256_loadu_ps(a + o), ld16x8(b + o), c[r][h]);
        }
    float t[16];
    for (int h = 0; h < R; h++) {
      c[0][h] = _mm256_add_ps(c[0][h], c[2][h]);
      c[1][h] = _mm256_add_ps(c[1][h], c[3][h]);
      c[0][h] = _mm256_add_ps(c[0][h], c[1][h]);
      _mm256_storeu_ps(t + 8 * h, c[0][h]);
    }
    if (L == 16) sum = (double)reduce_lanes(t);
    else {
      const float t0 = t[0] + t[4], t1 = t[1] + t[5], t2 = t[2] + t[6], t3 = t[3] + t[7];
      sum = (double)((t0 + t1) + (t2 + t3));
    }
  }
  for (int i = np; i < n; i++) sum += (double)(a[i] * f16_to_f32(b[i]));
  return (float)sum;
}

/* the same for mkc_lanes == 16: one zmm per accumulator; reduce_lanes' adds done in registers */
static MKC_AVX512 float dot_f16_512(const float *a, const uint16_t *b, int n) {
  const int np = n - n % 64;
  double sum = 0;
  if (np) {
    __m512 c0 = _mm512_setzero_ps(), c1 = c0, c2 = c0, c3 = c0;
    for (int i = 0; i < np; i += 64) {
      c0 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i), ld16x16(b + i), c0);
      c1 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 16), ld16x16(b + i + 16), c1);
      c2 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 32), ld16x16(b + i + 32), c2);
      c3 = _mm512_fmadd_ps(_mm512_loadu_ps(a + i + 48), ld16x16(b + i + 48), c3);
    }
    c0 = _mm512_add_ps(_mm512_add_ps(c0, c2), _mm512_add_ps(c1, c3));
    const __m256 hi = _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(c0), 1));
    const __m256 t8 = _mm256_add_ps(hi, _mm512_castps512_ps256(c0));                /* v[i+8] + v[i] */
    const __m128 t4 = _mm_add_ps(_mm256_extractf128_ps(t8, 1), _mm256_castps256_ps128(t8)); /* t8[i+4] + t8[i] */
    __m128 u = _mm_add_ps(t4, _mm_movehl_ps(t4, t4)); /* t4[0] + t4[2], t4[1] + t4[3] */
    u = _mm_add_ss(u, _mm_movehdup_ps(u));
    sum = (double)_mm_cvtss_f32(u);
  }
  for (int i = np; i < n; i++) sum += (double)(a[i] * f16_to_f32(b[i]));
  return (float)sum;
}

/* the scalar recurrence over the scores: sc[s] becomes key s's vs; fl[s] = 1 where the running max rose
 * (the accumulator is then scaled by ms[s] before the add); returns the running sum S */
static MKC_AVX2 float softmax_factors(float *sc, float *ms, uint8_t *fl, int n) {
  float M = -INFINITY, S = 0;
  for (int s = 0; s < n; s++) {
    const float x = sc[s];
    float m = 1, vs = 1;
    if (x > M) {
      m = M == -INFINITY ? 0.0f : expf(M - x);
      M = x;
      fl[s] = 1;
    } else {
      vs = expf(x - M);
      fl[s] = 0;
    }
    ms[s] = m;
    sc[s] = vs;
    S = fmaf(S, m, vs);
  }
  return S;
}

static MKC_AVX2 inline void prefetch_row(const uint16_t *p, int bytes) {
  for (int o = 0; o < bytes; o += 64) _mm_prefetch((const char *)p + o, _MM_HINT_T0);
  _mm_prefetch((const char *)p + bytes - 1, _MM_HINT_T0);
}

/* K or V rows prefetched ahead (bench/native/attention.c with -DMKC_PF=4 or 32: no better from DRAM) */
#ifndef MKC_PF
#define MKC_PF 12
#endif

/* out[d] = acc[d] · inv for 8·NB dims from d, acc in NB ymm registers across all n keys */
static MKC_AI MKC_AVX2 void vacc_avx2(float *out, const uint16_t *v, size_t kv_row, int n, const float *vs,
                                      const float *ms, const uint8_t *fl, float inv, const int NB) {
  __m256 a[8];
  for (int i = 0; i < NB; i++) a[i] = _mm256_setzero_ps();
  for (int s = 0; s < n; s++) {
    const uint16_t *vr = v + (size_t)s * kv_row;
    if (s + MKC_PF < n) prefetch_row(vr + MKC_PF * kv_row, 16 * NB);
    if (fl[s]) {
      const __m256 m = _mm256_set1_ps(ms[s]);
      for (int i = 0; i < NB; i++) a[i] = round16x8(_mm256_mul_ps(a[i], m));
    }
    const __m256 x = _mm256_set1_ps(vs[s]);
    for (int i = 0; i < NB; i++) a[i] = round16x8(_mm256_fmadd_ps(ld16x8(vr + 8 * i), x, a[i]));
  }
  const __m256 vi = _mm256_set1_ps(inv);
  for (int i = 0; i < NB; i++) _mm256_storeu_ps(out + 8 * i, _mm256_mul_ps(a[i], vi));
}

/* the same, 16·NB dims in NB zmm */
static MKC_AI MKC_AVX512 void vacc_512(float *out, const uint16_t *v, size_t kv_row, int n, const float *vs,
                                       const float *ms, const uint8_t *fl, float inv, const int NB) {
  __m512 a[8];
  for (int i = 0; i < NB; i++) a[i] = _mm512_setzero_ps();
  for (int s = 0; s < n; s++) {
    const uint16_t *vr = v + (size_t)s * kv_row;
    if (s + MKC_PF < n) prefetch_row(vr + MKC_PF * kv_row, 32 * NB);
    if (fl[s]) {
      const __m512 m = _mm512_set1_ps(ms[s]);
      for (int i = 0; i < NB; i++) a[i] = round16x16(_mm512_mul_ps(a[i], m));
    }
    const __m512 x = _mm512_set1_ps(vs[s]);
    for (int i = 0; i < NB; i++) a[i] = round16x16(_mm512_fmadd_ps(ld16x16(vr + 16 * i), x, a[i]));
  }
  const __m512 vi = _mm512_set1_ps(inv);
  for (int i = 0; i < NB; i++) _mm512_storeu_ps(out + 16 * i, _mm512_mul_ps(a[i], vi));
}

static MKC_AVX2 void vacc_avx2_any(float *out, const uint16_t *v, size_t kv_row, int n, const float *vs,
                                   const float *ms, const uint8_t *fl, float inv, int NB) {
  switch (NB) {
    case 1: vacc_avx2(out, v, kv_row, n, vs, ms, fl, inv, 1); break;
    case 2: vacc_avx2(out, v, kv_row, n, vs, ms, fl, inv, 2); break;
    case 3: vacc_avx2(out, v, kv_row, n, vs, ms, fl, inv, 3); break;
    case 4: vacc_avx2(out, v, kv_row, n, vs, ms, fl, inv, 4); break;
    case 5: vacc_avx2(out, v, kv_row, n, vs, ms, fl, inv, 5); break;
    case 6: vacc_avx2(out, v, kv_row, n, vs, ms, fl, inv, 6); break;
    case 7: vacc_avx2(out, v, kv_row, n, vs, ms, fl, inv, 7); break;
    default: vacc_avx2(out, v, kv_row, n, vs, ms, fl, inv, 8); break;
  }
}

static MKC_AVX512 void vacc_512_any(float *out, const uint16_t *v, size_t kv_row, int n, const float *vs,
                                    const float *ms, const uint8_t *fl, float inv, int NB) {
  switch (NB) {
    case 1: vacc_512(out, v, kv_row, n, vs, ms, fl, inv, 1); break;
    case 2: vacc_512(out, v, kv_row, n, vs, ms, fl, inv, 2); break;
    case 3: vacc_512(out, v, kv_row, n, vs, ms, fl, inv, 3); break;
    case 4: vacc_512(out, v, kv_row, n, vs, ms, fl, inv, 4); break;
    case 5: vacc_512(out, v, kv_row, n, vs, ms, fl, inv, 5); break;
    case 6: vacc_512(out, v, kv_row, n, vs, ms, fl, inv, 6); break;
    case 7: vacc_512(out, v, kv_row, n, vs, ms, fl, inv, 7); break;
    default: vacc_512(out, v, kv_row, n, vs, ms, fl, inv, 8); break;
  }
}

/* vacc_512 for two heads at once: their accumulator chains are independent, so one head's f16 round trips
 * (fma -> narrow -> widen: a latency chain per key) overlap the other's. 2·NB zmm accumulators. */
static MKC_AI MKC_AVX512 void vacc2_512(float *o0, float *o1, const uint16_t *v0, const uint16_t *v1, size_t kv_row, int n,
                                        const float *vs0, const float *ms0, const uint8_t *fl0, float inv0,
                                        const float *vs1, const float *ms1, const uint8_t *fl1, float inv1, const int NB) {
  __m512 a[8], b[8];
  for (int i = 0; i < NB; i++) a[i] = b[i] = _mm512_setzero_ps();
  for (int s = 0; s < n; s++) {
    const uint16_t *r0 = v0 + (size_t)s * kv_row, *r1 = v1 + (size_t)s * kv_row;
    if (s + MKC_PF < n) {
      prefetch_row(r0 + MKC_PF * kv_row, 32 * NB);
      if (r1 != r0) prefetch_row(r1 + MKC_PF * kv_row, 32 * NB);
    }
    if (fl0[s]) {
      const __m512 m = _mm512_set1_ps(ms0[s]);
      for (int i = 0; i < NB; i++) a[i] = round16x16(_mm512_mul_ps(a[i], m));
    }
    if (fl1[s]) {
      const __m512 m = _mm512_set1_ps(ms1[s]);
      for (int i = 0; i < NB; i++) b[i] = round16x16(_mm512_mul_ps(b[i], m));
    }
    const __m512 x0 = _mm512_set1_ps(vs0[s]), x1 = _mm512_set1_ps(vs1[s]);
    for (int i = 0; i < NB; i++) {
      a[i] = round16x16(_mm512_fmadd_ps(ld16x16(r0 + 16 * i), x0, a[i]));
      b[i] = round16x16(_mm512_fmadd_ps(ld16x16(r1 + 16 * i), x1, b[i]));
    }
  }
  const __m512 i0 = _mm512_set1_ps(inv0), i1 = _mm512_set1_ps(inv1);
  for (int i = 0; i < NB; i++) {
    _mm512_storeu_ps(o0 + 16 * i, _mm512_mul_ps(a[i], i0));
    _mm512_storeu_ps(o1 + 16 * i, _mm512_mul_ps(b[i], i1));
  }
}

static MKC_AVX512 void vacc2_512_any(float *o0, float *o1, const uint16_t *v0, const uint16_t *v1, size_t kv_row, int n,
                                     const float *vs0, const float *ms0, const uint8_t *fl0, float inv0,
                                     const float *vs1, const float *ms1, const uint8_t *fl1, float inv1, int NB) {
#define MKC_V2(nb) vacc2_512(o0, o1, v0, v1, kv_row, n, vs0, ms0, fl0, inv0, vs1, ms1, fl1, inv1, nb)
  switch (NB) {
    case 1: MKC_V2(1); break;
    case 2: MKC_V2(2); break;
    case 3: MKC_V2(3); break;
    case 4: MKC_V2(4); break;
    case 5: MKC_V2(5); break;
    case 6: MKC_V2(6); break;
    case 7: MKC_V2(7); break;
    default: MKC_V2(8); break;
  }
#undef MKC_V2
}

/* pass (3) of one head: out[d] = its f16 value accumulator · inv, lanes over d kept in registers across keys */
static MKC_AVX2 void vacc_head(float *out, const uint16_t *v, size_t kv_row, int n, const float *sc, const float *ms,
                               const uint8_t *fl, float inv, int Dh, int simd) {
  int d = 0;
  if (simd >= 2)
    for (; d + 16 <= Dh; d += 128) {
      const int nb = (Dh - d) / 16 < 8 ? (Dh - d) / 16 : 8;
      vacc_512_any(out + d, v + d, kv_row, n, sc, ms, fl, inv, nb);
      if (nb < 8) { d += 16 * nb; break; }
    }
  for (; d + 8 <= Dh; d += 64) {
    const int nb = (Dh - d) / 8 < 8 ? (Dh - d) / 8 : 8;
    vacc_avx2_any(out + d, v + d, kv_row, n, sc, ms, fl, inv, nb);
    if (nb < 8) { d += 8 * nb; break; }
  }
  for (; d < Dh; d++) {
    float a = 0;
    for (int s = 0; s < n; s++) {
      if (fl[s]) a = round16(a * ms[s]);
      a = round16(fmaf(f16_to_f32(v[(size_t)s * kv_row + d]), sc[s], a));
    }
    out[d] = a * inv;
  }
}

/* V rows of the heads are prefetched into L2 during pass (1) when they take at most this many bytes */
#ifndef MKC_VPF_BYTES
#define MKC_VPF_BYTES (256 * 1024)
#endif

static MKC_AVX2 inline void prefetch_l2(const uint16_t *p, int bytes) {
  for (int o = 0; o < bytes; o += 64) _mm_prefetch((const char *)p + o, _MM_HINT_T1);
  _mm_prefetch((const char *)p + bytes - 1, _MM_HINT_T1);
}

/* attn_one_chunk_scalar for heads h0 .. h0+nh-1 of one token, in three passes of the same f32 operations
 * per head: (1) all scores (independent, so keys overlap), key rows outer and heads inner, so each key row's
 * span of the heads' K (and, when small, V into L2) streams once and in order; (2) the running max / sum
 * recurrence, giving each key's factors; (3) the f16 value accumulators, two heads at a time at simd 2.
 * simd 2: AVX-512 for (1) and (3). q and out: the token's row of all heads; k and v: key 0, kv head 0. */
static MKC_AVX2 void attn_heads_avx2(float *out, const float *q, const uint16_t *k, const uint16_t *v, size_t kv_row,
                                     int n, int Dh, int h0, int nh, int group, float scale, float *work, int simd) {
  float *qf = work, *sc = qf + (size_t)nh * Dh, *ms = sc + (size_t)nh * n, *inv = ms + (size_t)nh * n;
  uint8_t *fl = (uint8_t *)(inv + nh); /* fits nh · mkc_attn_one_chunk_work(n, Dh) */
  for (size_t i = 0; i < (size_t)nh * Dh; i++) qf[i] = f16_to_f32(f32_to_f16(q[(size_t)h0 * Dh + i]));
  const int z = simd >= 2 && mkc_lanes == 16;
  const int kv0 = h0 / group, span = 2 * Dh * ((h0 + nh - 1) / group - kv0 + 1); /* bytes of the heads' K (V) per key */
  const uint16_t *kb = k + (size_t)kv0 * Dh, *vb = v + (size_t)kv0 * Dh;
  const int pfv = (size_t)n * span <= MKC_VPF_BYTES;
  for (int s = 0; s < n; s++) {
    const uint16_t *kr = k + (size_t)s * kv_row;
    if (s + MKC_PF < n) prefetch_row(kb + (size_t)(s + MKC_PF) * kv_row, span);
    if (pfv) prefetch_l2(vb + (size_t)s * kv_row, span);
    for (int i = 0; i < nh; i++) {
      const uint16_t *kh = kr + (size_t)((h0 + i) / group) * Dh;
      const float x = z ? dot_f16_512(qf + (size_t)i * Dh, kh, Dh) : dot_f16_avx2(qf + (size_t)i * Dh, kh, Dh);
      sc[(size_t)i * n + s] = x * scale;
    }
  }
  for (int i = 0; i < nh; i++) {
    const float S = softmax_factors(sc + (size_t)i * n, ms + (size_t)i * n, fl + (size_t)i * n, n);
    inv[i] = S == 0 ? 0.0f : 1.0f / S;
  }
  int i = 0;
  if (simd >= 2 && Dh % 16 == 0)
    for (; i + 1 < nh; i += 2) {
      const size_t a = (size_t)i * n, b = a + n;
      const uint16_t *v0 = v + (size_t)((h0 + i) / group) * Dh, *v1 = v + (size_t)((h0 + i + 1) / group) * Dh;
      float *o0 = out + (size_t)(h0 + i) * Dh, *o1 = o0 + Dh;
      for (int d = 0; d < Dh; d += 128)
        vacc2_512_any(o0 + d, o1 + d, v0 + d, v1 + d, kv_row, n, sc + a, ms + a, fl + a, inv[i], sc + b, ms + b, fl + b,
                      inv[i + 1], (Dh - d) / 16 < 8 ? (Dh - d) / 16 : 8);
    }
  for (; i < nh; i++)
    vacc_head(out + (size_t)(h0 + i) * Dh, v + (size_t)((h0 + i) / group) * Dh, kv_row, n, sc + (size_t)i * n,
              ms + (size_t)i * n, fl + (size_t)i * n, inv[i], Dh, simd);
}

/* 8 keys' f16 values at d .. d+7 -> 8 vectors, vector i = element d+i of keys 0..7 */
static MKC_AVX2 inline void transpose_f16_8x8(const uint16_t *k, size_t kv_row, int d, __m256 *col) {
  __m128i r[8], t[8], u[8];
  for (int i = 0; i < 8; i++) r[i] = _mm_loadu_si128((const __m128i *)(k + (size_t)i * kv_row + d));
  for (int i = 0; i < 4; i++) {
    t[2 * i] = _mm_unpacklo_epi16(r[2 * i], r[2 * i + 1]);
    t[2 * i + 1] = _mm_unpackhi_epi16(r[2 * i], r[2 * i + 1]);
  }
  /* t[2i]: d0..3 of keys 2i, 2i+1 interleaved; t[2i+1]: d4..7 */
  for (int g = 0; g < 2; g++) { /* keys 0-3, keys 4-7 */
    const __m128i *tt = t + 4 * g;
    u[4 * g + 0] = _mm_unpacklo_epi32(tt[0], tt[2]); /* d0, d1 of 4 keys */
    u[4 * g + 1] = _mm_unpackhi_epi32(tt[0], tt[2]); /* d2, d3 */
    u[4 * g + 2] = _mm_unpacklo_epi32(tt[1], tt[3]); /* d4, d5 */
    u[4 * g + 3] = _mm_unpackhi_epi32(tt[1], tt[3]); /* d6, d7 */
  }
  for (int i = 0; i < 4; i++) {
    col[2 * i] = _mm256_cvtph_ps(_mm_unpacklo_epi64(u[i], u[4 + i]));
    col[2 * i + 1] = _mm256_cvtph_ps(_mm_unpackhi_epi64(u[i], u[4 + i]));
  }
}

/* scores of G·8 consecutive keys: lane l of s[g] is key 8g+l's own FMA chain over d = 0 .. Dh-1 */
static MKC_AVX2 inline void scores_avx2(float *p, const float *q, const uint16_t *k, size_t kv_row, int Dh, float scale,
                                        const int G) {
  const int D8 = Dh - Dh % 8;
  __m256 s[4];
  for (int g = 0; g < G; g++) s[g] = _mm256_setzero_ps();
  for (int d = 0; d < D8; d += 8) {
    for (int g = 0; g < G; g++) {
      __m256 col[8];
      transpose_f16_8x8(k + (size_t)(8 * g) * kv_row, kv_row, d, col);
      for (int i = 0; i < 8; i++) s[g] = _mm256_fmadd_ps(_mm256_set1_ps(q[d + i]), col[i], s[g]);
    }
  }
  for (int g = 0; g < G; g++) _mm256_storeu_ps(p + 8 * g, s[g]);
  for (int l = 0; l < 8 * G && D8 < Dh; l++) {
    const uint16_t *kr = k + (size_t)l * kv_row;
    float x = p[l];
    for (int d = D8; d < Dh; d++) x = fmaf(q[d], f16_to_f32(kr[d]), x);
    p[l] = x;
  }
  const __m256 vsc = _mm256_set1_ps(scale);
  for (int g = 0; g < G; g++) _mm256_storeu_ps(p + 8 * g, _mm256_mul_ps(_mm256_loadu_ps(p + 8 * g), vsc));
}

static MKC_AVX2 void attn_tiled_avx2(float *out, const float *q, const uint16_t *k, const uint16_t *v,
                                     size_t kv_row, int n, int Dh, float scale, float *acc) {
  float p[64];
  const int D8 = Dh - Dh % 8;
  memset(acc, 0, sizeof(float) * (size_t)Dh);
  float M = -INFINITY, S = 0;
  for (int ic = 0; ic < n; ic += 64) {
    const int m = n - ic < 64 ? n - ic : 64;
    const uint16_t *kt = k + (size_t)ic * kv_row;
    int tk = 0;
    for (; tk + 32 <= m; tk += 32) scores_avx2(p + tk, q, kt + (size_t)tk * kv_row, kv_row, Dh, scale, 4);
    for (; tk + 8 <= m; tk += 8) scores_avx2(p + tk, q, kt + (size_t)tk * kv_row, kv_row, Dh, scale, 1);
    for (; tk < m; tk++) {
      const uint16_t *kr = kt + (size_t)tk * kv_row;
      float s = 0;
      for (int d = 0; d < Dh; d++) s = fmaf(q[d], f16_to_f32(kr[d]), s);
      p[tk] = s * scale;
    }
    for (; tk < 64; tk++) p[tk] = -INFINITY;
    float tmax = -INFINITY;
    for (tk = 0; tk < 64; tk++)
      if (p[tk] > tmax) tmax = p[tk];
    const float Mnew = fmaxf(M, tmax);
    if (Mnew > M) {
      const float ms = expf(M - Mnew);
      const __m256 vms = _mm256_set1_ps(ms);
      int d = 0;
      for (; d < D8; d += 8) _mm256_storeu_ps(acc + d, _mm256_mul_ps(_mm256_loadu_ps(acc + d), vms));
      for (; d < Dh; d++) acc[d] = acc[d] * ms;
      S = S * ms;
    }
    M = Mnew;
    S = (float)((double)S + mkc_softmax_exp(64, p, p, M));
    /* acc[d] = fma(p[tk], v[tk][d], acc[d]) for tk in order: lanes run over d, 4 registers of chains */
    const uint16_t *vt = v + (size_t)ic * kv_row;
    int d = 0;
    for (; d + 32 <= D8; d += 32) {
      __m256 a0 = _mm256_loadu_ps(acc + d), a1 = _mm256_loadu_ps(acc + d + 8);
      __m256 a2 = _mm256_loadu_ps(acc + d + 16), a3 = _mm256_loadu_ps(acc + d + 24);
      for (tk = 0; tk < m; tk++) {
        const uint16_t *vr = vt + (size_t)tk * kv_row + d;
        const __m256 pv = _mm256_set1_ps(p[tk]);
        a0 = _mm256_fmadd_ps(pv, ld16x8(vr), a0);
        a1 = _mm256_fmadd_ps(pv, ld16x8(vr + 8), a1);
        a2 = _mm256_fmadd_ps(pv, ld16x8(vr + 16), a2);
        a3 = _mm256_fmadd_ps(pv, ld16x8(vr + 24), a3);
      }
      _mm256_storeu_ps(acc + d, a0);
      _mm256_storeu_ps(acc + d + 8, a1);
      _mm256_storeu_ps(acc + d + 16, a2);
      _mm256_storeu_ps(acc + d + 24, a3);
    }
    for (; d < D8; d += 8) {
      __m256 a0 = _mm256_loadu_ps(acc + d);
      for (tk = 0; tk < m; tk++) a0 = _mm256_fmadd_ps(_mm256_set1_ps(p[tk]), ld16x8(vt + (size_t)tk * kv_row + d), a0);
      _mm256_storeu_ps(acc + d, a0);
    }
    for (; d < Dh; d++)
      for (tk = 0; tk < m; tk++) acc[d] = fmaf(p[tk], f16_to_f32(vt[(size_t)tk * kv_row + d]), acc[d]);
  }
  const float inv = S == 0 ? 0.0f : 1.0f / S;
  for (int d = 0; d < Dh; d++) out[d] = acc[d] * inv;
}
#endif

/* work of the one-chunk kernels per head: acc [Dh] and q16 or qf [Dh], sc [n], ms [n], fl [n] bytes */
size_t mkc_attn_one_chunk_work(int n, int Dh) { return 2 * (size_t)Dh + 2 * (size_t)n + ((size_t)n + 3) / 4; }

void mkc_attn_one_chunk_heads(float *out, const float *q, const uint16_t *k, const uint16_t *v, size_t kv_row, int n,
                              int Dh, int h0, int nh, int group, float scale, float *work, int simd) {
#ifdef MKC_HAVE_AVX2
  if (simd) {
    attn_heads_avx2(out, q, k, v, kv_row, n, Dh, h0, nh, group, scale, work, simd);
    return;
  }
#endif
  for (int h = h0; h < h0 + nh; h++) {
    const size_t kv = (size_t)(h / group) * Dh;
    attn_one_chunk_scalar(out + (size_t)h * Dh, q + (size_t)h * Dh, k + kv, v + kv, kv_row, n, Dh, scale, work,
                          (uint16_t *)(work + Dh));
  }
}

void mkc_attn_one_chunk(float *out, const float *q, const uint16_t *k, const uint16_t *v, size_t kv_row, int n,
                        int Dh, float scale, float *work, int simd) {
  mkc_attn_one_chunk_heads(out, q, k, v, kv_row, n, Dh, 0, 1, 1, scale, work, simd);
}

void mkc_attn_tiled(float *out, const float *q, const uint16_t *k, const uint16_t *v, size_t kv_row, int n,
                    int Dh, float scale, float *acc, int simd) {
#ifdef MKC_HAVE_AVX2
  if (simd) {
    attn_tiled_avx2(out, q, k, v, kv_row, n, Dh, scale, acc);
    return;
  }
#endif
  attn_tiled_scalar(out, q, k, v, kv_row, n, Dh, scale, acc);
}

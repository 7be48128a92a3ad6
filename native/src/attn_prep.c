/*
 * Attention's element-wise prologue of a forward pass, in one call: QK-norm, RoPE, and K/V into the f16
 * cache. The TypeScript of src/nn/attention.ts (rmsNorm, ropeApply, f32ArrayToF16At) is the reference;
 * every step rounds as it does, so the results are bit-identical:
 *  - RMSNorm: f32 squares summed in double, mean and scale rounded to f32, x·scale then ·w in f32
 *    (ggml rms_norm + mul);
 *  - RoPE: x0·c − x1·s computed in double, then rounded to f32 (products of two floats are exact in
 *    double, so this is one double rounding followed by the f32 store, as in JavaScript);
 *  - f16: round to nearest even (common.h f32_to_f16, ggml's conversion); by vcvtps2ph where the CPU has
 *    F16C or AVX-512 (mk_f32_to_f16_row).
 * Each f32 operation in JavaScript is rounded back to f32 (Math.fround or a Float32Array store) and a
 * double result of +, −, ×, ÷ or √ of floats rounds to the same f32 as the f32 operation does.
 */
#include "common.h"
#include "ops.h"

#include <math.h>

/* ---- f32 -> f16 rows ------------------------------------------------------------------------
 * vcvtps2ph with round to nearest even gives f32_to_f16's bits for every non-NaN input (overflow to inf,
 * subnormals rounded); for NaN it keeps the payload's top bits, where f32_to_f16 gives sign | 0x7e00, so
 * NaN lanes are rewritten. The level is the CPU's (the results do not depend on it). */
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define TGT_F16C __attribute__((target("avx,f16c")))
#define TGT5 __attribute__((target("avx512f,avx512vl,avx512bw,avx,f16c")))

static int f16_cpu_level(void) {
  static int level = -1;
  int l = __atomic_load_n(&level, __ATOMIC_RELAXED);
  if (l < 0) {
    __builtin_cpu_init();
    l = __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512bw")
            ? 2
            : __builtin_cpu_supports("avx") && __builtin_cpu_supports("f16c") ? 1 : 0;
    __atomic_store_n(&level, l, __ATOMIC_RELAXED);
  }
  return l;
}

static TGT5 size_t f16_row_512(const float *x, uint16_t *y, size_t n) {
  size_t i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m512 v = _mm512_loadu_ps(x + i);
    __m256i h = _mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    const __mmask16 nan = _mm512_cmp_ps_mask(v, v, _CMP_UNORD_Q);
    if (nan) { /* sign | 0x7e00 */
      const __m512i b = _mm512_castps_si512(v);
      const __m512i q = _mm512_or_si512(_mm512_srli_epi32(_mm512_and_si512(b, _mm512_set1_epi32((int)0x80000000u)), 16),
                                        _mm512_set1_epi32(0x7e00));
      h = _mm256_mask_blend_epi16(nan, h, _mm512_cvtepi32_epi16(q));
    }
    _mm256_storeu_si256((__m256i *)(y + i), h);
  }
  return i;
}

static TGT_F16C size_t f16_row_f16c(const float *x, uint16_t *y, size_t n) {
  size_t i = 0;
  for (; i + 8 <= n; i += 8) {
    const __m256 v = _mm256_loadu_ps(x + i);
    _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
    int nan = _mm256_movemask_ps(_mm256_cmp_ps(v, v, _CMP_UNORD_Q));
    for (; nan; nan &= nan - 1) { /* rare: the scalar conversion for those lanes */
      const int l = __builtin_ctz((unsigned)nan);
      y[i + l] = f32_to_f16(x[i + l]);
    }
  }
  return i;
}
#endif

void mk_f32_to_f16_row(const float *x, uint16_t *y, size_t n, int simd) {
  size_t i = 0;
#if defined(__x86_64__) && defined(__GNUC__)
  const int l = simd < f16_cpu_level() ? simd : f16_cpu_level();
  if (l >= 2) i = f16_row_512(x, y, n);
  else if (l == 1) i = f16_row_f16c(x, y, n);
#else
  (void)simd;
#endif
  for (; i < n; i++) y[i] = f32_to_f16(x[i]);
}

static void rms_norm_groups(float *x, const float *w, size_t n, int G, float eps) {
  for (size_t g = 0; g < n; g++) {
    float *v = x + g * (size_t)G;
    double sum = 0;
    for (int i = 0; i < G; i++) sum += (double)(v[i] * v[i]);
    const float mean = (float)(sum / G);
    const float scale = 1.0f / (float)sqrt((double)(mean + eps));
    for (int i = 0; i < G; i++) v[i] = (v[i] * scale) * w[i];
  }
}

static void rope_rows(float *x, int T, int nh, int Dh, const float *cos, const float *sin, int half, int neox) {
  const int step = neox ? 1 : 2, pair = neox ? half : 1;
  for (int t = 0; t < T; t++)
    for (int h = 0; h < nh; h++) {
      float *b = x + ((size_t)t * nh + h) * Dh;
      const float *c = cos + (size_t)t * half, *s = sin + (size_t)t * half;
      for (int i = 0; i < half; i++) {
        float *a0 = b + step * i, *a1 = a0 + pair;
        const double x0 = *a0, x1 = *a1;
        *a0 = (float)(x0 * c[i] - x1 * s[i]);
        *a1 = (float)(x0 * s[i] + x1 * c[i]);
      }
    }
}

void mk_qk_prep(const mk_qk_prep_args *a) {
  const size_t qn = (size_t)a->T * a->H * a->Dh, kn = (size_t)a->T * a->Hkv * a->Dh;
  if (a->q_norm) rms_norm_groups(a->q, a->q_norm, qn / (size_t)a->q_group, a->q_group, a->eps);
  if (a->k_norm) rms_norm_groups(a->k, a->k_norm, kn / (size_t)a->k_group, a->k_group, a->eps);
  if (a->cos) {
    rope_rows(a->q, a->T, a->H, a->Dh, a->cos, a->sin, a->half, a->neox);
    rope_rows(a->k, a->T, a->Hkv, a->Dh, a->cos, a->sin, a->half, a->neox);
  }
  uint16_t *kc = a->k_cache + (size_t)a->cache_row * a->Hkv * a->Dh, *vc = a->v_cache + (size_t)a->cache_row * a->Hkv * a->Dh;
  mk_f32_to_f16_row(a->k, kc, kn, 2);
  mk_f32_to_f16_row(a->v, vc, kn, 2);
}

void mk_add_norm(float *x, const float *y, double scale, float *out, const float *w, int T, int D, float eps) {
  const size_t n = (size_t)T * D;
  if (scale == 1) for (size_t i = 0; i < n; i++) x[i] += y[i];
  else for (size_t i = 0; i < n; i++) x[i] += (float)((double)y[i] * scale);
  for (int t = 0; t < T; t++) {
    const float *v = x + (size_t)t * D;
    float *o = out + (size_t)t * D;
    double sum = 0;
    for (int i = 0; i < D; i++) sum += (double)(v[i] * v[i]);
    const float mean = (float)(sum / D);
    const float sc = 1.0f / (float)sqrt((double)(mean + eps));
    for (int i = 0; i < D; i++) o[i] = (v[i] * sc) * w[i];
  }
}

/*
 * Attention's element-wise prologue of a forward pass, in one call: QK-norm, RoPE, and K/V into the f16
 * cache. The TypeScript of src/nn/attention.ts (rmsNorm, ropeApply, f32ArrayToF16At) is the reference;
 * every step rounds as it does, so the results are bit-identical:
 *  - RMSNorm: f32 squares summed in double, mean and scale rounded to f32, x·scale then ·w in f32
 *    (ggml rms_norm + mul);
 *  - RoPE: x0·c − x1·s computed in double, then rounded to f32 (products of two floats are exact in
 *    double, so this is one double rounding followed by the f32 store, as in JavaScript);
 *  - f16: round to nearest even (common.h f32_to_f16, ggml's conversion).
 * Each f32 operation in JavaScript is rounded back to f32 (Math.fround or a Float32Array store) and a
 * double result of +, −, ×, ÷ or √ of floats rounds to the same f32 as the f32 operation does.
 */
#include "common.h"
#include "ops.h"

#include <math.h>

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
  for (size_t i = 0; i < kn; i++) kc[i] = f32_to_f16(a->k[i]);
  for (size_t i = 0; i < kn; i++) vc[i] = f32_to_f16(a->v[i]);
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

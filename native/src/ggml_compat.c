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
float mkc_vexpf(float x) {
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
double mkc_softmax_exp(int n, float *y, const float *x, float max) {
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
float mkc_swiglu(float x, float g, int i, int n) {
  const int simd = n - n % mkc_lanes;
  const float e = i < simd ? mkc_vexpf(-x) : expf(-x);
  return (x / (1.0f + e)) * g;
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

/* F32 row · F32 activations, as llama.cpp: tinyBLAS lanes for batches, else ggml_vec_dot_f32 */
float mkc_dot_f32(const float *w, const float *x, int K, int sgemm) {
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

int mkc_f32_sgemm(int N, int K, int T) { return T >= 2 && K % mkc_lanes == 0 && N % 4 == 0; }

/* ggml_vec_dot_f16 of two f16 rows (q already rounded to f16) */
static float dot_f16(const uint16_t *a, const uint16_t *b, int n) {
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
void mkc_attn_one_chunk(float *out, const float *q, const uint16_t *k, const uint16_t *v, size_t kv_row, int n,
                        int Dh, float scale, float *acc, uint16_t *q16) {
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
void mkc_attn_tiled(float *out, const float *q, const uint16_t *k, const uint16_t *v, size_t kv_row, int n,
                    int Dh, float scale, float *acc) {
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

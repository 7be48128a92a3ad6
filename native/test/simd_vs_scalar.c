/*
 * The AVX-512 paths of ggml_compat.c == their scalar emulations of ggml, bit for bit:
 *  - mkc_swiglu_run == mkc_swiglu over 1M inputs including NaN, infinities, subnormals, |x| past expf's
 *    range, and runs that start and end off the 16-lane grid;
 *  - mkc_dot_f32 == mkc_dot_f32_scalar (ggml_vec_dot_f32 and tinyBLAS lanes) for K = 1 .. 300, 2048, 4096;
 *  - mkc_attn_one_chunk at simd 1 and 2 == simd 0 (ggml lanes 8 and 16) over random Dh, n, row strides,
 *    including ties with the running max, a max that rises at every key, f16 overflow to inf and NaN.
 * Built and run by test/native-c.test.ts; exits 1 on a mismatch.
 */
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../src/common.h"
#include "../src/ggml_compat.h"

static unsigned rs = 7;
static unsigned rnd(void) { rs = rs * 1664525u + 1013904223u; return rs >> 8; }
static float frand(void) { return ((int)rnd() - (1 << 23)) / (float)(1 << 23); }
static unsigned short h16(float x) { return f32_to_f16(x); }

/* one-chunk attention rows: SIMD levels vs the scalar emulation; returns the mismatches */
static int attn_one_chunk_check(int cases) {
  enum { MAXD = 300, MAXN = 300, MAXROW = 2 * MAXD };
  static unsigned short k[MAXN * MAXROW], v[MAXN * MAXROW];
  static float q[MAXD], want[MAXD], got[MAXD], work[2 * MAXD + 3 * MAXN];
  int bad = 0;
  for (int c = 0; c < cases; c++) {
    mkc_lanes = c & 1 ? 16 : 8;
    const int Dh = rnd() % 3 == 0 ? 64 * (1 + rnd() % 4) : 1 + rnd() % MAXD;
    const int n = rnd() % 5 == 0 ? 1 + rnd() % 4 : 1 + rnd() % MAXN;
    const int row = Dh + (rnd() % 3 == 0 ? rnd() % (MAXROW - Dh + 1) : 0);
    const int kind = rnd() % 8;
    const float qs = kind == 0 ? 40.0f : kind == 1 ? 0.01f : 3.0f;
    const float vsc = kind == 2 || kind == 7 ? 60000.0f : kind == 3 ? 1e-5f : 1.0f;
    for (int d = 0; d < Dh; d++) q[d] = frand() * qs;
    for (int i = 0; i < n * row; i++) { k[i] = h16(frand() * 2.0f); v[i] = h16(frand() * vsc); }
    if (kind == 4) /* repeated keys: scores equal to the running max */
      for (int s = 1; s < n; s++)
        if (rnd() % 2) memcpy(k + s * row, k + (s - 1) * row, 2 * (size_t)Dh);
    if (kind == 5 || kind == 7) /* rising scores: a rescale at every key (7: of an inf accumulator, by 0) */
      for (int s = 0; s < n; s++)
        for (int d = 0; d < Dh; d++)
          k[s * row + d] = h16((q[d] > 0 ? 1 : -1) * (kind == 5 ? 0.01f + 0.002f * s : rnd() % 4 ? 0.0f : 0.5f * s));
    const float scale = kind == 6 ? 1.0f : 1.0f / sqrtf((float)Dh);
    mkc_attn_one_chunk(want, q, k, v, row, n, Dh, scale, work, 0);
    for (int simd = 1; simd <= 2; simd++) {
      for (int i = 0; i < 2 * MAXD + 3 * MAXN; i++) work[i] = frand(); /* stale scratch */
      mkc_attn_one_chunk(got, q, k, v, row, n, Dh, scale, work, simd);
      for (int d = 0; d < Dh; d++)
        if (memcmp(&want[d], &got[d], 4) && !(isnan(want[d]) && isnan(got[d]))) {
          if (bad++ < 10) printf("attn lanes=%d simd=%d Dh=%d n=%d row=%d kind=%d d=%d: %a vs %a\n", mkc_lanes, simd, Dh, n, row, kind, d, want[d], got[d]);
          break;
        }
    }
  }
  mkc_lanes = 16;
  return bad;
}
int main(void) {
  mkc_init();
  if (mkc_lanes != 16) { printf("skip: no AVX-512\n"); return 0; }
  enum { N = 1 << 20 };
  static float x[N], g[N], h[N];
  unsigned s = 1;
  for (int i = 0; i < N; i++) {
    s = s * 1664525u + 1013904223u;
    float v;
    switch (i % 8) {
      case 0: { unsigned b = s; memcpy(&v, &b, 4); break; } /* any bits: NaN, inf, denormals */
      case 1: v = ((int)(s >> 8) - (1 << 23)) / 32768.0f; break; /* ±256 */
      case 2: v = ((int)(s >> 8) - (1 << 23)) / 1e6f; break;
      default: v = ((int)(s >> 8) - (1 << 23)) / 3e5f; break;
    }
    x[i] = v; g[i] = ((int)(s >> 4) % 2000) / 1000.0f - 1.0f;
  }
  x[5] = 0.0f; x[6] = -0.0f; x[7] = INFINITY; x[9] = -INFINITY; x[10] = 133.0f; x[11] = -133.1f; x[12] = 89.0f; x[13] = -89.0f;
  int bad = 0;
  const int n = 2048;
  for (int base = 0; base + n <= N; base += n) {
    mkc_swiglu_run(h + base, x + base, g + base, 1000, 0, n, 2);
    mkc_swiglu_run(h + base + 1000, x + base + 1000, g + base + 1000, n - 1000 - 5, 1000, n - 5, 2); /* tail past the 16-lane end */
    for (int i = 0; i < 1000; i++) { float w = mkc_swiglu(x[base+i], g[base+i], i, n); if (memcmp(&w, &h[base+i], 4) && !(isnan(w) && isnan(h[base+i]))) { if (bad++ < 10) printf("x=%a g=%a want %a got %a\n", x[base+i], g[base+i], w, h[base+i]); } }
    for (int i = 1000; i < n - 5; i++) { float w = mkc_swiglu(x[base+i], g[base+i], i, n - 5); if (memcmp(&w, &h[base+i], 4) && !(isnan(w) && isnan(h[base+i]))) { if (bad++ < 10) printf("x=%a g=%a want %a got %a\n", x[base+i], g[base+i], w, h[base+i]); } }
  }
  /* F32 dot products: normal-range values (the inputs' special values are covered above) */
  for (int K = 1; K <= 4096; K = K < 300 ? K + 1 : K == 300 ? 2048 : 2 * K)
    for (int sg = 0; sg < 2; sg++) {
      if (sg && K % 16) continue; /* tinyBLAS lanes only for whole registers */
      const float *w = g + (K * 7) % 1000, *xx = g + 5000 + (K * 13) % 1000; /* values in [-1, 1] */
      const float a = mkc_dot_f32(w, xx, K, sg), b = mkc_dot_f32_scalar(w, xx, K, sg);
      if (memcmp(&a, &b, 4)) { if (bad++ < 20) printf("dot_f32 K=%d sgemm=%d: %a vs %a\n", K, sg, a, b); }
    }
  mk_init_tables();
  bad += attn_one_chunk_check(3000);
  printf("mismatches %d\n", bad);
  return bad != 0;
}

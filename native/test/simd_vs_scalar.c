/*
 * The AVX-512 paths of ggml_compat.c == their scalar emulations of ggml, bit for bit:
 *  - mkc_swiglu_run == mkc_swiglu over 1M inputs including NaN, infinities, subnormals, |x| past expf's
 *    range, and runs that start and end off the 16-lane grid;
 *  - mkc_dot_f32 == mkc_dot_f32_scalar (ggml_vec_dot_f32 and tinyBLAS lanes) for K = 1 .. 300, 2048, 4096.
 * Built and run by test/native-c.test.ts; exits 1 on a mismatch.
 */
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../src/ggml_compat.h"
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
  printf("mismatches %d\n", bad);
  return bad != 0;
}

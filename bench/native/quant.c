/* The per-token activation conversions, ns per 2048-float row: f32 -> Q8_0 and -> Q8_K (quant_act of Q8_0 and
 * Q4_K weights) and the f32 -> f16 K/V store, at the scalar reference, AVX2 and AVX-512 levels (all give the
 * same bytes; native/test/simd_vs_scalar.c checks that). Usage: bench/native/build.sh quant && /tmp/quant [reps] */
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#include "common.h"
#include "harness.h"


int main(int argc, char **argv) {
  enum { K = 2048, IT = 100000 };
  const int reps = argc > 1 ? atoi(argv[1]) : 5;
  static float x[K];
  static uint8_t y[K / 256 * 292 + 64];
  static uint16_t h[K];
  unsigned s = 1;
  for (int i = 0; i < K; i++) s = s * 1664525u + 1013904223u, x[i] = ((int)(s >> 8) - (1 << 23)) / 3e5f;
  mk_quant_fn q[2][3];
  const int types[2] = {T_Q8_0, T_Q4_K};
  for (int t = 0; t < 2; t++) {
    mk_type_ops o;
    mk_scalar_fill(types[t], &o);
    q[t][0] = o.quant_act;
    mk_avx2_fill(types[t], &o);
    q[t][1] = o.quant_act;
    mk_avx512_fill(types[t], &o);
    q[t][2] = o.quant_act;
  }
  const char *nm[3] = {"scalar", "avx2/f16c", "avx512"};
  unsigned sink = 0;
  for (int rep = 0; rep < reps; rep++)
    for (int l = 0; l < 3; l++) {
      double ns[3];
      for (int k = 0; k < 3; k++) {
        const double t0 = now();
        for (int it = 0; it < IT; it++) {
          if (k < 2) q[k][l](x, y, K), sink += y[it & 63];
          else mk_f32_to_f16_row(x, h, K, l), sink += h[it & 63];
        }
        ns[k] = (now() - t0) / IT * 1e9;
      }
      printf("rep %d %-10s q8_0 %7.1f  q8_K %7.1f  f16 %7.1f ns/row\n", rep, nm[l], ns[0], ns[1], ns[2]);
    }
  printf("checksum %u\n", sink);
  return 0;
}

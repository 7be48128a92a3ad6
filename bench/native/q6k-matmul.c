/* bench/native/build.sh q6k-matmul [src] [out]. Times a Q6_K 2048×2048 matmul (attn_v / ffn_down shape) as stored
 * (type 14) and repacked by 16 (T_Q6_K_R16, 142), alternating: T=1 from DRAM (32 matrices, 110 MB, in turn),
 * T=1 hot (one matrix) and T=128; both in page-aligned memory. Prints the medians of the per-round times and of
 * the per-round ratios. Usage: q6k-matmul [threads] [rounds] [N] [K] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "common.h"
#include "ops.h"
#include "pool.h"
#include "harness.h"

static double median(double *v, int n) { qsort(v, (size_t)n, sizeof *v, cmpd); return v[n / 2]; }

int main(int argc, char **argv) {
  const int nth = argc > 1 ? atoi(argv[1]) : 2, rounds = argc > 2 ? atoi(argv[2]) : 40;
  const int N = argc > 3 ? atoi(argv[3]) : 2048, K = argc > 4 ? atoi(argv[4]) : 2048, M = 32;
  mk_ops_init();
  mk_pool_resize(nth);
  const size_t bytes = mk_row_bytes(T_Q6_K, K) * (size_t)N;
  uint8_t *w[32], *p[32];
  for (int m = 0; m < M; m++) {
    w[m] = aligned_alloc(4096, (bytes + 4095) & ~(size_t)4095);
    p[m] = aligned_alloc(4096, (bytes + 4095) & ~(size_t)4095);
    for (size_t i = 0; i < bytes; i++) w[m][i] = (uint8_t)(rnd() >> 16);
    for (size_t i = 209; i < bytes; i += 210) w[m][i] &= 0x3b; /* finite f16 d */
    mk_repack_r16(p[m], w[m], T_Q6_K, N, K, nth);
  }
  float *x = malloc(sizeof(float) * 128 * (size_t)K), *y0 = malloc(sizeof(float) * 128 * (size_t)N),
        *y1 = malloc(sizeof(float) * 128 * (size_t)N);
  for (int i = 0; i < 128 * K; i++) x[i] = (float)((int)(rnd() % 2001) - 1000) / 500.0f;
  double *ta = malloc(sizeof(double) * rounds), *tb = malloc(sizeof(double) * rounds), *ra = malloc(sizeof(double) * rounds);
  const char *names[3] = {"T=1 DRAM", "T=1 hot ", "T=128   "};
  for (int mode = 0; mode < 3; mode++) {
    const int T = mode == 2 ? 128 : 1, inner = mode == 2 ? 2 : M;
    for (int r = 0; r < rounds; r++) {
      double t[2];
      for (int k = 0; k < 2; k++) {
        const int which = (r & 1) ^ k; /* 0 stored, 1 repacked; the order alternates */
        const double t0 = now();
        for (int i = 0; i < inner; i++) {
          const int m = mode == 1 ? 0 : i % M;
          mk_matmul(which ? y1 : y0, x, which ? p[m] : w[m], which ? T_Q6_K_R16 : T_Q6_K, T, N, K, nth);
        }
        t[which] = (now() - t0) / inner * 1e6;
      }
      ta[r] = t[0]; tb[r] = t[1]; ra[r] = t[0] / t[1];
    }
    const int same = memcmp(y0, y1, sizeof(float) * (size_t)T * N) == 0;
    const double ma = median(ta, rounds), mb = median(tb, rounds);
    printf("%s stored %8.1f us (%5.1f GB/s) | r16 %8.1f us (%5.1f GB/s) | speed-up %.3f | %s\n", names[mode], ma,
           bytes / ma / 1e3, mb, bytes / mb / 1e3, median(ra, rounds), same ? "identical" : "DIFFER");
  }
  return 0;
}

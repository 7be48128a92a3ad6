/* A MoE prompt step (qwen3-30b-a3b shape: E=128, top-8, D=2048, F=768; T tokens, default 128) from DRAM: per
 * round, mk_moe_ffn over one of 4 layers with random top-8 routing (every expert gets about T·8/128 tokens, as
 * in a prompt). Prints the median ms per call and the multiply-adds per second it reached over 2 cores.
 * Usage: moe-prompt [threads] [gate/up type] [down type] [tokens] [rounds (default 12)]
 * (types: 140 Q4_K repacked by 16 (default gate/up), 142 Q6_K repacked (default down), 141 Q8_0 repacked) */
#define _GNU_SOURCE
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>

#include "common.h"
#include "ops.h"
#include "pool.h"
#include "harness.h"


int main(int argc, char **argv) {
  const int nth = argc > 1 ? atoi(argv[1]) : 2, gt = argc > 2 ? atoi(argv[2]) : T_Q4_K_R16, dt = argc > 3 ? atoi(argv[3]) : T_Q6_K_R16;
  const int T = argc > 4 ? atoi(argv[4]) : 128;
  const int R = argc > 5 ? atoi(argv[5]) : 12;
  /* EXPERTS=n, LAYERS=n: fewer experts / layers (n·E experts of weights: 8 experts of one layer fit the L3); EVEN=1: token t
   * takes experts 8t .. 8t+7 (mod E), so every expert gets T·8/E tokens */
  const int E = getenv("EXPERTS") ? atoi(getenv("EXPERTS")) : 128, L = getenv("LAYERS") ? atoi(getenv("LAYERS")) : 4;
  enum { K = 8, D = 2048, F = 768 };
  if (E < K || E > 128 || L < 1 || L > 16 || T < 1 || R < 1) {
    fprintf(stderr, "moe-prompt: EXPERTS 8..128, LAYERS 1..16, tokens and rounds >= 1\n");
    return 1;
  }
  mk_ops_init();
  mk_pool_resize(nth);
  const size_t ge = mk_row_bytes(gt, D) * F, de = mk_row_bytes(dt, F) * D;
  uint8_t *g[16], *u[16], *d[16];
  for (int l = 0; l < L; l++) g[l] = rand_weights(ge * E, 0, 1), u[l] = rand_weights(ge * E, 0, 1), d[l] = rand_weights(de * E, 0, 1);
  float *x = malloc(sizeof(float) * (size_t)T * D), *out = malloc(sizeof(float) * (size_t)T * D), *w = malloc(sizeof(float) * (size_t)T * K);
  int32_t *ids = malloc(sizeof(int32_t) * (size_t)T * K);
  for (int i = 0; i < T * D; i++) x[i] = cosf((float)i);
  for (int i = 0; i < T * K; i++) w[i] = 1.0f / K;
  double *tm = malloc(sizeof(double) * (size_t)R);
  for (int r = 0; r < R; r++) {
    for (int t = 0; t < T; t++)
      for (int k = 0; k < K; k++) {
        int dup;
        if (getenv("EVEN")) {
          ids[t * K + k] = (int32_t)((t * K + k) % E);
          continue;
        }
        do {
          ids[t * K + k] = (int32_t)(rnd() % E);
          dup = 0;
          for (int q = 0; q < k; q++) dup |= ids[t * K + q] == ids[t * K + k];
        } while (dup);
      }
    mk_moe_args a = {out, x, g[r % L], u[r % L], d[r % L], gt, gt, dt, ids, w, T, K, E, F, D};
    const double t0 = now();
    mk_moe_ffn(&a, nth);
    tm[r] = now() - t0;
  }
  qsort(tm, R, sizeof(double), cmpd);
  const double macs = (double)T * K * 3 * D * F;
  printf("moe-prompt T %d, types %d/%d, %d threads: %.2f ms per layer, %.1f GMAC/s (%.1f per thread); out[7] %g\n", T, gt, dt,
         nth, tm[R / 2] * 1e3, macs / tm[R / 2] / 1e9, macs / tm[R / 2] / 1e9 / nth, out[7]);
  return 0;
}

/* bench/native/build.sh group-kernel && /tmp/group-kernel <q4|q6> [tokens] [gemm (q4)]
 * One 16-row group of a repacked kernel from L1: T_Q4_K_R16 (8 blocks, K = 2048) or T_Q6_K_R16 (nb 8), called
 * 200 000 / 100 000 times, best of 5; prints GMAC/s on one core (random weights and activations, scales 1). */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include "common.h"
#include "ops.h"
#include "harness.h"
int main(int argc, char **argv) {
  const int q6 = argc > 1 && !strcmp(argv[1], "q6"), nt = argc > 2 ? atoi(argv[2]) : 4, gemm = argc > 3 ? atoi(argv[3]) : 1;
  mk_ops_init(); /* the f16 table */
  const int nb = 8, reps = q6 ? 100000 : 200000, blk = q6 ? MK_Q6R16_BLOCK : MK_R16_BLOCK;
  if (nt < 1 || nt > (q6 ? 16 : 4)) { fprintf(stderr, "tokens: 1..%d\n", q6 ? 16 : 4); return 1; }
  uint8_t *w = aligned_alloc(64, (size_t)nb * blk);
  for (size_t i = 0; i < (size_t)nb * blk; i++) w[i] = (uint8_t)rand();
  for (int i = 0; i < nb; i++) { /* f16 1.0 scales: d (Q6_K: after ql, qh, sc), d and dmin (Q4_K: first 64 bytes) */
    uint16_t *d = (uint16_t *)(w + (size_t)i * blk + (q6 ? 16 * 208 : 0));
    for (int r = 0; r < (q6 ? 16 : 32); r++) d[r] = 0x3c00;
  }
  const size_t as = sizeof(block_q8_K) * nb;
  uint8_t *a = aligned_alloc(64, as * 16);
  for (size_t i = 0; i < as * 16; i++) a[i] = (uint8_t)(rand() % 200);
  for (int t = 0; t < 16; t++) for (int i = 0; i < nb; i++) ((block_q8_K *)(a + t * as))[i].d = 1.0f;
  float s[16 * 16] = {0};
  double best = 1e9;
  for (int k = 0; k < 5; k++) {
    const double t0 = now();
    for (int r = 0; r < reps; r++) {
      if (q6) mk_q6K_r16_group_512(nb, w, a, as, nt, s, 16);
      else mk_q4K_r16_group_512(nb, w, a, as, nt, gemm, s, 16);
    }
    const double d = now() - t0;
    if (d < best) best = d;
  }
  printf("%s tokens %d%s: %.2f GMAC/s per core (%.1f ns per call; s[5] %g)\n", q6 ? "Q6_K_R16" : "Q4_K_R16", nt,
         q6 ? "" : gemm ? " gemm order" : " gemv order", (double)reps * nb * 256 * 16 * nt / best / 1e9, best / reps * 1e9, s[5]);
  return 0;
}

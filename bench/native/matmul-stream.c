/* A decode-step matmul (T = 1) from DRAM against a plain read of the same bytes, alternating: per round,
 * mk_matmul over the next of M matrices in rotation (at least 512 MiB in all, so weights come from DRAM), then a
 * read of another matrix with the pool split as the probe splits it. Prints the medians and the median of the
 * per-round ratios matmul GB/s ÷ read GB/s.
 *   bench/native/build.sh matmul-stream [src] [out] && /tmp/matmul-stream [threads] [type] [N] [K] [rounds]
 * type: 140 Q4_K repacked by 16, 141 Q8_0 repacked (default), 142 Q6_K repacked; N x K: 50304 x 2048 (olmoe's
 * output matrix, default), 2048 x 2048 (its attention projections), 151936 x 2048 (qwen3-30b-a3b's output).
 * HOT=1 in the environment: the same matrix every round, so a small one is read from cache. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "common.h"
#include "ops.h"
#include "pool.h"
#include "harness.h"

static double median(double *v, int n) { qsort(v, (size_t)n, sizeof *v, cmpd); return v[n / 2]; }

int main(int argc, char **argv) {
  rs = 5; /* this harness\'s data */
  const int nth = argc > 1 ? atoi(argv[1]) : 2, type = argc > 2 ? atoi(argv[2]) : T_Q8_0_R16;
  const int N = argc > 3 ? atoi(argv[3]) : 50304, K = argc > 4 ? atoi(argv[4]) : 2048, R = argc > 5 ? atoi(argv[5]) : 60;
  const int src = type == T_Q4_K_R16 ? T_Q4_K : type == T_Q8_0_R16 ? T_Q8_0 : T_Q6_K;
  mk_ops_init();
  mk_pool_resize(nth);
  const size_t bytes = mk_row_bytes(src, K) * (size_t)N;
  /* HOT=1: one matrix every round (from cache where it fits: the kernel's arithmetic alone) */
  const int hot = getenv("HOT") != NULL;
  int M = hot ? 1 : (int)(((size_t)512 << 20) / bytes) + 2;
  if (M < 3 && !hot) M = 3;
  /* all matrices in one mapping in transparent huge pages, as allocPages gives the model's copies; random bytes
   * with every 16-bit word's top bits cleared (finite f16 scales) */
  const size_t stride = (bytes + 4095) & ~(size_t)4095;
  uint8_t *all = mmap(NULL, stride * (size_t)M, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (all == MAP_FAILED) { perror("mmap"); return 1; }
  madvise(all, stride * (size_t)M, MADV_HUGEPAGE);
  for (size_t i = 0; i < stride * (size_t)M; i++) all[i] = (uint8_t)(rnd() >> 16) & (i & 1 ? 0x3b : 0xff);
  float *x = malloc(sizeof(float) * (size_t)K), *y = malloc(sizeof(float) * (size_t)N);
  for (int i = 0; i < K; i++) x[i] = (float)((int)(rnd() % 2001) - 1000) / 1000.0f;
  double *tm = malloc(sizeof(double) * (size_t)R), *tr = malloc(sizeof(double) * (size_t)R), *ratio = malloc(sizeof(double) * (size_t)R);
  for (int r = -3; r < R; r++) {
    const uint8_t *w = all + stride * (size_t)((r + 3) % M), *o = all + stride * (size_t)((r + 3 + M / 2) % M);
    double t0 = now();
    mk_matmul(y, x, w, type, 1, N, K, nth);
    const double a = now() - t0;
    t0 = now();
    mk_read_probe(o, bytes, nth);
    const double b = now() - t0;
    if (r >= 0) tm[r] = a, tr[r] = b, ratio[r] = b / a;
  }
  printf("type %d, %d x %d (%.1f MB), %d threads, %d matrices: matmul %.3f ms %.1f GB/s | read %.1f GB/s | matmul / read %.3f\n",
         type, N, K, bytes / 1e6, nth, M, median(tm, R) * 1e3, bytes / median(tm, R) / 1e9, bytes / median(tr, R) / 1e9, median(ratio, R));
  return 0;
}

/* The bandwidth probe (mk_read_probe, the addon's readProbe that `moekit bench` times) with each load width:
 * the portable loop (what the compiler makes of it without -m flags: 128-bit loads), AVX2 and, where the CPU has
 * it, AVX-512, alternating over one 256 MiB buffer in transparent huge pages. Prints the mean GB/s of each.
 *   bench/native/build.sh probe-loads && /tmp/probe-loads [threads] [rounds] */
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


int main(int argc, char **argv) {
  const int nth = argc > 1 ? atoi(argv[1]) : 2, R = argc > 2 ? atoi(argv[2]) : 30;
  mk_ops_init();
  mk_pool_resize(nth);
  const size_t n = (size_t)256 << 20;
  uint8_t *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) { perror("mmap"); return 1; }
  madvise(p, n, MADV_HUGEPAGE);
  memset(p, 3, n);
  /* mk_set_simd: 0 portable, 2 AVX2 only, 1 best */
  const int levels[3] = {0, 1, 2};
  const char *names[3] = {"portable (128-bit loads)", "best", "AVX2"};
  double sum[3] = {0};
  for (int r = 0; r < R; r++)
    for (int k = 0; k < 3; k++) {
      mk_set_simd(levels[k]);
      const double t0 = now();
      mk_read_probe(p, n, nth);
      sum[k] += n / (now() - t0) / 1e9;
    }
  mk_set_simd(1);
  printf("%d threads, 256 MiB, mean of %d alternating rounds:", nth, R);
  for (int k = 0; k < 3; k++) printf(" %s %.1f GB/s%s", names[k], sum[k] / R, k < 2 ? " |" : "");
  printf(" (best is AVX-512: %s)\n", mk_has_avx512() ? "yes" : "no");
  return 0;
}

/* What the bench/native harnesses share: a monotonic clock, a double comparator for qsort (medians), a
 * reproducible LCG (set rs for another seed), and weight-like random buffers. Header-only: build.sh compiles
 * each harness as one file against native/src. */
#ifndef MK_BENCH_HARNESS_H
#define MK_BENCH_HARNESS_H
#include <stdint.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <time.h>

static inline double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static inline int cmpd(const void *a, const void *b) { const double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
static uint32_t rs = 7;
static inline uint32_t rnd(void) { rs = rs * 1664525u + 1013904223u; return rs >> 8; }

/* n random bytes `offset` past a 2 MiB boundary, every 16-bit word's top bits cleared (finite f16 scales); huge:
 * in transparent huge pages, as allocPages gives the model's weight copies */
static inline uint8_t *rand_weights(size_t n, size_t offset, int huge) {
  const size_t bytes = (n + offset + (2u << 20) - 1) & ~(size_t)((2u << 20) - 1);
  uint8_t *p = (uint8_t *)aligned_alloc(2u << 20, bytes);
  if (!p) abort();
  if (huge) madvise(p, bytes, MADV_HUGEPAGE);
  p += offset;
  for (size_t i = 0; i < n; i++) p[i] = (uint8_t)(rnd() >> 16);
  for (size_t i = 1; i < n; i += 2) p[i] &= 0x3b;
  return p;
}

#endif

/* bench/native/build.sh attention [src] [out]. Times mk_attention for one decode step's attention call: T=1, H=Hkv=16, Dh=128, n=192 keys (f16 K/V).
 * hot: the same layer's cache every call; cold: rotating over 16 layers' caches (24 MiB).
 * cold+evict: the same with 24 MiB of other memory read before each call (a layer's weights stream between two
 * attention calls). HUGE=1: the caches in transparent huge pages.
 * QWEN3=1: qwen3-30b-a3b's shape (32 heads on 4 kv heads, 48 layers).
 * Prints the median µs per call of each mode. Usage: bench [reps] */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <time.h>
#include <immintrin.h>
#include <sys/mman.h>
#include "ops.h"
#include "pool.h"

static double now_us(void) { struct timespec ts; clock_gettime(CLOCK_MONOTONIC, &ts); return ts.tv_sec * 1e6 + ts.tv_nsec / 1e3; }
static int cmpd(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }
static uint32_t rs = 12345;
static float frand(void) { rs = rs * 1664525u + 1013904223u; return ((int)(rs >> 8) - (1 << 23)) / (float)(1 << 23); }

int main(int argc, char **argv) {
  const int reps = argc > 1 ? atoi(argv[1]) : 2000;
  enum { T = 1, Dh = 128, N = 192, CTX = 256, HMAX = 32 };
  const int qwen3 = getenv("QWEN3") != NULL, H = qwen3 ? 32 : 16, Hkv = qwen3 ? 4 : 16, L = qwen3 ? 48 : 16;
  mk_ops_init();
  mk_pool_resize(2);
  const size_t kv = (size_t)CTX * Hkv * Dh;
  const size_t kvb = (kv * L * 2 + (2u << 20) - 1) & ~(size_t)((2u << 20) - 1);
  uint16_t *k = aligned_alloc(2u << 20, kvb), *v = aligned_alloc(2u << 20, kvb);
  if (getenv("HUGE")) { madvise(k, kvb, MADV_HUGEPAGE); madvise(v, kvb, MADV_HUGEPAGE); }
  const size_t evb = (size_t)24 << 20; /* a decode step's weights between two layers' attention, roughly */
  float *ev = aligned_alloc(64, evb);
  memset(ev, 1, evb);
  volatile float sink = 0;
  for (size_t i = 0; i < kv * L; i++) {
    k[i] = _cvtss_sh(frand() * 2.0f, 0);
    v[i] = _cvtss_sh(frand(), 0);
  }
  float q[T * HMAX * Dh], out[T * HMAX * Dh];
  for (int i = 0; i < T * H * Dh; i++) q[i] = frand() * 3.0f;
  const float scale = 0.08838834764831845f;
  double *t = malloc(sizeof(double) * reps);
  for (int mode = 0; mode < 3; mode++) {
    for (int w = 0; w < 200; w++) mk_attention(out, q, k, v, T, N - 1, H, Hkv, Dh, scale, 2);
    for (int r = 0; r < reps; r++) {
      const int l = mode ? r % L : 0;
      if (mode == 2) { float a = 0; for (size_t i = 0; i < evb / 4; i += 16) a += ev[i]; sink += a; }
      const double t0 = now_us();
      mk_attention(out, q, k + kv * l, v + kv * l, T, N - 1, H, Hkv, Dh, scale, 2);
      t[r] = now_us() - t0;
    }
    qsort(t, reps, sizeof(double), cmpd);
    printf("%s %.2f\n", mode == 2 ? "cold+evict" : mode ? "cold" : "hot", t[reps / 2]);
  }
  uint32_t h = 0;
  for (int i = 0; i < T * H * Dh; i++) { uint32_t b; memcpy(&b, &out[i], 4); h = h * 31 + b; }
  printf("hash %08x\n", h);
  return 0;
}

/* A MoE decode step (olmoe shape: E=64, top-8, D=2048, F=1024, T=1) from DRAM, against the bandwidth the same
 * bytes allow: per round, mk_moe_ffn over one of 6 layers with 8 random experts, then a plain read of the
 * same experts' matrices of another layer (the "same-bytes probe"), then mk_read_probe over a 512 MiB buffer.
 * Prints the medians of 200 rounds. QWEN3=1 in the environment: the qwen3-30b-a3b shape (E=128, F=768). Usage: moe-stream [threads] [gate/up type] [down type] [offset]
 * (types: 140 Q4_K repacked by 16 (default), 141 Q8_0 repacked, 14 Q6_K as stored, 142 Q6_K repacked; offset: bytes past a page
 * boundary where the weights start, e.g. 16 as in V8's large ArrayBuffers; default 0) */
#define _GNU_SOURCE
#include <immintrin.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <sys/mman.h>

#include "common.h"
#include "ops.h"
#include "pool.h"
#include "harness.h"

static size_t offset;
static uint8_t *rbuf(size_t n) { return rand_weights(n, offset, getenv("HUGE") != NULL); }

typedef struct { const uint8_t *p[128]; size_t n[128]; int cnt; _Atomic int next; uint64_t sum[256]; } same_bytes;
__attribute__((target("avx512f"))) static void same_bytes_task(void *v, int ith, int nth) {
  (void)nth;
  same_bytes *j = v;
  __m512i acc = _mm512_setzero_si512();
  for (int it; (it = atomic_fetch_add(&j->next, 1)) < j->cnt;)
    for (size_t i = 0; i < j->n[it]; i += 64) acc = _mm512_add_epi64(acc, _mm512_loadu_si512(j->p[it] + i));
  j->sum[ith] = (uint64_t)_mm512_reduce_add_epi64(acc);
}

int main(int argc, char **argv) {
  const int nth = argc > 1 ? atoi(argv[1]) : 2, gt = argc > 2 ? atoi(argv[2]) : T_Q4_K_R16, dt = argc > 3 ? atoi(argv[3]) : gt;
  offset = argc > 4 ? (size_t)atoi(argv[4]) : 0;
  /* QWEN3=1: the qwen3-30b-a3b shape (E=128, F=768) */
  const int qwen3 = getenv("QWEN3") != NULL, E = qwen3 ? 128 : 64, F = qwen3 ? 768 : 1024;
  enum { K = 8, D = 2048, L = 6, R = 200 };
  mk_ops_init();
  mk_pool_resize(nth);
  const size_t ge = mk_row_bytes(gt, D) * F, de = mk_row_bytes(dt, F) * D, active = K * (2 * ge + de);
  uint8_t *g[L], *u[L], *d[L];
  for (int l = 0; l < L; l++) g[l] = rbuf(ge * E), u[l] = rbuf(ge * E), d[l] = rbuf(de * E);
  const size_t big_n = (size_t)512 << 20;
  const size_t off = offset;
  offset = 0; /* the sequential read's buffer stays aligned */
  uint8_t *big = rbuf(big_n);
  offset = off;
  float x[D], out[D], w[K];
  for (int i = 0; i < D; i++) x[i] = cosf((float)i);
  for (int i = 0; i < K; i++) w[i] = 1.0f / K;
  int32_t ids[K];
  double tm[R], tp[R], tb[R], tq[R];
  for (int r = 0; r < R; r++) {
    for (int k = 0; k < K; k++) {
      int dup;
      do {
        ids[k] = (int32_t)(rnd() % E);
        dup = 0;
        for (int q = 0; q < k; q++) dup |= ids[q] == ids[k];
      } while (dup);
    }
    const int l = r % L, l2 = (r + 3) % L;
    mk_moe_args a = {out, x, g[l], u[l], d[l], gt, gt, dt, ids, w, 1, K, E, F, D};
    double t0 = now();
    mk_moe_ffn(&a, nth);
    tm[r] = now() - t0;
    same_bytes sb;
    memset(&sb, 0, sizeof sb);
    for (int k = 0; k < K; k++) {
      sb.p[sb.cnt] = g[l2] + ids[k] * ge, sb.n[sb.cnt++] = ge;
      sb.p[sb.cnt] = u[l2] + ids[k] * ge, sb.n[sb.cnt++] = ge;
      sb.p[sb.cnt] = d[l2] + ids[k] * de, sb.n[sb.cnt++] = de;
    }
    t0 = now();
    mk_pool_run(same_bytes_task, &sb, nth);
    tp[r] = now() - t0;
    /* the same bytes in the pieces the MoE's work items read (ops.c moe_rows_per_item for one token: gate/up
     * runs of F·K/(16·threads) rows, down runs of D·K/(16·threads)) */
    const int l3 = (r + 5) % L, gr = F * K / (16 * nth) & ~15, dr = D * K / (16 * nth) & ~15;
    memset(&sb, 0, sizeof sb);
    for (int k = 0; k < K; k++)
      for (int r0 = 0; r0 < F; r0 += gr) {
        sb.p[sb.cnt] = g[l3] + ids[k] * ge + r0 * (ge / F), sb.n[sb.cnt++] = gr * (ge / F);
        sb.p[sb.cnt] = u[l3] + ids[k] * ge + r0 * (ge / F), sb.n[sb.cnt++] = gr * (ge / F);
      }
    for (int k = 0; k < K; k++)
      for (int r0 = 0; r0 < D; r0 += dr) sb.p[sb.cnt] = d[l3] + ids[k] * de + r0 * (de / D), sb.n[sb.cnt++] = dr * (de / D);
    t0 = now();
    mk_pool_run(same_bytes_task, &sb, nth);
    tq[r] = now() - t0;
    t0 = now();
    mk_read_probe(big, big_n, nth);
    tb[r] = now() - t0;
  }
  if (getenv("HUGE")) { FILE *f = fopen("/proc/self/smaps_rollup", "r"); char line[256]; while (f && fgets(line, sizeof line, f)) if (!strncmp(line, "AnonHuge", 8)) fputs(line, stdout); if (f) fclose(f); }
  qsort(tm, R, sizeof(double), cmpd);
  qsort(tp, R, sizeof(double), cmpd);
  qsort(tb, R, sizeof(double), cmpd);
  qsort(tq, R, sizeof(double), cmpd);
  printf("E %d F %d, types %d/%d, %d threads, offset %zu: moe %.3f ms %.1f GB/s | same-bytes read %.1f GB/s, in the items' pieces %.1f GB/s | 512 MiB probe %.1f GB/s\n", E, F, gt, dt, nth, offset,
         tm[R / 2] * 1e3, active / tm[R / 2] / 1e9, active / tp[R / 2] / 1e9, active / tq[R / 2] / 1e9, big_n / tb[R / 2] / 1e9);
  return 0;
}

/* What this host allows a decode step: the bytes one greedy decode step of a MoE model reads (per layer the
 * dense attention weights and the router, then gate, up and down of k random experts; at the end the output
 * matrix), read in that order by the thread pool the kernels use, with no arithmetic. Prints plain-read tok/s
 * and GB/s, and the bandwidth the roofline of `moekit bench` divides by (its probe: one read of 256 MiB of the
 * weights every step reads), measured around every 8 steps as moekit bench does.
 *
 * A model's experts are read only when routed (with k of E: every E/k steps on average), the dense weights every
 * step; on a host that serves rarely read pages more slowly, the experts' share of the step reads below the probe.
 *
 *   bench/native/build.sh decode-read && /tmp/decode-read <olmoe-q8_0|olmoe-q4_k_m|qwen3-q4_k_m> [threads] [steps]
 *
 * Sizes (bytes, from the generated reference files' tensor types): olmoe Q8_0 experts 2048x1024 Q8_0 (2,228,224
 * per matrix), dense q/k/v/o 4 x 2048x2048 Q8_0 + F32 router 64x2048, output 50257x2048 Q8_0 (the presets' GPT-2 vocabulary). olmoe Q4_K_M: gate/up
 * Q4_K (1,179,648), down Q6_K in half the layers (1,720,320) else Q4_K (mean 1,449,984), dense q/k/o 2048x2048 Q4_K, v Q6_K
 * in half, output 50257x2048 Q6_K. qwen3-30b-a3b Q4_K_M: gate/up 768x2048 Q4_K (884,736), down Q6_K in half the layers (mean
 * 1,087,488), dense q 4096x2048 + o 2048x4096 Q4_K, k/v 512x2048, F32 router 128x2048, output 50257x2048 Q6_K. */
#define _GNU_SOURCE
#include <immintrin.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#include "common.h"
#include "ops.h"
#include "pool.h"
#include "harness.h"


/* anonymous memory in transparent huge pages, as allocPages gives the model's weight copies */
static uint8_t *pages(size_t n) {
  uint8_t *p = mmap(NULL, n, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) { perror("mmap"); exit(1); }
  madvise(p, n, MADV_HUGEPAGE);
  for (size_t i = 0; i < n; i += 4096) p[i] = (uint8_t)i;
  return p;
}

/* spans read by one pool run: each split in nth parts, threads take (span, part) items in order */
typedef struct { const uint8_t *p[32]; size_t n[32]; int cnt, parts; _Atomic int next; uint64_t sum[64]; } reads;
__attribute__((target("avx512f"))) static void read_task(void *v, int ith, int nth) {
  (void)nth;
  reads *j = v;
  __m512i acc = _mm512_setzero_si512();
  for (int it; (it = atomic_fetch_add(&j->next, 1)) < j->cnt * j->parts;) {
    const int s = it / j->parts, q = it % j->parts;
    const size_t len = j->n[s] / j->parts & ~(size_t)63, b = (size_t)q * len, e = q == j->parts - 1 ? j->n[s] & ~(size_t)63 : b + len;
    for (size_t i = b; i < e; i += 64) acc = _mm512_add_epi64(acc, _mm512_loadu_si512(j->p[s] + i));
  }
  j->sum[ith] += (uint64_t)_mm512_reduce_add_epi64(acc);
}
static void run_reads(reads *j, int nth) {
  atomic_init(&j->next, 0);
  j->parts = nth;
  mk_pool_run(read_task, j, nth);
}

int main(int argc, char **argv) {
  rs = 11; /* this harness\'s data */
  const char *shape = argc > 1 ? argv[1] : "olmoe-q8_0";
  const int nth = argc > 2 ? atoi(argv[2]) : 2, steps = argc > 3 ? atoi(argv[3]) : 64;
  int L, E, K;
  size_t gu, dn, dense, outb;
  if (!strcmp(shape, "olmoe-q8_0")) L = 16, E = 64, K = 8, gu = 2228224, dn = 2228224, dense = 4 * 4456448 + 524288, outb = 109359232;
  else if (!strcmp(shape, "olmoe-q4_k_m")) L = 16, E = 64, K = 8, gu = 1179648, dn = 1449984, dense = 3 * 2359296 + 2899968 + 524288, outb = 84431760;
  else if (!strcmp(shape, "qwen3-q4_k_m")) L = 48, E = 128, K = 8, gu = 884736, dn = 1087488, dense = 2 * 4718592 + 589824 + 724992 + 1048576, outb = 84431760;
  else { fprintf(stderr, "shape: olmoe-q8_0 | olmoe-q4_k_m | qwen3-q4_k_m\n"); return 2; }
  mk_ops_init();
  mk_pool_resize(nth);
  const size_t exp_bytes = 2 * gu + dn, layer = dense + E * exp_bytes;
  uint8_t *w = pages(L * layer + outb);
  const size_t per_token = L * (dense + K * exp_bytes) + outb;
  /* the probe, as moekit bench's probeBuffers: the output matrix, then dense weights, up to 256 MiB */
  reads probe;
  memset(&probe, 0, sizeof probe);
  probe.p[0] = w + L * layer, probe.n[0] = outb, probe.cnt = 1;
  size_t probe_n = outb;
  for (int l = 0; l < L && probe_n < (256u << 20) && probe.cnt < 32; l++) probe.p[probe.cnt] = w + l * layer, probe.n[probe.cnt++] = dense, probe_n += dense;

  double *st = malloc(sizeof(double) * (size_t)steps);
  double bw_prev = 0, win = 0;
  int nwin = 0, inwin = 0;
  double fr[1024];
  for (int s = -8; s < steps; s++) { /* 8 warm-up steps */
    if (s >= 0 && s % 8 == 0) {
      double t0 = now();
      for (int i = 0; i < probe.cnt; i++) mk_read_probe(probe.p[i], probe.n[i], nth); /* as the addon's readProbe per buffer */
      const double bw = probe_n / (now() - t0);
      if (inwin && nwin < 1024) fr[nwin++] = (inwin * per_token / win) / ((bw + bw_prev) / 2);
      bw_prev = bw, win = 0, inwin = 0;
    }
    const double t0 = now();
    for (int l = 0; l < L; l++) {
      reads r;
      memset(&r, 0, sizeof r);
      r.p[0] = w + l * layer, r.n[0] = dense, r.cnt = 1;
      run_reads(&r, nth);
      memset(&r, 0, sizeof r);
      int ids[16];
      for (int k = 0; k < K; k++) {
        int dup;
        do {
          ids[k] = (int)(rnd() % (uint32_t)E);
          dup = 0;
          for (int q = 0; q < k; q++) dup |= ids[q] == ids[k];
        } while (dup);
        const uint8_t *e = w + l * layer + dense + ids[k] * exp_bytes;
        r.p[r.cnt] = e, r.n[r.cnt++] = gu;
        r.p[r.cnt] = e + gu, r.n[r.cnt++] = gu;
      }
      for (int k = 0; k < K; k++) r.p[r.cnt] = w + l * layer + dense + ids[k] * exp_bytes + 2 * gu, r.n[r.cnt++] = dn;
      run_reads(&r, nth);
    }
    reads o;
    memset(&o, 0, sizeof o);
    o.p[0] = w + L * layer, o.n[0] = outb, o.cnt = 1;
    run_reads(&o, nth);
    const double dt = now() - t0;
    if (s >= 0) st[s] = dt, win += dt, inwin++;
  }
  qsort(st, (size_t)steps, sizeof(double), cmpd);
  qsort(fr, (size_t)nwin, sizeof(double), cmpd);
  printf("%s, %d threads, %d steps: %.1f MB/token, plain-read decode %.2f tok/s (%.1f GB/s), of the probe's roofline: "
         "median %.0f%% over %d windows (min %.0f%%, max %.0f%%)\n",
         shape, nth, steps, per_token / 1e6, 1 / st[steps / 2], per_token / st[steps / 2] / 1e9, 100 * fr[nwin / 2], nwin,
         100 * fr[0], 100 * fr[nwin - 1]);
  return 0;
}

/*
 * Op drivers: activation conversion, work partitioning over the thread pool, and the MoE
 * expert grouping (ggml mul_mat_id). Per-type math lives in kernels_scalar.c / kernels_avx2.c.
 */
#include "ops.h"
#include "ggml_compat.h"

#include <math.h>
#include <stdint.h>
#include <sched.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "common.h"
#include "pool.h"


static const int kTypes[] = {T_F32, T_F16, T_BF16, T_Q8_0, T_Q4_0, T_Q4_K, T_Q5_K, T_Q6_K, T_Q4_K_R16, T_Q8_0_R16,
                             T_Q6_K_R16};
#define NTYPES ((int)(sizeof kTypes / sizeof kTypes[0]))
/* simd level: 0 scalar, 1 AVX2, 2 AVX-512 (VNNI) on top of AVX2 */
static mk_type_ops scalar_ops[NTYPES], avx2_ops[NTYPES], avx512_ops[NTYPES];
static int has_avx2, has_avx512, use_simd;

static int is_r16(int type) { return type == T_Q4_K_R16 || type == T_Q8_0_R16 || type == T_Q6_K_R16; }
/* the stored type a repacked type is made from (its sizes and activation type) */
static int r16_source(int type) { return type == T_Q4_K_R16 ? T_Q4_K : type == T_Q8_0_R16 ? T_Q8_0 : T_Q6_K; }

void mk_ops_init(void) {
  mk_init_tables();
  mkc_init();
  has_avx2 = mk_cpu_has_avx2();
  has_avx512 = has_avx2 && mk_cpu_has_avx512();
  for (int i = 0; i < NTYPES; i++) {
    mk_scalar_fill(kTypes[i], &scalar_ops[i]);
    avx2_ops[i] = scalar_ops[i];
    if (has_avx2) mk_avx2_fill(kTypes[i], &avx2_ops[i]);
    avx512_ops[i] = avx2_ops[i];
    if (has_avx512) mk_avx512_fill(kTypes[i], &avx512_ops[i]);
  }
  /* T_Q4_K_R16 / T_Q8_0_R16 / T_Q6_K_R16: Q4_K's / Q8_0's / Q6_K's sizes and activation type; their rows are
   * computed by r16_rows only */
  for (int i = 0; i < NTYPES; i++)
    if (is_r16(kTypes[i])) {
      mk_type_ops *lv[3] = {&scalar_ops[i], &avx2_ops[i], &avx512_ops[i]};
      for (int l = 0; l < 3; l++) {
        *lv[l] = *mk_ops(r16_source(kTypes[i]), l);
        lv[l]->type = kTypes[i];
        lv[l]->dot = NULL;
        lv[l]->dot_tile = NULL;
      }
    }
  const char *e = getenv("MOEKIT_NO_SIMD"), *e5 = getenv("MOEKIT_NO_AVX512");
  const int no_simd = e && *e && strcmp(e, "0") != 0, no512 = e5 && *e5 && strcmp(e5, "0") != 0;
  if (no512) has_avx512 = 0;
  use_simd = no_simd ? 0 : has_avx512 ? 2 : has_avx2 ? 1 : 0;
}

/* on: 0 scalar, 1 best available, 2 AVX2 only (for tests comparing the paths) */
void mk_set_simd(int on) {
  use_simd = !on || !has_avx2 ? 0 : on == 2 ? 1 : has_avx512 ? 2 : 1;
}
int mk_simd_active(void) { return use_simd != 0; }
int mk_simd_level(void) { return use_simd; }
int mk_has_avx512(void) { return has_avx512; }

const mk_type_ops *mk_ops(int type, int simd) {
  for (int i = 0; i < NTYPES; i++)
    if (kTypes[i] == type) return simd >= 2 ? &avx512_ops[i] : simd ? &avx2_ops[i] : &scalar_ops[i];
  return NULL;
}

/* ---- scratch memory: grown on demand, reused across calls (ops are serialized) ---------- */

static void *scratch_buf;
static size_t scratch_cap;

static void *scratch(size_t bytes) {
  if (bytes > scratch_cap) {
    free(scratch_buf);
    scratch_cap = bytes + bytes / 4 + 4096;
    scratch_buf = aligned_alloc(64, (scratch_cap + 63) & ~(size_t)63);
    if (!scratch_buf) abort();
  }
  return scratch_buf;
}

static size_t align64(size_t n) { return (n + 63) & ~(size_t)63; }

static int imin(int a, int b) { return a < b ? a : b; }

/* ---- weights repacked by 16 rows (T_Q4_K_R16, T_Q8_0_R16, T_Q6_K_R16) -------------------- */

/* y[t*ystride + 16g + r] for 16-row groups g < ngroups of w; Q4_K: tokens t < tg in ggml's gemm order */
static void r16_rows(int type, const uint8_t *w, int K, int ngroups, const uint8_t *act, size_t arow, int T, int tg,
                     float *y, size_t ystride) {
  if (type == T_Q4_K_R16) mkc_q4K_r16_rows(w, K, ngroups, act, arow, T, tg, y, ystride, use_simd);
  else if (type == T_Q6_K_R16) mk_q6K_r16_rows(w, K, ngroups, act, arow, T, y, ystride, use_simd);
  else mk_q8_0_r16_rows(w, K, ngroups, act, arow, T, y, ystride, use_simd);
}

/* ---- work items in ranges ------------------------------------------------------------------ */

/*
 * Items [0, n) split into `parts` contiguous ranges: thread ith takes the items of range ith in order, then those
 * left in the others'. With one token (decode) every item streams weights from memory, and one range per thread
 * makes each thread read one long run instead of every other item (a new stream, and a DRAM latency, per item):
 * bench/ab-addon.ts, T=1: q/k/v 1.13x, Q4_K 2048x2048 1.16x, MoE step 1.08-1.18x. With parts = 1, one shared counter.
 */
#define MAX_RANGES 16
typedef struct {
  struct { _Atomic int next; int end; char pad[56]; } r[MAX_RANGES];
  int n;
} work_ranges;

static void ranges_init(work_ranges *w, int items, int parts) {
  w->n = parts < 1 ? 1 : parts > MAX_RANGES ? MAX_RANGES : parts;
  for (int i = 0; i < w->n; i++) {
    atomic_init(&w->r[i].next, (int)((int64_t)items * i / w->n));
    w->r[i].end = (int)((int64_t)items * (i + 1) / w->n);
  }
}

static void ranges_run(work_ranges *w, int ith, void (*f)(void *, int), void *arg) {
  for (int k = 0; k < w->n; k++) {
    const int i = (ith + k) % w->n;
    for (int it; (it = atomic_fetch_add_explicit(&w->r[i].next, 1, memory_order_relaxed)) < w->r[i].end;) f(arg, it);
  }
}

/* ---- matmul ---------------------------------------------------------------------------- */

/*
 * y[t, r] for r in [r0, r1), all t. Token tiles outer, rows inner: a chunk's weight rows stay
 * in cache while every tile of tokens passes over them, so weights stream from memory once.
 */
static void rows_times_tokens(const mk_type_ops *o, const uint8_t *w, size_t wrow, int r0, int r1,
                              const uint8_t *act, size_t arow, int T, int K, float *y, size_t ystride) {
  float s[MK_TILE_TOKENS * MK_TILE_ROWS];
  const int tw = o->dot_tile ? MK_TILE_TOKENS : MK_TILE;
  for (int t0 = 0; t0 < T; t0 += tw) {
    const int nt = imin(tw, T - t0);
    const uint8_t *a = act + (size_t)t0 * arow;
    if (o->dot_tile) {
      for (int r = r0; r < r1; r += MK_TILE_ROWS) {
        const int nr = imin(MK_TILE_ROWS, r1 - r);
        o->dot_tile(K, w + (size_t)r * wrow, wrow, nr, a, arow, nt, s, MK_TILE_ROWS);
        for (int t = 0; t < nt; t++)
          for (int i = 0; i < nr; i++) y[(size_t)(t0 + t) * ystride + r + i] = s[t * MK_TILE_ROWS + i];
      }
      continue;
    }
    for (int r = r0; r < r1; r++) {
      o->dot(K, w + (size_t)r * wrow, a, arow, nt, s);
      for (int t = 0; t < nt; t++) y[(size_t)(t0 + t) * ystride + r] = s[t];
    }
  }
}

/* One weight matrix of a (multi-)matmul job: y[T, N] = act · wᵀ, work items [first, first + nchunks). */
typedef struct {
  const mk_type_ops *o;
  const uint8_t *w, *act;
  size_t wrow, arow;
  float *y;
  int N, chunk, first;
  int f32_exact; /* F32 weights: sum in llama.cpp's order (ggml_compat.c), -1 = off */
  int q4k_rp;    /* Q4_K weights in llama.cpp's repacked order (ggml_compat.c mkc_q4K_rows) */
  int r16;       /* weights repacked by 16 rows (r16_rows; the same order as stored); Q8_0_R16 / Q6_K_R16 keep
                  * the N % 16 rows after the whole groups as stored */
} matmul_part;

typedef struct {
  matmul_part p[MK_MAX_MATMULS];
  int n, T, K, nchunks;
  work_ranges chunks;
} matmul_job;

static void matmul_chunk(void *vp, int c) {
  const matmul_job *j = vp;
  int m = 0;
  while (m + 1 < j->n && c >= j->p[m + 1].first) m++;
  const matmul_part *p = &j->p[m];
  const int r0 = (c - p->first) * p->chunk, r1 = imin(p->N, r0 + p->chunk);
  if (p->f32_exact >= 0) {
    const float *w = (const float *)p->w, *x = (const float *)p->act;
    for (int t = 0; t < j->T; t++)
      for (int r = r0; r < r1; r++)
        p->y[(size_t)t * p->N + r] = mkc_dot_f32(w + (size_t)r * j->K, x + (size_t)t * j->K, j->K, p->f32_exact);
  } else if (p->r16) {
    /* rows [r0, rg) in whole groups; chunks start on group boundaries (row_chunk), so r0 <= rg */
    const int rg = imin(r1, p->N & ~(MK_R16 - 1));
    if (rg > r0)
      r16_rows(p->o->type, p->w + (size_t)r0 * p->wrow, j->K, (rg - r0) / MK_R16, p->act, p->arow, j->T,
               mkc_q4K_gemm_rows(j->T), p->y + r0, (size_t)p->N);
    if (r1 > rg) /* the stored tail: the stored type's kernel, on the same activations (same vec-dot type) */
      rows_times_tokens(mk_ops(r16_source(p->o->type), use_simd), p->w, p->wrow, rg, r1, p->act, p->arow, j->T, j->K,
                        p->y, (size_t)p->N);
  } else if (p->q4k_rp) {
    mkc_q4K_rows(p->w, p->wrow, r0, r1, p->act, p->arow, j->T, j->K, p->y, (size_t)p->N);
  } else {
    rows_times_tokens(p->o, p->w, p->wrow, r0, r1, p->act, p->arow, j->T, j->K, p->y, (size_t)p->N);
  }
}

static void matmul_task(void *vp, int ith, int nth) {
  (void)nth;
  matmul_job *j = vp;
  ranges_run(&j->chunks, ith, matmul_chunk, j);
}

/* Rows per work item: a few items per thread for balance, small enough for L1/L2 reuse; a multiple of
 * MK_R16 (whole repacked groups). */
static int row_chunk(int N, int T, int nth) {
  if (T == 1) {
    int c = N / (nth * 8);
    return c < MK_R16 ? MK_R16 : c & ~(MK_R16 - 1);
  }
  return MK_R16;
}

static void convert_rows(const mk_type_ops *o, const float *x, int T, int K, uint8_t *dst, size_t arow) {
  for (int t = 0; t < T; t++) o->quant_act(x + (size_t)t * K, dst + (size_t)t * arow, K);
}

/*
 * ys[i][T, Ns[i]] = x[T, K] · ws[i]ᵀ for n ≤ MK_MAX_MATMULS matrices in one pool run (q/k/v, gate/up):
 * x is converted once per distinct activation format, and every output row is computed by the same
 * function on the same bytes as a matmul of that matrix alone, so results do not change.
 */
void mk_matmuls(int n, float *const *ys, const float *x, const uint8_t *const *ws, const int *types,
                const int *Ns, int T, int K, int nth) {
  matmul_job j;
  j.n = n;
  j.T = T;
  j.K = K;
  j.nchunks = 0;
  int fmt[MK_MAX_MATMULS]; /* activation format: vec-dot type, + 256 for ggml's 4-row Q8_K groups */
  size_t act_off[MK_MAX_MATMULS], total = 0;
  for (int i = 0; i < n; i++) {
    matmul_part *p = &j.p[i];
    const int type = types[i], N = Ns[i];
    p->o = mk_ops(type, use_simd);
    p->w = ws[i];
    p->y = ys[i];
    p->N = N;
    p->wrow = mk_row_bytes(type, K);
    p->arow = mk_row_bytes(p->o->vec_dot_type, K);
    if (type == T_Q4_K_R16 && N % MK_R16) { /* not a whole number of groups: no such tensor is packed */
      for (size_t e = 0; e < (size_t)T * N; e++) p->y[e] = NAN;
      p->N = 0;
    }
    p->r16 = is_r16(type);
    p->q4k_rp = type == T_Q4_K && mkc_q4K_repacked(N);
    p->f32_exact = type == T_F32 ? mkc_f32_sgemm(N, K, T) : -1;
    fmt[i] = p->o->vec_dot_type + (p->q4k_rp || type == T_Q4_K_R16 ? 256 : 0);
    act_off[i] = SIZE_MAX;
    for (int k = 0; k < i; k++)
      if (fmt[k] == fmt[i]) act_off[i] = act_off[k];
    if (act_off[i] == SIZE_MAX && p->o->vec_dot_type != T_F32) {
      act_off[i] = total;
      total += align64(p->arow * (size_t)T);
    }
    p->chunk = row_chunk(N, T, nth);
    p->first = j.nchunks;
    j.nchunks += (p->N + p->chunk - 1) / p->chunk;
  }
  uint8_t *buf = total ? scratch(total) : NULL;
  for (int i = 0; i < n; i++) {
    matmul_part *p = &j.p[i];
    if (p->o->vec_dot_type == T_F32) {
      p->act = (const uint8_t *)x;
      continue;
    }
    p->act = buf + act_off[i];
    int done = 0;
    for (int k = 0; k < i; k++) done |= fmt[k] == fmt[i];
    if (done) continue;
    if (fmt[i] >= 256) { /* the rows of ggml's repacked gemm in its 4-row Q8_K groups; the rest as plain Q8_K */
      const int tg = mkc_q4K_gemm_rows(T);
      mkc_quant_q8_K_rows(x, tg, K, buf + act_off[i], p->arow);
      convert_rows(p->o, x + (size_t)tg * K, T - tg, K, buf + act_off[i] + (size_t)tg * p->arow, p->arow);
    } else convert_rows(p->o, x, T, K, buf + act_off[i], p->arow);
  }
  const int nrun = imin(nth, j.nchunks);
  ranges_init(&j.chunks, j.nchunks, T == 1 ? nrun : 1);
  if (j.nchunks > 0) mk_pool_run(matmul_task, &j, nrun);
}

void mk_matmul(float *y, const float *x, const uint8_t *w, int type, int T, int N, int K, int nth) {
  mk_matmuls(1, &y, x, &w, &type, &N, T, K, nth);
}

/* ---- MoE FFN (tokens grouped by expert, like ggml mul_mat_id) --------------------------- */

/*
 * One pool run per call. The phases gate/up → quantize h → down → combine are ordered by counters
 * instead of pool barriers: the thread that finishes the last gate/up item of an expert converts
 * that expert's h rows and marks it ready; a down item waits only for its own expert (normally
 * long done, items run in expert order); combine starts once every down item is done. Each value
 * is computed by the same function on the same inputs as before, so results do not change.
 */
typedef struct {
  const mk_moe_args *a;
  const mk_type_ops *og, *ou, *od;
  size_t g_row, u_row, d_row;       /* weight row bytes */
  size_t g_arow, u_arow, h_arow;    /* activation row bytes in each vec-dot type */
  const uint8_t *xg, *xu;           /* [S, *] activations gathered in grouped slot order */
  int *count, *offset;              /* [E] */
  int *slot_of;                     /* [T*K] grouped slot of (t, j), -1 if unused */
  float *h;                         /* [S, F] silu(gate)·up */
  uint8_t *hq;                      /* [S, h_arow] h converted for down */
  float *ye;                        /* [S, D] expert outputs */
  int *gu_e, *gu_r0, *dn_e, *dn_r0; /* work items: (expert, first row) */
  int n_gu, n_dn, gu_rows, dn_rows, S, n_comb;
  _Atomic int *gu_left;             /* [E] gate/up items not yet finished */
  _Atomic int *h_ready;             /* [E] h of the expert converted */
  work_ranges gu, dn;               /* gate/up and down items */
  _Atomic int next_comb, dn_left;
} moe_job;

/* Spin briefly, then yield: the machine may be oversubscribed and the producer descheduled. */
static void wait_flag(_Atomic int *p, int want) {
  int spins = 0;
  while (atomic_load_explicit(p, memory_order_acquire) != want) {
    if (++spins < 2000) mk_cpu_relax();
    else sched_yield();
  }
}

/* s[t*n + i] = row r+i of w · x_t for i < n, t < nt (n, r multiples of MK_R16): one call over the run of rows
 * for weights repacked by 16 (mul_mat_id: always gemv), else row by row */
static void expert_rows(const mk_type_ops *o, const uint8_t *w, size_t wrow, int r, int n, int K, const uint8_t *x,
                        size_t arow, int nt, float *s) {
  if (is_r16(o->type)) {
    r16_rows(o->type, w + (size_t)r * wrow, K, n / MK_R16, x, arow, nt, 0, s, (size_t)n);
    return;
  }
  float d[MK_TILE];
  for (int t0 = 0; t0 < nt; t0 += MK_TILE)
    for (int i = 0; i < n; i++) {
      const int m = imin(MK_TILE, nt - t0);
      o->dot(K, w + (size_t)(r + i) * wrow, x + (size_t)t0 * arow, arow, m, d);
      for (int t = 0; t < m; t++) s[(size_t)(t0 + t) * n + i] = d[t];
    }
}

static void moe_gate_up_item(void *vp, int it) {
  moe_job *j = vp;
  const mk_moe_args *a = j->a;
  const size_t g_exp = j->g_row * (size_t)a->F, u_exp = j->u_row * (size_t)a->F;
  float sg[MK_TILE], su[MK_TILE];
  const int e = j->gu_e[it], r0 = j->gu_r0[it], r1 = imin(a->F, r0 + j->gu_rows);
  const uint8_t *gw = a->gate + (size_t)e * g_exp, *uw = a->up + (size_t)e * u_exp;
  const int s0 = j->offset[e], s1 = s0 + j->count[e];
  if (is_r16(j->og->type) || is_r16(j->ou->type)) {
    /* runs of up to 256 rows × as many tokens as fit the buffers: gate's run, then up's (two long streams;
     * the kernels tile the tokens themselves) */
    enum { GU_BUF = 4096 };
    float tg[GU_BUF], tu[GU_BUF];
    const int rc = imin(r1 - r0, 256), tt = GU_BUF / rc;
    for (int t0 = s0; t0 < s1; t0 += tt) {
      const int nt = imin(tt, s1 - t0);
      for (int r = r0; r < r1; r += rc) {
        const int n = imin(rc, r1 - r);
        expert_rows(j->og, gw, j->g_row, r, n, a->D, j->xg + (size_t)t0 * j->g_arow, j->g_arow, nt, tg);
        expert_rows(j->ou, uw, j->u_row, r, n, a->D, j->xu + (size_t)t0 * j->u_arow, j->u_arow, nt, tu);
        for (int t = 0; t < nt; t++)
          mkc_swiglu_run(j->h + (size_t)(t0 + t) * a->F + r, tg + (size_t)t * n, tu + (size_t)t * n, n, r, a->F, use_simd);
      }
    }
  } else {
    const int tw = j->og->dot_tile && j->ou->dot_tile ? MK_TILE_TOKENS : MK_TILE;
    for (int t0 = s0; t0 < s1; t0 += tw) {
      const int nt = imin(tw, s1 - t0);
      if (j->og->dot_tile && j->ou->dot_tile) {
        float tg[MK_TILE_TOKENS * MK_TILE_ROWS], tu[MK_TILE_TOKENS * MK_TILE_ROWS];
        for (int r = r0; r < r1; r += MK_TILE_ROWS) {
          const int nr = imin(MK_TILE_ROWS, r1 - r);
          j->og->dot_tile(a->D, gw + (size_t)r * j->g_row, j->g_row, nr, j->xg + (size_t)t0 * j->g_arow, j->g_arow, nt, tg, MK_TILE_ROWS);
          j->ou->dot_tile(a->D, uw + (size_t)r * j->u_row, j->u_row, nr, j->xu + (size_t)t0 * j->u_arow, j->u_arow, nt, tu, MK_TILE_ROWS);
          for (int t = 0; t < nt; t++)
            for (int i = 0; i < nr; i++)
              j->h[(size_t)(t0 + t) * a->F + r + i] = mkc_swiglu(tg[t * MK_TILE_ROWS + i], tu[t * MK_TILE_ROWS + i], r + i, a->F);
        }
        continue;
      }
      for (int r = r0; r < r1; r++) {
        j->og->dot(a->D, gw + (size_t)r * j->g_row, j->xg + (size_t)t0 * j->g_arow, j->g_arow, nt, sg);
        j->ou->dot(a->D, uw + (size_t)r * j->u_row, j->xu + (size_t)t0 * j->u_arow, j->u_arow, nt, su);
        for (int t = 0; t < nt; t++) {
          const float g = sg[t];
          j->h[(size_t)(t0 + t) * a->F + r] = mkc_swiglu(g, su[t], r, a->F); /* ggml_vec_swiglu_f32 */
        }
      }
    }
  }
  if (atomic_fetch_sub_explicit(&j->gu_left[e], 1, memory_order_acq_rel) == 1) {
    const int F = a->F;
    for (int s = s0; s < s1; s++) j->od->quant_act(j->h + (size_t)s * F, j->hq + (size_t)s * j->h_arow, F);
    atomic_store_explicit(&j->h_ready[e], 1, memory_order_release);
  }
}

static void moe_down_item(void *vp, int it) {
  moe_job *j = vp;
  const mk_moe_args *a = j->a;
  const size_t d_exp = j->d_row * (size_t)a->D;
  const int e = j->dn_e[it], r0 = j->dn_r0[it], r1 = imin(a->D, r0 + j->dn_rows);
  const int s0 = j->offset[e];
  wait_flag(&j->h_ready[e], 1);
  if (is_r16(j->od->type))
    r16_rows(j->od->type, a->down + (size_t)e * d_exp + (size_t)r0 * j->d_row, a->F, (r1 - r0) / MK_R16,
             j->hq + (size_t)s0 * j->h_arow, j->h_arow, j->count[e], 0, j->ye + (size_t)s0 * a->D + r0, (size_t)a->D);
  else
    rows_times_tokens(j->od, a->down + (size_t)e * d_exp, j->d_row, r0, r1, j->hq + (size_t)s0 * j->h_arow,
                      j->h_arow, j->count[e], a->F, j->ye + (size_t)s0 * a->D, (size_t)a->D);
  atomic_fetch_sub_explicit(&j->dn_left, 1, memory_order_acq_rel);
}

/* out[t] = Σ_j w[t,j]·y_j in slot order: ggml_mul by the weights, then a chain of ggml_add. */
static void moe_combine_part(moe_job *j, int it) {
  const mk_moe_args *a = j->a;
  const int D = a->D;
  const int parts = (D + 255) / 256;
  const int t = it / parts, d0 = (it % parts) * 256, d1 = imin(D, d0 + 256);
  float *o = a->out + (size_t)t * D;
  int first = 1;
  for (int k = 0; k < a->K; k++) {
    const int s = j->slot_of[t * a->K + k];
    if (s < 0) continue;
    const float wk = a->weights[t * a->K + k];
    const float *y = j->ye + (size_t)s * D;
    if (first) {
      for (int d = d0; d < d1; d++) o[d] = wk * y[d];
      first = 0;
    } else {
      for (int d = d0; d < d1; d++) o[d] += wk * y[d];
    }
  }
  if (first) memset(o + d0, 0, sizeof(float) * (size_t)(d1 - d0));
}

static void moe_task(void *vp, int ith, int nth) {
  (void)nth;
  moe_job *j = vp;
  ranges_run(&j->gu, ith, moe_gate_up_item, j);
  ranges_run(&j->dn, ith, moe_down_item, j);
  wait_flag(&j->dn_left, 0);
  for (int it; (it = atomic_fetch_add_explicit(&j->next_comb, 1, memory_order_relaxed)) < j->n_comb;) moe_combine_part(j, it);
}

static int build_items(const moe_job *j, int rows, int rows_per_item, int *item_e, int *item_r0) {
  const mk_moe_args *a = j->a;
  int n = 0;
  for (int e = 0; e < a->E; e++) {
    if (j->count[e] == 0) continue;
    for (int r = 0; r < rows; r += rows_per_item) {
      item_e[n] = e;
      item_r0[n] = r;
      n++;
    }
  }
  return n;
}

static int moe_rows_per_item(int rows, int nactive, int S, int nth) {
  /* decode: enough items for balance; prompt: small blocks so tokens reuse cached rows */
  if (S <= nactive) { /* a multiple of MK_R16: whole repacked groups */
    int c = rows * nactive / (nth * 16) & ~(MK_R16 - 1);
    if (c < MK_R16) c = MK_R16;
    return c > rows ? rows : c;
  }
  return MK_R16;
}

/* The kernels of one expert weight type; Q4_K with rows % 8 == 0 as llama.cpp's repacked gemv. */
static const mk_type_ops *q4k_rp_ops(int type, int rows) {
  static mk_type_ops q4k_gemv;
  if (type != T_Q4_K || !mkc_q4K_repacked(rows)) return mk_ops(type, use_simd);
  q4k_gemv = *mk_ops(type, use_simd);
  q4k_gemv.dot = mkc_dot_q4K_gemv;
  q4k_gemv.dot_tile = NULL;
  return &q4k_gemv;
}

void mk_moe_ffn(const mk_moe_args *a, int nth) {
  if (((is_r16(a->gate_type) || is_r16(a->up_type)) && a->F % MK_R16) || (is_r16(a->down_type) && a->D % MK_R16)) { /* not whole groups: no such tensor is packed */
    for (size_t i = 0; i < (size_t)a->T * a->D; i++) a->out[i] = NAN;
    return;
  }
  moe_job j;
  memset(&j, 0, sizeof j);
  j.a = a;
  j.og = q4k_rp_ops(a->gate_type, a->F);
  j.ou = q4k_rp_ops(a->up_type, a->F);
  j.od = q4k_rp_ops(a->down_type, a->D);
  j.g_row = mk_row_bytes(a->gate_type, a->D);
  j.u_row = mk_row_bytes(a->up_type, a->D);
  j.d_row = mk_row_bytes(a->down_type, a->F);
  j.g_arow = mk_row_bytes(j.og->vec_dot_type, a->D);
  j.u_arow = mk_row_bytes(j.ou->vec_dot_type, a->D);
  j.h_arow = mk_row_bytes(j.od->vec_dot_type, a->F);
  const int TK = a->T * a->K;
  const int same_act = j.og->vec_dot_type == j.ou->vec_dot_type;

  /* sizes */
  const size_t n_gu_max = (size_t)a->E * (size_t)(a->F / 16 + 1), n_dn_max = (size_t)a->E * (size_t)(a->D / 16 + 1);
  size_t off = 0;
  const size_t o_count = off; off += align64(sizeof(int) * (size_t)a->E * 2);
  const size_t o_flags = off; off += align64(sizeof(_Atomic int) * (size_t)a->E * 2);
  const size_t o_slot = off; off += align64(sizeof(int) * (size_t)TK);
  const size_t o_items = off; off += align64(sizeof(int) * (n_gu_max + n_dn_max) * 2);
  const size_t o_xt = off; off += align64(j.g_arow * (size_t)a->T) + (same_act ? 0 : align64(j.u_arow * (size_t)a->T));
  const size_t o_xg = off; off += align64(j.g_arow * (size_t)TK) + (same_act ? 0 : align64(j.u_arow * (size_t)TK));
  const size_t o_h = off; off += align64(sizeof(float) * (size_t)TK * a->F);
  const size_t o_hq = off; off += align64(j.h_arow * (size_t)TK);
  const size_t o_ye = off; off += align64(sizeof(float) * (size_t)TK * a->D);
  uint8_t *base = scratch(off);

  j.count = (int *)(base + o_count);
  j.offset = j.count + a->E;
  j.gu_left = (_Atomic int *)(base + o_flags);
  j.h_ready = j.gu_left + a->E;
  j.slot_of = (int *)(base + o_slot);
  j.gu_e = (int *)(base + o_items);
  j.gu_r0 = j.gu_e + n_gu_max;
  j.dn_e = j.gu_r0 + n_gu_max;
  j.dn_r0 = j.dn_e + n_dn_max;
  uint8_t *xt_g = base + o_xt, *xt_u = same_act ? xt_g : xt_g + align64(j.g_arow * (size_t)a->T);
  uint8_t *xg = base + o_xg, *xu = same_act ? xg : xg + align64(j.g_arow * (size_t)TK);
  j.xg = xg;
  j.xu = xu;
  j.h = (float *)(base + o_h);
  j.hq = base + o_hq;
  j.ye = (float *)(base + o_ye);

  /* group (t, k) slots by expert, tokens ascending within an expert */
  memset(j.count, 0, sizeof(int) * (size_t)a->E);
  for (int i = 0; i < TK; i++)
    if (a->ids[i] >= 0) j.count[a->ids[i]]++;
  int nactive = 0;
  for (int e = 0, o = 0; e < a->E; e++) {
    j.offset[e] = o;
    o += j.count[e];
    nactive += j.count[e] > 0;
  }
  memset(j.count, 0, sizeof(int) * (size_t)a->E);
  for (int i = 0; i < TK; i++) {
    const int e = a->ids[i];
    j.slot_of[i] = e >= 0 ? j.offset[e] + j.count[e]++ : -1;
  }
  j.S = 0;
  for (int e = 0; e < a->E; e++) j.S += j.count[e];

  /* activations: convert each token once, then gather rows into grouped slot order */
  convert_rows(j.og, a->x, a->T, a->D, xt_g, j.g_arow);
  if (!same_act) convert_rows(j.ou, a->x, a->T, a->D, xt_u, j.u_arow);
  for (int i = 0; i < TK; i++) {
    const int s = j.slot_of[i];
    if (s < 0) continue;
    const int t = i / a->K;
    memcpy(xg + (size_t)s * j.g_arow, xt_g + (size_t)t * j.g_arow, j.g_arow);
    if (!same_act) memcpy(xu + (size_t)s * j.u_arow, xt_u + (size_t)t * j.u_arow, j.u_arow);
  }

  if (j.S > 0) {
    j.gu_rows = moe_rows_per_item(a->F, nactive, j.S, nth);
    j.dn_rows = moe_rows_per_item(a->D, nactive, j.S, nth);
    j.n_gu = build_items(&j, a->F, j.gu_rows, j.gu_e, j.gu_r0);
    j.n_dn = build_items(&j, a->D, j.dn_rows, j.dn_e, j.dn_r0);
    const int per_e = (a->F + j.gu_rows - 1) / j.gu_rows;
    for (int e = 0; e < a->E; e++) {
      atomic_init(&j.gu_left[e], j.count[e] ? per_e : 0);
      atomic_init(&j.h_ready[e], 0);
    }
  }
  j.n_comb = a->T * ((a->D + 255) / 256);
  atomic_init(&j.next_comb, 0);
  atomic_init(&j.dn_left, j.n_dn);
  const int nrun = imin(nth, j.n_gu > j.n_comb ? j.n_gu : j.n_comb);
  /* a range of experts per thread (its down items are mostly of the same experts, so threads seldom wait for each
   * other's h), for prompts too: each thread then streams consecutive groups of an expert, so the kernels'
   * prefetch runs ahead into rows that the same thread takes next (one shared counter alternated groups between
   * the threads): moekit bench -p 128 alternating, olmoe Q4_K_M 127-151 -> 154-158, qwen3 49-52 -> 55-57 tok/s */
  ranges_init(&j.gu, j.n_gu, nrun);
  ranges_init(&j.dn, j.n_dn, nrun);
  mk_pool_run(moe_task, &j, nrun);
}

/*
 * Softmax routing (src/nn/moe.ts routeInto with scoring 'softmax', the reference): ggml_soft_max's
 * numerics (mkc_softmax_exp; E a multiple of the lane count, so no libm tail), then top-K by repeated
 * max (ties to the lower id), weights summed in double, renormalised in f32 and scaled as moe.ts does.
 */
void mk_route_softmax(const float *logits, int T, int E, int K, int normalize, double scale, const float *bias,
                      int32_t *ids, float *weights, float *scores, float *sel) {
  for (int t = 0; t < T; t++) {
    const float *x = logits + (size_t)t * E;
    float *sc = scores + (size_t)t * E, *w = weights + (size_t)t * K;
    int32_t *id = ids + (size_t)t * K;
    float max = -INFINITY;
    for (int e = 0; e < E; e++)
      if (x[e] > max) max = x[e];
    const float inv = (float)(1.0 / mkc_softmax_exp(E, sc, x, max));
    for (int e = 0; e < E; e++) sc[e] *= inv;
    for (int e = 0; e < E; e++) sel[e] = sc[e] + (bias ? bias[e] : 0.0f);
    double sum = 0;
    for (int j = 0; j < K; j++) {
      int best = -1;
      float bv = -INFINITY;
      for (int e = 0; e < E; e++)
        if (sel[e] > bv) bv = sel[e], best = e;
      id[j] = best;
      w[j] = best >= 0 ? sc[best] : NAN; /* all scores NaN: no expert */
      sum += w[j];
      if (best >= 0) sel[best] = -INFINITY;
    }
    if (normalize) {
      const float s = (float)sum;
      for (int j = 0; j < K; j++) w[j] = w[j] / s;
    }
    if (scale != 1)
      for (int j = 0; j < K; j++) w[j] = (float)((double)w[j] * scale);
  }
}

/* ---- attention ------------------------------------------------------------------------- */

/*
 * Numerics of ggml-cpu's flash attention (ops.cpp ggml_compute_forward_flash_attn_ext_f16), which
 * llama.cpp uses on CPU by default; the TS reference implements the same:
 *  - T < 64 (`..._one_chunk`): q rounded to f16; online softmax whose value accumulator is f16
 *    (every rescale and multiply-add rounds to f16); divided by the f32 running sum at the end;
 *  - T >= 64 (`..._tiled`): q stays f32, K/V widened to f32, accumulator f32.
 */
#define ATTN_F16_MAX_T 64


typedef struct {
  float *out;
  const float *q;
  const uint16_t *k, *v;
  int T, pos0, H, Hkv, Dh;
  float scale;
  int hc;      /* f16 path: heads per work item (a token's heads in chunks); tiled: 1 */
  float *work; /* per thread: hc · mkc_attn_one_chunk_work of the longest row (tiled: acc [Dh]) */
  size_t work_floats;
  _Atomic int next;
} attn_job;

static void attn_task(void *vp, int ith, int nth) {
  (void)nth;
  attn_job *j = vp;
  const int f16acc = j->T < ATTN_F16_MAX_T;
  float *work = j->work + (size_t)ith * j->work_floats;
  const int group = j->H / j->Hkv, Dh = j->Dh, hc = j->hc, chunks = (j->H + hc - 1) / hc;
  const size_t kv_row = (size_t)j->Hkv * Dh;
  for (int it; (it = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < j->T * chunks;) {
    const int t = it / chunks, h = it % chunks * hc;
    const int n = j->pos0 + t + 1; /* causal: keys 0 .. pos0+t */
    const float *q = j->q + (size_t)t * j->H * Dh;
    float *o = j->out + (size_t)t * j->H * Dh;
    if (f16acc) {
      mkc_attn_one_chunk_heads(o, q, j->k, j->v, kv_row, n, Dh, h, imin(hc, j->H - h), group, j->scale, work, use_simd);
    } else {
      const size_t kv = (size_t)(h / group) * Dh;
      mkc_attn_tiled(o + (size_t)h * Dh, q + (size_t)h * Dh, j->k + kv, j->v + kv, kv_row, n, Dh, j->scale, work, use_simd);
    }
  }
}

/* T < 64 (decode, short batches): each thread takes a token's heads in one run (H / threads of them), so it
 * reads each key's K and V row for those heads in one contiguous span, and GQA heads of one kv head together */
void mk_attention(float *out, const float *q, const uint16_t *k, const uint16_t *v, int T, int pos0, int H,
                  int Hkv, int Dh, float scale, int nth) {
  const int f16acc = T < ATTN_F16_MAX_T;
  const int nt = nth < 1 ? 1 : nth, hc = f16acc ? (H + nt - 1) / nt : 1;
  attn_job j = {out, q, k, v, T, pos0, H, Hkv, Dh, scale, hc, NULL, 0, 0};
  const size_t wf = f16acc ? (size_t)hc * mkc_attn_one_chunk_work(pos0 + T, Dh) : (size_t)Dh;
  j.work_floats = align64(sizeof(float) * wf) / sizeof(float);
  const int n = imin(nth, T * ((H + hc - 1) / hc));
  j.work = scratch(sizeof(float) * j.work_floats * (size_t)(n < 1 ? 1 : n));
  atomic_init(&j.next, 0);
  mk_pool_run(attn_task, &j, n);
}

/* ---- prefaulting -------------------------------------------------------------------------- */

int mk_prefault(const void *p, size_t n, int write) {
#if defined(MADV_POPULATE_READ) && defined(MADV_POPULATE_WRITE)
  const uintptr_t pg = (uintptr_t)sysconf(_SC_PAGESIZE), b = (uintptr_t)p & ~(pg - 1);
  const uintptr_t e = ((uintptr_t)p + n + pg - 1) & ~(pg - 1);
  return n > 0 && madvise((void *)b, e - b, write ? MADV_POPULATE_WRITE : MADV_POPULATE_READ) == 0;
#else
  (void)p; (void)n; (void)write;
  return 0;
#endif
}

/* Weight copies in transparent huge pages where the kernel can make them: allocPages asks for them
 * (MADV_HUGEPAGE), but a fault finds no free 2 MiB block when memory is fragmented; MADV_COLLAPSE (Linux 6.1)
 * then moves the range's 4 KiB pages into huge pages (reclaiming and compacting as needed; ranges already in
 * huge pages are skipped). Best effort: an older kernel or no memory leaves the pages as they are. Streaming
 * weights from 4 KiB pages costs a TLB miss per page, a two-level page walk in a VM. MOEKIT_NO_HUGEPAGES=1: off. */
#if defined(__linux__) && !defined(MADV_COLLAPSE)
#define MADV_COLLAPSE 25
#endif
static void huge_collapse(void *p, size_t n) {
#if defined(__linux__)
  const uintptr_t h = (uintptr_t)2 << 20, b = ((uintptr_t)p + h - 1) & ~(h - 1), e = ((uintptr_t)p + n) & ~(h - 1);
  if (e > b && !getenv("MOEKIT_NO_HUGEPAGES")) madvise((void *)b, e - b, MADV_COLLAPSE);
#else
  (void)p; (void)n;
#endif
}

/* ---- repacking by 16 rows (T_Q4_K_R16, T_Q8_0_R16, T_Q6_K_R16) ---------------------------- */

/* Groups (16 rows, contiguous in the source) read per pread: ~300 KB for K = 2048, an L2-sized bounce buffer. */
#define REPACK_GROUPS 16

typedef struct {
  uint8_t *dst;
  const uint8_t *src;
  void (*pack)(uint8_t *, const uint8_t *, int, int, int); /* groups [g0, g1) of the source type */
  int groups, K;
  size_t group_bytes;
  int fd;          /* >= 0: src lies in a read-only mapping of this file, at file offset foff */
  off_t foff;
  uint8_t *bounce; /* [nth][REPACK_GROUPS * group_bytes] when fd >= 0 */
} repack_job;

/* Reads the source through the page cache (pread) into a per-thread buffer instead of touching the mapped
 * pages: on this VM every first touch of a 4 KiB page costs a fault, mapping the file costs as much as
 * packing it, and the pages would be dropped right after. The destination is prefaulted by range per
 * thread. Falls back to reading the mapping if a read comes up short. */
static void repack_task(void *vp, int ith, int nth) {
  repack_job *j = vp;
  const int per = (j->groups + nth - 1) / nth, g0 = per * ith, g1 = imin(j->groups, g0 + per);
  if (g0 >= g1) return;
#ifdef MADV_POPULATE_WRITE
  const size_t pg = (size_t)sysconf(_SC_PAGESIZE);
  const uintptr_t d0 = (uintptr_t)(j->dst + (size_t)g0 * j->group_bytes) & ~(uintptr_t)(pg - 1);
  const uintptr_t d1 = (uintptr_t)(j->dst + (size_t)g1 * j->group_bytes);
  madvise((void *)d0, d1 - d0, MADV_POPULATE_WRITE); /* one call per range instead of a fault per page */
#endif
  void (*const pack)(uint8_t *, const uint8_t *, int, int, int) = j->pack;
  if (j->fd < 0) {
    pack(j->dst, j->src, g0, g1, j->K);
    return;
  }
  uint8_t *buf = j->bounce + (size_t)ith * REPACK_GROUPS * j->group_bytes;
  for (int g = g0; g < g1; g += REPACK_GROUPS) {
    const int n = imin(REPACK_GROUPS, g1 - g);
    const size_t len = (size_t)n * j->group_bytes;
    const uint8_t *from = buf;
    size_t got = 0;
    while (got < len) {
      const ssize_t r = pread(j->fd, buf + got, len - got, j->foff + (off_t)((size_t)g * j->group_bytes + got));
      if (r <= 0) break;
      got += (size_t)r;
    }
    if (got < len) from = j->src + (size_t)g * j->group_bytes; /* file shrank or I/O error: the mapping */
    pack(j->dst + (size_t)g * j->group_bytes, from, 0, n, j->K);
  }
}

/* [p, p + n) lies in one read-only mapping of a file (/proc/self/maps: not writable, inode != 0): its pages
 * can be dropped from this process and come back from the file if touched again. With fd != NULL, also
 * opens that file (*fd, or -1 when it cannot be opened or is no longer the mapped inode) and gives the
 * file offset of p. */
static int read_only_file_mapping(const void *p, size_t n, int *fd, off_t *foff) {
  if (fd) *fd = -1;
  FILE *f = fopen("/proc/self/maps", "r");
  if (!f) return 0;
  char line[4352];
  int ok = 0;
  const unsigned long a = (unsigned long)(uintptr_t)p;
  while (fgets(line, sizeof line, f)) {
    unsigned long lo, hi, off, inode;
    char perms[8], dev[32];
    int path_at = 0;
    if (sscanf(line, "%lx-%lx %7s %lx %31s %lu %n", &lo, &hi, perms, &off, dev, &inode, &path_at) >= 6 && lo <= a && a < hi) {
      ok = inode != 0 && perms[0] == 'r' && perms[1] == '-' && n <= hi - a;
      if (ok && fd && path_at > 0 && line[path_at] == '/') {
        line[strcspn(line, "\n")] = 0;
        const int d = open(line + path_at, O_RDONLY | O_CLOEXEC);
        struct stat st;
        if (d >= 0 && fstat(d, &st) == 0 && (unsigned long)st.st_ino == inode &&
            (unsigned long long)st.st_size >= (unsigned long long)(off + (a - lo) + n)) {
          *fd = d;
          *foff = (off_t)(off + (a - lo));
        } else if (d >= 0) {
          close(d);
        }
      }
      break;
    }
  }
  fclose(f);
  return ok;
}

/* Runs a job whose pack, groups, K and group_bytes are set: reads the source through the page cache when it
 * is a read-only file mapping, then gives its pages back. */
static void repack_run(repack_job *j, int nth) {
  const size_t pg = (size_t)sysconf(_SC_PAGESIZE), bytes = j->group_bytes * (size_t)j->groups;
  const uintptr_t s0 = (uintptr_t)j->src, mask = ~(uintptr_t)(pg - 1);
  const int file = read_only_file_mapping(j->src, bytes, &j->fd, &j->foff);
  nth = imin(nth, j->groups);
  if (j->fd >= 0 && !(j->bounce = malloc((size_t)nth * REPACK_GROUPS * j->group_bytes))) {
    close(j->fd);
    j->fd = -1;
  }
  if (j->fd < 0) mk_prefault(j->src, bytes, 0); /* one call instead of a fault per page: 2.5× faster from the mapped file */
  mk_pool_run(repack_task, j, nth);
  /* the source is normally the mapped model file: give its whole pages back (the copy replaces them), as
   * llama.cpp's CPU_REPACK buffer replaces the mapped tensor */
  const uintptr_t b = (s0 + pg - 1) & mask, e = (s0 + bytes) & mask;
  if (e > b && file) madvise((void *)b, e - b, MADV_DONTNEED);
  if (j->fd >= 0) {
    /* and, when the file and its copies would take over 3/4 of the RAM, the page cache's copy of what was
     * read: otherwise the cached file fills memory while the copies are made, and the last copies find no free
     * 2 MiB blocks (qwen3-30b-a3b, 18 GB in 23 GiB: a third of its last layers in 4 KiB pages, their MoE calls
     * 2-5x slower). A smaller file stays cached: loading it again does not read the disk, and on this VM
     * dropping 7 GB of cache made the next runs' decode slower (olmoe Q8_0, 6 of 6 alternating pairs). */
    struct stat st;
    const double ram = (double)sysconf(_SC_PHYS_PAGES) * (double)pg;
    if (fstat(j->fd, &st) == 0 && 2.0 * (double)st.st_size > 0.75 * ram) posix_fadvise(j->fd, j->foff, (off_t)bytes, POSIX_FADV_DONTNEED);
    close(j->fd);
    free(j->bounce);
  }
  huge_collapse(j->dst, bytes);
}

int mk_repack_r16(uint8_t *dst, const uint8_t *src, int type, int N, int K, int nth) {
  if ((type != T_Q4_K && type != T_Q8_0 && type != T_Q6_K) || N < MK_R16 || (type == T_Q4_K && N % MK_R16) ||
      K % (type == T_Q8_0 ? QK8_0 : QK_K))
    return 0;
  const size_t group_bytes = mk_row_bytes(type, K) * MK_R16;
  /* Q8_0 / Q6_K: the rows past the last whole group stay as stored (a vocabulary of 50257 rows: the output
   * matrix read 2x slower as stored; bench/phase-decode.ts). Q4_K's repacked kernels also sum tokens in
   * llama.cpp's gemm order, which its rows as stored do not, so a Q4_K matrix is repacked whole or not at all. */
  const size_t tail = (size_t)(N % MK_R16) * mk_row_bytes(type, K), head = group_bytes * (size_t)(N / MK_R16);
  if (tail) memcpy(dst + head, src + head, tail);
  /* 16-lane gathers where the group's byte offsets fit them (i32); the layout is the same. Q6_K: whole
   * fields (memcpy) at every level */
  const int gather = use_simd >= 2 && group_bytes <= INT32_MAX;
  repack_job j = {dst, src, type == T_Q4_K   ? (gather ? mk_q4K_r16_pack_512 : mkc_q4K_r16_pack)
                            : type == T_Q8_0 ? (gather ? mk_q8_0_r16_pack_512 : mkc_q8_0_r16_pack)
                                             : mk_q6K_r16_pack,
                  N / MK_R16, K, group_bytes, -1, 0, NULL};
  repack_run(&j, nth);
  return 1;
}

/* groups [g0, g1) of K bytes each, as they are */
static void copy_groups(uint8_t *dst, const uint8_t *src, int g0, int g1, int K) {
  memcpy(dst + (size_t)g0 * (size_t)K, src + (size_t)g0 * (size_t)K, (size_t)(g1 - g0) * (size_t)K);
}

int mk_copy_resident(uint8_t *dst, const uint8_t *src, int rows, int row_bytes, int nth) {
  if (rows < 1 || row_bytes < 1 || !read_only_file_mapping(src, (size_t)rows * (size_t)row_bytes, NULL, NULL)) return 0;
  /* groups of 16 rows (1 when the rows do not divide): the repack's pread chunks */
  const int per = rows % MK_R16 == 0 && (size_t)row_bytes * MK_R16 <= INT32_MAX ? MK_R16 : 1;
  repack_job j = {dst, src, copy_groups, rows / per, row_bytes * per, (size_t)row_bytes * per, -1, 0, NULL};
  repack_run(&j, nth);
  return 1;
}

/* ---- getRows --------------------------------------------------------------------------- */

void mk_get_rows(float *out, const uint8_t *w, int type, int K, const int32_t *rows, int n) {
  const mk_type_ops *o = mk_ops(type, use_simd);
  const size_t rb = mk_row_bytes(type, K);
  for (int i = 0; i < n; i++) o->dequant(w + (size_t)rows[i] * rb, out + (size_t)i * K, K);
}

/* ---- bandwidth probe ------------------------------------------------------------------- */

typedef struct {
  const uint8_t *p;
  size_t n;
  uint64_t sums[256];
} probe_job;

/* The probe reads with the widest loads the CPU has, four independent accumulators: the portable loop's
 * 128-bit loads read 15-18% below 256- or 512-bit loads on the same buffer here (bench/native/probe-loads.c),
 * which made the roofline too low. Every 64-bit word is summed (the checksum keeps the loads live). */
#if defined(__x86_64__) && defined(__GNUC__)
/* n a multiple of 256 */
__attribute__((target("avx512f"))) static uint64_t probe_sum_512(const uint8_t *p, size_t n) {
  __m512i a = _mm512_setzero_si512(), b = a, c = a, d = a;
  for (const uint8_t *q = p, *e = p + n; q < e; q += 256) {
    a = _mm512_add_epi64(a, _mm512_loadu_si512(q));
    b = _mm512_add_epi64(b, _mm512_loadu_si512(q + 64));
    c = _mm512_add_epi64(c, _mm512_loadu_si512(q + 128));
    d = _mm512_add_epi64(d, _mm512_loadu_si512(q + 192));
  }
  return (uint64_t)_mm512_reduce_add_epi64(_mm512_add_epi64(_mm512_add_epi64(a, b), _mm512_add_epi64(c, d)));
}
/* n a multiple of 128 */
__attribute__((target("avx2"))) static uint64_t probe_sum_256(const uint8_t *p, size_t n) {
  __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
  for (const uint8_t *q = p, *e = p + n; q < e; q += 128) {
    a = _mm256_add_epi64(a, _mm256_loadu_si256((const __m256i *)q));
    b = _mm256_add_epi64(b, _mm256_loadu_si256((const __m256i *)(q + 32)));
    c = _mm256_add_epi64(c, _mm256_loadu_si256((const __m256i *)(q + 64)));
    d = _mm256_add_epi64(d, _mm256_loadu_si256((const __m256i *)(q + 96)));
  }
  a = _mm256_add_epi64(_mm256_add_epi64(a, b), _mm256_add_epi64(c, d));
  return (uint64_t)_mm256_extract_epi64(a, 0) + (uint64_t)_mm256_extract_epi64(a, 1) + (uint64_t)_mm256_extract_epi64(a, 2) +
         (uint64_t)_mm256_extract_epi64(a, 3);
}
#endif

/* Σ of the 64-bit words of p[0, n) (n a multiple of 8) with the widest loads use_simd allows */
static uint64_t probe_sum(const uint8_t *p, size_t n) {
  size_t i = 0;
  uint64_t s = 0;
#if defined(__x86_64__) && defined(__GNUC__)
  if (use_simd >= 2) i = n & ~(size_t)255, s = probe_sum_512(p, i);
  else if (use_simd == 1) i = n & ~(size_t)127, s = probe_sum_256(p, i);
#endif
  uint64_t w[4] = {0, 0, 0, 0}; /* the portable loop: the compiler vectorizes it with the baseline ISA */
  for (; i + 32 <= n; i += 32)
    for (int k = 0; k < 4; k++) {
      uint64_t v;
      memcpy(&v, p + i + 8 * k, 8);
      w[k] += v;
    }
  for (; i + 8 <= n; i += 8) {
    uint64_t v;
    memcpy(&v, p + i, 8);
    w[0] += v;
  }
  return s + w[0] + w[1] + w[2] + w[3];
}

static void probe_task(void *vp, int ith, int nth) {
  probe_job *j = vp;
  /* contiguous parts, boundaries on 64-byte lines */
  const size_t per = ((j->n + (size_t)nth - 1) / (size_t)nth + 63) & ~(size_t)63;
  const size_t b0 = per * (size_t)ith < j->n ? per * (size_t)ith : j->n, b1 = b0 + per < j->n ? b0 + per : j->n;
  j->sums[ith] = probe_sum(j->p + b0, (b1 - b0) & ~(size_t)7);
}

uint64_t mk_read_probe(const uint8_t *p, size_t n, int nth) {
  probe_job j;
  j.p = p;
  j.n = n;
  memset(j.sums, 0, sizeof j.sums);
  mk_pool_run(probe_task, &j, nth);
  uint64_t s = 0;
  for (int i = 0; i < 256; i++) s += j.sums[i];
  return s;
}

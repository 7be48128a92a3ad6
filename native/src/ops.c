/*
 * Op drivers: activation conversion, work partitioning over the thread pool, and the MoE
 * expert grouping (ggml mul_mat_id). Per-type math lives in kernels_scalar.c / kernels_avx2.c.
 */
#include "ops.h"
#include "ggml_compat.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "pool.h"

float mk_avx2_dot_f16(int n, const uint16_t *a, const uint16_t *b);

static const int kTypes[] = {T_F32, T_F16, T_BF16, T_Q8_0, T_Q4_0, T_Q4_K, T_Q5_K, T_Q6_K};
#define NTYPES ((int)(sizeof kTypes / sizeof kTypes[0]))
static mk_type_ops scalar_ops[NTYPES], simd_ops[NTYPES];
static int has_avx2, use_simd;

void mk_ops_init(void) {
  mk_init_tables();
  mkc_init();
  has_avx2 = mk_cpu_has_avx2();
  for (int i = 0; i < NTYPES; i++) {
    mk_scalar_fill(kTypes[i], &scalar_ops[i]);
    simd_ops[i] = scalar_ops[i];
    if (has_avx2) mk_avx2_fill(kTypes[i], &simd_ops[i]);
  }
  const char *e = getenv("MOEKIT_NO_SIMD");
  use_simd = has_avx2 && !(e && *e && strcmp(e, "0") != 0);
}

void mk_set_simd(int on) { use_simd = on && has_avx2; }
int mk_simd_active(void) { return use_simd; }

const mk_type_ops *mk_ops(int type, int simd) {
  for (int i = 0; i < NTYPES; i++)
    if (kTypes[i] == type) return simd ? &simd_ops[i] : &scalar_ops[i];
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

/* ---- matmul ---------------------------------------------------------------------------- */

/*
 * y[t, r] for r in [r0, r1), all t. Token tiles outer, rows inner: a chunk's weight rows stay
 * in cache while every tile of tokens passes over them, so weights stream from memory once.
 */
static void rows_times_tokens(const mk_type_ops *o, const uint8_t *w, size_t wrow, int r0, int r1,
                              const uint8_t *act, size_t arow, int T, int K, float *y, size_t ystride) {
  float s[MK_TILE];
  for (int t0 = 0; t0 < T; t0 += MK_TILE) {
    const int nt = imin(MK_TILE, T - t0);
    const uint8_t *a = act + (size_t)t0 * arow;
    for (int r = r0; r < r1; r++) {
      o->dot(K, w + (size_t)r * wrow, a, arow, nt, s);
      for (int t = 0; t < nt; t++) y[(size_t)(t0 + t) * ystride + r] = s[t];
    }
  }
}

typedef struct {
  const mk_type_ops *o;
  const uint8_t *w, *act;
  size_t wrow, arow;
  float *y;
  int T, N, K, chunk, nchunks;
  _Atomic int next;
  int f32_exact; /* F32 weights: sum in llama.cpp's order (ggml_compat.c), -1 = off */
} matmul_job;

static void matmul_task(void *vp, int ith, int nth) {
  (void)ith; (void)nth;
  matmul_job *j = vp;
  for (int c; (c = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < j->nchunks;) {
    const int r0 = c * j->chunk, r1 = imin(j->N, r0 + j->chunk);
    if (j->f32_exact >= 0) {
      const float *w = (const float *)j->w, *x = (const float *)j->act;
      for (int t = 0; t < j->T; t++)
        for (int r = r0; r < r1; r++)
          j->y[(size_t)t * j->N + r] = mkc_dot_f32(w + (size_t)r * j->K, x + (size_t)t * j->K, j->K, j->f32_exact);
    } else {
      rows_times_tokens(j->o, j->w, j->wrow, r0, r1, j->act, j->arow, j->T, j->K, j->y, (size_t)j->N);
    }
  }
}

/* Rows per work item: a few items per thread for balance, small enough for L1/L2 reuse. */
static int row_chunk(int N, int T, int nth) {
  if (T == 1) {
    int c = N / (nth * 8);
    return c < 16 ? 16 : c;
  }
  return 16;
}

static void convert_rows(const mk_type_ops *o, const float *x, int T, int K, uint8_t *dst, size_t arow) {
  for (int t = 0; t < T; t++) o->quant_act(x + (size_t)t * K, dst + (size_t)t * arow, K);
}

void mk_matmul(float *y, const float *x, const uint8_t *w, int type, int T, int N, int K, int nth) {
  const mk_type_ops *o = mk_ops(type, use_simd);
  const size_t arow = mk_row_bytes(o->vec_dot_type, K);
  const uint8_t *act;
  if (o->vec_dot_type == T_F32) {
    act = (const uint8_t *)x;
  } else {
    uint8_t *buf = scratch(arow * (size_t)T);
    convert_rows(o, x, T, K, buf, arow);
    act = buf;
  }
  matmul_job j = {o, w, act, mk_row_bytes(type, K), arow, y, T, N, K, 0, 0, 0, -1};
  if (type == T_F32) j.f32_exact = mkc_f32_sgemm(N, K, T);
  j.chunk = row_chunk(N, T, nth);
  j.nchunks = (N + j.chunk - 1) / j.chunk;
  atomic_init(&j.next, 0);
  mk_pool_run(matmul_task, &j, imin(nth, j.nchunks));
}

/* ---- MoE FFN (tokens grouped by expert, like ggml mul_mat_id) --------------------------- */

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
  int *item_e, *item_r0;            /* work items: (expert, first row) */
  int nitems, rows_per_item, S;
  _Atomic int next;
} moe_job;

static void moe_gate_up_task(void *vp, int ith, int nth) {
  (void)ith; (void)nth;
  moe_job *j = vp;
  const mk_moe_args *a = j->a;
  const size_t g_exp = j->g_row * (size_t)a->F, u_exp = j->u_row * (size_t)a->F;
  float sg[MK_TILE], su[MK_TILE];
  for (int it; (it = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < j->nitems;) {
    const int e = j->item_e[it], r0 = j->item_r0[it], r1 = imin(a->F, r0 + j->rows_per_item);
    const uint8_t *gw = a->gate + (size_t)e * g_exp, *uw = a->up + (size_t)e * u_exp;
    const int s0 = j->offset[e], s1 = s0 + j->count[e];
    for (int t0 = s0; t0 < s1; t0 += MK_TILE) {
      const int nt = imin(MK_TILE, s1 - t0);
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
}

static void moe_quant_h_task(void *vp, int ith, int nth) {
  moe_job *j = vp;
  const int F = j->a->F;
  for (int s = ith; s < j->S; s += nth) j->od->quant_act(j->h + (size_t)s * F, j->hq + (size_t)s * j->h_arow, F);
}

static void moe_down_task(void *vp, int ith, int nth) {
  (void)ith; (void)nth;
  moe_job *j = vp;
  const mk_moe_args *a = j->a;
  const size_t d_exp = j->d_row * (size_t)a->D;
  for (int it; (it = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < j->nitems;) {
    const int e = j->item_e[it], r0 = j->item_r0[it], r1 = imin(a->D, r0 + j->rows_per_item);
    const int s0 = j->offset[e];
    rows_times_tokens(j->od, a->down + (size_t)e * d_exp, j->d_row, r0, r1, j->hq + (size_t)s0 * j->h_arow,
                      j->h_arow, j->count[e], a->F, j->ye + (size_t)s0 * a->D, (size_t)a->D);
  }
}

/* out[t] = Σ_j w[t,j]·y_j in slot order: ggml_mul by the weights, then a chain of ggml_add. */
static void moe_combine_task(void *vp, int ith, int nth) {
  moe_job *j = vp;
  const mk_moe_args *a = j->a;
  const int D = a->D;
  const int parts = (D + 255) / 256;
  for (int it = ith; it < a->T * parts; it += nth) {
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
}

static void build_items(moe_job *j, int rows, int rows_per_item) {
  const mk_moe_args *a = j->a;
  j->nitems = 0;
  j->rows_per_item = rows_per_item;
  for (int e = 0; e < a->E; e++) {
    if (j->count[e] == 0) continue;
    for (int r = 0; r < rows; r += rows_per_item) {
      j->item_e[j->nitems] = e;
      j->item_r0[j->nitems] = r;
      j->nitems++;
    }
  }
  atomic_store(&j->next, 0);
}

static int moe_rows_per_item(int rows, int nactive, int S, int nth) {
  /* decode: enough items for balance; prompt: small blocks so tokens reuse cached rows */
  if (S <= nactive) {
    int c = rows * nactive / (nth * 16);
    if (c < 16) c = 16;
    return c > rows ? rows : c;
  }
  return 16;
}

void mk_moe_ffn(const mk_moe_args *a, int nth) {
  moe_job j;
  memset(&j, 0, sizeof j);
  j.a = a;
  j.og = mk_ops(a->gate_type, use_simd);
  j.ou = mk_ops(a->up_type, use_simd);
  j.od = mk_ops(a->down_type, use_simd);
  j.g_row = mk_row_bytes(a->gate_type, a->D);
  j.u_row = mk_row_bytes(a->up_type, a->D);
  j.d_row = mk_row_bytes(a->down_type, a->F);
  j.g_arow = mk_row_bytes(j.og->vec_dot_type, a->D);
  j.u_arow = mk_row_bytes(j.ou->vec_dot_type, a->D);
  j.h_arow = mk_row_bytes(j.od->vec_dot_type, a->F);
  const int TK = a->T * a->K;
  const int same_act = j.og->vec_dot_type == j.ou->vec_dot_type;

  /* sizes */
  const size_t n_items_max = (size_t)a->E * (size_t)((a->F > a->D ? a->F : a->D) / 16 + 1);
  size_t off = 0;
  const size_t o_count = off; off += align64(sizeof(int) * (size_t)a->E * 2);
  const size_t o_slot = off; off += align64(sizeof(int) * (size_t)TK);
  const size_t o_items = off; off += align64(sizeof(int) * n_items_max * 2);
  const size_t o_xt = off; off += align64(j.g_arow * (size_t)a->T) + (same_act ? 0 : align64(j.u_arow * (size_t)a->T));
  const size_t o_xg = off; off += align64(j.g_arow * (size_t)TK) + (same_act ? 0 : align64(j.u_arow * (size_t)TK));
  const size_t o_h = off; off += align64(sizeof(float) * (size_t)TK * a->F);
  const size_t o_hq = off; off += align64(j.h_arow * (size_t)TK);
  const size_t o_ye = off; off += align64(sizeof(float) * (size_t)TK * a->D);
  uint8_t *base = scratch(off);

  j.count = (int *)(base + o_count);
  j.offset = j.count + a->E;
  j.slot_of = (int *)(base + o_slot);
  j.item_e = (int *)(base + o_items);
  j.item_r0 = j.item_e + n_items_max;
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
    build_items(&j, a->F, moe_rows_per_item(a->F, nactive, j.S, nth));
    mk_pool_run(moe_gate_up_task, &j, imin(nth, j.nitems));
    mk_pool_run(moe_quant_h_task, &j, imin(nth, j.S));
    build_items(&j, a->D, moe_rows_per_item(a->D, nactive, j.S, nth));
    mk_pool_run(moe_down_task, &j, imin(nth, j.nitems));
  }
  mk_pool_run(moe_combine_task, &j, imin(nth, a->T * ((a->D + 255) / 256)));
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
  float *work; /* per thread: acc [Dh] + q16 [Dh] */
  size_t work_floats;
  _Atomic int next;
} attn_job;

static void attn_task(void *vp, int ith, int nth) {
  (void)nth;
  attn_job *j = vp;
  const int f16acc = j->T < ATTN_F16_MAX_T;
  float *acc = j->work + (size_t)ith * j->work_floats;
  uint16_t *q16 = (uint16_t *)(acc + j->Dh);
  const int group = j->H / j->Hkv, Dh = j->Dh;
  const size_t kv_row = (size_t)j->Hkv * Dh;
  for (int it; (it = atomic_fetch_add_explicit(&j->next, 1, memory_order_relaxed)) < j->T * j->H;) {
    const int t = it / j->H, h = it % j->H, hk = h / group;
    const int n = j->pos0 + t + 1; /* causal: keys 0 .. pos0+t */
    const float *q = j->q + ((size_t)t * j->H + h) * Dh;
    float *o = j->out + ((size_t)t * j->H + h) * Dh;
    const uint16_t *k = j->k + (size_t)hk * Dh, *v = j->v + (size_t)hk * Dh;
    if (f16acc) mkc_attn_one_chunk(o, q, k, v, kv_row, n, Dh, j->scale, acc, q16);
    else mkc_attn_tiled(o, q, k, v, kv_row, n, Dh, j->scale, acc);
  }
}

void mk_attention(float *out, const float *q, const uint16_t *k, const uint16_t *v, int T, int pos0, int H,
                  int Hkv, int Dh, float scale, int nth) {
  attn_job j = {out, q, k, v, T, pos0, H, Hkv, Dh, scale, NULL, 0, 0};
  j.work_floats = align64(sizeof(float) * (size_t)Dh * 2) / sizeof(float);
  const int n = imin(nth, T * H);
  j.work = scratch(sizeof(float) * j.work_floats * (size_t)(n < 1 ? 1 : n));
  atomic_init(&j.next, 0);
  mk_pool_run(attn_task, &j, n);
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

static void probe_task(void *vp, int ith, int nth) {
  probe_job *j = vp;
  const size_t words = j->n / 8, per = (words + nth - 1) / nth;
  const size_t w0 = per * ith, w1 = w0 + per < words ? w0 + per : words;
  const uint64_t *q = (const uint64_t *)j->p;
  uint64_t a0 = 0, a1 = 0, a2 = 0, a3 = 0;
  size_t i = w0;
  for (; i + 4 <= w1; i += 4) { /* every word: the compiler vectorizes this into wide loads */
    a0 += q[i]; a1 += q[i + 1]; a2 += q[i + 2]; a3 += q[i + 3];
  }
  j->sums[ith] = a0 + a1 + a2 + a3;
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

/*
 * f32 training kernels (see train.h). The GEMM is the classic register-blocked outer-product
 * form (BLIS / llm.c's matmul_forward idea): a tile of MR rows × NR columns of C stays in
 * registers while k runs over a block of KC, each step one broadcast of A per row and NR/16 (or
 * NR/8) vector loads of B. Every C element is one sequential FMA chain over k, stored and reloaded
 * between k blocks, so the result does not depend on the tiling or the thread count.
 * B is packed per (column panel, k block) into contiguous sub-panels (no cache-set aliasing from
 * large row strides; a transposed B is transposed by the packing); A is read in place through its
 * strides, so a transposed A costs nothing.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "common.h"
#include "ops.h"
#include "pool.h"
#include "train.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_X86 1
#define AI __attribute__((always_inline)) inline
#define T512 __attribute__((target("avx512f,avx2,fma")))
#define T256 __attribute__((target("avx2,fma")))
#endif

/* the plain-C loops below (axpys) are compiled for AVX2 as well, chosen at load time */
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define CLONES __attribute__((target_clones("avx2", "default")))
#else
#define CLONES
#endif

#define MR 6
#define KC 256
#define NP 128 /* columns per work item (a packed B panel is KC × NP floats) */
#define RC 16  /* row tiles per work item */

typedef struct {
  float *C;
  const float *A, *B;
  int M, N, K;
  long sai, sak; /* A(i, k) = A[i*sai + k*sak] */
  int transB;    /* B stored [N, K] */
  int acc;
  int nr;        /* columns per tile: 32 (AVX-512), 16 (AVX2), 8 (scalar) */
  int nrc, npn;  /* row chunks (RC tiles of MR rows) and column panels (NP columns) */
  float *pack;   /* per thread: KC × NP */
} gemm_job;

/* One tile: C[i0.., j0..] (rows mr ≤ MR, columns nc ≤ nr) (+)= A rows · b, where b is the packed
 * sub-panel: kc rows of nr contiguous floats (zero beyond nc). */
typedef struct {
  float *c;
  long ldc;
  const float *a;
  long sai, sak;
  const float *b;
  int mr, nc, kc, load;
} tile_args;

static void tile_scalar(const tile_args *t, int nr) {
  for (int r = 0; r < t->mr; r++)
    for (int c = 0; c < t->nc; c++) {
      float *cp = t->c + r * t->ldc + c;
      float s = t->load ? *cp : 0.0f;
      for (int k = 0; k < t->kc; k++) s = fmaf(t->a[r * t->sai + k * t->sak], t->b[(long)k * nr + c], s);
      *cp = s;
    }
}

#ifdef HAVE_X86
static AI T512 void tile512_impl(const tile_args *t, const int mr) {
  const int nc = t->nc;
  const __mmask16 m0 = nc >= 16 ? 0xffff : (__mmask16)((1u << nc) - 1);
  const __mmask16 m1 = nc >= 32 ? 0xffff : nc <= 16 ? 0 : (__mmask16)((1u << (nc - 16)) - 1);
  __m512 c0[MR], c1[MR];
  for (int r = 0; r < mr; r++) {
    float *cp = t->c + r * t->ldc;
    c0[r] = t->load ? _mm512_maskz_loadu_ps(m0, cp) : _mm512_setzero_ps();
    c1[r] = t->load ? _mm512_maskz_loadu_ps(m1, cp + 16) : _mm512_setzero_ps();
  }
  const float *a = t->a, *b = t->b;
  const long sai = t->sai, sak = t->sak;
  for (int k = 0; k < t->kc; k++) {
    const __m512 b0 = _mm512_loadu_ps(b), b1 = _mm512_loadu_ps(b + 16);
    for (int r = 0; r < mr; r++) {
      const __m512 av = _mm512_set1_ps(a[r * sai]);
      c0[r] = _mm512_fmadd_ps(av, b0, c0[r]);
      c1[r] = _mm512_fmadd_ps(av, b1, c1[r]);
    }
    a += sak;
    b += 32;
  }
  for (int r = 0; r < mr; r++) {
    float *cp = t->c + r * t->ldc;
    _mm512_mask_storeu_ps(cp, m0, c0[r]);
    _mm512_mask_storeu_ps(cp + 16, m1, c1[r]);
  }
}

static T512 void tile512(const tile_args *t) {
  switch (t->mr) { /* constant row counts so the accumulators stay in registers */
    case 6: tile512_impl(t, 6); break;
    case 5: tile512_impl(t, 5); break;
    case 4: tile512_impl(t, 4); break;
    case 3: tile512_impl(t, 3); break;
    case 2: tile512_impl(t, 2); break;
    default: tile512_impl(t, 1); break;
  }
}

static AI T256 __m256i mask8(int n) {
  const __m256i idx = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
  return _mm256_cmpgt_epi32(_mm256_set1_epi32(n), idx);
}

static AI T256 void tile256_impl(const tile_args *t, const int mr) {
  const __m256i m0 = mask8(t->nc), m1 = mask8(t->nc - 8);
  __m256 c0[MR], c1[MR];
  for (int r = 0; r < mr; r++) {
    float *cp = t->c + r * t->ldc;
    c0[r] = t->load ? _mm256_maskload_ps(cp, m0) : _mm256_setzero_ps();
    c1[r] = t->load ? _mm256_maskload_ps(cp + 8, m1) : _mm256_setzero_ps();
  }
  const float *a = t->a, *b = t->b;
  const long sai = t->sai, sak = t->sak;
  for (int k = 0; k < t->kc; k++) {
    const __m256 b0 = _mm256_loadu_ps(b), b1 = _mm256_loadu_ps(b + 8);
    for (int r = 0; r < mr; r++) {
      const __m256 av = _mm256_broadcast_ss(a + r * sai);
      c0[r] = _mm256_fmadd_ps(av, b0, c0[r]);
      c1[r] = _mm256_fmadd_ps(av, b1, c1[r]);
    }
    a += sak;
    b += 16;
  }
  for (int r = 0; r < mr; r++) {
    float *cp = t->c + r * t->ldc;
    _mm256_maskstore_ps(cp, m0, c0[r]);
    _mm256_maskstore_ps(cp + 8, m1, c1[r]);
  }
}

static T256 void tile256(const tile_args *t) {
  switch (t->mr) {
    case 6: tile256_impl(t, 6); break;
    case 5: tile256_impl(t, 5); break;
    case 4: tile256_impl(t, 4); break;
    case 3: tile256_impl(t, 3); break;
    case 2: tile256_impl(t, 2); break;
    default: tile256_impl(t, 1); break;
  }
}
#endif

static void gemm_task(void *arg, int ith, int nth) {
  const gemm_job *j = arg;
  const int nr = j->nr;
  float *pack = j->pack + (long)ith * KC * NP;
  const int items = j->nrc * j->npn;
  /* contiguous ranges of (column panel, row chunk) items */
  const int lo = (int)((long)items * ith / nth), hi = (int)((long)items * (ith + 1) / nth);
  for (int it = lo; it < hi; it++) {
    const int p0 = (it / j->nrc) * NP, pw = j->N - p0 < NP ? j->N - p0 : NP;
    const int r0 = (it % j->nrc) * RC * MR, rend = j->M - r0 < RC * MR ? j->M : r0 + RC * MR;
    const int nsub = (pw + nr - 1) / nr;
    for (int k0 = 0; k0 < j->K; k0 += KC) {
      const int kc = j->K - k0 < KC ? j->K - k0 : KC;
      /* pack B[k0.., p0..] as nsub sub-panels of kc rows × nr floats (zero-padded) */
      for (int sp = 0; sp < nsub; sp++) {
        const int c0 = sp * nr, nc = pw - c0 < nr ? pw - c0 : nr;
        float *dst = pack + (long)sp * kc * nr;
        if (j->transB) { /* B(k, n) = B[n*K + k]: the packing is the transpose */
          if (nc < nr) memset(dst, 0, sizeof(float) * kc * nr);
          for (int c = 0; c < nc; c++) {
            const float *src = j->B + (long)(p0 + c0 + c) * j->K + k0;
            for (int k = 0; k < kc; k++) dst[(long)k * nr + c] = src[k];
          }
        } else {
          for (int k = 0; k < kc; k++) {
            memcpy(dst + (long)k * nr, j->B + (long)(k0 + k) * j->N + p0 + c0, sizeof(float) * nc);
            if (nc < nr) memset(dst + (long)k * nr + nc, 0, sizeof(float) * (nr - nc));
          }
        }
      }
      for (int i0 = r0; i0 < rend; i0 += MR) {
        for (int sp = 0; sp < nsub; sp++) {
          const int c0 = sp * nr;
          tile_args t = {
            .c = j->C + (long)i0 * j->N + p0 + c0, .ldc = j->N,
            .a = j->A + (long)i0 * j->sai + (long)k0 * j->sak, .sai = j->sai, .sak = j->sak,
            .b = pack + (long)sp * kc * nr,
            .mr = rend - i0 < MR ? rend - i0 : MR, .nc = pw - c0 < nr ? pw - c0 : nr, .kc = kc,
            .load = j->acc || k0 > 0,
          };
#ifdef HAVE_X86
          if (nr == 32) tile512(&t);
          else if (nr == 16) tile256(&t);
          else
#endif
            tile_scalar(&t, nr);
        }
      }
    }
  }
}

static int imin(int a, int b) { return a < b ? a : b; }

void mk_train_gemm(float *C, const float *A, const float *B, int M, int N, int K, int transA, int transB,
                   int accumulate, int nth) {
  const int level = mk_simd_level();
  gemm_job j = {
    .C = C, .A = A, .B = B, .M = M, .N = N, .K = K,
    .sai = transA ? 1 : K, .sak = transA ? M : 1, .transB = transB, .acc = accumulate,
    .nr = level >= 2 ? 32 : level == 1 ? 16 : 8,
  };
  j.nrc = (M + RC * MR - 1) / (RC * MR);
  j.npn = (N + NP - 1) / NP;
  const long flops = 2L * M * N * K;
  const int n = imin(flops < (1L << 18) ? 1 : nth, j.nrc * j.npn);
  j.pack = malloc(sizeof(float) * (size_t)KC * NP * n);
  if (!j.pack) abort();
  mk_pool_run(gemm_task, &j, n);
  free(j.pack);
}

/* ---- cross-entropy ------------------------------------------------------------------------------ */

typedef struct {
  float *logits;
  const int32_t *targets;
  float *loss;
  int T, V;
} xent_job;

/* One row: row ← exp(row − max) (not yet normalised); returns Σ. */
static double exp_row_scalar(float *row, int V, float mx) {
  double sum = 0;
  for (int v = 0; v < V; v++) {
    row[v] = expf(row[v] - mx);
    sum += row[v];
  }
  return sum;
}

#ifdef HAVE_X86
/* e^x for x ≤ 0, 16 lanes: x = n·ln2 + r with |r| ≤ ln2/2, e^r by its degree-7 Taylor polynomial
 * (relative error < 1e-8 before rounding), then ×2^n with vscalefps (which also underflows cleanly). */
static AI T512 __m512 exp512_neg(__m512 x) {
  x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
  const __m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
  __m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);   /* ln2 split in two: hi has */
  r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606820309417e-06f), r);     /* few bits, so n·hi is exact */
  __m512 p = _mm512_set1_ps(1.0f / 5040);
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
  return _mm512_scalef_ps(p, n);
}

static T512 float max_row512(const float *row, int V) {
  __m512 m = _mm512_set1_ps(-INFINITY);
  int v = 0;
  for (; v + 16 <= V; v += 16) m = _mm512_max_ps(m, _mm512_loadu_ps(row + v));
  if (v < V) m = _mm512_mask_max_ps(m, (__mmask16)((1u << (V - v)) - 1), m, _mm512_maskz_loadu_ps((__mmask16)((1u << (V - v)) - 1), row + v));
  return _mm512_reduce_max_ps(m);
}

static T512 double exp_row512(float *row, int V, float mx) {
  const __m512 vm = _mm512_set1_ps(mx);
  __m512 acc = _mm512_setzero_ps();
  int v = 0;
  for (; v + 16 <= V; v += 16) {
    const __m512 e = exp512_neg(_mm512_sub_ps(_mm512_loadu_ps(row + v), vm));
    _mm512_storeu_ps(row + v, e);
    acc = _mm512_add_ps(acc, e);
  }
  double sum = _mm512_reduce_add_ps(acc);
  return sum + exp_row_scalar(row + v, V - v, mx);
}
#endif

static void xent_task(void *arg, int ith, int nth) {
  const xent_job *j = arg;
  const int lo = (int)((long)j->T * ith / nth), hi = (int)((long)j->T * (ith + 1) / nth);
#ifdef HAVE_X86
  const int wide = mk_simd_level() >= 2;
#endif
  for (int t = lo; t < hi; t++) {
    float *row = j->logits + (long)t * j->V;
    const float lt = row[j->targets[t]];
    float mx = -INFINITY;
    double sum;
#ifdef HAVE_X86
    if (wide) {
      mx = max_row512(row, j->V);
      sum = exp_row512(row, j->V, mx);
    } else
#endif
    {
      for (int v = 0; v < j->V; v++) mx = row[v] > mx ? row[v] : mx;
      sum = exp_row_scalar(row, j->V, mx);
    }
    const float inv = (float)(1.0 / sum);
    for (int v = 0; v < j->V; v++) row[v] *= inv;
    j->loss[t] = (float)(log(sum) + mx - lt);
  }
}

void mk_train_xent(float *logits, const int32_t *targets, float *loss, int T, int V, int nth) {
  xent_job j = {logits, targets, loss, T, V};
  mk_pool_run(xent_task, &j, imin(nth, T));
}

/* ---- causal attention, one (sequence, head) per work item --------------------------------------- */

typedef struct {
  float *out, *att, *dq, *dk, *dv;
  const float *q, *k, *v, *dout, *attc;
  int B, S, H, Dh;
  float *scratch; /* per thread: kᵀ and vᵀ [Dh, S] + a row of S */
  long scratch_per;
} attn_job;

/* xt[d, j] = x[(b·S + j)·C + h·Dh + d] */
static void gather_t(float *xt, const float *x, int b, int h, const attn_job *j) {
  const long C = (long)j->H * j->Dh;
  for (int s = 0; s < j->S; s++) {
    const float *src = x + ((long)b * j->S + s) * C + (long)h * j->Dh;
    for (int d = 0; d < j->Dh; d++) xt[(long)d * j->S + s] = src[d];
  }
}

/* row[0..n) = Σ_d a[d]·xt[d, 0..n) (an axpy per d, so it vectorizes without reassociation) */
CLONES static void row_dots(float *row, const float *a, const float *xt, int n, int Dh, int S) {
  for (int s = 0; s < n; s++) row[s] = 0;
  for (int d = 0; d < Dh; d++) {
    const float ad = a[d];
    const float *x = xt + (long)d * S;
    for (int s = 0; s < n; s++) row[s] += ad * x[s];
  }
}

CLONES static void attn_fwd_task(void *arg, int ith, int nth) {
  const attn_job *j = arg;
  const int S = j->S, Dh = j->Dh;
  const long C = (long)j->H * Dh;
  const float scale = 1.0f / sqrtf((float)Dh);
  float *kt = j->scratch + j->scratch_per * ith, *row = kt + (long)Dh * S;
  for (int it = ith; it < j->B * j->H; it += nth) {
    const int b = it / j->H, h = it % j->H;
    gather_t(kt, j->k, b, h, j);
    for (int i = 0; i < S; i++) {
      const float *qi = j->q + ((long)b * S + i) * C + (long)h * Dh;
      row_dots(row, qi, kt, i + 1, Dh, S);
      float mx = -INFINITY;
      for (int s = 0; s <= i; s++) {
        row[s] *= scale;
        mx = row[s] > mx ? row[s] : mx;
      }
      double sum = 0;
      for (int s = 0; s <= i; s++) {
        row[s] = expf(row[s] - mx);
        sum += row[s];
      }
      const float inv = (float)(1.0 / sum);
      float *ai = j->att + (((long)b * j->H + h) * S + i) * S;
      for (int s = 0; s <= i; s++) ai[s] = row[s] * inv;
      for (int s = i + 1; s < S; s++) ai[s] = 0;
      float *oi = j->out + ((long)b * S + i) * C + (long)h * Dh;
      for (int d = 0; d < Dh; d++) oi[d] = 0;
      for (int s = 0; s <= i; s++) {
        const float p = ai[s];
        const float *vs = j->v + ((long)b * S + s) * C + (long)h * Dh;
        for (int d = 0; d < Dh; d++) oi[d] += p * vs[d];
      }
    }
  }
}

CLONES static void attn_bwd_task(void *arg, int ith, int nth) {
  const attn_job *j = arg;
  const int S = j->S, Dh = j->Dh;
  const long C = (long)j->H * Dh;
  const float scale = 1.0f / sqrtf((float)Dh);
  float *vt = j->scratch + j->scratch_per * ith, *dp = vt + (long)Dh * S;
  for (int it = ith; it < j->B * j->H; it += nth) {
    const int b = it / j->H, h = it % j->H;
    gather_t(vt, j->v, b, h, j);
    for (int i = 0; i < S; i++) {
      const long qo = ((long)b * S + i) * C + (long)h * Dh;
      const float *doi = j->dout + qo, *qi = j->q + qo;
      const float *ai = j->attc + (((long)b * j->H + h) * S + i) * S;
      row_dots(dp, doi, vt, i + 1, Dh, S); /* dp_s = dout_i · v_s */
      double pdp = 0;
      for (int s = 0; s <= i; s++) pdp += (double)ai[s] * dp[s];
      float *dqi = j->dq + qo;
      for (int s = 0; s <= i; s++) {
        const long so = ((long)b * S + s) * C + (long)h * Dh;
        const float p = ai[s];
        float *dvs = j->dv + so, *dks = j->dk + so;
        for (int d = 0; d < Dh; d++) dvs[d] += p * doi[d];
        const float ds = p * (dp[s] - (float)pdp) * scale;
        if (ds == 0) continue;
        const float *ks = j->k + so;
        for (int d = 0; d < Dh; d++) {
          dqi[d] += ds * ks[d];
          dks[d] += ds * qi[d];
        }
      }
    }
  }
}

static void attn_run(attn_job *j, mk_task_fn fn, int nth) {
  const int n = imin(nth, j->B * j->H);
  j->scratch_per = ((long)j->Dh + 1) * j->S + 16;
  j->scratch = malloc(sizeof(float) * (size_t)j->scratch_per * n);
  if (!j->scratch) abort();
  mk_pool_run(fn, j, n);
  free(j->scratch);
}

void mk_train_attn_fwd(float *out, float *att, const float *q, const float *k, const float *v, int B, int S, int H,
                       int Dh, int nth) {
  attn_job j = {.out = out, .att = att, .q = q, .k = k, .v = v, .B = B, .S = S, .H = H, .Dh = Dh};
  attn_run(&j, attn_fwd_task, nth);
}

void mk_train_attn_bwd(float *dq, float *dk, float *dv, const float *dout, const float *q, const float *k,
                       const float *v, const float *att, int B, int S, int H, int Dh, int nth) {
  attn_job j = {.dq = dq, .dk = dk, .dv = dv, .dout = dout, .q = q, .k = k, .v = v, .attc = att,
                .B = B, .S = S, .H = H, .Dh = Dh};
  attn_run(&j, attn_bwd_task, nth);
}

/* ---- AdamW --------------------------------------------------------------------------------------- */

typedef struct {
  float *p, *m, *v;
  const float *g;
  long n;
  double b1, b2, eps, step, bc2, decay; /* step = lr / bc1 */
} adamw_job;

/* The TypeScript step's exact arithmetic (double intermediates, f32 stores, same order, no contraction:
 * the build uses -ffp-contract=off), so native and TypeScript runs give identical weights. */
static void adamw_task(void *arg, int ith, int nth) {
  const adamw_job *j = arg;
  const long lo = j->n * ith / nth, hi = j->n * (ith + 1) / nth;
  for (long i = lo; i < hi; i++) {
    const double g = j->g[i];
    j->m[i] = (float)(j->b1 * j->m[i] + (1 - j->b1) * g);
    j->v[i] = (float)(j->b2 * j->v[i] + (1 - j->b2) * g * g);
    j->p[i] = (float)(j->p[i] * j->decay - j->step * (j->m[i] / (sqrt((double)j->v[i]) / j->bc2 + j->eps)));
  }
}

void mk_train_adamw(float *p, const float *g, float *m, float *v, long n, double b1, double b2, double eps,
                    double step, double bc2, double decay, int nth) {
  adamw_job j = {p, m, v, g, n, b1, b2, eps, step, bc2, decay};
  mk_pool_run(adamw_task, &j, n < 65536 ? 1 : nth);
}

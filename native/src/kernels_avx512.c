/*
 * AVX-512 (F/VL/BW/VNNI) kernels, compiled with target attributes and chosen at run time
 * (mk_cpu_has_avx512). They use 256-bit vectors with the EVEX encoding (32 registers, vpdpbusd) so
 * the integer lanes and the f32 accumulation order are exactly those of the AVX2 kernels: per block,
 * 8 int32 lanes each summing 4 adjacent products, one f32 FMA of (d_w·d_x) into a per-(row, token)
 * accumulator, one horizontal sum at the end. Results are bit-identical to kernels_avx2.c.
 *
 * Q8_0 tile kernel: up to 4 weight rows × 8 activation rows per pass. Signed × signed via
 * vpdpbusd (unsigned × signed): with x' = x + 128 (x ^ 0x80, in [0, 255]),
 *   Σ x'·w = Σ x·w + 128·Σ w, so the accumulator starts at −128·Σ w (per 4-byte lane, computed
 * once per weight block by vpdpbusd(1, w)) and one vpdpbusd per (row, token) gives Σ x·w exactly.
 */
#include "common.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define TGT5 __attribute__((target("avx512f,avx512vl,avx512bw,avx512vnni,avx2,fma,f16c")))
#define AI __attribute__((always_inline)) inline

int mk_cpu_has_avx512(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c") &&
         __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512vl") &&
         __builtin_cpu_supports("avx512bw") && __builtin_cpu_supports("avx512vnni");
}

static AI TGT5 float hsum_ps5(__m256 v) { /* same operation order as kernels_avx2.c hsum_ps */
  __m128 r = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  r = _mm_add_ps(r, _mm_movehl_ps(r, r));
  r = _mm_add_ss(r, _mm_movehdup_ps(r));
  return _mm_cvtss_f32(r);
}


static AI TGT5 void tile_q8_0_impl(int n, const void *vw, size_t w_stride, const void *act, size_t act_stride,
                                   float *s, size_t s_stride, const int NR, const int NT) {
  __m256 acc[4][4];
  for (int r = 0; r < NR; r++)
    for (int t = 0; t < NT; t++) acc[r][t] = _mm256_setzero_ps();
  const __m256i flip = _mm256_set1_epi8((char)0x80), ones = _mm256_set1_epi8(1);
  const __m256i zero = _mm256_setzero_si256();
  const int nb = n / QK8_0;
  for (int i = 0; i < nb; i++) {
    __m256i xq[4];
    float dx[4];
    for (int t = 0; t < NT; t++) {
      const block_q8_0 *x = (const block_q8_0 *)((const char *)act + (size_t)t * act_stride) + i;
      const __m256i v = _mm256_loadu_si256((const __m256i *)x->qs);
      xq[t] = NT == 1 ? v : _mm256_xor_si256(v, flip);
      dx[t] = f16_to_f32(x->d);
    }
    for (int r = 0; r < NR; r++) {
      const block_q8_0 *w = (const block_q8_0 *)((const char *)vw + (size_t)r * w_stride) + i;
      /* the same block of row r + NR: the next tile's rows (rows of a work item are contiguous, and a
       * 4-row tile cuts the weights into short interleaved streams the hardware prefetcher misses) */
      if ((i & 1) == 0) _mm_prefetch((const char *)w + (size_t)NR * w_stride, _MM_HINT_T0);
      const __m256i qw = _mm256_loadu_si256((const __m256i *)w->qs);
      const float dw = f16_to_f32(w->d);
      if (NT == 1) {
        /* one token: |w| × sign(w)·x (as the AVX2 kernel), one vpdpbusd */
        const __m256i p = _mm256_dpbusd_epi32(zero, _mm256_abs_epi8(qw), _mm256_sign_epi8(xq[0], qw));
        acc[r][0] = _mm256_fmadd_ps(_mm256_set1_ps(dw * dx[0]), _mm256_cvtepi32_ps(p), acc[r][0]);
      } else {
        const __m256i bias = _mm256_sub_epi32(zero, _mm256_slli_epi32(_mm256_dpbusd_epi32(zero, ones, qw), 7));
        for (int t = 0; t < NT; t++) {
          const __m256i p = _mm256_dpbusd_epi32(bias, xq[t], qw);
          acc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * dx[t]), _mm256_cvtepi32_ps(p), acc[r][t]);
        }
      }
    }
  }
  for (int r = 0; r < NR; r++)
    for (int t = 0; t < NT; t++) s[(size_t)t * s_stride + r] = hsum_ps5(acc[r][t]);
}

/*
 * NT >= 2: two tokens per 512-bit vector, [token t0 | token t1] in the low and high 256 bits, the weight
 * block broadcast to both halves. Each 256-bit half does exactly the per-(row, token) operations of the
 * 256-bit kernel (same int32 lanes, same f32 scale dw·dx, same FMA into its own accumulator); only
 * the instruction count per (row, token) halves. An odd NT repeats its last token in the spare half.
 */
static AI TGT5 void tile2_q8_0_impl(int n, const void *vw, size_t w_stride, const void *act, size_t act_stride,
                                    float *s, size_t s_stride, const int NR, const int NT) {
  const int NP = (NT + 1) / 2;
  __m512 acc[4][4];
  for (int r = 0; r < NR; r++)
    for (int p = 0; p < NP; p++) acc[r][p] = _mm512_setzero_ps();
  const __m512i flip = _mm512_set1_epi8((char)0x80), ones = _mm512_set1_epi8(1), zero = _mm512_setzero_si512();
  const int nb = n / QK8_0;
  for (int i = 0; i < nb; i++) {
    __m512i xq[4];
    __m512 dx[4];
    for (int p = 0; p < NP; p++) {
      const int t0 = 2 * p, t1 = 2 * p + 1 < NT ? 2 * p + 1 : t0;
      const block_q8_0 *x0 = (const block_q8_0 *)((const char *)act + (size_t)t0 * act_stride) + i;
      const block_q8_0 *x1 = (const block_q8_0 *)((const char *)act + (size_t)t1 * act_stride) + i;
      const __m512i v = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)x0->qs)),
                                           _mm256_loadu_si256((const __m256i *)x1->qs), 1);
      xq[p] = _mm512_xor_si512(v, flip);
      dx[p] = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(f16_to_f32(x0->d)), _mm512_set1_ps(f16_to_f32(x1->d)));
    }
    for (int r = 0; r < NR; r++) {
      const block_q8_0 *w = (const block_q8_0 *)((const char *)vw + (size_t)r * w_stride) + i;
      if ((i & 1) == 0) _mm_prefetch((const char *)w + (size_t)NR * w_stride, _MM_HINT_T0);
      const __m512i ww = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)w->qs));
      const __m512 dw = _mm512_set1_ps(f16_to_f32(w->d));
      const __m512i bias = _mm512_sub_epi32(zero, _mm512_slli_epi32(_mm512_dpbusd_epi32(zero, ones, ww), 7));
      for (int p = 0; p < NP; p++) {
        const __m512i q = _mm512_dpbusd_epi32(bias, xq[p], ww);
        acc[r][p] = _mm512_fmadd_ps(_mm512_mul_ps(dw, dx[p]), _mm512_cvtepi32_ps(q), acc[r][p]);
      }
    }
  }
  for (int r = 0; r < NR; r++)
    for (int p = 0; p < NP; p++) {
      s[(size_t)(2 * p) * s_stride + r] = hsum_ps5(_mm512_castps512_ps256(acc[r][p]));
      if (2 * p + 1 < NT)
        s[(size_t)(2 * p + 1) * s_stride + r] = hsum_ps5(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[r][p]), 1)));
    }
}

#define TILE_CASE(R, T)                                                                   \
  case (R) * 16 + (T):                                                                    \
    if ((T) == 1) tile_q8_0_impl(n, w, w_stride, act, act_stride, s, s_stride, R, T);       \
    else tile2_q8_0_impl(n, w, w_stride, act, act_stride, s, s_stride, R, T);               \
    break;
#define TILE_ROW(R) TILE_CASE(R, 1) TILE_CASE(R, 2) TILE_CASE(R, 3) TILE_CASE(R, 4) \
                    TILE_CASE(R, 5) TILE_CASE(R, 6) TILE_CASE(R, 7) TILE_CASE(R, 8)

static TGT5 void tile_q8_0(int n, const void *w, size_t w_stride, int nr, const void *act, size_t act_stride,
                           int nt, float *s, size_t s_stride) {
  switch (nr * 16 + nt) {
    TILE_ROW(1) TILE_ROW(2) TILE_ROW(3) TILE_ROW(4)
    default: break;
  }
}

/* The one-row entry point, for callers that do not tile rows. */
static TGT5 void dot_q8_0_512(int n, const void *w, const void *act, size_t act_stride, int nt, float *s) {
  tile_q8_0(n, w, 0, 1, act, act_stride, nt, s, 1);
}

/*
 * Q6_K tile, NT >= 2: two tokens per 512-bit vector as tile2_q8_0 (weight block broadcast to both halves).
 * Each 256-bit half computes exactly the int32 lanes of the AVX2 Q6_K kernel (maddubs, then vpdpwssd in
 * place of madd + add: exact integer sums, so the same lanes), one f32 FMA of dw·dx per block into its own
 * accumulator and one hsum at the end, so results are bit-identical to kernels_avx2.c. NT == 1: tile1_q6_K_impl
 * below (two rows per vector instead). Rows 0 .. NR-1 of vw as stored (T_Q6_K_R16: q6K_r16_tn below).
 */

static AI TGT5 void tile2_q6_K_impl(int n, const void *vw, size_t w_stride, const void *act, size_t act_stride,
                                    float *s, size_t s_stride, const int NR, const int NT) {
  const int NP = (NT + 1) / 2;
  __m512 acc[4][4];
  for (int r = 0; r < NR; r++)
    for (int p = 0; p < NP; p++) acc[r][p] = _mm512_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(0xF), m30 = _mm512_set1_epi8(0x30);
  const __m512i selA = _mm512_set_epi16(1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0,
                                        1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
  const int nb = n / QK_K;
  for (int i = 0; i < nb; i++) {
    const block_q8_K *x0[4], *x1[4];
    __m512 dx[4];
    __m512i bs[4];
    for (int p = 0; p < NP; p++) {
      const int t0 = 2 * p, t1 = 2 * p + 1 < NT ? 2 * p + 1 : t0;
      x0[p] = (const block_q8_K *)((const char *)act + (size_t)t0 * act_stride) + i;
      x1[p] = (const block_q8_K *)((const char *)act + (size_t)t1 * act_stride) + i;
      dx[p] = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(x0[p]->d), _mm512_set1_ps(x1[p]->d));
      bs[p] = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)x0[p]->bsums)),
                                 _mm256_loadu_si256((const __m256i *)x1[p]->bsums), 1);
    }
    for (int r = 0; r < NR; r++) {
      const mk_q6_fields w = mk_q6_at(0, vw, w_stride, nb, r, i);
      /* the same block of the next tile's rows: its 4 lines */
      const mk_q6_fields wn = mk_q6_at(0, vw, w_stride, nb, r + NR, i);
      for (int l = 0; l < 4; l++) _mm_prefetch((const char *)wn.ql + 64 * l, _MM_HINT_T0);
      const __m128i sc8 = _mm_loadu_si128((const __m128i *)w.sc);
      const __m512i sc16 = _mm512_broadcast_i64x4(_mm256_cvtepi8_epi16(sc8));
      __m512i sumi[4];
      for (int p = 0; p < NP; p++)
        sumi[p] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(_mm512_madd_epi16(sc16, bs[p]), 5));
      for (int h = 0; h < 2; h++) {
        const __m512i qlA = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)mk_q6_ql(&w, 2 * h)));
        const __m512i qlB = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)mk_q6_ql(&w, 2 * h + 1)));
        const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)mk_q6_qh(&w, h)));
        __m512i q[4], sv[4];
        q[0] = _mm512_or_si512(_mm512_and_si512(qlA, m4), _mm512_and_si512(_mm512_slli_epi16(qh, 4), m30));
        q[1] = _mm512_or_si512(_mm512_and_si512(qlB, m4), _mm512_and_si512(_mm512_slli_epi16(qh, 2), m30));
        q[2] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(qlA, 4), m4), _mm512_and_si512(qh, m30));
        q[3] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(qlB, 4), m4), _mm512_and_si512(_mm512_srli_epi16(qh, 2), m30));
        /* words 0-7 and 16-23 <- scale a = 8h + 2k, 8-15 and 24-31 <- a + 1: one vpermw of the widened scales */
        for (int k = 0; k < 4; k++)
          sv[k] = _mm512_permutexvar_epi16(_mm512_add_epi16(selA, _mm512_set1_epi16((short)(8 * h + 2 * k))), sc16);
        for (int p = 0; p < NP; p++) {
          const int8_t *y0 = x0[p]->qs + 128 * h, *y1 = x1[p]->qs + 128 * h;
          for (int k = 0; k < 4; k++) {
            const __m512i yk = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(y0 + 32 * k))),
                                                  _mm256_loadu_si256((const __m256i *)(y1 + 32 * k)), 1);
            sumi[p] = _mm512_dpwssd_epi32(sumi[p], _mm512_maddubs_epi16(q[k], yk), sv[k]);
          }
        }
      }
      const __m512 dw = _mm512_set1_ps(mk_q6_d(&w));
      for (int p = 0; p < NP; p++)
        acc[r][p] = _mm512_fmadd_ps(_mm512_mul_ps(dx[p], dw), _mm512_cvtepi32_ps(sumi[p]), acc[r][p]);
    }
  }
  for (int r = 0; r < NR; r++)
    for (int p = 0; p < NP; p++) {
      s[(size_t)(2 * p) * s_stride + r] = hsum_ps5(_mm512_castps512_ps256(acc[r][p]));
      if (2 * p + 1 < NT)
        s[(size_t)(2 * p + 1) * s_stride + r] = hsum_ps5(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc[r][p]), 1)));
    }
}

/*
 * Q6_K, NT == 1 (decode): two ROWS per 512-bit vector, [row r0 | row r1] in the low and high 256 bits,
 * the activation block broadcast to both halves. Each half holds exactly the lanes of q6_K_block
 * (kernels_avx2.c) for its row: the same q bytes (vpternlogd only merges the same masked fields), the
 * same int16 scale words (vpermw picks them from the row's sign-extended scales), maddubs then vpdpwssd
 * (exact int32 sums, in any order, so the same lanes as madd + add), one f32 FMA per block of (x->d·dw)
 * into the row's own accumulator, one hsum_ps5 per row at the end: bit-identical to the AVX2 tile.
 * q6_K_pair1 is one block of one pair of rows (fields f0, f1, as stored or, R16, rows 2p and 2p+1 of a
 * T_Q6_K_R16 group: each chunk of both in one 64-byte load) times the token's block (bsums bs, quants
 * y[4h + k] = qs[128h + 32k ..] in both halves, scale dx), into acc.
 */
/* The pair's 16 + 16 scales widened to words (row r0's, then row r1's) and its [d0 | d1]. */
static AI TGT5 void q6_K_pair_scales(const int R16, mk_q6_fields f0, mk_q6_fields f1, __m512i *sc16, __m512 *dw) {
  const __m256i sc8 = R16 ? _mm256_loadu_si256((const __m256i *)f0.sc) /* rows 2p, 2p+1: adjacent */
                          : _mm256_inserti128_si256(_mm256_castsi128_si256(_mm_loadu_si128((const __m128i *)f0.sc)),
                                                    _mm_loadu_si128((const __m128i *)f1.sc), 1);
  *sc16 = _mm512_cvtepi8_epi16(sc8);
  *dw = _mm512_mask_blend_ps(0xFF00, _mm512_set1_ps(mk_q6_d(&f0)), _mm512_set1_ps(mk_q6_d(&f1)));
}

/* Half h of the pair's block: the unsigned 6-bit q bytes q[k] of elements 128h + 32k .. (both rows) and the scale
 * words sv[k] of their lanes (words 0-7 <- sub-block a = 8h + 2k, 8-15 <- a + 1, in each row's half). */
static AI TGT5 void q6_K_pair_half(const int R16, mk_q6_fields f0, mk_q6_fields f1, int h, __m512i sc16, __m512i *q,
                                   __m512i *sv) {
  const __m512i m4 = _mm512_set1_epi8(0xF), m30 = _mm512_set1_epi8(0x30);
  /* vpermw index for sub-blocks (a, a+1) of both rows: words 0-7 <- a, 8-15 <- a+1, 16-23 <- 16+a, 24-31 <- 17+a */
  const __m512i sel0 = _mm512_set_epi16(17, 17, 17, 17, 17, 17, 17, 17, 16, 16, 16, 16, 16, 16, 16, 16,
                                        1, 1, 1, 1, 1, 1, 1, 1, 0, 0, 0, 0, 0, 0, 0, 0);
#define LD2(f, c) (R16 ? _mm512_loadu_si512(mk_q6_##f(&f0, c)) \
                       : _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)mk_q6_##f(&f0, c))), \
                                            _mm256_loadu_si256((const __m256i *)mk_q6_##f(&f1, c)), 1))
  const __m512i qlA = LD2(ql, 2 * h), qlB = LD2(ql, 2 * h + 1), qh = LD2(qh, h);
#undef LD2
  /* (a & m4) | b with b already masked to 0x30: the same bytes as the AVX2 and/or */
  q[0] = _mm512_ternarylogic_epi32(qlA, _mm512_and_si512(_mm512_slli_epi16(qh, 4), m30), m4, 0xEC);
  q[1] = _mm512_ternarylogic_epi32(qlB, _mm512_and_si512(_mm512_slli_epi16(qh, 2), m30), m4, 0xEC);
  q[2] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(qlA, 4), _mm512_and_si512(qh, m30), m4, 0xEC);
  q[3] = _mm512_ternarylogic_epi32(_mm512_srli_epi16(qlB, 4), _mm512_and_si512(_mm512_srli_epi16(qh, 2), m30), m4, 0xEC);
  for (int k = 0; k < 4; k++)
    sv[k] = _mm512_permutexvar_epi16(_mm512_add_epi16(sel0, _mm512_set1_epi16((short)(8 * h + 2 * k))), sc16);
}

/* The lanes' bsums term, −32·(sc·bsums) by word pairs, which the block's sums start from. */
static AI TGT5 __m512i q6_K_pair_start(__m512i sc16, __m512i bs) {
  return _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(_mm512_madd_epi16(sc16, bs), 5));
}

static AI TGT5 __m512 q6_K_pair1(const int R16, mk_q6_fields f0, mk_q6_fields f1, const __m512i bs, const __m512i *y,
                                 const __m512 dx, __m512 acc) {
  __m512i sc16;
  __m512 dw;
  q6_K_pair_scales(R16, f0, f1, &sc16, &dw);
  __m512i sumi = q6_K_pair_start(sc16, bs);
  for (int h = 0; h < 2; h++) {
    __m512i q[4], sv[4];
    q6_K_pair_half(R16, f0, f1, h, sc16, q, sv);
    for (int k = 0; k < 4; k++) sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(q[k], y[4 * h + k]), sv[k]);
  }
  return _mm512_fmadd_ps(_mm512_mul_ps(dx, dw), _mm512_cvtepi32_ps(sumi), acc);
}

/* The token's block i for q6_K_pair1: bsums and the 8 quant vectors, broadcast to both halves. */
static AI TGT5 void q6_K_act1(const block_q8_K *x, __m512i *bs, __m512i *y) {
  *bs = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)x->bsums));
  for (int k = 0; k < 8; k++) y[k] = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x->qs + 32 * k)));
}

static AI TGT5 void store_pair(float *s, __m512 acc, int both) {
  s[0] = hsum_ps5(_mm512_castps512_ps256(acc));
  if (both) s[1] = hsum_ps5(_mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(acc), 1)));
}

/*
 * As stored: NR <= 4 rows, an odd last row run in both halves (the high half dropped).
 * Software prefetch: the same block of a later tile's rows, whole tiles and at least Q6_PF_MIN bytes ahead
 * (measured on hot and DRAM matmuls: one tile, 16 KiB, an extra L2 prefetch farther on, or prefetching the
 * next tiles in address order are no better).
 */
#define Q6_PF_MIN 4096
static AI TGT5 void tile1_q6_K_impl(int n, const void *vw, size_t w_stride, float *s, const void *act, const int NR) {
  const int NP = (NR + 1) / 2;
  __m512 acc[2] = {_mm512_setzero_ps(), _mm512_setzero_ps()};
  const int nb = n / QK_K;
  const block_q8_K *x = (const block_q8_K *)act;
  const size_t tile = (size_t)NR * w_stride, pfd = tile ? (Q6_PF_MIN + tile - 1) / tile * tile : Q6_PF_MIN;
  for (int i = 0; i < nb; i++) {
    __m512i bs, y[8];
    q6_K_act1(x + i, &bs, y);
    const __m512 dx = _mm512_set1_ps(x[i].d);
    for (int p = 0; p < NP; p++) {
      const int r0 = 2 * p, r1 = 2 * p + 1 < NR ? 2 * p + 1 : r0;
      const mk_q6_fields f0 = mk_q6_at(0, vw, w_stride, nb, r0, i), f1 = mk_q6_at(0, vw, w_stride, nb, r1, i);
      for (int l = 0; l < 4; l++) {
        _mm_prefetch((const char *)f0.ql + pfd + 64 * l, _MM_HINT_T0);
        if (r1 != r0) _mm_prefetch((const char *)f1.ql + pfd + 64 * l, _MM_HINT_T0);
      }
      acc[p] = q6_K_pair1(0, f0, f1, bs, y, dx, acc[p]);
    }
  }
  for (int p = 0; p < NP; p++) store_pair(s + 2 * p, acc[p], 2 * p + 1 < NR);
}

/*
 * One token: the repacked Q4_K and Q6_K kernels issue no software prefetch. Every load instruction of their
 * fully unrolled block loop reads one fixed offset of each block in turn, a constant stride, which the core's
 * stride prefetcher follows; software prefetches on top of it (into L1 or L2, 1-8 blocks ahead) made the stream
 * slower. bench/native moe-stream (QWEN3=1 HUGE=1 2 140 142), alternating, the MoE step's GB/s over a plain read
 * of the same bytes: prefetch into L2 0.83-0.88 at 27-41 GB/s and 0.75 at 49, none 0.90-0.95 at 31-35 and
 * 0.75-0.81 at 44-50; one thread 0.76-0.78 -> 0.86. Without the unrolled pair loop below (one load instruction
 * for all pairs, its stride changing within a block) no prefetch read at 0.33-0.64.
 *
 * T_Q6_K_R16, one token: the 16 rows of a group, 8 pairs per block; each pair's 384 bytes of ql and qh are
 * contiguous (common.h), so a block's quants are read in address order.
 */
static AI TGT5 void q6K_r16_t1(int nb, const uint8_t *wg, const block_q8_K *x, float *s) {
  __m512 acc[8];
  for (int p = 0; p < 8; p++) acc[p] = _mm512_setzero_ps();
  for (int i = 0; i < nb; i++) {
    __m512i bs, y[8];
    q6_K_act1(x + i, &bs, y);
    const __m512 dx = _mm512_set1_ps(x[i].d);
#pragma GCC unroll 8
    for (int p = 0; p < 8; p++)
      acc[p] = q6_K_pair1(1, mk_q6_at(1, wg, 0, nb, 2 * p, i), mk_q6_at(1, wg, 0, nb, 2 * p + 1, i), bs, y, dx, acc[p]);
  }
  for (int p = 0; p < 8; p++) store_pair(s + 2 * p, acc[p], 1);
}

/*
 * T_Q6_K_R16, NT = 2..8 tokens: pair by pair of rows ([row 2p | row 2p+1] per vector, as q6K_r16_t1), over the
 * group's blocks; each block's q bytes and scale words are unpacked once and serve every token, whose bsums and
 * quants are broadcast to both halves. Per token the int32 lanes, the f32 FMA per block into the token's own
 * accumulator and the hsum are q6_K_pair1's, so the results are bit-identical to it (and to kernels_avx2.c).
 * Per block and pair it prefetches the same fields of the next group (the next item's rows, mostly) into L2
 * (as q4K_r16_impl with more tokens; moe-prompt, random routing: L1 25.5/34.5/28.7, L2 24.6/24.8/28.4 ms).
 */
static AI TGT5 void q6K_r16_tn(int nb, const uint8_t *wg, const uint8_t *act, size_t act_stride, float *s,
                               size_t s_stride, const int NT) {
  const size_t next = (size_t)nb * MK_Q6R16_BLOCK;
  for (int p = 0; p < 8; p++) {
    __m512 acc[MK_TILE_TOKENS];
    for (int t = 0; t < NT; t++) acc[t] = _mm512_setzero_ps();
    for (int i = 0; i < nb; i++) {
      const mk_q6_fields f0 = mk_q6_at(1, wg, 0, nb, 2 * p, i), f1 = mk_q6_at(1, wg, 0, nb, 2 * p + 1, i);
      for (int c = 0; c < 4; c++) _mm_prefetch((const char *)mk_q6_ql(&f0, c) + next, _MM_HINT_T1);
      for (int c = 0; c < 2; c++) _mm_prefetch((const char *)mk_q6_qh(&f0, c) + next, _MM_HINT_T1);
      _mm_prefetch((const char *)f0.sc + next, _MM_HINT_T1);
      __m512i sc16, q[8], sv[8];
      __m512 dw;
      q6_K_pair_scales(1, f0, f1, &sc16, &dw);
      for (int h = 0; h < 2; h++) q6_K_pair_half(1, f0, f1, h, sc16, q + 4 * h, sv + 4 * h);
#pragma GCC unroll 8
      for (int t = 0; t < NT; t++) {
        const block_q8_K *x = (const block_q8_K *)(act + (size_t)t * act_stride) + i;
        const __m512i bs = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)x->bsums));
        __m512i sumi = q6_K_pair_start(sc16, bs);
        for (int j = 0; j < 8; j++) {
          const __m512i y = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(x->qs + 32 * j)));
          sumi = _mm512_dpwssd_epi32(sumi, _mm512_maddubs_epi16(q[j], y), sv[j]);
        }
        acc[t] = _mm512_fmadd_ps(_mm512_mul_ps(_mm512_set1_ps(x->d), dw), _mm512_cvtepi32_ps(sumi), acc[t]);
      }
    }
    for (int t = 0; t < NT; t++) store_pair(s + (size_t)t * s_stride + 2 * p, acc[t], 1);
  }
}

#define Q6_CASE(R, T) \
  case (R) * 16 + (T): tile2_q6_K_impl(n, w, w_stride, act, act_stride, s, s_stride, R, T); break;
#define Q6_ROW(R) Q6_CASE(R, 2) Q6_CASE(R, 3) Q6_CASE(R, 4) Q6_CASE(R, 5) Q6_CASE(R, 6) Q6_CASE(R, 7) Q6_CASE(R, 8)

static TGT5 void tile_q6_K_512(int n, const void *w, size_t w_stride, int nr, const void *act, size_t act_stride,
                               int nt, float *s, size_t s_stride) {
  switch (nr * 16 + nt) {
    case 16 + 1: tile1_q6_K_impl(n, w, w_stride, s, act, 1); break;
    case 32 + 1: tile1_q6_K_impl(n, w, w_stride, s, act, 2); break;
    case 48 + 1: tile1_q6_K_impl(n, w, w_stride, s, act, 3); break;
    case 64 + 1: tile1_q6_K_impl(n, w, w_stride, s, act, 4); break;
    Q6_ROW(1) Q6_ROW(2) Q6_ROW(3) Q6_ROW(4)
    default: break;
  }
}
#undef Q6_CASE
#undef Q6_ROW

/* T_Q6_K_R16 (common.h): one group of 16 rows × T tokens, s[t*s_stride + r], in tiles of up to 8 tokens:
 * one token q6K_r16_t1, more q6K_r16_tn (bench/native group-kernel q6 8 / 4 / 2, against 4-row tiles of
 * tile2_q6_K_impl with two tokens per vector: 69-70 -> 78-80, 51-57 -> 62-71, 41 -> 55-59 GMAC/s per core). */
TGT5 void mk_q6K_r16_group_512(int nb, const uint8_t *wg, const uint8_t *act, size_t act_stride, int T, float *s,
                               size_t s_stride) {
  for (int t0 = 0; t0 < T; t0 += MK_TILE_TOKENS) {
    const int nt = T - t0 < MK_TILE_TOKENS ? T - t0 : MK_TILE_TOKENS;
    const uint8_t *a = act + (size_t)t0 * act_stride;
    float *o = s + (size_t)t0 * s_stride;
    if (nt == 1) {
      q6K_r16_t1(nb, wg, (const block_q8_K *)a, o);
      continue;
    }
#define Q6TN_CASE(T) case T: q6K_r16_tn(nb, wg, a, act_stride, o, s_stride, T); break;
    switch (nt) { Q6TN_CASE(2) Q6TN_CASE(3) Q6TN_CASE(4) Q6TN_CASE(5) Q6TN_CASE(6) Q6TN_CASE(7) Q6TN_CASE(8) default: break; }
#undef Q6TN_CASE
  }
}

/*
 * Q4_K rows repacked by 16 (T_Q4_K_R16, layout in common.h): 16 rows per 512-bit vector, one int32 lane per
 * row, so nothing is summed horizontally. Per block and token: for each sub-block pair p, 8 vectors of
 * nibbles times broadcast activation words (vpdpbusd, u4 × s8) give each row's sub-block sums; times the
 * 6-bit scales (vpmulld) they make the pair sum Σ sc_s·(q·y)_s; the mins term of the pair is one vpdpwssd
 * of (m_2p, m_2p+1) with (bsum32_2p, bsum32_2p+1). The f32 steps are ggml_gemv_q4_K_8x8_q8_K's (one FMA
 * of the block sum per block) or, with gemm, ggml_gemm_q4_K_8x8_q8_K's (one per pair), lane by lane:
 * bit-identical to q4K_r16_group_scalar (ggml_compat.c).
 */
/* One token: no software prefetch (above q6K_r16_t1). With more tokens the kernel runs a group once per tile of
 * 4 (the first pass from memory, the rest from L1): each line is prefetched into L2 a whole group ahead (the same
 * line of the next group, the next work item's rows), so the next group streams in while this one is computed
 * again (bench/native moe-prompt, qwen3 shape, 128 tokens, 8 per expert (EVEN=1), Q4_K gate/up/down: 24-27 ->
 * 17-24 ms per layer; random routing, Q6_K down: 32 -> 27.7). */
#define PF(o) (NT > 1 ? _mm_prefetch((const char *)b + (size_t)nb * MK_R16_BLOCK + (o), _MM_HINT_T1) : (void)0)
static AI TGT5 void q4K_r16_impl(int nb, const uint8_t *wg, const uint8_t *act, size_t act_stride, float *s,
                                 size_t s_stride, const int NT, const int GEMM) {
  __m512 acc[4], accm[4];
  for (int t = 0; t < NT; t++) acc[t] = accm[t] = _mm512_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(0x0F), m6 = _mm512_set1_epi8(0x3F), m2 = _mm512_set1_epi8(0x30);
  /* vpshufb controls (per 128-bit lane, dword d at bytes 4d): byte s of each dword to byte 0, zero
   * above; bytes 2k, 2k+1 to words 0, 1 (0x8x bytes give zero) */
  const __m512i lane4 = _mm512_set_epi32(0x0C0C0C0C, 0x08080808, 0x04040404, 0, 0x0C0C0C0C, 0x08080808, 0x04040404, 0,
                                         0x0C0C0C0C, 0x08080808, 0x04040404, 0, 0x0C0C0C0C, 0x08080808, 0x04040404, 0);
  __m512i sel_sc[4], sel_mn[2];
  for (int k = 0; k < 4; k++) sel_sc[k] = _mm512_add_epi32(_mm512_set1_epi32((int)(0x80808000u + (unsigned)k)), lane4);
  for (int k = 0; k < 2; k++)
    sel_mn[k] = _mm512_add_epi32(_mm512_set1_epi32((int)(0x80008000u | (unsigned)(2 * k + 1) << 16 | (unsigned)(2 * k))), lane4);
  for (int i = 0; i < nb; i++) {
    const uint8_t *b = wg + (size_t)i * MK_R16_BLOCK;
    for (int k = 0; k < 4; k++) PF(64 * k);
    /* get_scale_min_k4 for 16 rows at once (as k4_scales.h): lane r byte k of sclo/schi = sc[k]/sc[4+k] */
    const __m512i u0 = _mm512_loadu_si512(b + 64), u1 = _mm512_loadu_si512(b + 128), u2 = _mm512_loadu_si512(b + 192);
    const __m512i sclo = _mm512_and_si512(u0, m6), mlo = _mm512_and_si512(u1, m6);
    const __m512i schi = _mm512_or_si512(_mm512_and_si512(u2, m4), _mm512_and_si512(_mm512_srli_epi32(u0, 2), m2));
    const __m512i mhi = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi32(u2, 4), m4), _mm512_and_si512(_mm512_srli_epi32(u1, 2), m2));
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)b));
    const __m512 dmw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)(b + 32)));
    /* per token: (bsum32_2p, bsum32_2p+1) as int16 pairs, pair p in word pair pw[p] */
    int32_t pw[4][8];
    __m512i P[4], M[4]; /* gemv: the block's sums; gemm: the current pair's */
    __m512 dwx[4], dmx[4]; /* gemm: d·dx and dmin·dx of each token, for all four pairs */
    for (int t = 0; t < NT; t++) {
      const block_q8_K *x = (const block_q8_K *)(act + (size_t)t * act_stride) + i;
      if (GEMM) {
        dwx[t] = _mm512_mul_ps(dw, _mm512_set1_ps(x->d));
        dmx[t] = _mm512_mul_ps(dmw, _mm512_set1_ps(x->d));
      }
      const __m256i b32 = _mm256_madd_epi16(_mm256_loadu_si256((const __m256i *)x->bsums), _mm256_set1_epi16(1));
      _mm256_storeu_si256((__m256i *)pw[t], _mm256_packs_epi32(b32, b32)); /* dwords 0, 1, 4, 5: pairs 0-3 */
      P[t] = M[t] = _mm512_setzero_si512();
    }
    for (int p = 0; p < 4; p++) {
      __m512i lo[4], hi[4];
      for (int t = 0; t < NT; t++) lo[t] = hi[t] = _mm512_setzero_si512();
      for (int v = 8 * p; v < 8 * p + 8; v++) {
        PF(256 + 64 * v);
        const __m512i q = _mm512_loadu_si512(b + 256 + 64 * v);
        const __m512i ql = _mm512_and_si512(q, m4), qh = _mm512_and_si512(_mm512_srli_epi16(q, 4), m4);
        for (int t = 0; t < NT; t++) {
          const int8_t *y = ((const block_q8_K *)(act + (size_t)t * act_stride) + i)->qs + 64 * p + 4 * (v - 8 * p);
          int32_t yl, yh;
          memcpy(&yl, y, 4);
          memcpy(&yh, y + 32, 4);
          lo[t] = _mm512_dpbusd_epi32(lo[t], ql, _mm512_set1_epi32(yl));
          hi[t] = _mm512_dpbusd_epi32(hi[t], qh, _mm512_set1_epi32(yh));
        }
      }
      const __m512i s_lo = _mm512_shuffle_epi8(p < 2 ? sclo : schi, sel_sc[(2 * p) & 3]);
      const __m512i s_hi = _mm512_shuffle_epi8(p < 2 ? sclo : schi, sel_sc[(2 * p + 1) & 3]);
      const __m512i mins = _mm512_shuffle_epi8(p < 2 ? mlo : mhi, sel_mn[p & 1]);
      for (int t = 0; t < NT; t++) {
        const __m512i ps = _mm512_add_epi32(_mm512_mullo_epi32(lo[t], s_lo), _mm512_mullo_epi32(hi[t], s_hi));
        const __m512i pm = _mm512_dpwssd_epi32(_mm512_setzero_si512(), mins, _mm512_set1_epi32(pw[t][(p & 1) + 4 * (p >> 1)]));
        if (GEMM) {
          acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(ps), dwx[t], acc[t]);
          accm[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(pm), dmx[t], accm[t]);
        } else {
          P[t] = _mm512_add_epi32(P[t], ps);
          M[t] = _mm512_add_epi32(M[t], pm);
        }
      }
    }
    if (!GEMM)
      for (int t = 0; t < NT; t++) {
        const float dx = ((const block_q8_K *)(act + (size_t)t * act_stride) + i)->d;
        acc[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(P[t]), _mm512_mul_ps(dw, _mm512_set1_ps(dx)), acc[t]);
        accm[t] = _mm512_fmadd_ps(_mm512_cvtepi32_ps(M[t]), _mm512_mul_ps(dmw, _mm512_set1_ps(dx)), accm[t]);
      }
  }
  for (int t = 0; t < NT; t++) _mm512_storeu_ps(s + (size_t)t * s_stride, _mm512_sub_ps(acc[t], accm[t]));
}
#undef PF

TGT5 void mk_q4K_r16_group_512(int nb, const uint8_t *wg, const uint8_t *act, size_t act_stride, int nt, int gemm,
                               float *s, size_t s_stride) {
#define R16_CASE(n) \
  case n: \
    if (gemm) q4K_r16_impl(nb, wg, act, act_stride, s, s_stride, n, 1); \
    else q4K_r16_impl(nb, wg, act, act_stride, s, s_stride, n, 0); \
    break;
  switch (nt) { R16_CASE(1) R16_CASE(2) R16_CASE(3) R16_CASE(4) default: break; }
#undef R16_CASE
}

/* The T_Q4_K_R16 layout of ggml_compat.c mkc_q4K_r16_pack (the reference), by 16-lane gathers: a 144-byte
 * Q4_K block is 36 dwords (d|dmin, 3 of scales, 32 of qs) and output vector w holds dword w of the 16 rows,
 * except that d and dmin are split into two 16 × u16 halves. */
TGT5 void mk_q4K_r16_pack_512(uint8_t *dst, const uint8_t *src, int g0, int g1, int K) {
  const int nb = K / QK_K;
  const size_t row = (size_t)nb * sizeof(block_q4_K);
  const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                         _mm512_set1_epi32((int)row));
  for (int g = g0; g < g1; g++)
    for (int i = 0; i < nb; i++) {
      const uint8_t *b = src + (size_t)MK_R16 * g * row + (size_t)i * sizeof(block_q4_K);
      uint8_t *o = dst + ((size_t)g * nb + i) * MK_R16_BLOCK;
      const __m512i dd = _mm512_i32gather_epi32(idx, b, 1);
      _mm256_storeu_si256((__m256i *)o, _mm512_cvtepi32_epi16(dd));
      _mm256_storeu_si256((__m256i *)(o + 32), _mm512_cvtepi32_epi16(_mm512_srli_epi32(dd, 16)));
      for (int w = 1; w < (int)sizeof(block_q4_K) / 4; w++)
        _mm512_storeu_si512(o + 64 * w, _mm512_i32gather_epi32(idx, b + 4 * w, 1));
    }
}

/* ---- activation quantizers: the bytes of kernels_scalar.c mk_quant_q8_0_ref / mk_quant_q8_K_ref ----
 *
 * ggml's x86 quantize_row_q8_0 and quantize_row_q8_K_ref, as kernels_avx2.c quant_q8_0_avx2 /
 * quant_q8_K_avx2 do them (see there: the largest |x| by an unsigned compare of the sign-cleared bits,
 * the scalar code for a block with NaN, inf or a scale that is not finite), on 16 lanes. vcvtps2dq
 * rounds half to even by its embedded rounding, vpmovdb narrows by truncation as the (int8_t) cast.
 */
#define Q_ABS5(v) _mm512_and_si512(_mm512_castps_si512(v), _mm512_set1_epi32(0x7fffffff))
#define Q_RNE (_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC)

static TGT5 void quant_q8_0_512(const float *x, void *vy, int n) {
  block_q8_0 *y = vy;
  for (int i = 0; i < n / QK8_0; i++, x += QK8_0) {
    const __m512 v0 = _mm512_loadu_ps(x), v1 = _mm512_loadu_ps(x + 16);
    const uint32_t ab = (uint32_t)_mm512_reduce_max_epu32(_mm512_max_epu32(Q_ABS5(v0), Q_ABS5(v1)));
    const float amax = bits_f32(ab), id = amax != 0.0f ? 127.f / amax : 0.0f;
    if (!mk_q8_scale_finite(ab, id)) {
      mk_quant_q8_0_ref(x, &y[i], QK8_0);
      continue;
    }
    y[i].d = f32_to_f16(amax / 127.f);
    const __m512 vid = _mm512_set1_ps(id);
    const __m128i q0 = _mm512_cvtepi32_epi8(_mm512_cvt_roundps_epi32(_mm512_mul_ps(v0, vid), Q_RNE));
    const __m128i q1 = _mm512_cvtepi32_epi8(_mm512_cvt_roundps_epi32(_mm512_mul_ps(v1, vid), Q_RNE));
    _mm256_storeu_si256((__m256i *)y[i].qs, _mm256_inserti128_si256(_mm256_castsi128_si256(q0), q1, 1));
  }
}

static TGT5 void quant_q8_K_512(const float *x, void *vy, int n) {
  block_q8_K *y = vy;
  const __m512i zero = _mm512_setzero_si512(), c127 = _mm512_set1_epi32(127), flip = _mm512_set1_epi8((char)0x80);
  /* bsums: group 4g + l comes out at word 4l + {0, 2, 1, 3}[g] (see below) */
  const __m512i bs_idx = _mm512_setr_epi32(0, 4, 8, 12, 2, 6, 10, 14, 1, 5, 9, 13, 3, 7, 11, 15);
  for (int i = 0; i < n / QK_K; i++, x += QK_K) {
    __m512i m = zero;
    for (int k = 0; k < QK_K; k += 16) m = _mm512_max_epu32(m, Q_ABS5(_mm512_loadu_ps(x + k)));
    const uint32_t ab = (uint32_t)_mm512_reduce_max_epu32(m);
    if (ab == 0) { /* all ±0 */
      memset(&y[i], 0, sizeof y[i]);
      continue;
    }
    float iscale = 0;
    if (ab < 0x7f800000u) {
      const __m512i mb = _mm512_set1_epi32((int)ab);
      int j = 0;
      __mmask16 hit;
      while (!(hit = _mm512_cmpeq_epi32_mask(Q_ABS5(_mm512_loadu_ps(x + j)), mb))) j += 16;
      iscale = -127.f / x[j + __builtin_ctz((unsigned)hit)]; /* the first element of the largest |x| */
    }
    if (!mk_q8_scale_finite(ab, iscale)) {
      mk_quant_q8_K_ref(x, &y[i], QK_K);
      continue;
    }
    const __m512 vs = _mm512_set1_ps(iscale);
    __m512i sad[4];
    for (int g = 0; g < 4; g++) { /* 64 elements: groups 4g .. 4g+3 of 16, one per 128-bit lane */
      __m128i q[4];
      for (int l = 0; l < 4; l++) {
        const __m512 v = _mm512_mul_ps(vs, _mm512_loadu_ps(x + 64 * g + 16 * l));
        q[l] = _mm512_cvtepi32_epi8(_mm512_min_epi32(_mm512_cvt_roundps_epi32(v, Q_RNE), c127));
      }
      __m512i b = _mm512_castsi128_si512(q[0]);
      b = _mm512_inserti32x4(b, q[1], 1);
      b = _mm512_inserti32x4(b, q[2], 2);
      b = _mm512_inserti32x4(b, q[3], 3);
      _mm512_storeu_si512(y[i].qs + 64 * g, b);
      sad[g] = _mm512_sad_epu8(_mm512_xor_si512(b, flip), zero); /* Σ (q + 128) of each 8 bytes */
    }
    /* lane l of t01: group sums [4·0+l, 4·1+l] (u64); of t23: [4·2+l, 4·3+l]; u: dwords [0+l, 8+l, 4+l, 12+l] */
    const __m512i t01 = _mm512_add_epi64(_mm512_unpacklo_epi64(sad[0], sad[1]), _mm512_unpackhi_epi64(sad[0], sad[1]));
    const __m512i t23 = _mm512_add_epi64(_mm512_unpacklo_epi64(sad[2], sad[3]), _mm512_unpackhi_epi64(sad[2], sad[3]));
    const __m512i u = _mm512_sub_epi32(_mm512_or_si512(t01, _mm512_slli_epi64(t23, 32)), _mm512_set1_epi32(16 * 128));
    _mm256_storeu_si256((__m256i *)y[i].bsums, _mm512_cvtepi32_epi16(_mm512_permutexvar_epi32(bs_idx, u)));
    y[i].d = 1 / iscale;
  }
}
#undef Q_ABS5
#undef Q_RNE

int mk_avx512_fill(int type, mk_type_ops *o) {
  switch (type) {
    case T_Q8_0: o->dot = dot_q8_0_512; o->dot_tile = tile_q8_0; o->quant_act = quant_q8_0_512; return 1;
    case T_Q4_0: o->quant_act = quant_q8_0_512; return 1;
    case T_Q4_K: case T_Q5_K: o->quant_act = quant_q8_K_512; return 1;
    case T_Q6_K:
      o->quant_act = quant_q8_K_512;
      if (o->dot_tile) o->dot_tile = tile_q6_K_512;
      return 1;
    default: return 0;
  }
}

#else

int mk_cpu_has_avx512(void) { return 0; }
int mk_avx512_fill(int type, mk_type_ops *o) { (void)type; (void)o; return 0; }
void mk_q4K_r16_pack_512(uint8_t *dst, const uint8_t *src, int g0, int g1, int K) {
  (void)dst; (void)src; (void)g0; (void)g1; (void)K;
}
void mk_q4K_r16_group_512(int nb, const uint8_t *wg, const uint8_t *act, size_t act_stride, int nt, int gemm,
                          float *s, size_t s_stride) {
  (void)nb; (void)wg; (void)act; (void)act_stride; (void)nt; (void)gemm; (void)s; (void)s_stride;
}
void mk_q6K_r16_group_512(int nb, const uint8_t *wg, const uint8_t *act, size_t act_stride, int T, float *s,
                          size_t s_stride) {
  (void)nb; (void)wg; (void)act; (void)act_stride; (void)T; (void)s; (void)s_stride;
}

#endif

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
 * accumulator and one hsum at the end, so results are bit-identical to kernels_avx2.c. NT == 1 uses the
 * AVX2 tile (saved in q6_tile_avx2 when the table is filled).
 */
static mk_tile_fn q6_tile_avx2;

static AI TGT5 void tile2_q6_K_impl(int n, const void *vw, size_t w_stride, const void *act, size_t act_stride,
                                    float *s, size_t s_stride, const int NR, const int NT) {
  const int NP = (NT + 1) / 2;
  __m512 acc[4][4];
  for (int r = 0; r < NR; r++)
    for (int p = 0; p < NP; p++) acc[r][p] = _mm512_setzero_ps();
  const __m512i m4 = _mm512_set1_epi8(0xF), m30 = _mm512_set1_epi8(0x30);
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
      const block_q6_K *w = (const block_q6_K *)((const char *)vw + (size_t)r * w_stride) + i;
      for (int l = 0; l < 4; l++) _mm_prefetch((const char *)w + (size_t)NR * w_stride + 64 * l, _MM_HINT_T0);
      const __m128i sc8 = _mm_loadu_si128((const __m128i *)w->scales);
      const __m512i sc16 = _mm512_broadcast_i64x4(_mm256_cvtepi8_epi16(sc8));
      __m512i sumi[4];
      for (int p = 0; p < NP; p++)
        sumi[p] = _mm512_sub_epi32(_mm512_setzero_si512(), _mm512_slli_epi32(_mm512_madd_epi16(sc16, bs[p]), 5));
      for (int h = 0; h < 2; h++) {
        const __m512i qlA = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(w->ql + 64 * h)));
        const __m512i qlB = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(w->ql + 64 * h + 32)));
        const __m512i qh = _mm512_broadcast_i64x4(_mm256_loadu_si256((const __m256i *)(w->qh + 32 * h)));
        __m512i q[4], sv[4];
        q[0] = _mm512_or_si512(_mm512_and_si512(qlA, m4), _mm512_and_si512(_mm512_slli_epi16(qh, 4), m30));
        q[1] = _mm512_or_si512(_mm512_and_si512(qlB, m4), _mm512_and_si512(_mm512_slli_epi16(qh, 2), m30));
        q[2] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(qlA, 4), m4), _mm512_and_si512(qh, m30));
        q[3] = _mm512_or_si512(_mm512_and_si512(_mm512_srli_epi16(qlB, 4), m4), _mm512_and_si512(_mm512_srli_epi16(qh, 2), m30));
        for (int k = 0; k < 4; k++) {
          const int a = 8 * h + 2 * k;
          const __m128i idx = _mm_add_epi8(_mm_set_epi64x(0x0101010101010101LL, 0), _mm_set1_epi8((char)a));
          sv[k] = _mm512_broadcast_i64x4(_mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, idx)));
        }
        for (int p = 0; p < NP; p++) {
          const int8_t *y0 = x0[p]->qs + 128 * h, *y1 = x1[p]->qs + 128 * h;
          for (int k = 0; k < 4; k++) {
            const __m512i yk = _mm512_inserti64x4(_mm512_castsi256_si512(_mm256_loadu_si256((const __m256i *)(y0 + 32 * k))),
                                                  _mm256_loadu_si256((const __m256i *)(y1 + 32 * k)), 1);
            sumi[p] = _mm512_dpwssd_epi32(sumi[p], _mm512_maddubs_epi16(q[k], yk), sv[k]);
          }
        }
      }
      const __m512 dw = _mm512_set1_ps(f16_to_f32(w->d));
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

#define Q6_CASE(R, T) \
  case (R) * 16 + (T): tile2_q6_K_impl(n, w, w_stride, act, act_stride, s, s_stride, R, T); break;
#define Q6_ROW(R) Q6_CASE(R, 2) Q6_CASE(R, 3) Q6_CASE(R, 4) Q6_CASE(R, 5) Q6_CASE(R, 6) Q6_CASE(R, 7) Q6_CASE(R, 8)

static TGT5 void tile_q6_K_512(int n, const void *w, size_t w_stride, int nr, const void *act, size_t act_stride,
                               int nt, float *s, size_t s_stride) {
  if (nt == 1) { q6_tile_avx2(n, w, w_stride, nr, act, act_stride, nt, s, s_stride); return; }
  switch (nr * 16 + nt) {
    Q6_ROW(1) Q6_ROW(2) Q6_ROW(3) Q6_ROW(4)
    default: break;
  }
}

int mk_avx512_fill(int type, mk_type_ops *o) {
  switch (type) {
    case T_Q8_0: o->dot = dot_q8_0_512; o->dot_tile = tile_q8_0; return 1;
    case T_Q6_K:
      if (!o->dot_tile) return 0;
      q6_tile_avx2 = o->dot_tile; o->dot_tile = tile_q6_K_512; return 1;
    default: return 0;
  }
}

#else

int mk_cpu_has_avx512(void) { return 0; }
int mk_avx512_fill(int type, mk_type_ops *o) { (void)type; (void)o; return 0; }

#endif

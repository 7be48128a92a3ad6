/*
 * AVX2 + FMA + F16C kernels, compiled for those features with target attributes so the rest of
 * the addon stays baseline x86-64; chosen at run time (mk_cpu_has_avx2). Each dot kernel
 * unpacks a weight block once and multiplies it with up to MK_TILE activation rows, so a
 * prompt streams each weight row from memory once per tile. The integer math per block is
 * the same as ggml's x86 vec_dot kernels (ggml-cpu/arch/x86/quants.c): u8×s8 pair products
 * (vpmaddubsw), widened by per-sub-block scales (vpmaddwd), one f32 FMA per block.
 */
#include "common.h"
#include "k4_scales.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>

#define TGT __attribute__((target("avx2,fma,f16c")))
#define AI __attribute__((always_inline)) inline
#define ACT(t) ((const char *)act + (size_t)(t) * act_stride)

int mk_cpu_has_avx2(void) {
  __builtin_cpu_init();
  return __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma") && __builtin_cpu_supports("f16c");
}

static AI TGT float hsum_ps(__m256 v) {
  __m128 r = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
  r = _mm_add_ps(r, _mm_movehl_ps(r, r));
  r = _mm_add_ss(r, _mm_movehdup_ps(r));
  return _mm_cvtss_f32(r);
}

/* Generates dot_<name>(...) that dispatches nt = 1..4 onto constant-NT inlined bodies. */
#define DISPATCH_NT(name)                                                                     \
  static TGT void dot_##name(int n, const void *w, const void *act, size_t act_stride, int nt, \
                             float *s) {                                                      \
    switch (nt) {                                                                             \
      case 1: dot_##name##_impl(n, w, act, act_stride, 1, s); break;                          \
      case 2: dot_##name##_impl(n, w, act, act_stride, 2, s); break;                          \
      case 3: dot_##name##_impl(n, w, act, act_stride, 3, s); break;                          \
      default: dot_##name##_impl(n, w, act, act_stride, 4, s); break;                         \
    }                                                                                         \
  }

/* Software prefetch distance for weight streams (bytes ahead of the block being read): the rows
 * of one work item are contiguous, so this runs on into the next row. */
#define PF_AHEAD 1024

/* ---- float weights --------------------------------------------------------------------- */

static AI TGT __m256 load_f16x8(const uint16_t *p) { return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)p)); }
static AI TGT __m256 load_bf16x8(const uint16_t *p) {
  return _mm256_castsi256_ps(_mm256_slli_epi32(_mm256_cvtepu16_epi32(_mm_loadu_si128((const __m128i *)p)), 16));
}

/* Float-type bodies differ only in how 8 elements are loaded; KIND 0 f32, 1 f16, 2 bf16. */
#define LOAD8(KIND, p, i)                                                          \
  ((KIND) == 0 ? _mm256_loadu_ps((const float *)(p) + (i))                         \
               : (KIND) == 1 ? load_f16x8((const uint16_t *)(p) + (i))             \
                             : load_bf16x8((const uint16_t *)(p) + (i)))

static AI TGT float scalar_elem(int kind, const void *p, int i) {
  return kind == 0 ? ((const float *)p)[i]
       : kind == 1 ? f16_to_f32(((const uint16_t *)p)[i])
                   : bf16_to_f32(((const uint16_t *)p)[i]);
}

static AI TGT void dot_float_impl(int kind, int n, const void *w, const void *act, size_t act_stride, const int NT, float *s) {
  __m256 acc0[MK_TILE], acc1[MK_TILE];
  for (int t = 0; t < NT; t++) acc0[t] = acc1[t] = _mm256_setzero_ps();
  int i = 0;
  for (; i + 16 <= n; i += 16) {
    const __m256 w0 = LOAD8(kind, w, i), w1 = LOAD8(kind, w, i + 8);
    for (int t = 0; t < NT; t++) {
      acc0[t] = _mm256_fmadd_ps(w0, LOAD8(kind, ACT(t), i), acc0[t]);
      acc1[t] = _mm256_fmadd_ps(w1, LOAD8(kind, ACT(t), i + 8), acc1[t]);
    }
  }
  for (int t = 0; t < NT; t++) {
    float r = hsum_ps(_mm256_add_ps(acc0[t], acc1[t]));
    for (int j = i; j < n; j++) r += scalar_elem(kind, w, j) * scalar_elem(kind, ACT(t), j);
    s[t] = r;
  }
}

static AI TGT void dot_f32_impl(int n, const void *w, const void *act, size_t st, const int NT, float *s) { dot_float_impl(0, n, w, act, st, NT, s); }
static AI TGT void dot_f16_impl(int n, const void *w, const void *act, size_t st, const int NT, float *s) { dot_float_impl(1, n, w, act, st, NT, s); }
static AI TGT void dot_bf16_impl(int n, const void *w, const void *act, size_t st, const int NT, float *s) { dot_float_impl(2, n, w, act, st, NT, s); }
DISPATCH_NT(f32)
DISPATCH_NT(f16)
DISPATCH_NT(bf16)

/* ---- Q8_0 / Q4_0 weights · Q8_0 activations -------------------------------------------- */

/* Signed 8-bit dot via |w| (unsigned) × sign(w)·x; activations lie in [-127, 127] so the
 * pairwise int16 sums cannot saturate. Result: 8 int32 lanes as f32. */
static AI TGT __m256 dot_i8_block(__m256i aw, __m256i qw, __m256i qx) {
  const __m256i p16 = _mm256_maddubs_epi16(aw, _mm256_sign_epi8(qx, qw));
  return _mm256_cvtepi32_ps(_mm256_madd_epi16(p16, _mm256_set1_epi16(1)));
}

static AI TGT void dot_q8_0_impl(int n, const void *vw, const void *act, size_t act_stride, const int NT, float *s) {
  const block_q8_0 *w = vw;
  __m256 acc[MK_TILE];
  for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
  for (int i = 0; i < n / QK8_0; i++) {
    if ((i & 1) == 0) _mm_prefetch((const char *)(w + i) + PF_AHEAD, _MM_HINT_T0); /* 68 bytes per 2 blocks */
    const __m256i qw = _mm256_loadu_si256((const __m256i *)w[i].qs);
    const __m256i aw = _mm256_sign_epi8(qw, qw);
    const float dw = f16_to_f32(w[i].d);
    for (int t = 0; t < NT; t++) {
      const block_q8_0 *x = (const block_q8_0 *)ACT(t) + i;
      const __m256 p = dot_i8_block(aw, qw, _mm256_loadu_si256((const __m256i *)x->qs));
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * f16_to_f32(x->d)), p, acc[t]);
    }
  }
  for (int t = 0; t < NT; t++) s[t] = hsum_ps(acc[t]);
}

static AI TGT void dot_q4_0_impl(int n, const void *vw, const void *act, size_t act_stride, const int NT, float *s) {
  const block_q4_0 *w = vw;
  __m256 acc[MK_TILE];
  for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
  const __m128i m4 = _mm_set1_epi8(0xF);
  for (int i = 0; i < n / QK4_0; i++) {
    const __m128i b = _mm_loadu_si128((const __m128i *)w[i].qs);
    /* elements 0..15 = low nibbles, 16..31 = high nibbles; then shift to [-8, 7] */
    __m256i qw = _mm256_set_m128i(_mm_and_si128(_mm_srli_epi16(b, 4), m4), _mm_and_si128(b, m4));
    qw = _mm256_sub_epi8(qw, _mm256_set1_epi8(8));
    const __m256i aw = _mm256_sign_epi8(qw, qw);
    const float dw = f16_to_f32(w[i].d);
    for (int t = 0; t < NT; t++) {
      const block_q8_0 *x = (const block_q8_0 *)ACT(t) + i;
      const __m256 p = dot_i8_block(aw, qw, _mm256_loadu_si256((const __m256i *)x->qs));
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * f16_to_f32(x->d)), p, acc[t]);
    }
  }
  for (int t = 0; t < NT; t++) s[t] = hsum_ps(acc[t]);
}
DISPATCH_NT(q8_0)
DISPATCH_NT(q4_0)

/* ---- K-quants · Q8_K ------------------------------------------------------------------- */


/* 16 int16 lanes of sub-block scale k (0..7), from 8 int16 scales repeated in both 128-bit halves. */
static AI TGT __m256i scale_lanes(__m256i sc16x2, int k) {
  const __m256i idx = _mm256_set1_epi16((short)(((2 * k + 1) << 8) | (2 * k)));
  return _mm256_shuffle_epi8(sc16x2, idx);
}

/* Σ_k m[k]·(bsums[2k] + bsums[2k+1]) as 8 int32 lanes: the min correction of Q4_K/Q5_K. */
static AI TGT __m256i mins_dot_bsums(__m256i mins16, const block_q8_K *x) {
  return _mm256_madd_epi16(mins16, _mm256_loadu_si256((const __m256i *)x->bsums));
}

/* Q4_K when HIGH == 0, Q5_K when HIGH == 1 (then `qh` adds bit 4). */
static AI TGT void dot_qk45_impl(int n, const void *vw, const void *act, size_t act_stride, const int NT, float *s, const int HIGH) {
  const size_t bb = HIGH ? sizeof(block_q5_K) : sizeof(block_q4_K);
  __m256 acc[MK_TILE], accm[MK_TILE];
  for (int t = 0; t < NT; t++) acc[t] = accm[t] = _mm256_setzero_ps();
  const __m256i m4 = _mm256_set1_epi8(0xF);
  for (int i = 0; i < n / QK_K; i++) {
    const uint8_t *blk = (const uint8_t *)vw + (size_t)i * bb;
    const uint16_t d16 = ((const uint16_t *)blk)[0], dmin16 = ((const uint16_t *)blk)[1];
    const uint8_t *scales = blk + 4;
    const uint8_t *qh = HIGH ? blk + 16 : NULL;
    const uint8_t *qs = HIGH ? blk + 48 : blk + 16;
    _mm_prefetch((const char *)blk + PF_AHEAD, _MM_HINT_T0);
    _mm_prefetch((const char *)blk + PF_AHEAD + 64, _MM_HINT_T0);
    _mm_prefetch((const char *)blk + PF_AHEAD + 128, _MM_HINT_T0);
    if (HIGH) _mm_prefetch((const char *)blk + PF_AHEAD + 172, _MM_HINT_T0);
    const __m128i scm = mk_unpack_k4_scales(scales);
    /* each min twice (it multiplies the two 16-element bsums of its 32-element sub-block) */
    const __m256i mins16 = _mm256_cvtepu8_epi16(_mm_unpackhi_epi8(scm, scm));
    const __m128i sc16 = _mm_cvtepu8_epi16(scm);
    const __m256i sc16x2 = _mm256_set_m128i(sc16, sc16);
    const float dw = f16_to_f32(d16), dmw = f16_to_f32(dmin16);
    __m256i sumi[MK_TILE];
    for (int t = 0; t < NT; t++) {
      const block_q8_K *x = (const block_q8_K *)ACT(t) + i;
      accm[t] = _mm256_fmadd_ps(_mm256_set1_ps(x->d * dmw), _mm256_cvtepi32_ps(mins_dot_bsums(mins16, x)), accm[t]);
      sumi[t] = _mm256_setzero_si256();
    }
    __m256i hbits = HIGH ? _mm256_loadu_si256((const __m256i *)qh) : _mm256_setzero_si256();
    for (int c = 0; c < 4; c++) {
      const __m256i q = _mm256_loadu_si256((const __m256i *)(qs + 32 * c));
      __m256i lo = _mm256_and_si256(q, m4);
      __m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4), m4);
      if (HIGH) {
        /* bit 2c of qh[l] -> element l of the low half, bit 2c+1 -> high half; consume 2 bits */
        const __m256i one = _mm256_set1_epi8(1);
        lo = _mm256_or_si256(lo, _mm256_slli_epi16(_mm256_and_si256(hbits, one), 4));
        hi = _mm256_or_si256(hi, _mm256_slli_epi16(_mm256_and_si256(_mm256_srli_epi16(hbits, 1), one), 4));
        hbits = _mm256_srli_epi16(hbits, 2);
      }
      const __m256i s1 = scale_lanes(sc16x2, 2 * c), s2 = scale_lanes(sc16x2, 2 * c + 1);
      for (int t = 0; t < NT; t++) {
        const int8_t *y = ((const block_q8_K *)ACT(t) + i)->qs + 64 * c;
        const __m256i p0 = _mm256_madd_epi16(_mm256_maddubs_epi16(lo, _mm256_loadu_si256((const __m256i *)y)), s1);
        const __m256i p1 = _mm256_madd_epi16(_mm256_maddubs_epi16(hi, _mm256_loadu_si256((const __m256i *)(y + 32))), s2);
        sumi[t] = _mm256_add_epi32(sumi[t], _mm256_add_epi32(p0, p1));
      }
    }
    for (int t = 0; t < NT; t++) {
      const block_q8_K *x = (const block_q8_K *)ACT(t) + i;
      acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(x->d * dw), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
    }
  }
  for (int t = 0; t < NT; t++) s[t] = hsum_ps(acc[t]) - hsum_ps(accm[t]);
}

static AI TGT void dot_q4_K_impl(int n, const void *w, const void *act, size_t st, const int NT, float *s) { dot_qk45_impl(n, w, act, st, NT, s, 0); }
static AI TGT void dot_q5_K_impl(int n, const void *w, const void *act, size_t st, const int NT, float *s) { dot_qk45_impl(n, w, act, st, NT, s, 1); }
DISPATCH_NT(q4_K)
DISPATCH_NT(q5_K)


/*
 * Q6_K: q in [0, 63] (the -32 offset is applied afterwards as 32·Σ_j sc_j·bsums_j, exact in
 * integers). Each 32-byte vector of q spans two 16-element sub-blocks, so its scale vector has
 * sc[a] in the low 8 int16 lanes and sc[a+1] in the high 8.
 * One Q6_K weight block (block i of a row, its fields w as stored or in T_Q6_K_R16) times NT tokens, into
 * that row's accumulators acc[0..NT): the dot, the tile kernel and the T_Q6_K_R16 kernel below all run every
 * block through this, so they are bit-identical.
 */
static AI TGT void q6_K_block(mk_q6_fields w, int i, const void *act, size_t act_stride, const int NT, __m256 *acc) {
  const __m256i m4 = _mm256_set1_epi8(0xF), m30 = _mm256_set1_epi8(0x30);
  const __m128i sc8 = _mm_loadu_si128((const __m128i *)w.sc);
  const __m256i sc16 = _mm256_cvtepi8_epi16(sc8);
  __m256i sumi[MK_TILE_TOKENS];
  for (int t = 0; t < NT; t++) {
    const block_q8_K *x = (const block_q8_K *)ACT(t) + i;
    const __m256i off = _mm256_madd_epi16(sc16, _mm256_loadu_si256((const __m256i *)x->bsums));
    sumi[t] = _mm256_sub_epi32(_mm256_setzero_si256(), _mm256_slli_epi32(off, 5));
  }
  for (int h = 0; h < 2; h++) {
    const __m256i qlA = _mm256_loadu_si256((const __m256i *)mk_q6_ql(&w, 2 * h));
    const __m256i qlB = _mm256_loadu_si256((const __m256i *)mk_q6_ql(&w, 2 * h + 1));
    const __m256i qh = _mm256_loadu_si256((const __m256i *)mk_q6_qh(&w, h));
    __m256i q[4], sv[4];
    q[0] = _mm256_or_si256(_mm256_and_si256(qlA, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 4), m30));
    q[1] = _mm256_or_si256(_mm256_and_si256(qlB, m4), _mm256_and_si256(_mm256_slli_epi16(qh, 2), m30));
    q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qlA, 4), m4), _mm256_and_si256(qh, m30));
    q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(qlB, 4), m4), _mm256_and_si256(_mm256_srli_epi16(qh, 2), m30));
    for (int k = 0; k < 4; k++) {
      const int a = 8 * h + 2 * k;
      const __m128i idx = _mm_add_epi8(_mm_set_epi64x(0x0101010101010101LL, 0), _mm_set1_epi8((char)a));
      sv[k] = _mm256_cvtepi8_epi16(_mm_shuffle_epi8(sc8, idx));
    }
    for (int t = 0; t < NT; t++) {
      const int8_t *y = ((const block_q8_K *)ACT(t) + i)->qs + 128 * h;
      __m256i p = _mm256_setzero_si256();
      for (int k = 0; k < 4; k++) {
        const __m256i yk = _mm256_loadu_si256((const __m256i *)(y + 32 * k));
        p = _mm256_add_epi32(p, _mm256_madd_epi16(_mm256_maddubs_epi16(q[k], yk), sv[k]));
      }
      sumi[t] = _mm256_add_epi32(sumi[t], p);
    }
  }
  const float dw = mk_q6_d(&w);
  for (int t = 0; t < NT; t++) {
    const block_q8_K *x = (const block_q8_K *)ACT(t) + i;
    acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(x->d * dw), _mm256_cvtepi32_ps(sumi[t]), acc[t]);
  }
}

_Static_assert(MK_TILE <= MK_TILE_TOKENS, "q6_K_block holds up to MK_TILE_TOKENS tokens");
static AI TGT void dot_q6_K_impl(int n, const void *vw, const void *act, size_t act_stride, const int NT, float *s) {
  const block_q6_K *w = vw;
  __m256 acc[MK_TILE];
  for (int t = 0; t < NT; t++) acc[t] = _mm256_setzero_ps();
  for (int i = 0; i < n / QK_K; i++) {
    for (int l = 0; l < 4; l++) _mm_prefetch((const char *)(w + i) + PF_AHEAD + 64 * l, _MM_HINT_T0);
    q6_K_block(mk_q6_at(0, vw, 0, n / QK_K, 0, i), i, act, act_stride, NT, acc);
  }
  for (int t = 0; t < NT; t++) s[t] = hsum_ps(acc[t]);
}
DISPATCH_NT(q6_K)

/*
 * Q6_K tile: up to 4 weight rows × 8 tokens per pass, the same per-block operations as the dot (one
 * hsum per (row, token) at the end); only the loops are rearranged so each row's block is unpacked
 * once for all tokens and the next tile's rows are prefetched (the rows of a work item are contiguous;
 * 4 interleaved short streams defeat the hardware prefetcher).
 */
static AI TGT void tile_q6_K_impl(int n, const void *vw, size_t w_stride, const void *act, size_t act_stride,
                                  float *s, size_t s_stride, const int NR, const int NT) {
  __m256 acc[MK_TILE_ROWS][MK_TILE_TOKENS];
  for (int r = 0; r < NR; r++)
    for (int t = 0; t < NT; t++) acc[r][t] = _mm256_setzero_ps();
  const int nb = n / QK_K;
#define Q6_ROW(r) ((const block_q6_K *)((const char *)vw + (size_t)(r) * w_stride))
  if (NT == 1) {
    /* one token (decode): rows one after another, prefetching on along the contiguous rows as dot_q6_K
     * does (measured faster here than interleaving the 4 rows), 4 KiB ahead (a 256 MB matmul from DRAM:
     * ~1.1× the bandwidth of PF_AHEAD) */
    for (int r = 0; r < NR; r++)
      for (int i = 0; i < nb; i++) {
        for (int l = 0; l < 4; l++) _mm_prefetch((const char *)(Q6_ROW(r) + i) + 4 * PF_AHEAD + 64 * l, _MM_HINT_T0);
        q6_K_block(mk_q6_at(0, vw, w_stride, nb, r, i), i, act, act_stride, 1, acc[r]);
      }
  } else {
    /* several tokens: blocks outer, rows inner, prefetching the same block of the next tile's rows */
    for (int i = 0; i < nb; i++)
      for (int r = 0; r < NR; r++) {
        const block_q6_K *w = Q6_ROW(r) + i;
        for (int l = 0; l < 4; l++) _mm_prefetch((const char *)w + (size_t)NR * w_stride + 64 * l, _MM_HINT_T0);
        q6_K_block(mk_q6_at(0, vw, w_stride, nb, r, i), i, act, act_stride, NT, acc[r]);
      }
  }
#undef Q6_ROW
  for (int r = 0; r < NR; r++)
    for (int t = 0; t < NT; t++) s[(size_t)t * s_stride + r] = hsum_ps(acc[r][t]);
}

#define Q6_TILE_CASE(R, T) \
  case (R) * 16 + (T): tile_q6_K_impl(n, w, w_stride, act, act_stride, s, s_stride, R, T); break;
#define Q6_TILE_ROW(R) Q6_TILE_CASE(R, 1) Q6_TILE_CASE(R, 2) Q6_TILE_CASE(R, 3) Q6_TILE_CASE(R, 4) \
                       Q6_TILE_CASE(R, 5) Q6_TILE_CASE(R, 6) Q6_TILE_CASE(R, 7) Q6_TILE_CASE(R, 8)

static TGT void tile_q6_K(int n, const void *w, size_t w_stride, int nr, const void *act, size_t act_stride,
                          int nt, float *s, size_t s_stride) {
  switch (nr * 16 + nt) {
    Q6_TILE_ROW(1) Q6_TILE_ROW(2) Q6_TILE_ROW(3) Q6_TILE_ROW(4)
    default: break;
  }
}

/* T_Q6_K_R16 (common.h) on AVX2 (the AVX-512 CPUs that repack run kernels_avx512.c; this serves setSimd(2)):
 * each row of the group through q6_K_block, up to MK_TILE_TOKENS tokens per pass. */
TGT void mk_q6K_r16_group_avx2(int nb, const uint8_t *wg, const uint8_t *act, size_t act_stride, int T, float *s,
                               size_t s_stride) {
  for (int t0 = 0; t0 < T; t0 += MK_TILE_TOKENS) {
    const int nt = T - t0 < MK_TILE_TOKENS ? T - t0 : MK_TILE_TOKENS;
    const uint8_t *a = act + (size_t)t0 * act_stride;
    for (int r = 0; r < MK_R16; r++) {
      __m256 acc[MK_TILE_TOKENS];
      for (int t = 0; t < nt; t++) acc[t] = _mm256_setzero_ps();
      for (int i = 0; i < nb; i++) q6_K_block(mk_q6_at(1, wg, 0, nb, r, i), i, a, act_stride, nt, acc);
      for (int t = 0; t < nt; t++) s[(size_t)(t0 + t) * s_stride + r] = hsum_ps(acc[t]);
    }
  }
}

/* ---- activation conversion (f16 via F16C; same rounding as the scalar path) ------------- */

static TGT void quant_f16_avx2(const float *x, void *vy, int n) {
  uint16_t *y = vy;
  int i = 0;
  for (; i + 8 <= n; i += 8)
    _mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(_mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT));
  for (; i < n; i++) y[i] = f32_to_f16(x[i]);
}

/* ---- activation quantizers: the bytes of kernels_scalar.c mk_quant_q8_0_ref / mk_quant_q8_K_ref ----
 *
 * ggml's x86 quantize_row_q8_0 and quantize_row_q8_K_ref, block by block. A block's largest |x| is found
 * as an unsigned compare of the sign-cleared bits: that is the order of non-negative floats, so with
 * every |x| finite it is the value of fmaxf's running max and of the reference's first strictly larger
 * |x|. NaN and inf sort above every finite value, so one compare with 0x7f800000 finds them: such a
 * block, and one whose scale is not finite (127/amax overflows when amax < 2^-121), goes to the scalar
 * code. Elements round by vcvtps2dq, round half to even under the default MXCSR as nearest_int's
 * 1.5·2^23 addition is (the same integer for |v| < 2^22; here |v| <= 127.00004).
 */
#define Q_ABS(v) _mm256_and_si256(_mm256_castps_si256(v), _mm256_set1_epi32(0x7fffffff))

static AI TGT uint32_t hmax_epu32(__m256i m) {
  __m128i r = _mm_max_epu32(_mm256_castsi256_si128(m), _mm256_extracti128_si256(m, 1));
  r = _mm_max_epu32(r, _mm_shuffle_epi32(r, 0x4e));
  r = _mm_max_epu32(r, _mm_shuffle_epi32(r, 0xb1));
  return (uint32_t)_mm_cvtsi128_si32(r);
}

/* 32 int32 (4 vectors, in order) -> 32 int8 in order (values within [-128, 127]) */
static AI TGT __m256i pack_i32x32(__m256i a, __m256i b, __m256i c, __m256i d) {
  /* packs work per 128-bit lane: dword k of the result holds 4 values of a, b, c, d, a+4, b+4, .. */
  const __m256i p = _mm256_packs_epi16(_mm256_packs_epi32(a, b), _mm256_packs_epi32(c, d));
  return _mm256_permutevar8x32_epi32(p, _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7));
}

static TGT void quant_q8_0_avx2(const float *x, void *vy, int n) {
  block_q8_0 *y = vy;
  for (int i = 0; i < n / QK8_0; i++, x += QK8_0) {
    __m256 v[4];
    __m256i m = _mm256_setzero_si256();
    for (int k = 0; k < 4; k++) {
      v[k] = _mm256_loadu_ps(x + 8 * k);
      m = _mm256_max_epu32(m, Q_ABS(v[k]));
    }
    const uint32_t ab = hmax_epu32(m);
    const float amax = bits_f32(ab), id = amax != 0.0f ? 127.f / amax : 0.0f;
    if (!mk_q8_scale_finite(ab, id)) {
      mk_quant_q8_0_ref(x, &y[i], QK8_0);
      continue;
    }
    y[i].d = f32_to_f16(amax / 127.f);
    const __m256 vid = _mm256_set1_ps(id);
    __m256i q[4];
    for (int k = 0; k < 4; k++) q[k] = _mm256_cvtps_epi32(_mm256_mul_ps(v[k], vid));
    _mm256_storeu_si256((__m256i *)y[i].qs, pack_i32x32(q[0], q[1], q[2], q[3]));
  }
}

static TGT void quant_q8_K_avx2(const float *x, void *vy, int n) {
  block_q8_K *y = vy;
  const __m256i zero = _mm256_setzero_si256(), c127 = _mm256_set1_epi32(127), flip = _mm256_set1_epi8((char)0x80);
  for (int i = 0; i < n / QK_K; i++, x += QK_K) {
    __m256i m = zero;
    for (int k = 0; k < QK_K; k += 8) m = _mm256_max_epu32(m, Q_ABS(_mm256_loadu_ps(x + k)));
    const uint32_t ab = hmax_epu32(m);
    if (ab == 0) { /* all ±0 */
      memset(&y[i], 0, sizeof y[i]);
      continue;
    }
    float iscale = 0;
    if (ab < 0x7f800000u) {
      const __m256i mb = _mm256_set1_epi32((int)ab);
      int j = 0, hit;
      while (!(hit = _mm256_movemask_ps(_mm256_castsi256_ps(_mm256_cmpeq_epi32(Q_ABS(_mm256_loadu_ps(x + j)), mb)))))
        j += 8;
      iscale = -127.f / x[j + __builtin_ctz((unsigned)hit)]; /* the first element of the largest |x| */
    }
    if (!mk_q8_scale_finite(ab, iscale)) {
      mk_quant_q8_K_ref(x, &y[i], QK_K);
      continue;
    }
    const __m256 vs = _mm256_set1_ps(iscale);
    for (int k = 0; k < QK_K; k += 32) {
      __m256i q[4];
      for (int l = 0; l < 4; l++) q[l] = _mm256_min_epi32(_mm256_cvtps_epi32(_mm256_mul_ps(vs, _mm256_loadu_ps(x + k + 8 * l))), c127);
      const __m256i b = pack_i32x32(q[0], q[1], q[2], q[3]);
      _mm256_storeu_si256((__m256i *)(y[i].qs + k), b);
      /* bsums: vpsadbw of q + 128 sums each 8 bytes; two make a 16-element group, less 16·128 */
      __m256i sa = _mm256_sad_epu8(_mm256_xor_si256(b, flip), zero);
      sa = _mm256_add_epi64(sa, _mm256_srli_si256(sa, 8));
      y[i].bsums[k / 16] = (int16_t)(_mm256_extract_epi32(sa, 0) - 2048);
      y[i].bsums[k / 16 + 1] = (int16_t)(_mm256_extract_epi32(sa, 4) - 2048);
    }
    y[i].d = 1 / iscale;
  }
}
#undef Q_ABS

int mk_avx2_fill(int type, mk_type_ops *o) {
  switch (type) {
    case T_F32: o->dot = dot_f32; return 1;
    case T_F16: o->dot = dot_f16; o->quant_act = quant_f16_avx2; return 1;
    case T_BF16: o->dot = dot_bf16; return 1;
    case T_Q8_0: o->dot = dot_q8_0; o->quant_act = quant_q8_0_avx2; return 1;
    case T_Q4_0: o->dot = dot_q4_0; o->quant_act = quant_q8_0_avx2; return 1;
    case T_Q4_K: o->dot = dot_q4_K; o->quant_act = quant_q8_K_avx2; return 1;
    case T_Q5_K: o->dot = dot_q5_K; o->quant_act = quant_q8_K_avx2; return 1;
    case T_Q6_K: o->dot = dot_q6_K; o->dot_tile = tile_q6_K; o->quant_act = quant_q8_K_avx2; return 1;
    default: return 0;
  }
}

#else /* not x86-64 GCC/clang: scalar only */

int mk_cpu_has_avx2(void) { return 0; }
int mk_avx2_fill(int type, mk_type_ops *o) { (void)type; (void)o; return 0; }
void mk_q6K_r16_group_avx2(int nb, const uint8_t *wg, const uint8_t *act, size_t act_stride, int T, float *s,
                           size_t s_stride) {
  (void)nb; (void)wg; (void)act; (void)act_stride; (void)T; (void)s; (void)s_stride;
}

#endif

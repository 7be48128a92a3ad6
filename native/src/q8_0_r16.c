/*
 * Q8_0 rows repacked by 16 (T_Q8_0_R16, layout in common.h) for the AVX-512 kernels, and the scalar
 * reference of the same numbers.
 *
 * Numerics are those of the stored-layout Q8_0 kernels (kernels_avx2.c dot_q8_0, kernels_avx512.c
 * tile_q8_0, which match ggml's AVX2 ggml_vec_dot_q8_0_q8_0): per row and block, 8 int32 lanes, lane l
 * the exact sum of the 4 products at positions 4l..4l+3; one f32 FMA of (dw·dx)·lane into lane l's
 * accumulator per block; at the end ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)). Here the 8 lanes of a row
 * are 8 vectors (lane l of 16 rows per 512-bit vector), so the last sum is vertical and the
 * results are bit-identical to the stored layout.
 *
 * The weights are stored unsigned (w + 128) so one vpdpbusd (u8 × s8) gives Σ (w+128)·x; starting
 * it from −128·Σx (per token, block and lane: computed once per call) leaves exactly Σ w·x.
 */
#include "common.h"

#include <math.h>
#include <stdlib.h>

/* ---- packing ----------------------------------------------------------------------------- */

void mkc_q8_0_r16_pack(uint8_t *dst, const uint8_t *src, int g0, int g1, int K) {
  const int nb = K / QK8_0;
  for (int g = g0; g < g1; g++)
    for (int i = 0; i < nb; i++) {
      uint8_t *o = dst + ((size_t)g * nb + i) * MK_Q8R16_BLOCK;
      for (int r = 0; r < MK_R16; r++) {
        const block_q8_0 *b = (const block_q8_0 *)src + (size_t)(MK_R16 * g + r) * nb + i;
        memcpy(o + 2 * r, &b->d, 2);
        for (int l = 0; l < 8; l++)
          for (int m = 0; m < 4; m++) o[32 + 64 * l + 4 * r + m] = (uint8_t)(b->qs[4 * l + m] ^ 0x80);
      }
    }
}

/* ---- scalar reference -------------------------------------------------------------------- */

/* s[t*s_stride + r] = row r of the group (nb blocks at wg) · act_t, in the lane order above. */
static void q8_0_r16_group_scalar(int nb, const uint8_t *wg, const uint8_t *act, size_t act_stride, int nt,
                                  float *s, size_t s_stride) {
  for (int t = 0; t < nt; t++)
    for (int r = 0; r < MK_R16; r++) {
      float a[8] = {0};
      for (int i = 0; i < nb; i++) {
        const uint8_t *b = wg + (size_t)i * MK_Q8R16_BLOCK;
        const block_q8_0 *x = (const block_q8_0 *)(act + (size_t)t * act_stride) + i;
        uint16_t dh;
        memcpy(&dh, b + 2 * r, 2);
        const float d = f16_to_f32(dh) * f16_to_f32(x->d);
        for (int l = 0; l < 8; l++) {
          int32_t sum = 0;
          for (int m = 0; m < 4; m++) sum += (int32_t)(int8_t)(b[32 + 64 * l + 4 * r + m] ^ 0x80) * x->qs[4 * l + m];
          a[l] = fmaf(d, (float)sum, a[l]);
        }
      }
      s[(size_t)t * s_stride + r] = ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
    }
}

/* ---- AVX-512 ------------------------------------------------------------------------------ */

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define TGT5 __attribute__((target("avx512f,avx512vl,avx512bw,avx512vnni,avx2,fma,f16c")))
#define AI __attribute__((always_inline)) inline

/* One token: no software prefetch, as the one-token Q4_K_R16 / Q6_K_R16 kernels (kernels_avx512.c, above
 * q6K_r16_t1): each of the unrolled weight loads advances by one 544-byte block, a stride the core's prefetcher
 * follows. bench/native moe-stream 2 141 141, alternating, the MoE step over a plain read of the same bytes:
 * sixteen blocks ahead into L1 0.96-0.98, none 1.00-1.03 (also at 52 GB/s). With 2+ tokens, the next group into
 * L2 (moe-prompt 2 141 141, 7 alternating pairs: 44-75 -> 34-54 ms per layer, faster in 5). */
/* corr[t][i*8 + l] = −128·Σ_{m<4} x_t[i].qs[4l+m] for the nb blocks of nt tokens */
static TGT5 void q8_0_r16_corr(int nb, const uint8_t *act, size_t act_stride, int nt, int32_t *corr) {
  const __m256i c128 = _mm256_set1_epi8((char)0x80);
  for (int t = 0; t < nt; t++)
    for (int i = 0; i < nb; i++) {
      const block_q8_0 *x = (const block_q8_0 *)(act + (size_t)t * act_stride) + i;
      const __m256i s = _mm256_dpbusd_epi32(_mm256_setzero_si256(), c128, _mm256_loadu_si256((const __m256i *)x->qs));
      _mm256_storeu_si256((__m256i *)(corr + ((size_t)t * nb + i) * 8), _mm256_sub_epi32(_mm256_setzero_si256(), s));
    }
}

static AI TGT5 void q8_0_r16_impl(int nb, const uint8_t *wg, const uint8_t *act, size_t act_stride,
                                  const int32_t *corr, float *s, size_t s_stride, const int NT) {
  __m512 acc[3][8];
  for (int t = 0; t < NT; t++)
    for (int l = 0; l < 8; l++) acc[t][l] = _mm512_setzero_ps();
  for (int i = 0; i < nb; i++) {
    const uint8_t *b = wg + (size_t)i * MK_Q8R16_BLOCK;
    if (NT > 1) /* as kernels_avx512.c q4K_r16_impl: the next group into L2 while this one runs its token tiles */
      for (int k = 0; k < 9; k++) _mm_prefetch((const char *)b + (size_t)nb * MK_Q8R16_BLOCK + 64 * k, _MM_HINT_T1);
    const __m512 dw = _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)b));
    __m512 d[3];
    const int32_t *xq[3], *c[3];
    for (int t = 0; t < NT; t++) {
      const block_q8_0 *x = (const block_q8_0 *)(act + (size_t)t * act_stride) + i;
      d[t] = _mm512_mul_ps(dw, _mm512_set1_ps(f16_to_f32(x->d)));
      xq[t] = (const int32_t *)x->qs;
      c[t] = corr + ((size_t)t * nb + i) * 8;
    }
    for (int l = 0; l < 8; l++) {
      const __m512i w = _mm512_loadu_si512(b + 32 + 64 * l);
      for (int t = 0; t < NT; t++) {
        int32_t xw;
        memcpy(&xw, xq[t] + l, 4);
        const __m512i p = _mm512_dpbusd_epi32(_mm512_set1_epi32(c[t][l]), w, _mm512_set1_epi32(xw));
        acc[t][l] = _mm512_fmadd_ps(d[t], _mm512_cvtepi32_ps(p), acc[t][l]);
      }
    }
  }
  for (int t = 0; t < NT; t++) {
    const __m512 r = _mm512_add_ps(_mm512_add_ps(_mm512_add_ps(acc[t][0], acc[t][4]), _mm512_add_ps(acc[t][2], acc[t][6])),
                                   _mm512_add_ps(_mm512_add_ps(acc[t][1], acc[t][5]), _mm512_add_ps(acc[t][3], acc[t][7])));
    _mm512_storeu_ps(s + (size_t)t * s_stride, r);
  }
}

/* the activation sums of rows up to K = 16384 live on the stack; longer rows take them from the heap
 * (precomputing them once per call, not per 16-row group, is worth 7-10% on the MoE decode step) */
#define Q8R16_STACK_NB 512
static TGT5 int q8_0_r16_rows_512(const uint8_t *w, int nb, int ngroups, const uint8_t *act, size_t arow, int T,
                                  float *y, size_t ystride) {
  int32_t on_stack[3 * Q8R16_STACK_NB * 8];
  int32_t *corr = nb <= Q8R16_STACK_NB ? on_stack : malloc(sizeof(int32_t) * 3 * 8 * (size_t)nb);
  if (!corr) return 0;
  for (int t0 = 0; t0 < T; t0 += 3) {
    const int nt = T - t0 < 3 ? T - t0 : 3;
    const uint8_t *a = act + (size_t)t0 * arow;
    q8_0_r16_corr(nb, a, arow, nt, corr);
    for (int g = 0; g < ngroups; g++) {
      const uint8_t *wg = w + (size_t)g * nb * MK_Q8R16_BLOCK;
      float *o = y + (size_t)t0 * ystride + MK_R16 * g;
      if (nt == 1) q8_0_r16_impl(nb, wg, a, arow, corr, o, ystride, 1);
      else if (nt == 2) q8_0_r16_impl(nb, wg, a, arow, corr, o, ystride, 2);
      else q8_0_r16_impl(nb, wg, a, arow, corr, o, ystride, 3);
    }
  }
  if (corr != on_stack) free(corr);
  return 1;
}

/* The layout of mkc_q8_0_r16_pack by 16-lane gathers (group offsets must fit in int32). */
TGT5 void mk_q8_0_r16_pack_512(uint8_t *dst, const uint8_t *src, int g0, int g1, int K) {
  const int nb = K / QK8_0;
  const size_t row = (size_t)nb * sizeof(block_q8_0);
  const __m512i idx = _mm512_mullo_epi32(_mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15),
                                         _mm512_set1_epi32((int)row));
  const __m512i flip = _mm512_set1_epi8((char)0x80);
  for (int g = g0; g < g1; g++)
    for (int i = 0; i < nb; i++) {
      const uint8_t *b = src + (size_t)MK_R16 * g * row + (size_t)i * sizeof(block_q8_0);
      uint8_t *o = dst + ((size_t)g * nb + i) * MK_Q8R16_BLOCK;
      /* d is the low half of the dword at offset 0 (a gather of 4 bytes may read 2 bytes past the last
       * row's block only within the block: qs follows d) */
      _mm256_storeu_si256((__m256i *)o, _mm512_cvtepi32_epi16(_mm512_i32gather_epi32(idx, b, 1)));
      for (int l = 0; l < 8; l++)
        _mm512_storeu_si512(o + 32 + 64 * l, _mm512_xor_si512(_mm512_i32gather_epi32(idx, b + 2 + 4 * l, 1), flip));
    }
}

#else
static int q8_0_r16_rows_512(const uint8_t *w, int nb, int ngroups, const uint8_t *act, size_t arow, int T,
                             float *y, size_t ystride) {
  (void)w; (void)nb; (void)ngroups; (void)act; (void)arow; (void)T; (void)y; (void)ystride;
  return 0;
}
void mk_q8_0_r16_pack_512(uint8_t *dst, const uint8_t *src, int g0, int g1, int K) { mkc_q8_0_r16_pack(dst, src, g0, g1, K); }
#endif

void mk_q8_0_r16_rows(const uint8_t *w, int K, int ngroups, const uint8_t *act, size_t arow, int T, float *y,
                      size_t ystride, int simd) {
  const int nb = K / QK8_0;
  /* simd is 2 only where the CPU has AVX-512 (ops.c); 0 back = not compiled in, or out of memory */
  if (simd >= 2 && q8_0_r16_rows_512(w, nb, ngroups, act, arow, T, y, ystride)) return;
  for (int t0 = 0; t0 < T; t0 += MK_TILE) {
    const int nt = T - t0 < MK_TILE ? T - t0 : MK_TILE;
    for (int g = 0; g < ngroups; g++)
      q8_0_r16_group_scalar(nb, w + (size_t)g * nb * MK_Q8R16_BLOCK, act + (size_t)t0 * arow, arow, nt,
                            y + (size_t)t0 * ystride + MK_R16 * g, ystride);
  }
}

/*
 * Q6_K rows repacked by 16 (T_Q6_K_R16, layout in common.h): the packing, the scalar reference of the
 * kernels' numbers, and the dispatch onto the SIMD kernels (kernels_avx512.c mk_q6K_r16_group_512,
 * kernels_avx2.c mk_q6K_r16_group_avx2), which run the stored layout's block functions on these fields.
 *
 * Numerics are those of the stored-layout SIMD kernels (kernels_avx2.c q6_K_block, which reproduces ggml's
 * AVX2 ggml_vec_dot_q6_K_q8_K): per row and block, 8 int32 lanes, lane j the exact sum over the 32-byte
 * vectors q[h][k] (elements 128h + 32k + 4j .. +3, q unsigned 6-bit) of sc[sub-block]·q·y, minus
 * 32·(sc[2j]·bsums[2j] + sc[2j+1]·bsums[2j+1]); one f32 FMA of (x.d·d)·lane into lane j's accumulator per
 * block; at the end ((a0+a4)+(a2+a6)) + ((a1+a5)+(a3+a7)) (hsum_ps). The layout only moves the fields, so
 * the results are bit-identical to the stored layout's SIMD kernels.
 */
#include "common.h"

#include <math.h>

/* ---- packing ----------------------------------------------------------------------------- */

/* Groups [g0, g1) of Q6_K [*, K] (rows contiguous) into T_Q6_K_R16, field by field (memcpy of constant sizes:
 * vector moves); the source is read in order. The layout only moves whole fields, so this is its own reference. */
void mk_q6K_r16_pack(uint8_t *dst, const uint8_t *src, int g0, int g1, int K) {
  const int nb = K / QK_K;
  for (int g = g0; g < g1; g++)
    for (int i = 0; i < nb; i++) {
      uint8_t *o = dst + ((size_t)g * nb + i) * MK_Q6R16_BLOCK;
      for (int r = 0; r < MK_R16; r++) {
        const uint8_t *b = src + ((size_t)(MK_R16 * g + r) * nb + i) * sizeof(block_q6_K);
        uint8_t *ql = o + 384 * (r >> 1) + 32 * (r & 1), *qh = ql + 256;
        for (int c = 0; c < 4; c++) memcpy(ql + 64 * c, b + 32 * c, 32);
        for (int c = 0; c < 2; c++) memcpy(qh + 64 * c, b + 128 + 32 * c, 32);
        memcpy(o + 16 * 192 + 16 * r, b + 192, 16);
        memcpy(o + 16 * 208 + 2 * r, b + 208, 2);
      }
    }
}

/* ---- scalar reference -------------------------------------------------------------------- */

/* s[t*s_stride + r] = row r of the group (nb blocks at wg) · act_t, in the lane order above. */
static void q6K_r16_group_scalar(int nb, const uint8_t *wg, const uint8_t *act, size_t act_stride, int nt,
                                 float *s, size_t s_stride) {
  for (int t = 0; t < nt; t++)
    for (int r = 0; r < MK_R16; r++) {
      float a[8] = {0};
      for (int i = 0; i < nb; i++) {
        const mk_q6_fields f = mk_q6_at(1, wg, 0, nb, r, i);
        const block_q8_K *x = (const block_q8_K *)(act + (size_t)t * act_stride) + i;
        int32_t lane[8];
        for (int j = 0; j < 8; j++) lane[j] = -32 * (f.sc[2 * j] * x->bsums[2 * j] + f.sc[2 * j + 1] * x->bsums[2 * j + 1]);
        for (int e = 0; e < QK_K; e++) {
          const int h = e / 128, k = e % 128 / 32, b = e % 32;
          const int ql = mk_q6_ql(&f, 2 * h + (k & 1))[b];
          const int q = (k < 2 ? ql & 0xF : ql >> 4) | ((mk_q6_qh(&f, h)[b] >> (2 * k)) & 3) << 4;
          lane[b / 4] += f.sc[e / 16] * q * x->qs[e];
        }
        const float d = x->d * mk_q6_d(&f);
        for (int j = 0; j < 8; j++) a[j] = fmaf(d, (float)lane[j], a[j]);
      }
      s[(size_t)t * s_stride + r] = ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]));
    }
}

/* ---- dispatch ---------------------------------------------------------------------------- */

void mk_q6K_r16_rows(const uint8_t *w, int K, int ngroups, const uint8_t *act, size_t arow, int T, float *y,
                     size_t ystride, int simd) {
  const int nb = K / QK_K;
  /* simd is 2 only where the CPU has AVX-512, 1 only where it has AVX2 (ops.c) */
  for (int g = 0; g < ngroups; g++) {
    const uint8_t *wg = w + (size_t)g * nb * MK_Q6R16_BLOCK;
    float *o = y + MK_R16 * g;
    if (simd >= 2) mk_q6K_r16_group_512(nb, wg, act, arow, T, o, ystride);
    else if (simd == 1) mk_q6K_r16_group_avx2(nb, wg, act, arow, T, o, ystride);
    else q6K_r16_group_scalar(nb, wg, act, arow, T, o, ystride);
  }
}

/* Shared x86 helper for the Q4_K/Q5_K kernels (kernels_avx2.c, ggml_compat.c). */
#ifndef MK_K4_SCALES_H
#define MK_K4_SCALES_H
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#include <stdint.h>
#include <string.h>

/*
 * The 8 six-bit scales and mins of a Q4_K/Q5_K block (get_scale_min_k4, j = 0..7) with 32-bit word
 * operations: byte k of word 0/1 holds sc[k]/m[k] (low 6 bits) and bits 4-5 of sc[k+4]/m[k+4] (its top
 * 2 bits); word 2 holds the low 4 bits of sc[k+4] (low nibble) and m[k+4] (high nibble).
 * Returns sc[0..7] in the low 8 bytes and m[0..7] in the high 8 bytes.
 */
static inline __attribute__((always_inline, target("avx2,fma,f16c"))) __m128i mk_unpack_k4_scales(const uint8_t *q) {
  uint32_t u0, u1, u2;
  memcpy(&u0, q, 4);
  memcpy(&u1, q + 4, 4);
  memcpy(&u2, q + 8, 4);
  const uint32_t sc_lo = u0 & 0x3f3f3f3fu, m_lo = u1 & 0x3f3f3f3fu;
  const uint32_t sc_hi = (u2 & 0x0f0f0f0fu) | ((u0 >> 2) & 0x30303030u);
  const uint32_t m_hi = ((u2 >> 4) & 0x0f0f0f0fu) | ((u1 >> 2) & 0x30303030u);
  return _mm_set_epi32((int)m_hi, (int)m_lo, (int)sc_hi, (int)sc_lo);
}

#endif
#endif

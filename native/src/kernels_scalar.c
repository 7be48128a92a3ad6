/*
 * Portable scalar kernels: the algorithmic reference for the AVX2 path and the fallback on
 * other CPUs. Numerics follow ggml's CPU backend (ggml-quants.c, ggml-cpu/quants.c):
 * integer dot products inside a block, scaled and accumulated in f32.
 */
#include <math.h>
#include <stdlib.h>

#include "common.h"

float mk_f16_table[65536];

static float f16_to_f32_slow(uint16_t h) {
  uint32_t sign = (uint32_t)(h & 0x8000) << 16;
  uint32_t exp = (h >> 10) & 0x1f, mant = h & 0x3ff;
  if (exp == 0x1f) return bits_f32(sign | 0x7f800000u | (mant << 13));
  if (exp == 0) {
    float v = (float)mant * (1.0f / 16777216.0f); /* mant * 2^-24, exact */
    return sign ? -v : v;
  }
  return bits_f32(sign | ((exp + 112) << 23) | (mant << 13));
}

void mk_init_tables(void) {
  for (uint32_t i = 0; i < 65536; i++) mk_f16_table[i] = f16_to_f32_slow((uint16_t)i);
}

/* ---- activation conversion ------------------------------------------------------------- */

static void quant_f32(const float *x, void *y, int n) { memcpy(y, x, (size_t)n * 4); }

static void quant_f16(const float *x, void *vy, int n) {
  uint16_t *y = vy;
  for (int i = 0; i < n; i++) y[i] = f32_to_f16(x[i]);
}

static void quant_bf16(const float *x, void *vy, int n) {
  uint16_t *y = vy;
  for (int i = 0; i < n; i++) y[i] = f32_to_bf16(x[i]);
}

/*
 * f32 -> Q8_0 as ggml's x86 quantize_row_q8_0 does it (arch/x86/quants.c): d = amax/127,
 * multiplier 127/amax, round half to even. (The portable _ref variant uses 1/d and roundf;
 * we follow the x86 variant so results equal llama.cpp on the machines we target.)
 */
void mk_quant_q8_0_ref(const float *x, void *vy, int n) {
  block_q8_0 *y = vy;
  for (int i = 0; i < n / QK8_0; i++, x += QK8_0) {
    float amax = 0;
    for (int j = 0; j < QK8_0; j++) amax = fmaxf(amax, fabsf(x[j]));
    y[i].d = f32_to_f16(amax / 127.f);
    const float id = amax != 0.0f ? 127.f / amax : 0.0f;
    for (int j = 0; j < QK8_0; j++) y[i].qs[j] = (int8_t)nearest_int(x[j] * id);
  }
}

/* f32 -> Q8_K (ggml-quants.c quantize_row_q8_K_ref; also what x86 uses). */
void mk_quant_q8_K_ref(const float *x, void *vy, int n) {
  block_q8_K *y = vy;
  for (int i = 0; i < n / QK_K; i++, x += QK_K) {
    float max = 0, amax = 0;
    for (int j = 0; j < QK_K; j++) {
      float ax = fabsf(x[j]);
      if (ax > amax) { amax = ax; max = x[j]; }
    }
    if (amax == 0) {
      memset(&y[i], 0, sizeof y[i]);
      continue;
    }
    const float iscale = -127.f / max;
    for (int j = 0; j < QK_K; j++) {
      int v = nearest_int(iscale * x[j]);
      y[i].qs[j] = (int8_t)(v > 127 ? 127 : v);
    }
    for (int j = 0; j < QK_K / 16; j++) {
      int s = 0;
      for (int l = 0; l < 16; l++) s += y[i].qs[16 * j + l];
      y[i].bsums[j] = (int16_t)s;
    }
    y[i].d = 1 / iscale;
  }
}

/* ---- dequantization (ggml-quants.c dequantize_row_*) ----------------------------------- */

static void dequant_f32(const void *w, float *y, int n) { memcpy(y, w, (size_t)n * 4); }

static void dequant_f16(const void *w, float *y, int n) {
  const uint16_t *h = w;
  for (int i = 0; i < n; i++) y[i] = f16_to_f32(h[i]);
}

static void dequant_bf16(const void *w, float *y, int n) {
  const uint16_t *h = w;
  for (int i = 0; i < n; i++) y[i] = bf16_to_f32(h[i]);
}

static void dequant_q8_0(const void *w, float *y, int n) {
  const block_q8_0 *b = w;
  for (int i = 0; i < n / QK8_0; i++) {
    const float d = f16_to_f32(b[i].d);
    for (int j = 0; j < QK8_0; j++) *y++ = d * b[i].qs[j];
  }
}

/* Q4_0: element j is the low nibble of qs[j], element j+16 the high nibble; value (q-8)*d. */
static void dequant_q4_0(const void *w, float *y, int n) {
  const block_q4_0 *b = w;
  for (int i = 0; i < n / QK4_0; i++, y += QK4_0) {
    const float d = f16_to_f32(b[i].d);
    for (int j = 0; j < QK4_0 / 2; j++) {
      y[j] = ((b[i].qs[j] & 0xF) - 8) * d;
      y[j + 16] = ((b[i].qs[j] >> 4) - 8) * d;
    }
  }
}

/* Q4_K: 8 sub-blocks of 32; each 64-element chunk: low nibbles = sub-block 2c, high = 2c+1. */
static void dequant_q4_K(const void *w, float *y, int n) {
  const block_q4_K *b = w;
  for (int i = 0; i < n / QK_K; i++) {
    const float d = f16_to_f32(b[i].d), dmin = f16_to_f32(b[i].dmin);
    const uint8_t *q = b[i].qs;
    for (int c = 0; c < 4; c++, q += 32) {
      uint8_t sc, m;
      scale_min_k4(2 * c, b[i].scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      scale_min_k4(2 * c + 1, b[i].scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; l++) *y++ = d1 * (q[l] & 0xF) - m1;
      for (int l = 0; l < 32; l++) *y++ = d2 * (q[l] >> 4) - m2;
    }
  }
}

/* Q5_K: as Q4_K plus a 5th bit: qh[l] bit 2c (low half) / 2c+1 (high half) of chunk c. */
static void dequant_q5_K(const void *w, float *y, int n) {
  const block_q5_K *b = w;
  for (int i = 0; i < n / QK_K; i++) {
    const float d = f16_to_f32(b[i].d), dmin = f16_to_f32(b[i].dmin);
    const uint8_t *q = b[i].qs, *qh = b[i].qh;
    for (int c = 0; c < 4; c++, q += 32) {
      uint8_t sc, m;
      scale_min_k4(2 * c, b[i].scales, &sc, &m);
      const float d1 = d * sc, m1 = dmin * m;
      scale_min_k4(2 * c + 1, b[i].scales, &sc, &m);
      const float d2 = d * sc, m2 = dmin * m;
      for (int l = 0; l < 32; l++) *y++ = d1 * ((q[l] & 0xF) + (((qh[l] >> (2 * c)) & 1) << 4)) - m1;
      for (int l = 0; l < 32; l++) *y++ = d2 * ((q[l] >> 4) + (((qh[l] >> (2 * c + 1)) & 1) << 4)) - m2;
    }
  }
}

/* Q6_K element value (6-bit q - 32) at index e of a block; ggml-quants.c dequantize_row_q6_K. */
static inline int q6_value(const block_q6_K *b, int e) {
  const int half = e / 128, r = e % 128, quarter = r / 32, l = r % 32;
  const uint8_t *ql = b->ql + 64 * half, *qh = b->qh + 32 * half;
  const int lo = quarter & 1 ? ql[l + 32] : ql[l];
  const int nib = quarter < 2 ? lo & 0xF : lo >> 4;
  return (nib | (((qh[l] >> (2 * quarter)) & 3) << 4)) - 32;
}

static void dequant_q6_K(const void *w, float *y, int n) {
  const block_q6_K *b = w;
  for (int i = 0; i < n / QK_K; i++) {
    const float d = f16_to_f32(b[i].d);
    for (int e = 0; e < QK_K; e++) *y++ = d * b[i].scales[e / 16] * q6_value(&b[i], e);
  }
}

/* ---- dot products: one weight row against nt activation rows --------------------------- */

#define ACT(t) ((const char *)act + (size_t)(t) * act_stride)

static void dot_f32(int n, const void *w_row, const void *act, size_t act_stride, int nt, float *s) {
  const float *w = w_row;
  for (int t = 0; t < nt; t++) {
    const float *x = (const float *)ACT(t);
    float acc = 0;
    for (int i = 0; i < n; i++) acc += w[i] * x[i];
    s[t] = acc;
  }
}

static void dot_f16(int n, const void *w_row, const void *act, size_t act_stride, int nt, float *s) {
  const uint16_t *w = w_row;
  for (int t = 0; t < nt; t++) {
    const uint16_t *x = (const uint16_t *)ACT(t);
    float acc = 0;
    for (int i = 0; i < n; i++) acc += f16_to_f32(w[i]) * f16_to_f32(x[i]);
    s[t] = acc;
  }
}

static void dot_bf16(int n, const void *w_row, const void *act, size_t act_stride, int nt, float *s) {
  const uint16_t *w = w_row;
  for (int t = 0; t < nt; t++) {
    const uint16_t *x = (const uint16_t *)ACT(t);
    float acc = 0;
    for (int i = 0; i < n; i++) acc += bf16_to_f32(w[i]) * bf16_to_f32(x[i]);
    s[t] = acc;
  }
}

static void dot_q8_0(int n, const void *w_row, const void *act, size_t act_stride, int nt, float *s) {
  const block_q8_0 *w = w_row;
  for (int t = 0; t < nt; t++) {
    const block_q8_0 *x = (const block_q8_0 *)ACT(t);
    float acc = 0;
    for (int i = 0; i < n / QK8_0; i++) {
      int sumi = 0;
      for (int j = 0; j < QK8_0; j++) sumi += w[i].qs[j] * x[i].qs[j];
      acc += sumi * (f16_to_f32(w[i].d) * f16_to_f32(x[i].d));
    }
    s[t] = acc;
  }
}

static void dot_q4_0(int n, const void *w_row, const void *act, size_t act_stride, int nt, float *s) {
  const block_q4_0 *w = w_row;
  for (int t = 0; t < nt; t++) {
    const block_q8_0 *x = (const block_q8_0 *)ACT(t);
    float acc = 0;
    for (int i = 0; i < n / QK4_0; i++) {
      int sumi = 0;
      for (int j = 0; j < QK4_0 / 2; j++)
        sumi += ((w[i].qs[j] & 0xF) - 8) * x[i].qs[j] + ((w[i].qs[j] >> 4) - 8) * x[i].qs[j + 16];
      acc += sumi * (f16_to_f32(w[i].d) * f16_to_f32(x[i].d));
    }
    s[t] = acc;
  }
}

/* Q4_K/Q5_K · Q8_K: Σ d·sc_j·(q·y)_j − dmin·Σ m_j·(Σ y)_j; the y sums come from bsums. */
static void dot_q4_K(int n, const void *w_row, const void *act, size_t act_stride, int nt, float *s) {
  const block_q4_K *w = w_row;
  for (int t = 0; t < nt; t++) {
    const block_q8_K *x = (const block_q8_K *)ACT(t);
    float acc = 0;
    for (int i = 0; i < n / QK_K; i++) {
      int sumi = 0, summ = 0;
      for (int c = 0; c < 4; c++) {
        uint8_t sc1, m1, sc2, m2;
        scale_min_k4(2 * c, w[i].scales, &sc1, &m1);
        scale_min_k4(2 * c + 1, w[i].scales, &sc2, &m2);
        const uint8_t *q = w[i].qs + 32 * c;
        const int8_t *y = x[i].qs + 64 * c;
        int lo = 0, hi = 0;
        for (int l = 0; l < 32; l++) {
          lo += (q[l] & 0xF) * y[l];
          hi += (q[l] >> 4) * y[l + 32];
        }
        sumi += sc1 * lo + sc2 * hi;
        summ += m1 * (x[i].bsums[4 * c] + x[i].bsums[4 * c + 1]) + m2 * (x[i].bsums[4 * c + 2] + x[i].bsums[4 * c + 3]);
      }
      acc += x[i].d * f16_to_f32(w[i].d) * sumi - x[i].d * f16_to_f32(w[i].dmin) * summ;
    }
    s[t] = acc;
  }
}

static void dot_q5_K(int n, const void *w_row, const void *act, size_t act_stride, int nt, float *s) {
  const block_q5_K *w = w_row;
  for (int t = 0; t < nt; t++) {
    const block_q8_K *x = (const block_q8_K *)ACT(t);
    float acc = 0;
    for (int i = 0; i < n / QK_K; i++) {
      int sumi = 0, summ = 0;
      for (int c = 0; c < 4; c++) {
        uint8_t sc1, m1, sc2, m2;
        scale_min_k4(2 * c, w[i].scales, &sc1, &m1);
        scale_min_k4(2 * c + 1, w[i].scales, &sc2, &m2);
        const uint8_t *q = w[i].qs + 32 * c, *qh = w[i].qh;
        const int8_t *y = x[i].qs + 64 * c;
        int lo = 0, hi = 0;
        for (int l = 0; l < 32; l++) {
          lo += ((q[l] & 0xF) | (((qh[l] >> (2 * c)) & 1) << 4)) * y[l];
          hi += ((q[l] >> 4) | (((qh[l] >> (2 * c + 1)) & 1) << 4)) * y[l + 32];
        }
        sumi += sc1 * lo + sc2 * hi;
        summ += m1 * (x[i].bsums[4 * c] + x[i].bsums[4 * c + 1]) + m2 * (x[i].bsums[4 * c + 2] + x[i].bsums[4 * c + 3]);
      }
      acc += x[i].d * f16_to_f32(w[i].d) * sumi - x[i].d * f16_to_f32(w[i].dmin) * summ;
    }
    s[t] = acc;
  }
}

/* Q6_K · Q8_K: Σ_j sc_j·Σ (q−32)·y over 16-element sub-blocks, times d. */
static void dot_q6_K(int n, const void *w_row, const void *act, size_t act_stride, int nt, float *s) {
  const block_q6_K *w = w_row;
  for (int t = 0; t < nt; t++) {
    const block_q8_K *x = (const block_q8_K *)ACT(t);
    float acc = 0;
    for (int i = 0; i < n / QK_K; i++) {
      int sumi = 0;
      for (int j = 0; j < QK_K / 16; j++) {
        int sj = 0;
        for (int l = 0; l < 16; l++) sj += q6_value(&w[i], 16 * j + l) * x[i].qs[16 * j + l];
        sumi += w[i].scales[j] * sj;
      }
      acc += x[i].d * f16_to_f32(w[i].d) * sumi;
    }
    s[t] = acc;
  }
}

void mk_scalar_fill(int type, mk_type_ops *o) {
  memset(o, 0, sizeof *o);
  o->type = type;
  switch (type) {
    case T_F32: *o = (mk_type_ops){type, T_F32, 1, 4, dot_f32, quant_f32, dequant_f32}; break;
    case T_F16: *o = (mk_type_ops){type, T_F16, 1, 2, dot_f16, quant_f16, dequant_f16}; break;
    case T_BF16: *o = (mk_type_ops){type, T_BF16, 1, 2, dot_bf16, quant_bf16, dequant_bf16}; break;
    case T_Q8_0: *o = (mk_type_ops){type, T_Q8_0, 32, 34, dot_q8_0, mk_quant_q8_0_ref, dequant_q8_0}; break;
    case T_Q4_0: *o = (mk_type_ops){type, T_Q8_0, 32, 18, dot_q4_0, mk_quant_q8_0_ref, dequant_q4_0}; break;
    case T_Q4_K: *o = (mk_type_ops){type, T_Q8_K, 256, 144, dot_q4_K, mk_quant_q8_K_ref, dequant_q4_K}; break;
    case T_Q5_K: *o = (mk_type_ops){type, T_Q8_K, 256, 176, dot_q5_K, mk_quant_q8_K_ref, dequant_q5_K}; break;
    case T_Q6_K: *o = (mk_type_ops){type, T_Q8_K, 256, 210, dot_q6_K, mk_quant_q8_K_ref, dequant_q6_K}; break;
    default: o->type = -1; break;
  }
}

size_t mk_row_bytes(int type, int n) {
  switch (type) {
    case T_F32: return (size_t)n * 4;
    case T_F16: case T_BF16: return (size_t)n * 2;
    case T_Q8_0: case T_Q8_0_R16: return (size_t)(n / 32) * 34;
    case T_Q4_0: return (size_t)(n / 32) * 18;
    case T_Q4_K: case T_Q4_K_R16: return (size_t)(n / 256) * 144;
    case T_Q5_K: return (size_t)(n / 256) * 176;
    case T_Q6_K: case T_Q6_K_R16: return (size_t)(n / 256) * 210;
    case T_Q8_K: return (size_t)(n / 256) * 292;
    default: return 0;
  }
}

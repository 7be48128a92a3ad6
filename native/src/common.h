/*
 * Shared definitions for the moekit native kernels: ggml block layouts, half/bfloat
 * conversions, and the per-type kernel table.
 *
 * Block layouts follow ggml-common.h (block_q4_0, block_q8_0, block_q4_K, block_q5_K,
 * block_q6_K, block_q8_K); type ids follow ggml.h `enum ggml_type`.
 */
#ifndef MOEKIT_COMMON_H
#define MOEKIT_COMMON_H

#include <stddef.h>
#include <stdint.h>
#include <string.h>

enum {
  T_F32 = 0,
  T_F16 = 1,
  T_Q4_0 = 2,
  T_Q8_0 = 8,
  T_Q4_K = 12,
  T_Q5_K = 13,
  T_Q6_K = 14,
  T_Q8_K = 15,
  T_BF16 = 30,
};

#define QK8_0 32
#define QK4_0 32
#define QK_K 256

typedef struct { uint16_t d; uint8_t qs[QK4_0 / 2]; } block_q4_0;                 /* 18 bytes */
typedef struct { uint16_t d; int8_t qs[QK8_0]; } block_q8_0;                      /* 34 bytes */
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qs[QK_K / 2]; } block_q4_K; /* 144 */
typedef struct { uint16_t d, dmin; uint8_t scales[12]; uint8_t qh[QK_K / 8]; uint8_t qs[QK_K / 2]; } block_q5_K; /* 176 */
typedef struct { uint8_t ql[QK_K / 2]; uint8_t qh[QK_K / 4]; int8_t scales[QK_K / 16]; uint16_t d; } block_q6_K; /* 210 */
typedef struct { float d; int8_t qs[QK_K]; int16_t bsums[QK_K / 16]; } block_q8_K; /* 292 */

_Static_assert(sizeof(block_q4_0) == 18, "q4_0");
_Static_assert(sizeof(block_q8_0) == 34, "q8_0");
_Static_assert(sizeof(block_q4_K) == 144, "q4_K");
_Static_assert(sizeof(block_q5_K) == 176, "q5_K");
_Static_assert(sizeof(block_q6_K) == 210, "q6_K");
_Static_assert(offsetof(block_q6_K, qh) == 128 && offsetof(block_q6_K, scales) == 192 && offsetof(block_q6_K, d) == 208,
               "q6_K fields (mk_q6_at)");
_Static_assert(sizeof(block_q8_K) == 292, "q8_K");

/* ---- scalar conversions ---------------------------------------------------------------- */

extern float mk_f16_table[65536]; /* f16 bits -> f32, filled by mk_init_tables() */
void mk_init_tables(void);

static inline uint32_t f32_bits(float f) { uint32_t u; memcpy(&u, &f, 4); return u; }
static inline float bits_f32(uint32_t u) { float f; memcpy(&f, &u, 4); return f; }
/* The SIMD activation quantizers (kernels_avx2.c, kernels_avx512.c) hand a block to the scalar reference
 * (mk_quant_q8_0_ref / mk_quant_q8_K_ref) unless its largest |x| (as bits, ab) and the scale made from it are
 * finite: the reference then decides what inf/NaN give, byte for byte. */
static inline int mk_q8_scale_finite(uint32_t ab, float scale) {
  return ab < 0x7f800000u && (f32_bits(scale) & 0x7fffffffu) < 0x7f800000u;
}

static inline float f16_to_f32(uint16_t h) { return mk_f16_table[h]; }

/* IEEE round-to-nearest-even f32 -> f16 (what F16C's vcvtps2ph and ggml's scalar path do). */
static inline uint16_t f32_to_f16(float f) {
  uint32_t x = f32_bits(f);
  uint16_t sign = (uint16_t)((x >> 16) & 0x8000);
  uint32_t a = x & 0x7fffffffu;
  if (a > 0x7f800000u) return sign | 0x7e00;            /* NaN */
  if (a >= 0x47800000u) return sign | 0x7c00;           /* >= 65536 (and inf) -> inf */
  if (a < 0x38800000u) {                                /* below 2^-14: f16 subnormal */
    float t = bits_f32(a) * 16777216.0f + 12582912.0f;  /* exact scale, then RNE via magic */
    return sign | (uint16_t)((f32_bits(t) & 0x7fffff) - 0x400000);
  }
  uint32_t r = a - (112u << 23);                        /* rebias exponent 127 -> 15 */
  r += 0xfffu + ((r >> 13) & 1u);                       /* round to nearest even */
  return sign | (uint16_t)(r >> 13);                    /* carry may give inf: correct */
}

/* y[i] = f32_to_f16(x[i]) for i < n, by F16C (simd >= 1) or AVX-512 (simd >= 2) where the CPU has them
 * (attn_prep.c; the same bits at every level). */
void mk_f32_to_f16_row(const float *x, uint16_t *y, size_t n, int simd);

static inline float bf16_to_f32(uint16_t h) { return bits_f32((uint32_t)h << 16); }

/* ggml-impl.h ggml_compute_fp32_to_bf16: round to nearest even, NaN kept quiet. */
static inline uint16_t f32_to_bf16(float f) {
  uint32_t u = f32_bits(f);
  if ((u & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((u >> 16) | 64);
  return (uint16_t)((u + (0x7fffu + ((u >> 16) & 1u))) >> 16);
}

/* ggml-quants.c nearest_int: round half to even via the 1.5*2^23 magic constant. */
static inline int nearest_int(float f) {
  float v = f + 12582912.0f;
  return (int)(f32_bits(v) & 0x007fffff) - 0x00400000;
}

/* ggml-quants.c get_scale_min_k4: 6-bit scale and min of sub-block j of a Q4_K/Q5_K block. */
static inline void scale_min_k4(int j, const uint8_t *q, uint8_t *sc, uint8_t *m) {
  if (j < 4) {
    *sc = q[j] & 63;
    *m = q[j + 4] & 63;
  } else {
    *sc = (uint8_t)((q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4));
    *m = (uint8_t)((q[j + 4] >> 4) | ((q[j] >> 6) << 4));
  }
}

/* ---- per-type kernel table ------------------------------------------------------------- */

/* The widest token tile a dot kernel handles in one pass over a weight row. */
#define MK_TILE 4

/*
 * dot: s[t] = w_row · act_t for t < nt (1 <= nt <= MK_TILE), where act_t = act + t*act_stride
 * bytes, both rows holding n elements (weight in its own type, activation in its vec-dot type).
 */
typedef void (*mk_dot_fn)(int n, const void *w_row, const void *act, size_t act_stride, int nt, float *s);
/* Convert n f32 values to the vec-dot type (one activation row). */
typedef void (*mk_quant_fn)(const float *x, void *y, int n);
/* Dequantize n elements of one weight row to f32. */
typedef void (*mk_dequant_fn)(const void *w, float *y, int n);

/* The most weight rows a tile kernel handles in one pass. */
#define MK_TILE_ROWS 4
/* The most tokens a tile kernel handles in one pass. */
#define MK_TILE_TOKENS 8
/*
 * tile: s[t*s_stride + r] = w_r · act_t for r < nr, t < nt (1 <= nr <= MK_TILE_ROWS, 1 <= nt <= MK_TILE_TOKENS),
 * w_r = w + r*w_stride bytes; the same per-(row, token) numerics as dot.
 */
typedef void (*mk_tile_fn)(int n, const void *w, size_t w_stride, int nr, const void *act, size_t act_stride,
                           int nt, float *s, size_t s_stride);

typedef struct {
  int type;
  int vec_dot_type;
  int block;       /* elements per block */
  int block_bytes; /* bytes per block */
  mk_dot_fn dot;
  mk_quant_fn quant_act;
  mk_dequant_fn dequant;
  mk_tile_fn dot_tile; /* optional: several weight rows per pass (NULL = use dot row by row) */
} mk_type_ops;

/*
 * Q4_K rows repacked by groups of 16 (not a ggml type; made by mk_repack_q4K_r16 for the AVX-512 kernels,
 * the same bytes per row as Q4_K). One 2304-byte block holds block i of 16 consecutive rows r:
 *   [0, 32) d[r] f16 | [32, 64) dmin[r] f16 | [64, 256) scales: bytes 0-3, 4-7, 8-11 of each row's 12 as
 *   three arrays of 16 words | [256, 2304) qs: 32 vectors of 64 bytes, vector v lane r (4 bytes) = the
 *   row's qs[4v .. 4v+3] (low nibbles: sub-block 2p, high nibbles: 2p+1, p = v / 8).
 * A vector holds the same 4 elements of 16 rows, so one broadcast activation word serves all 16 and the
 * per-row sums come out in the lanes, as llama.cpp's block_q4_Kx8 (repack.cpp) does for 8 rows.
 */
#define T_Q4_K_R16 140
#define MK_R16 16
#define MK_R16_BLOCK (MK_R16 * (int)sizeof(block_q4_K))
/* One group of 16 repacked rows × nt <= 4 tokens, ggml's repacked-Q4_K f32 order (ggml_compat.c):
 * s[t*s_stride + r] = row r · act_t; gemm != 0: per sub-block pair FMAs, else per block. */
typedef void (*mk_q4K_r16_fn)(int nb, const uint8_t *wg, const uint8_t *act, size_t act_stride, int nt, int gemm,
                              float *s, size_t s_stride);
void mk_q4K_r16_group_512(int nb, const uint8_t *wg, const uint8_t *act, size_t act_stride, int nt, int gemm,
                          float *s, size_t s_stride);
/*
 * Q8_0 rows repacked by groups of 16 (not a ggml type; made by mk_repack_r16 for the AVX-512 kernels, the
 * same bytes per row as Q8_0). One 544-byte block holds block i of 16 consecutive rows r:
 *   [0, 32) d[r] f16 | [32, 544) qs: 8 vectors of 64 bytes, vector l lane r (4 bytes) = the row's
 *   qs[4l .. 4l+3] + 128 (stored unsigned, as x ^ 0x80).
 * q8_0_r16.c has the kernels (bit-identical to the stored layout's) and the reference.
 */
#define T_Q8_0_R16 141
#define MK_Q8R16_BLOCK (MK_R16 * (int)sizeof(block_q8_0))
void mkc_q8_0_r16_pack(uint8_t *dst, const uint8_t *src, int g0, int g1, int K);
void mk_q8_0_r16_pack_512(uint8_t *dst, const uint8_t *src, int g0, int g1, int K);
/* y[t*ystride + 16g + r] = row r of group g · act_t, t < T, g < ngroups (simd >= 2: AVX-512) */
void mk_q8_0_r16_rows(const uint8_t *w, int K, int ngroups, const uint8_t *act, size_t arow, int T, float *y,
                      size_t ystride, int simd);

/*
 * Q6_K rows repacked by groups of 16 (not a ggml type; made by mk_repack_r16, the same bytes per row as Q6_K).
 * One 3360-byte block holds block i of 16 consecutive rows r: first, pair by pair of rows (2p, 2p+1), 384
 * bytes of their ql and qh, the two rows interleaved by 32-byte chunks, then the scales and d of the 16 rows:
 *   [384p, 384p + 256) ql: chunk c (bytes 32c .. 32c+31, c < 4) of row r at 384p + 64c + 32(r & 1) |
 *   [384p + 256, 384p + 384) qh: chunk c (c < 2) at 384p + 256 + 64c + 32(r & 1) | [3072, 3328) scales:
 *   row r at 3072 + 16r | [3328, 3360) d: row r at 3328 + 2r.
 * So one 64-byte load gives the same chunk of both rows of a pair, [row 2p | row 2p+1], which is how the
 * one-token kernel (kernels_avx512.c q6_K_pair1) holds them: 7 inserts fewer per pair and block than loading
 * the rows' chunks one by one (bench/native group-kernel q6 1: 41.8 -> 50.0 GMAC/s per core); with more
 * tokens, q6K_r16_tn unpacks each pair's block once for all of them. The kernels compute the stored
 * layout's lanes (kernels_avx2.c q6_K_block, kernels_avx512.c q6_K_pair1) on the fields here (mk_q6_at: a
 * chunk stride of 64 instead of 32), so the results are bit-identical; q6_K_r16.c has the packing, the
 * scalar reference and the dispatch.
 * The one-token kernel reads a block's quants in address order (pair by pair; the scales and d lines beside
 * them), which the hardware prefetchers follow without software prefetch (kernels_avx512.c, above q6K_r16_t1).
 */
#define T_Q6_K_R16 142
#define MK_Q6R16_BLOCK (MK_R16 * (int)sizeof(block_q6_K))
/* The fields of Q6_K block i of row r: as stored (r16 == 0: rows w_stride bytes apart from w) or in
 * T_Q6_K_R16 (r16 != 0: w the first group, nb blocks per row; rows past 15 lie in the next groups). Chunk c of
 * 32 bytes of ql (c < 4) / qh (c < 2) is at ql / qh + c·cs: cs 32 as stored, 64 in T_Q6_K_R16 (mk_q6_ql, mk_q6_qh). */
typedef struct { const uint8_t *ql, *qh; const int8_t *sc; const uint8_t *d; int cs; } mk_q6_fields;
static inline __attribute__((always_inline)) mk_q6_fields mk_q6_at(const int r16, const uint8_t *w, size_t w_stride,
                                                                   int nb, int r, int i) {
  mk_q6_fields f;
  if (r16) {
    const uint8_t *b = w + ((size_t)(r >> 4) * (size_t)nb + (size_t)i) * MK_Q6R16_BLOCK;
    const int k = r & (MK_R16 - 1);
    f.ql = b + 384 * (k >> 1) + 32 * (k & 1);
    f.qh = b + 384 * (k >> 1) + 256 + 32 * (k & 1);
    f.sc = (const int8_t *)(b + 16 * 192 + 16 * k);
    f.d = b + 16 * 208 + 2 * k;
    f.cs = 64;
  } else {
    const uint8_t *b = w + (size_t)r * w_stride + (size_t)i * sizeof(block_q6_K);
    f.ql = b;
    f.qh = b + 128;
    f.sc = (const int8_t *)(b + 192);
    f.d = b + 208;
    f.cs = 32;
  }
  return f;
}
static inline const uint8_t *mk_q6_ql(const mk_q6_fields *f, int c) { return f->ql + (size_t)c * f->cs; }
static inline const uint8_t *mk_q6_qh(const mk_q6_fields *f, int c) { return f->qh + (size_t)c * f->cs; }
static inline float mk_q6_d(const mk_q6_fields *f) {
  uint16_t h;
  memcpy(&h, f->d, 2);
  return f16_to_f32(h);
}
void mk_q6K_r16_pack(uint8_t *dst, const uint8_t *src, int g0, int g1, int K);
/* y[t*ystride + 16g + r] = row r of group g · act_t, t < T, g < ngroups (simd 2: AVX-512, 1: AVX2, 0: scalar) */
void mk_q6K_r16_rows(const uint8_t *w, int K, int ngroups, const uint8_t *act, size_t arow, int T, float *y,
                     size_t ystride, int simd);
/* one group of 16 rows (nb blocks at wg) × T tokens: s[t*s_stride + r] (kernels_avx2.c, kernels_avx512.c) */
void mk_q6K_r16_group_avx2(int nb, const uint8_t *wg, const uint8_t *act, size_t act_stride, int T, float *s,
                           size_t s_stride);
void mk_q6K_r16_group_512(int nb, const uint8_t *wg, const uint8_t *act, size_t act_stride, int T, float *s,
                          size_t s_stride);

/* Groups [g0, g1) of Q4_K [*, K] into T_Q4_K_R16 (kernels_avx512.c; ggml_compat.c mkc_q4K_r16_pack is the
 * reference, also for offsets: the 16 rows of a group must lie within 2^31 bytes). */
void mk_q4K_r16_pack_512(uint8_t *dst, const uint8_t *src, int g0, int g1, int K);

/* Returns NULL for an unsupported type. simd != 0 selects the AVX2 kernels when available. */
const mk_type_ops *mk_ops(int type, int simd);
size_t mk_row_bytes(int type, int n);

/* Scalar kernels (kernels_scalar.c). */
void mk_scalar_fill(int type, mk_type_ops *ops);
/* The scalar activation quantizers (the reference; the SIMD ones fall back on them block by block). */
void mk_quant_q8_0_ref(const float *x, void *y, int n);
void mk_quant_q8_K_ref(const float *x, void *y, int n);
/* AVX2+FMA+F16C kernels (kernels_avx2.c); returns 0 if the type has none or the build lacks x86. */
int mk_avx2_fill(int type, mk_type_ops *ops);
int mk_cpu_has_avx2(void);
/* AVX-512 F/VL/BW/VNNI kernels (kernels_avx512.c), applied on top of the AVX2 table. */
int mk_avx512_fill(int type, mk_type_ops *ops);
int mk_cpu_has_avx512(void);

/* f32 helpers used by attention (simd-selected). */
typedef float (*mk_dot_f16_f32_fn)(int n, const uint16_t *a, const uint16_t *b);

#endif

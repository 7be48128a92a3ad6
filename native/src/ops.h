/* The four backend ops (see src/backend/backend.ts for their semantics). Arguments are
 * validated by the TypeScript binding and re-checked for sizes in addon.c. */
#ifndef MOEKIT_OPS_H
#define MOEKIT_OPS_H
#include <stddef.h>
#include <stdint.h>

void mk_ops_init(void);
void mk_set_simd(int on); /* 0 scalar, 1 best available, 2 AVX2 only; needs AVX2+FMA+F16C */
int mk_simd_active(void);
int mk_simd_level(void);  /* 0 scalar, 1 AVX2, 2 AVX-512 */
int mk_has_avx512(void); /* AVX-512 F/VL/BW/VNNI kernels usable (and not disabled by MOEKIT_NO_AVX512) */

/* y[T, N] = x[T, K] · w[N, K]ᵀ */
void mk_matmul(float *y, const float *x, const uint8_t *w, int type, int T, int N, int K, int nth);
/* ys[i][T, Ns[i]] = x[T, K] · ws[i][Ns[i], K]ᵀ, i < n ≤ MK_MAX_MATMULS, in one pool run */
#define MK_MAX_MATMULS 8
void mk_matmuls(int n, float *const *ys, const float *x, const uint8_t *const *ws, const int *types,
                const int *Ns, int T, int K, int nth);

typedef struct {
  float *out;          /* [T, D] */
  const float *x;      /* [T, D] */
  const uint8_t *gate; /* [E, F, D] */
  const uint8_t *up;   /* [E, F, D] */
  const uint8_t *down; /* [E, D, F] */
  int gate_type, up_type, down_type;
  const int32_t *ids;  /* [T, K], < 0 = unused slot */
  const float *weights;/* [T, K] */
  int T, K, E, F, D;
} mk_moe_args;
void mk_moe_ffn(const mk_moe_args *a, int nth);

/* out[T, H, Dh]; q[T, H, Dh]; k/v cache [ctx, Hkv, Dh] f16 */
void mk_attention(float *out, const float *q, const uint16_t *k, const uint16_t *v, int T, int pos0, int H,
                  int Hkv, int Dh, float scale, int nth);

/* Map the pages of [p, p + n) into the process now (MADV_POPULATE_READ, or MADV_POPULATE_WRITE with write:
 * private writable pages, as a first write would); 0 where the kernel cannot. */
int mk_prefault(const void *p, size_t n, int write);
/* Q4_K, Q8_0 or Q6_K [N, K] (N >= 16; Q4_K: a multiple of 16) into T_Q4_K_R16 / T_Q8_0_R16 / T_Q6_K_R16, the
 * last N % 16 rows of Q8_0 / Q6_K as stored; 0 for another type or shape. When src is a read-only file mapping
 * (the model file) it is read through the page cache (pread) and its pages then leave the process. */
int mk_repack_r16(uint8_t *dst, const uint8_t *src, int type, int N, int K, int nth);
/* dst = src ([rows, row_bytes]), read and dropped like the repack's source: a weight moved out of the mapped
 * file into the process's own memory, where the page cache cannot reclaim it between uses; 0 (nothing copied) for
 * bad sizes or a source that is not a read-only file mapping. */
int mk_copy_resident(uint8_t *dst, const uint8_t *src, int rows, int row_bytes, int nth);

/* attn_prep.c: QK-norm (groups of q_group / k_group values, weights NULL = none), RoPE (cos NULL = none; tables
 * [T, half]) in place on q [T, H, Dh] and k [T, Hkv, Dh], then k and v as f16 into rows cache_row .. cache_row+T-1
 * of the caches [*, Hkv, Dh]. */
typedef struct {
  float *q, *k;
  const float *v;
  int T, H, Hkv, Dh;
  const float *q_norm, *k_norm;
  int q_group, k_group;
  float eps;
  const float *cos, *sin;
  int half, neox;
  uint16_t *k_cache, *v_cache;
  int cache_row;
} mk_qk_prep_args;
void mk_qk_prep(const mk_qk_prep_args *a);
/* attn_prep.c: x[T, D] += y·scale (scale 1: plain f32 add, else y·scale rounded to f32 first), then
 * out = rms_norm(x) ⊙ w (w [D]), as the TypeScript addInPlace and rmsNorm round */
void mk_add_norm(float *x, const float *y, double scale, float *out, const float *w, int T, int D, float eps);

/* Softmax top-K routing of logits [T, E] (ops.c; E % 16 == 0): ids/weights [T, K], scores [T, E]; sel: [E] scratch;
 * bias: [E] added for selection only, or NULL */
void mk_route_softmax(const float *logits, int T, int E, int K, int normalize, double scale, const float *bias,
                      int32_t *ids, float *weights, float *scores, float *sel);

/* out[n, K] = dequant(w[rows[i]]) */
void mk_get_rows(float *out, const uint8_t *w, int type, int K, const int32_t *rows, int n);

/* Memory read-bandwidth probe: reads n bytes with nth threads; returns a checksum. */
uint64_t mk_read_probe(const uint8_t *p, size_t n, int nth);

#endif

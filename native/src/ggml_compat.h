/* ggml-cpu f32 numerics emulation; see ggml_compat.c */
#ifndef MK_GGML_COMPAT_H
#define MK_GGML_COMPAT_H
#include <stddef.h>
#include <stdint.h>

extern int mkc_lanes; /* 16 = AVX-512 build of ggml, 8 = AVX2 build */
void mkc_init(void);
float mkc_vexpf(float x);
double mkc_softmax_exp(int n, float *y, const float *x, float max);
float mkc_swiglu(float x, float g, int i, int n);
/* h[i] = mkc_swiglu(x[i], g[i], c0 + i, n), i < m; simd >= 2: AVX-512 lanes (the same bits) */
void mkc_swiglu_run(float *h, const float *x, const float *g, int m, int c0, int n, int simd);
float mkc_dot_f32(const float *w, const float *x, int K, int sgemm);
float mkc_dot_f32_scalar(const float *w, const float *x, int K, int sgemm); /* the reference of mkc_dot_f32 */
int mkc_f32_sgemm(int N, int K, int T);
/* ggml's flash-attention rows; simd: 0 scalar (the reference), 1 AVX2+FMA+F16C, 2 AVX-512 (caller checks
 * the CPU). Every level gives bit-identical results. mkc_attn_one_chunk's work holds
 * mkc_attn_one_chunk_work(n, Dh) floats, mkc_attn_one_chunk_heads' nh times that. */
size_t mkc_attn_one_chunk_work(int n, int Dh);
void mkc_attn_one_chunk(float *out, const float *q, const uint16_t *k, const uint16_t *v, size_t kv_row, int n,
                        int Dh, float scale, float *work, int simd);
/* heads h0 .. h0+nh-1 of one token (head h reads kv head h / group): q and out point at the token's head 0,
 * k and v at key 0's kv head 0; the same bits as mkc_attn_one_chunk per head */
void mkc_attn_one_chunk_heads(float *out, const float *q, const uint16_t *k, const uint16_t *v, size_t kv_row, int n,
                              int Dh, int h0, int nh, int group, float scale, float *work, int simd);
void mkc_attn_tiled(float *out, const float *q, const uint16_t *k, const uint16_t *v, size_t kv_row, int n,
                    int Dh, float scale, float *acc, int simd);
/* Q4_K weights as llama.cpp's repacked x86 kernels compute them (see ggml_compat.c) */
int mkc_q4K_repacked(int N);
int mkc_q4K_gemm_rows(int T);
void mkc_quant_q8_K_rows(const float *x, int T, int K, uint8_t *dst, size_t arow);
void mkc_dot_q4K_gemv(int n, const void *w_row, const void *act, size_t act_stride, int nt, float *s);
void mkc_q4K_rows(const uint8_t *w, size_t wrow, int r0, int r1, const uint8_t *act, size_t arow, int T, int K,
                  float *y, size_t ystride);
/* The same on Q4_K rows repacked by 16 (T_Q4_K_R16): pack rows [16·g0, 16·g1); y[t, r] for the 16·ngroups
 * rows from w (a group start), tokens t < tg in gemm order; simd >= 2: AVX-512 */
void mkc_q4K_r16_pack(uint8_t *dst, const uint8_t *src, int g0, int g1, int K);
void mkc_q4K_r16_rows(const uint8_t *w, int K, int ngroups, const uint8_t *act, size_t arow, int T, int tg, float *y,
                      size_t ystride, int simd);
#endif

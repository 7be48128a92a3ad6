/*
 * The AVX-512 paths of ggml_compat.c == their scalar emulations of ggml, bit for bit:
 *  - mkc_swiglu_run == mkc_swiglu over 1M inputs including NaN, infinities, subnormals, |x| past expf's
 *    range, and runs that start and end off the 16-lane grid;
 *  - mkc_dot_f32 == mkc_dot_f32_scalar (ggml_vec_dot_f32 and tinyBLAS lanes) for K = 1 .. 300, 2048, 4096;
 *  - mkc_attn_one_chunk at simd 1 and 2 == simd 0 (ggml lanes 8 and 16) over random Dh, n, row strides,
 *    including ties with the running max, a max that rises at every key, f16 overflow to inf and NaN;
 *    and mkc_attn_one_chunk_heads (runs of 1-7 heads of a token, GQA groups 1-3) the same way;
 *  - the AVX2 and AVX-512 activation quantizers (Q8_0, Q8_K) == kernels_scalar.c's, byte for byte, over
 *    rows of zeros, single nonzeros, ties of ±max, subnormals, -0.0, near-midpoint products, NaN and inf,
 *    and each type whose vec-dot type is Q8_0 / Q8_K has them at each level;
 *  - mk_f32_to_f16_row at each level == f32_to_f16 for all high halves × rounding-edge low halves,
 *    random bits, NaN payloads, and odd lengths and offsets.
 * Built and run by test/native-c.test.ts; exits 1 on a mismatch.
 */
#include <stdio.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include "../src/common.h"
#include "../src/ggml_compat.h"

static unsigned rs = 7;
static unsigned rnd(void) { rs = rs * 1664525u + 1013904223u; return rs >> 8; }
static float frand(void) { return ((int)rnd() - (1 << 23)) / (float)(1 << 23); }
static unsigned short h16(float x) { return f32_to_f16(x); }

/* one-chunk attention rows: SIMD levels vs the scalar emulation; returns the mismatches */
static int attn_one_chunk_check(int cases) {
  enum { MAXD = 300, MAXN = 300, MAXROW = 2 * MAXD };
  static unsigned short k[MAXN * MAXROW], v[MAXN * MAXROW];
  static float q[MAXD], want[MAXD], got[MAXD], work[2 * MAXD + 3 * MAXN];
  int bad = 0;
  for (int c = 0; c < cases; c++) {
    mkc_lanes = c & 1 ? 16 : 8;
    const int Dh = rnd() % 3 == 0 ? 64 * (1 + rnd() % 4) : 1 + rnd() % MAXD;
    const int n = rnd() % 5 == 0 ? 1 + rnd() % 4 : 1 + rnd() % MAXN;
    const int row = Dh + (rnd() % 3 == 0 ? rnd() % (MAXROW - Dh + 1) : 0);
    const int kind = rnd() % 8;
    const float qs = kind == 0 ? 40.0f : kind == 1 ? 0.01f : 3.0f;
    const float vsc = kind == 2 || kind == 7 ? 60000.0f : kind == 3 ? 1e-5f : 1.0f;
    for (int d = 0; d < Dh; d++) q[d] = frand() * qs;
    for (int i = 0; i < n * row; i++) { k[i] = h16(frand() * 2.0f); v[i] = h16(frand() * vsc); }
    if (kind == 4) /* repeated keys: scores equal to the running max */
      for (int s = 1; s < n; s++)
        if (rnd() % 2) memcpy(k + s * row, k + (s - 1) * row, 2 * (size_t)Dh);
    if (kind == 5 || kind == 7) /* rising scores: a rescale at every key (7: of an inf accumulator, by 0) */
      for (int s = 0; s < n; s++)
        for (int d = 0; d < Dh; d++)
          k[s * row + d] = h16((q[d] > 0 ? 1 : -1) * (kind == 5 ? 0.01f + 0.002f * s : rnd() % 4 ? 0.0f : 0.5f * s));
    const float scale = kind == 6 ? 1.0f : 1.0f / sqrtf((float)Dh);
    mkc_attn_one_chunk(want, q, k, v, row, n, Dh, scale, work, 0);
    for (int simd = 1; simd <= 2; simd++) {
      for (int i = 0; i < 2 * MAXD + 3 * MAXN; i++) work[i] = frand(); /* stale scratch */
      mkc_attn_one_chunk(got, q, k, v, row, n, Dh, scale, work, simd);
      for (int d = 0; d < Dh; d++)
        if (memcmp(&want[d], &got[d], 4) && !(isnan(want[d]) && isnan(got[d]))) {
          if (bad++ < 10) printf("attn lanes=%d simd=%d Dh=%d n=%d row=%d kind=%d d=%d: %a vs %a\n", mkc_lanes, simd, Dh, n, row, kind, d, want[d], got[d]);
          break;
        }
    }
  }
  mkc_lanes = 16;
  return bad;
}

/* mkc_attn_one_chunk_heads (a run of a token's heads, GQA, two heads at a time) at simd 1 and 2 == simd 0 */
static int attn_heads_check(int cases) {
  enum { MAXH = 7, MAXD = 130, MAXN = 200, MAXROW = MAXH * MAXD + 40 };
  static unsigned short k[MAXN * MAXROW], v[MAXN * MAXROW];
  static float q[MAXH * MAXD], want[MAXH * MAXD], got[MAXH * MAXD], work[MAXH * (2 * MAXD + 3 * MAXN)];
  int bad = 0;
  for (int c = 0; c < cases; c++) {
    mkc_lanes = c & 1 ? 16 : 8;
    const int Dh = rnd() % 2 ? 16 * (1 + rnd() % 8) : 1 + rnd() % MAXD;
    const int group = 1 + rnd() % 3, h0 = rnd() % 3, nh = 1 + rnd() % (MAXH - h0);
    const int Hkv = (h0 + nh - 1) / group + 1, row = Hkv * Dh + (rnd() % 2 ? rnd() % 40 : 0);
    const int n = rnd() % 5 == 0 ? 1 + rnd() % 4 : 1 + rnd() % MAXN;
    const float vsc = rnd() % 4 == 0 ? 60000.0f : 1.0f; /* f16 overflow of the accumulator */
    for (int i = 0; i < (h0 + nh) * Dh; i++) q[i] = frand() * 3.0f;
    for (int i = 0; i < n * row; i++) { k[i] = h16(frand() * 2.0f); v[i] = h16(frand() * vsc); }
    const float scale = 1.0f / sqrtf((float)Dh);
    mkc_attn_one_chunk_heads(want, q, k, v, row, n, Dh, h0, nh, group, scale, work, 0);
    for (int simd = 1; simd <= 2; simd++) {
      for (int i = 0; i < MAXH * (2 * MAXD + 3 * MAXN); i++) work[i] = frand(); /* stale scratch */
      for (int i = 0; i < (h0 + nh) * Dh; i++) got[i] = -1.0f;
      mkc_attn_one_chunk_heads(got, q, k, v, row, n, Dh, h0, nh, group, scale, work, simd);
      for (int i = h0 * Dh; i < (h0 + nh) * Dh; i++)
        if (memcmp(&want[i], &got[i], 4) && !(isnan(want[i]) && isnan(got[i]))) {
          if (bad++ < 10) printf("attn heads lanes=%d simd=%d Dh=%d n=%d h0=%d nh=%d group=%d i=%d: %a vs %a\n", mkc_lanes, simd, Dh, n, h0, nh, group, i, want[i], got[i]);
          break;
        }
    }
  }
  mkc_lanes = 16;
  return bad;
}

/* one block of a quantizer test row: kind picks the shape of the values */
static void fill_block(float *x, int B, int kind) {
  const float scale = ldexpf(1.0f, (int)(rnd() % 60) - 40);
  switch (kind) {
    case 0: for (int j = 0; j < B; j++) x[j] = frand() * scale; break;
    case 1: for (int j = 0; j < B; j++) x[j] = rnd() % 2 ? 0.0f : -0.0f; break; /* all ±0 */
    case 2: /* one nonzero */
      for (int j = 0; j < B; j++) x[j] = rnd() % 2 ? 0.0f : -0.0f;
      x[rnd() % B] = frand() * ldexpf(1.0f, (int)(rnd() % 260) - 140);
      break;
    case 3: { /* ties of |x| = max with both signs at several positions */
      const float m = (1.0f + (rnd() % 1000) / 1000.0f) * scale;
      for (int j = 0; j < B; j++) x[j] = frand() * m;
      const int nt = 2 + rnd() % 4;
      for (int t = 0; t < nt; t++) x[rnd() % B] = rnd() % 2 ? m : -m;
      break;
    }
    case 4: /* subnormals, sometimes with one small normal */
      for (int j = 0; j < B; j++) { const uint32_t u = (rnd() & 0x7fffff) | (rnd() % 2 ? 0x80000000u : 0); x[j] = bits_f32(u); }
      if (rnd() % 2) x[rnd() % B] = ldexpf(frand(), -120 - (int)(rnd() % 6));
      break;
    case 5: /* -0.0 among values */
      for (int j = 0; j < B; j++) x[j] = rnd() % 3 ? -0.0f : frand() * scale;
      break;
    case 6: { /* products at and next to n + 0.5 */
      const float m = rnd() % 2 ? 127.0f * ldexpf(1.0f, (int)(rnd() % 20) - 10) : (0.5f + (rnd() % 1000) / 1000.0f) * scale;
      const float id = 127.f / m;
      for (int j = 0; j < B; j++) {
        float v = ((float)(int)(rnd() % 254) - 126.5f) / id;
        for (int k = (int)(rnd() % 5) - 2; k; k += k > 0 ? -1 : 1) v = nextafterf(v, k > 0 ? INFINITY : -INFINITY);
        x[j] = v;
      }
      x[rnd() % B] = rnd() % 2 ? m : -m;
      break;
    }
    case 7: /* one NaN or inf */
      for (int j = 0; j < B; j++) x[j] = frand() * scale;
      { const uint32_t u[4] = {0x7f800000u, 0xff800000u, 0x7fc00000u, 0xffc12345u}; x[rnd() % B] = bits_f32(u[rnd() % 4]); }
      break;
    case 8: for (int j = 0; j < B; j++) x[j] = bits_f32(rnd() ^ (rnd() << 9)); break; /* any bits */
    case 9: /* max near the limit where 127/max overflows */
      for (int j = 0; j < B; j++) x[j] = frand() * ldexpf(1.0f, -121);
      x[rnd() % B] = (rnd() % 2 ? 1 : -1) * bits_f32(0x02000000u + (rnd() % 0x1000000u));
      break;
    default: /* large: f16 d overflows, products near FLT_MAX */
      for (int j = 0; j < B; j++) x[j] = frand() * ldexpf(1.0f, 100 + (int)(rnd() % 28));
      break;
  }
}

/* SIMD activation quantizers vs the scalar ones; returns the mismatches */
static int quant_check(int rows) {
  enum { MAXK = 4096 };
  static float xbuf[MAXK + 16];
  static uint8_t want[MAXK / 256 * 292], got[MAXK / 256 * 292];
  const int kTypes[] = {T_Q8_0, T_Q4_0, T_Q4_K, T_Q5_K, T_Q6_K};
  mk_type_ops lv[3][5];
  const int levels = mk_cpu_has_avx2() ? mk_cpu_has_avx512() ? 3 : 2 : 1;
  int bad = 0;
  for (int t = 0; t < 5; t++) {
    mk_scalar_fill(kTypes[t], &lv[0][t]);
    lv[1][t] = lv[0][t];
    if (levels > 1) mk_avx2_fill(kTypes[t], &lv[1][t]);
    lv[2][t] = lv[1][t];
    if (levels > 2) mk_avx512_fill(kTypes[t], &lv[2][t]);
    for (int l = 1; l < levels; l++) /* registered at each level, the same for all types of a vec-dot type */
      if (lv[l][t].quant_act == lv[l - 1][t].quant_act || lv[l][t].quant_act != lv[l][kTypes[t] == T_Q4_0 ? 0 : t >= 2 ? 2 : 0].quant_act) {
        if (bad++ < 10) printf("quant_act of type %d at level %d not registered\n", kTypes[t], l);
      }
  }
  for (int r = 0; r < rows; r++) {
    const int q8k = r % 2, B = q8k ? 256 : 32, t = q8k ? 2 : 0;
    const int K = q8k ? 256 * (1 + (int)(rnd() % 16)) : 32 * (1 + (int)(rnd() % 128));
    float *x = xbuf + rnd() % 16; /* unaligned rows */
    const int kind = (int)(rnd() % 12);
    for (int b = 0; b < K / B; b++) fill_block(x + b * B, B, rnd() % 4 ? kind : (int)(rnd() % 11));
    const size_t bytes = mk_row_bytes(q8k ? T_Q8_K : T_Q8_0, K);
    memset(want, 0xa5, bytes);
    lv[0][t].quant_act(x, want, K);
    for (int l = 1; l < levels; l++) {
      memset(got, 0x5a, bytes);
      lv[l][t].quant_act(x, got, K);
      if (memcmp(want, got, bytes)) {
        size_t o = 0;
        while (want[o] == got[o]) o++;
        if (bad++ < 10) printf("quant %s level %d K=%d kind=%d: byte %zu (block %zu) %02x vs %02x\n", q8k ? "q8_K" : "q8_0", l, K, kind, o, o / (q8k ? 292 : 34), want[o], got[o]);
      }
    }
  }
  return bad;
}

/* mk_f32_to_f16_row at levels 1, 2 vs f32_to_f16; returns the mismatches */
static int f16_row_check(void) {
  enum { N = 65536 * 16 };
  static float x[N];
  static uint16_t got[N];
  static const uint16_t lows[15] = {0x0000, 0x0001, 0x0fff, 0x1000, 0x1001, 0x2000, 0x2fff, 0x3000, 0x3001,
                                    0x7fff, 0xe000, 0xefff, 0xf000, 0xf001, 0xffff};
  int bad = 0;
  for (int pass = 0; pass < 2; pass++) {
    if (pass == 0)
      for (int i = 0; i < N; i++) x[i] = bits_f32(((uint32_t)(i >> 4) << 16) | ((i & 15) < 15 ? lows[i & 15] : (rnd() & 0xffff)));
    else
      for (int i = 0; i < N; i++) x[i] = bits_f32(rnd() ^ (rnd() << 9));
    for (int simd = 1; simd <= 2; simd++) {
      memset(got, 0, sizeof got);
      for (size_t i = 0; i < N;) { /* odd lengths and offsets */
        size_t len = rnd() % 4 ? rnd() % 100 : rnd() % 5000;
        if (len > N - i) len = N - i;
        mk_f32_to_f16_row(x + i, got + i, len, simd);
        i += len;
      }
      for (int i = 0; i < N; i++)
        if (got[i] != f32_to_f16(x[i])) {
          if (bad++ < 10) printf("f16 row simd=%d x=%08x: %04x vs %04x\n", simd, f32_bits(x[i]), f32_to_f16(x[i]), got[i]);
        }
    }
  }
  return bad;
}

int main(void) {
  mk_init_tables();
  const int qbad = quant_check(20000) + f16_row_check();
  printf("quantizer / f16 row mismatches %d\n", qbad);
  mkc_init();
  if (mkc_lanes != 16) { printf("skip: no AVX-512\n"); return qbad != 0; }
  enum { N = 1 << 20 };
  static float x[N], g[N], h[N];
  unsigned s = 1;
  for (int i = 0; i < N; i++) {
    s = s * 1664525u + 1013904223u;
    float v;
    switch (i % 8) {
      case 0: { unsigned b = s; memcpy(&v, &b, 4); break; } /* any bits: NaN, inf, denormals */
      case 1: v = ((int)(s >> 8) - (1 << 23)) / 32768.0f; break; /* ±256 */
      case 2: v = ((int)(s >> 8) - (1 << 23)) / 1e6f; break;
      default: v = ((int)(s >> 8) - (1 << 23)) / 3e5f; break;
    }
    x[i] = v; g[i] = ((int)(s >> 4) % 2000) / 1000.0f - 1.0f;
  }
  x[5] = 0.0f; x[6] = -0.0f; x[7] = INFINITY; x[9] = -INFINITY; x[10] = 133.0f; x[11] = -133.1f; x[12] = 89.0f; x[13] = -89.0f;
  int bad = qbad;
  const int n = 2048;
  for (int base = 0; base + n <= N; base += n) {
    mkc_swiglu_run(h + base, x + base, g + base, 1000, 0, n, 2);
    mkc_swiglu_run(h + base + 1000, x + base + 1000, g + base + 1000, n - 1000 - 5, 1000, n - 5, 2); /* tail past the 16-lane end */
    for (int i = 0; i < 1000; i++) { float w = mkc_swiglu(x[base+i], g[base+i], i, n); if (memcmp(&w, &h[base+i], 4) && !(isnan(w) && isnan(h[base+i]))) { if (bad++ < 10) printf("x=%a g=%a want %a got %a\n", x[base+i], g[base+i], w, h[base+i]); } }
    for (int i = 1000; i < n - 5; i++) { float w = mkc_swiglu(x[base+i], g[base+i], i, n - 5); if (memcmp(&w, &h[base+i], 4) && !(isnan(w) && isnan(h[base+i]))) { if (bad++ < 10) printf("x=%a g=%a want %a got %a\n", x[base+i], g[base+i], w, h[base+i]); } }
  }
  /* F32 dot products: normal-range values (the inputs' special values are covered above) */
  for (int K = 1; K <= 4096; K = K < 300 ? K + 1 : K == 300 ? 2048 : 2 * K)
    for (int sg = 0; sg < 2; sg++) {
      if (sg && K % 16) continue; /* tinyBLAS lanes only for whole registers */
      const float *w = g + (K * 7) % 1000, *xx = g + 5000 + (K * 13) % 1000; /* values in [-1, 1] */
      const float a = mkc_dot_f32(w, xx, K, sg), b = mkc_dot_f32_scalar(w, xx, K, sg);
      if (memcmp(&a, &b, 4)) { if (bad++ < 20) printf("dot_f32 K=%d sgemm=%d: %a vs %a\n", K, sg, a, b); }
    }
  mk_init_tables();
  bad += attn_one_chunk_check(3000);
  bad += attn_heads_check(1500);
  printf("mismatches %d\n", bad);
  return bad != 0;
}

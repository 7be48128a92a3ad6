/*
 * Node-API entry point. Positional, low-level functions; src/backend/native.ts validates every
 * argument before calling, and the size checks here are a second line of defence so that no
 * call can make a kernel read or write out of bounds.
 *
 *   matmul(y, x, w, type, T, N, K, threads)
 *   matmuls(x, T, K, ws[], types[], ys[], threads)   (several matrices on the same x, one pool run)
 *   moeFfn(out, x, gate, gateType, up, upType, down, downType, ids, weights, T, K, E, F, D, threads)
 *   attention(out, q, kCache, vCache, T, pos0, H, Hkv, Dh, ctx, scale, threads)
 *   getRows(out, w, type, K, rows)
 *   readProbe(buf, threads) -> checksum (memory read-bandwidth probe; time it from JS)
 *   residentCopy(dst, src, rows, rowBytes, threads) -> bool (a mapped weight into the process's memory)
 *   qkPrep(q, k, v, ...) (attention's QK-norm, RoPE and f16 K/V store: attn_prep.c)
 *   addNorm(x, y, scale, out, w, T, D, eps) (residual add, then RMSNorm: attn_prep.c)
 *   routeSoftmax(logits, T, E, K, normalize, scale, bias, ids, weights, scores) (MoE routing: ops.c)
 *   prefault(buf, write) -> bool (map the pages of buf into the process now, MADV_POPULATE_READ/WRITE)
 *   repack(dst, src, type, N, K, threads)   (Q4_K, Q8_0 or Q6_K rows in groups of 16 for the AVX-512 kernels)
 *   setThreads(n) -> n, getThreads(), setSimd(on | 0 scalar, 1 best, 2 AVX2 only) -> active, cpuFeatures()
 *   mmapOpen(path), mmapView(handle, offset, length), allocPages(length)   (mmap_file.c)
 *   trainGemm, trainXent, trainAttention, trainAdamw   (train.c; the training kernels)
 */
#include <pthread.h>
#include <stdlib.h>
#include <stdint.h>

#include "common.h"
#include "napi_util.h"
#include "ops.h"
#include "pool.h"
#include "train.h"

static pthread_mutex_t op_lock = PTHREAD_MUTEX_INITIALIZER;

typedef struct {
  void *data;
  size_t length; /* elements */
} view;

static int get_view(napi_env env, napi_value v, napi_typedarray_type want, view *out, const char *what) {
  bool is;
  napi_typedarray_type type;
  napi_value ab;
  size_t off;
  if (napi_is_typedarray(env, v, &is) != napi_ok || !is ||
      napi_get_typedarray_info(env, v, &type, &out->length, &out->data, &ab, &off) != napi_ok || type != want) {
    char msg[160];
    snprintf(msg, sizeof msg, "moekit native: %s has the wrong array type", what);
    napi_throw_type_error(env, NULL, msg);
    return 0;
  }
  return 1;
}

static int get_int(napi_env env, napi_value v, int64_t lo, int64_t hi, int *out, const char *what) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok || d != (double)(int64_t)d || d < (double)lo || d > (double)hi) {
    char msg[160];
    snprintf(msg, sizeof msg, "moekit native: %s must be an integer in [%lld, %lld]", what, (long long)lo, (long long)hi);
    napi_throw_range_error(env, NULL, msg);
    return 0;
  }
  *out = (int)d;
  return 1;
}

static int check(napi_env env, int ok, const char *msg) {
  if (!ok) {
    char m[200];
    snprintf(m, sizeof m, "moekit native: %s", msg);
    napi_throw_range_error(env, NULL, m);
  }
  return ok;
}

static int get_args(napi_env env, napi_callback_info info, size_t n, napi_value *argv) {
  size_t argc = n;
  if (napi_get_cb_info(env, info, &argc, argv, NULL, NULL) != napi_ok || argc < n) {
    napi_throw_type_error(env, NULL, "moekit native: too few arguments");
    return 0;
  }
  return 1;
}

static int threads_for(int requested) {
  if (requested > mk_pool_size()) mk_pool_resize(requested);
  return requested;
}

/* Bytes of a weight tensor with `rows` rows of `n` elements, or 0 if the type is unknown / n is
 * not a whole number of blocks. */
static size_t weight_bytes(int type, int n, size_t rows) {
  const mk_type_ops *o = mk_ops(type, 0);
  if (!o || n % o->block != 0) return 0;
  return mk_row_bytes(type, n) * rows;
}

#define IMAX 0x7fffffff

static napi_value js_matmul(napi_env env, napi_callback_info info) {
  napi_value a[8];
  view y, x, w;
  int type, T, N, K, th;
  if (!get_args(env, info, 8, a) || !get_view(env, a[0], napi_float32_array, &y, "y") ||
      !get_view(env, a[1], napi_float32_array, &x, "x") || !get_view(env, a[2], napi_uint8_array, &w, "w") ||
      !get_int(env, a[3], 0, 255, &type, "type") || !get_int(env, a[4], 1, IMAX, &T, "T") ||
      !get_int(env, a[5], 1, IMAX, &N, "N") || !get_int(env, a[6], 1, IMAX, &K, "K") ||
      !get_int(env, a[7], 1, 256, &th, "threads"))
    return NULL;
  const size_t wb = weight_bytes(type, K, (size_t)N);
  if (!check(env, wb != 0 && w.length == wb, "matmul: weight size does not match type/N/K") ||
      !check(env, y.length == (size_t)T * N, "matmul: y must have T*N elements") ||
      !check(env, x.length == (size_t)T * K, "matmul: x must have T*K elements"))
    return NULL;
  pthread_mutex_lock(&op_lock);
  mk_matmul(y.data, x.data, w.data, type, T, N, K, threads_for(th));
  pthread_mutex_unlock(&op_lock);
  return NULL;
}

/* matmuls(x, T, K, ws, types, ys, threads): ws/types/ys arrays of the same length n in [1, MK_MAX_MATMULS];
 * ys[i] = x · ws[i]ᵀ, N_i = ys[i].length / T */
static napi_value js_matmuls(napi_env env, napi_callback_info info) {
  napi_value a[7];
  view x;
  int T, K, th;
  uint32_t n = 0, nt = 0, ny = 0;
  bool arr[3];
  if (!get_args(env, info, 7, a) || !get_view(env, a[0], napi_float32_array, &x, "x") ||
      !get_int(env, a[1], 1, IMAX, &T, "T") || !get_int(env, a[2], 1, IMAX, &K, "K") ||
      !get_int(env, a[6], 1, 256, &th, "threads"))
    return NULL;
  for (int i = 0; i < 3; i++)
    if (napi_is_array(env, a[3 + i], &arr[i]) != napi_ok) arr[i] = false;
  if (!check(env, arr[0] && arr[1] && arr[2], "matmuls: ws, types and ys must be arrays") ||
      napi_get_array_length(env, a[3], &n) != napi_ok || napi_get_array_length(env, a[4], &nt) != napi_ok ||
      napi_get_array_length(env, a[5], &ny) != napi_ok ||
      !check(env, n >= 1 && n <= MK_MAX_MATMULS && nt == n && ny == n, "matmuls: 1 to 8 matrices, one type and one y each") ||
      !check(env, x.length == (size_t)T * K, "matmuls: x must have T*K elements"))
    return NULL;
  float *ys[MK_MAX_MATMULS];
  const uint8_t *ws[MK_MAX_MATMULS];
  int types[MK_MAX_MATMULS], Ns[MK_MAX_MATMULS];
  for (uint32_t i = 0; i < n; i++) {
    napi_value vw, vt, vy;
    view w, y;
    if (napi_get_element(env, a[3], i, &vw) != napi_ok || napi_get_element(env, a[4], i, &vt) != napi_ok ||
        napi_get_element(env, a[5], i, &vy) != napi_ok || !get_view(env, vw, napi_uint8_array, &w, "matmuls ws[i]") ||
        !get_int(env, vt, 0, 255, &types[i], "matmuls types[i]") || !get_view(env, vy, napi_float32_array, &y, "matmuls ys[i]") ||
        !check(env, y.length % (size_t)T == 0 && y.length / (size_t)T >= 1 && y.length / (size_t)T <= IMAX,
               "matmuls: ys[i] must have T*N elements"))
      return NULL;
    Ns[i] = (int)(y.length / (size_t)T);
    const size_t wb = weight_bytes(types[i], K, (size_t)Ns[i]);
    if (!check(env, wb != 0 && w.length == wb, "matmuls: a weight size does not match type/N/K")) return NULL;
    ws[i] = w.data;
    ys[i] = y.data;
  }
  pthread_mutex_lock(&op_lock);
  mk_matmuls((int)n, ys, x.data, ws, types, Ns, T, K, threads_for(th));
  pthread_mutex_unlock(&op_lock);
  return NULL;
}

static napi_value js_moe_ffn(napi_env env, napi_callback_info info) {
  napi_value a[16];
  view out, x, g, u, d, ids, wts;
  mk_moe_args m;
  int th;
  if (!get_args(env, info, 16, a) || !get_view(env, a[0], napi_float32_array, &out, "out") ||
      !get_view(env, a[1], napi_float32_array, &x, "x") || !get_view(env, a[2], napi_uint8_array, &g, "gate") ||
      !get_int(env, a[3], 0, 255, &m.gate_type, "gateType") || !get_view(env, a[4], napi_uint8_array, &u, "up") ||
      !get_int(env, a[5], 0, 255, &m.up_type, "upType") || !get_view(env, a[6], napi_uint8_array, &d, "down") ||
      !get_int(env, a[7], 0, 255, &m.down_type, "downType") || !get_view(env, a[8], napi_int32_array, &ids, "ids") ||
      !get_view(env, a[9], napi_float32_array, &wts, "weights") || !get_int(env, a[10], 1, IMAX, &m.T, "T") ||
      !get_int(env, a[11], 1, 1024, &m.K, "K") || !get_int(env, a[12], 1, 1 << 20, &m.E, "E") ||
      !get_int(env, a[13], 1, IMAX, &m.F, "F") || !get_int(env, a[14], 1, IMAX, &m.D, "D") ||
      !get_int(env, a[15], 1, 256, &th, "threads"))
    return NULL;
  const size_t gb = weight_bytes(m.gate_type, m.D, (size_t)m.E * m.F);
  const size_t ub = weight_bytes(m.up_type, m.D, (size_t)m.E * m.F);
  const size_t db = weight_bytes(m.down_type, m.F, (size_t)m.E * m.D);
  const size_t TK = (size_t)m.T * m.K;
  if (!check(env, gb != 0 && g.length == gb, "moeFfn: gate size does not match type/E/F/D") ||
      !check(env, ub != 0 && u.length == ub, "moeFfn: up size does not match type/E/F/D") ||
      !check(env, db != 0 && d.length == db, "moeFfn: down size does not match type/E/D/F") ||
      !check(env, out.length == (size_t)m.T * m.D && x.length == (size_t)m.T * m.D, "moeFfn: out/x must have T*D elements") ||
      !check(env, ids.length == TK && wts.length == TK, "moeFfn: ids/weights must have T*K elements"))
    return NULL;
  const int32_t *ip = ids.data;
  for (size_t i = 0; i < TK; i++)
    if (!check(env, ip[i] < m.E, "moeFfn: expert id out of range")) return NULL;
  m.out = out.data;
  m.x = x.data;
  m.gate = g.data;
  m.up = u.data;
  m.down = d.data;
  m.ids = ids.data;
  m.weights = wts.data;
  pthread_mutex_lock(&op_lock);
  mk_moe_ffn(&m, threads_for(th));
  pthread_mutex_unlock(&op_lock);
  return NULL;
}

static napi_value js_attention(napi_env env, napi_callback_info info) {
  napi_value a[12];
  view out, q, k, v;
  int T, pos0, H, Hkv, Dh, ctx, th;
  double scale;
  if (!get_args(env, info, 12, a) || !get_view(env, a[0], napi_float32_array, &out, "out") ||
      !get_view(env, a[1], napi_float32_array, &q, "q") || !get_view(env, a[2], napi_uint16_array, &k, "kCache") ||
      !get_view(env, a[3], napi_uint16_array, &v, "vCache") || !get_int(env, a[4], 1, IMAX, &T, "T") ||
      !get_int(env, a[5], 0, IMAX, &pos0, "pos0") || !get_int(env, a[6], 1, 1 << 16, &H, "H") ||
      !get_int(env, a[7], 1, 1 << 16, &Hkv, "Hkv") || !get_int(env, a[8], 1, 1 << 16, &Dh, "Dh") ||
      !get_int(env, a[9], 1, IMAX, &ctx, "ctx") || napi_get_value_double(env, a[10], &scale) != napi_ok ||
      !get_int(env, a[11], 1, 256, &th, "threads"))
    return NULL;
  const size_t kv = (size_t)ctx * Hkv * Dh;
  if (!check(env, H % Hkv == 0, "attention: H must be a multiple of Hkv") ||
      !check(env, (int64_t)pos0 + T <= ctx, "attention: pos0 + T exceeds ctx") ||
      !check(env, k.length == kv && v.length == kv, "attention: caches must have ctx*Hkv*Dh elements") ||
      !check(env, out.length == (size_t)T * H * Dh && q.length == (size_t)T * H * Dh, "attention: q/out must have T*H*Dh elements"))
    return NULL;
  pthread_mutex_lock(&op_lock);
  mk_attention(out.data, q.data, k.data, v.data, T, pos0, H, Hkv, Dh, (float)scale, threads_for(th));
  pthread_mutex_unlock(&op_lock);
  return NULL;
}

static napi_value js_get_rows(napi_env env, napi_callback_info info) {
  napi_value a[5];
  view out, w, rows;
  int type, K;
  if (!get_args(env, info, 5, a) || !get_view(env, a[0], napi_float32_array, &out, "out") ||
      !get_view(env, a[1], napi_uint8_array, &w, "w") || !get_int(env, a[2], 0, 255, &type, "type") ||
      !get_int(env, a[3], 1, IMAX, &K, "K") || !get_view(env, a[4], napi_int32_array, &rows, "rows"))
    return NULL;
  const size_t rb = weight_bytes(type, K, 1);
  if (!check(env, rb != 0 && w.length % rb == 0, "getRows: table size does not match type/K") ||
      !check(env, out.length == rows.length * (size_t)K, "getRows: out must have rows.length*K elements"))
    return NULL;
  const size_t R = w.length / rb;
  const int32_t *rp = rows.data;
  for (size_t i = 0; i < rows.length; i++)
    if (!check(env, rp[i] >= 0 && (size_t)rp[i] < R, "getRows: row index out of range")) return NULL;
  pthread_mutex_lock(&op_lock);
  mk_get_rows(out.data, w.data, type, K, rows.data, (int)rows.length);
  pthread_mutex_unlock(&op_lock);
  return NULL;
}

static napi_value js_set_threads(napi_env env, napi_callback_info info) {
  napi_value a[1], r;
  int n;
  if (!get_args(env, info, 1, a) || !get_int(env, a[0], 1, 256, &n, "threads")) return NULL;
  pthread_mutex_lock(&op_lock);
  n = mk_pool_resize(n);
  pthread_mutex_unlock(&op_lock);
  NAPI_CALL(env, napi_create_int32(env, n, &r));
  return r;
}

static napi_value js_get_threads(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value r;
  NAPI_CALL(env, napi_create_int32(env, mk_pool_size(), &r));
  return r;
}

static napi_value js_set_simd(napi_env env, napi_callback_info info) {
  napi_value a[1], r;
  int on;
  napi_valuetype vt;
  if (!get_args(env, info, 1, a)) return NULL;
  NAPI_CALL(env, napi_typeof(env, a[0], &vt));
  if (vt == napi_number) { /* 0 scalar, 1 best, 2 AVX2 only */
    NAPI_CALL(env, napi_get_value_int32(env, a[0], &on));
  } else {
    bool bon;
    NAPI_CALL(env, napi_get_value_bool(env, a[0], &bon));
    on = bon;
  }
  pthread_mutex_lock(&op_lock);
  mk_set_simd(on);
  pthread_mutex_unlock(&op_lock);
  NAPI_CALL(env, napi_get_boolean(env, mk_simd_active(), &r));
  return r;
}

static napi_value js_cpu_features(napi_env env, napi_callback_info info) {
  (void)info;
  napi_value obj, b;
  NAPI_CALL(env, napi_create_object(env, &obj));
  const int avx2 = mk_cpu_has_avx2();
  NAPI_CALL(env, napi_get_boolean(env, avx2, &b));
  NAPI_CALL(env, napi_set_named_property(env, obj, "avx2", b)); /* avx2 && fma && f16c */
  NAPI_CALL(env, napi_get_boolean(env, mk_simd_active(), &b));
  NAPI_CALL(env, napi_set_named_property(env, obj, "simd", b));
  NAPI_CALL(env, napi_get_boolean(env, mk_has_avx512(), &b));
  NAPI_CALL(env, napi_set_named_property(env, obj, "avx512", b)); /* F/VL/BW/VNNI kernels available */
  NAPI_CALL(env, napi_create_int32(env, mk_simd_level(), &b));
  NAPI_CALL(env, napi_set_named_property(env, obj, "simdLevel", b)); /* 0 scalar, 1 AVX2, 2 AVX-512 */
  return obj;
}

static napi_value js_read_probe(napi_env env, napi_callback_info info) {
  napi_value a[2], r;
  view buf;
  int th;
  if (!get_args(env, info, 2, a) || !get_view(env, a[0], napi_uint8_array, &buf, "buf") ||
      !get_int(env, a[1], 1, 256, &th, "threads"))
    return NULL;
  pthread_mutex_lock(&op_lock);
  const uint64_t s = mk_read_probe(buf.data, buf.length, threads_for(th));
  pthread_mutex_unlock(&op_lock);
  NAPI_CALL(env, napi_create_double(env, (double)(s & 0xffffffffu), &r));
  return r;
}

/* qkPrep(q, k, v, T, H, Hkv, Dh, qNorm|null, kNorm|null, eps, cos|null, sin|null, half, neox, kCache, vCache,
 * cacheRow): attention's prologue (attn_prep.c) */
static int get_opt_f32(napi_env env, napi_value v, view *out, const char *what) {
  napi_valuetype t;
  if (napi_typeof(env, v, &t) != napi_ok) return 0;
  if (t == napi_null || t == napi_undefined) {
    out->data = NULL;
    out->length = 0;
    return 1;
  }
  return get_view(env, v, napi_float32_array, out, what);
}

static napi_value js_qk_prep(napi_env env, napi_callback_info info) {
  napi_value a[17];
  view q, k, v, qn, kn, cs, sn, kc, vc;
  int T, H, Hkv, Dh, half, neox, row;
  double eps;
  if (!get_args(env, info, 17, a) || !get_view(env, a[0], napi_float32_array, &q, "q") ||
      !get_view(env, a[1], napi_float32_array, &k, "k") || !get_view(env, a[2], napi_float32_array, &v, "v") ||
      !get_int(env, a[3], 1, IMAX, &T, "T") || !get_int(env, a[4], 1, IMAX, &H, "H") ||
      !get_int(env, a[5], 1, IMAX, &Hkv, "Hkv") || !get_int(env, a[6], 1, IMAX, &Dh, "Dh") ||
      !get_opt_f32(env, a[7], &qn, "qNorm") || !get_opt_f32(env, a[8], &kn, "kNorm") ||
      napi_get_value_double(env, a[9], &eps) != napi_ok || !get_opt_f32(env, a[10], &cs, "cos") ||
      !get_opt_f32(env, a[11], &sn, "sin") || !get_int(env, a[12], 0, IMAX, &half, "half") ||
      !get_int(env, a[13], 0, 1, &neox, "neox") || !get_view(env, a[14], napi_uint16_array, &kc, "kCache") ||
      !get_view(env, a[15], napi_uint16_array, &vc, "vCache") || !get_int(env, a[16], 0, IMAX, &row, "cacheRow"))
    return NULL;
  const size_t qd = (size_t)H * Dh, kd = (size_t)Hkv * Dh;
  if (!check(env, q.length == (size_t)T * qd && k.length == (size_t)T * kd && v.length == (size_t)T * kd,
             "qkPrep: q/k/v sizes do not match T, H, Hkv, Dh") ||
      !check(env, !qn.data || (qn.length > 0 && qd % qn.length == 0), "qkPrep: qNorm length must divide H*Dh") ||
      !check(env, !kn.data || (kn.length > 0 && kd % kn.length == 0), "qkPrep: kNorm length must divide Hkv*Dh") ||
      !check(env, !cs.data == !sn.data && (!cs.data || (2 * (size_t)half <= (size_t)Dh && cs.length >= (size_t)T * half &&
                                                         sn.length >= (size_t)T * half)),
             "qkPrep: cos/sin must both be given, [T, half] with 2*half <= Dh") ||
      !check(env, ((size_t)row + T) * kd <= kc.length && ((size_t)row + T) * kd <= vc.length, "qkPrep: cache rows out of range"))
    return NULL;
  mk_qk_prep_args p = {(float *)q.data, (float *)k.data, (const float *)v.data, T, H, Hkv, Dh,
                       (const float *)qn.data, (const float *)kn.data, (int)qn.length, (int)kn.length, (float)eps,
                       (const float *)cs.data, (const float *)sn.data, half, neox,
                       (uint16_t *)kc.data, (uint16_t *)vc.data, row};
  mk_qk_prep(&p);
  return NULL;
}

/* addNorm(x, y, scale, out, w, T, D, eps): the residual add and the next RMSNorm (attn_prep.c) */
static napi_value js_add_norm(napi_env env, napi_callback_info info) {
  napi_value a[8];
  view x, y, out, w;
  int T, D;
  double scale, eps;
  if (!get_args(env, info, 8, a) || !get_view(env, a[0], napi_float32_array, &x, "x") ||
      !get_view(env, a[1], napi_float32_array, &y, "y") || napi_get_value_double(env, a[2], &scale) != napi_ok ||
      !get_view(env, a[3], napi_float32_array, &out, "out") || !get_view(env, a[4], napi_float32_array, &w, "w") ||
      !get_int(env, a[5], 1, IMAX, &T, "T") || !get_int(env, a[6], 1, IMAX, &D, "D") ||
      napi_get_value_double(env, a[7], &eps) != napi_ok)
    return NULL;
  const size_t n = (size_t)T * D;
  if (!check(env, x.length == n && y.length == n && out.length == n && w.length == (size_t)D,
             "addNorm: x, y and out must have T*D elements and w D"))
    return NULL;
  mk_add_norm((float *)x.data, (const float *)y.data, scale, (float *)out.data, (const float *)w.data, T, D, (float)eps);
  return NULL;
}

/* routeSoftmax(logits, T, E, K, normalize, scale, bias|null, ids, weights, scores): softmax top-K routing (ops.c) */
static napi_value js_route_softmax(napi_env env, napi_callback_info info) {
  napi_value a[10];
  view lg, bias, ids, w, sc;
  int T, E, K, norm;
  double scale;
  if (!get_args(env, info, 10, a) || !get_view(env, a[0], napi_float32_array, &lg, "logits") ||
      !get_int(env, a[1], 1, IMAX, &T, "T") || !get_int(env, a[2], 16, 1 << 20, &E, "E") ||
      !get_int(env, a[3], 1, IMAX, &K, "K") || !get_int(env, a[4], 0, 1, &norm, "normalize") ||
      napi_get_value_double(env, a[5], &scale) != napi_ok || !get_opt_f32(env, a[6], &bias, "bias") ||
      !get_view(env, a[7], napi_int32_array, &ids, "ids") || !get_view(env, a[8], napi_float32_array, &w, "weights") ||
      !get_view(env, a[9], napi_float32_array, &sc, "scores"))
    return NULL;
  const size_t te = (size_t)T * E, tk = (size_t)T * K;
  if (!check(env, E % 16 == 0 && K <= E && lg.length == te && sc.length == te && ids.length == tk && w.length == tk &&
                      (!bias.data || bias.length == (size_t)E),
             "routeSoftmax: E must be a multiple of 16 and K <= E; logits/scores [T, E], ids/weights [T, K], bias [E]"))
    return NULL;
  float *sel = malloc(sizeof(float) * (size_t)E);
  if (!sel) {
    napi_throw_error(env, NULL, "moekit native: out of memory");
    return NULL;
  }
  mk_route_softmax(lg.data, T, E, K, norm, scale, bias.data, ids.data, w.data, sc.data, sel);
  free(sel);
  return NULL;
}

/* prefault(buf, write): map every page of buf now (one MADV_POPULATE_READ instead of a fault per page at
 * first touch, as llama.cpp maps its model with MAP_POPULATE; write: MADV_POPULATE_WRITE, for buffers about
 * to be written such as the KV cache); false where the kernel lacks it */
static napi_value js_prefault(napi_env env, napi_callback_info info) {
  napi_value a[2], r;
  view buf;
  bool write;
  if (!get_args(env, info, 2, a) || !get_view(env, a[0], napi_uint8_array, &buf, "buf")) return NULL;
  if (napi_get_value_bool(env, a[1], &write) != napi_ok) {
    napi_throw_type_error(env, NULL, "moekit native: prefault write must be a boolean");
    return NULL;
  }
  NAPI_CALL(env, napi_get_boolean(env, mk_prefault(buf.data, buf.length, write), &r));
  return r;
}

/* repack(dst, src, type, N, K, threads): Q4_K, Q8_0 or Q6_K [N, K] into T_Q4_K_R16 / T_Q8_0_R16 / T_Q6_K_R16
 * (common.h), N >= 16; Q4_K: N a multiple of 16 (Q8_0 / Q6_K keep the last N % 16 rows as stored) */
static napi_value js_repack(napi_env env, napi_callback_info info) {
  napi_value a[6];
  view dst, src;
  int type, N, K, th;
  if (!get_args(env, info, 6, a) || !get_view(env, a[0], napi_uint8_array, &dst, "dst") ||
      !get_view(env, a[1], napi_uint8_array, &src, "src") || !get_int(env, a[2], 0, IMAX, &type, "type") ||
      !get_int(env, a[3], MK_R16, IMAX, &N, "N") || !get_int(env, a[4], 1, IMAX, &K, "K") ||
      !get_int(env, a[5], 1, 256, &th, "threads"))
    return NULL;
  if (!check(env, type == T_Q4_K || type == T_Q8_0 || type == T_Q6_K, "repack: type must be Q4_K (12), Q8_0 (8) or Q6_K (14)"))
    return NULL;
  const size_t wb = weight_bytes(type, K, (size_t)N);
  if (!check(env, type != T_Q4_K || N % MK_R16 == 0, "repack: Q4_K's N must be a multiple of 16") ||
      !check(env, wb != 0 && src.length == wb && dst.length == wb, "repack: src/dst size does not match N/K"))
    return NULL;
  pthread_mutex_lock(&op_lock);
  mk_repack_r16(dst.data, src.data, type, N, K, threads_for(th));
  pthread_mutex_unlock(&op_lock);
  return NULL;
}

/* residentCopy(dst, src, rows, rowBytes, threads) -> bool: mk_copy_resident */
static napi_value js_resident_copy(napi_env env, napi_callback_info info) {
  napi_value a[5], r;
  view dst, src;
  int rows, rb, th;
  if (!get_args(env, info, 5, a) || !get_view(env, a[0], napi_uint8_array, &dst, "dst") ||
      !get_view(env, a[1], napi_uint8_array, &src, "src") || !get_int(env, a[2], 1, IMAX, &rows, "rows") ||
      !get_int(env, a[3], 1, IMAX, &rb, "rowBytes") || !get_int(env, a[4], 1, 256, &th, "threads"))
    return NULL;
  const size_t n = (size_t)rows * (size_t)rb;
  if (!check(env, src.length == n && dst.length == n, "residentCopy: src/dst size does not match rows*rowBytes")) return NULL;
  pthread_mutex_lock(&op_lock);
  const int ok = mk_copy_resident(dst.data, src.data, rows, rb, threads_for(th));
  pthread_mutex_unlock(&op_lock);
  NAPI_CALL(env, napi_get_boolean(env, ok, &r));
  return r;
}

/* ---- training kernels (train.c) ---------------------------------------------------------------- */

static napi_value js_train_gemm(napi_env env, napi_callback_info info) {
  napi_value a[10];
  view c, A, B;
  int M, N, K, ta, tb, acc, th;
  if (!get_args(env, info, 10, a) || !get_view(env, a[0], napi_float32_array, &c, "C") ||
      !get_view(env, a[1], napi_float32_array, &A, "A") || !get_view(env, a[2], napi_float32_array, &B, "B") ||
      !get_int(env, a[3], 1, IMAX, &M, "M") || !get_int(env, a[4], 1, IMAX, &N, "N") ||
      !get_int(env, a[5], 1, IMAX, &K, "K") || !get_int(env, a[6], 0, 1, &ta, "transA") ||
      !get_int(env, a[7], 0, 1, &tb, "transB") || !get_int(env, a[8], 0, 1, &acc, "accumulate") ||
      !get_int(env, a[9], 1, 256, &th, "threads"))
    return NULL;
  if (!check(env, c.length == (size_t)M * N, "trainGemm: C must have M*N elements") ||
      !check(env, A.length == (size_t)M * K, "trainGemm: A must have M*K elements") ||
      !check(env, B.length == (size_t)K * N, "trainGemm: B must have K*N elements"))
    return NULL;
  pthread_mutex_lock(&op_lock);
  mk_train_gemm(c.data, A.data, B.data, M, N, K, ta, tb, acc, threads_for(th));
  pthread_mutex_unlock(&op_lock);
  return NULL;
}

static napi_value js_train_xent(napi_env env, napi_callback_info info) {
  napi_value a[6];
  view lg, tg, loss;
  int T, V, th;
  if (!get_args(env, info, 6, a) || !get_view(env, a[0], napi_float32_array, &lg, "logits") ||
      !get_view(env, a[1], napi_int32_array, &tg, "targets") || !get_view(env, a[2], napi_float32_array, &loss, "loss") ||
      !get_int(env, a[3], 1, IMAX, &T, "T") || !get_int(env, a[4], 1, IMAX, &V, "V") ||
      !get_int(env, a[5], 1, 256, &th, "threads"))
    return NULL;
  if (!check(env, lg.length == (size_t)T * V, "trainXent: logits must have T*V elements") ||
      !check(env, tg.length == (size_t)T && loss.length == (size_t)T, "trainXent: targets/loss must have T elements"))
    return NULL;
  const int32_t *tp = tg.data;
  for (int t = 0; t < T; t++)
    if (!check(env, tp[t] >= 0 && tp[t] < V, "trainXent: target id out of range")) return NULL;
  pthread_mutex_lock(&op_lock);
  mk_train_xent(lg.data, tg.data, loss.data, T, V, threads_for(th));
  pthread_mutex_unlock(&op_lock);
  return NULL;
}

/* trainAttention(bwd, o0, o1, o2, o3, q, k, v, att, B, S, H, Dh, threads):
 *   forward:  o0 = out, o1 = att (written), o2/o3 unused (pass o0);
 *   backward: o0 = dq, o1 = dk, o2 = dv, o3 = dout; att is read. */
static napi_value js_train_attention(napi_env env, napi_callback_info info) {
  napi_value a[14];
  view o[4], q, k, v, att;
  int bwd, B, S, H, Dh, th;
  if (!get_args(env, info, 14, a) || !get_int(env, a[0], 0, 1, &bwd, "bwd")) return NULL;
  for (int i = 0; i < 4; i++)
    if (!get_view(env, a[1 + i], napi_float32_array, &o[i], "output")) return NULL;
  if (!get_view(env, a[5], napi_float32_array, &q, "q") || !get_view(env, a[6], napi_float32_array, &k, "k") ||
      !get_view(env, a[7], napi_float32_array, &v, "v") || !get_view(env, a[8], napi_float32_array, &att, "att") ||
      !get_int(env, a[9], 1, IMAX, &B, "B") || !get_int(env, a[10], 1, 1 << 16, &S, "S") ||
      !get_int(env, a[11], 1, 1 << 16, &H, "H") || !get_int(env, a[12], 1, 1 << 16, &Dh, "Dh") ||
      !get_int(env, a[13], 1, 256, &th, "threads"))
    return NULL;
  const size_t n = (size_t)B * S * H * Dh;
  if (!check(env, q.length == n && k.length == n && v.length == n, "trainAttention: q/k/v must have B*S*H*Dh elements") ||
      !check(env, att.length == (size_t)B * H * S * S, "trainAttention: att must have B*H*S*S elements") ||
      !check(env, o[0].length == n && (!bwd || (o[1].length == n && o[2].length == n && o[3].length == n)),
             "trainAttention: outputs must have B*S*H*Dh elements"))
    return NULL;
  pthread_mutex_lock(&op_lock);
  if (bwd) mk_train_attn_bwd(o[0].data, o[1].data, o[2].data, o[3].data, q.data, k.data, v.data, att.data, B, S, H, Dh, threads_for(th));
  else mk_train_attn_fwd(o[0].data, att.data, q.data, k.data, v.data, B, S, H, Dh, threads_for(th));
  pthread_mutex_unlock(&op_lock);
  return NULL;
}

/* trainAdamw(params, grads, m, v, offset, size, b1, b2, eps, step, bc2, decay, threads) */
static napi_value js_train_adamw(napi_env env, napi_callback_info info) {
  napi_value a[13];
  view p, g, m, v;
  int off, n, th;
  double h[6];
  if (!get_args(env, info, 13, a) || !get_view(env, a[0], napi_float32_array, &p, "params") ||
      !get_view(env, a[1], napi_float32_array, &g, "grads") || !get_view(env, a[2], napi_float32_array, &m, "m") ||
      !get_view(env, a[3], napi_float32_array, &v, "v") || !get_int(env, a[4], 0, IMAX, &off, "offset") ||
      !get_int(env, a[5], 0, IMAX, &n, "size") || !get_int(env, a[12], 1, 256, &th, "threads"))
    return NULL;
  for (int i = 0; i < 6; i++)
    if (napi_get_value_double(env, a[6 + i], &h[i]) != napi_ok) {
      napi_throw_type_error(env, NULL, "moekit native: trainAdamw hyper-parameters must be numbers");
      return NULL;
    }
  if (!check(env, g.length == p.length && m.length == p.length && v.length == p.length, "trainAdamw: params/grads/m/v lengths differ") ||
      !check(env, (size_t)off + (size_t)n <= p.length, "trainAdamw: offset + size exceeds the parameters"))
    return NULL;
  pthread_mutex_lock(&op_lock);
  mk_train_adamw((float *)p.data + off, (const float *)g.data + off, (float *)m.data + off, (float *)v.data + off, n,
                 h[0], h[1], h[2], h[3], h[4], h[5], threads_for(th));
  pthread_mutex_unlock(&op_lock);
  return NULL;
}

static napi_value Init(napi_env env, napi_value exports) {
  static int initialized;
  if (!initialized) {
    mk_ops_init();
    initialized = 1;
  }
  napi_property_descriptor props[] = {
    {"matmul", NULL, js_matmul, NULL, NULL, NULL, napi_default, NULL},
    {"matmuls", NULL, js_matmuls, NULL, NULL, NULL, napi_default, NULL},
    {"moeFfn", NULL, js_moe_ffn, NULL, NULL, NULL, napi_default, NULL},
    {"attention", NULL, js_attention, NULL, NULL, NULL, napi_default, NULL},
    {"getRows", NULL, js_get_rows, NULL, NULL, NULL, napi_default, NULL},
    {"setThreads", NULL, js_set_threads, NULL, NULL, NULL, napi_default, NULL},
    {"getThreads", NULL, js_get_threads, NULL, NULL, NULL, napi_default, NULL},
    {"setSimd", NULL, js_set_simd, NULL, NULL, NULL, napi_default, NULL},
    {"cpuFeatures", NULL, js_cpu_features, NULL, NULL, NULL, napi_default, NULL},
    {"readProbe", NULL, js_read_probe, NULL, NULL, NULL, napi_default, NULL},
    {"prefault", NULL, js_prefault, NULL, NULL, NULL, napi_default, NULL},
    {"qkPrep", NULL, js_qk_prep, NULL, NULL, NULL, napi_default, NULL},
    {"addNorm", NULL, js_add_norm, NULL, NULL, NULL, napi_default, NULL},
    {"routeSoftmax", NULL, js_route_softmax, NULL, NULL, NULL, napi_default, NULL},
    {"repack", NULL, js_repack, NULL, NULL, NULL, napi_default, NULL},
    {"residentCopy", NULL, js_resident_copy, NULL, NULL, NULL, napi_default, NULL},
    {"mmapOpen", NULL, js_mmap_open, NULL, NULL, NULL, napi_default, NULL},
    {"mmapView", NULL, js_mmap_view, NULL, NULL, NULL, napi_default, NULL},
    {"allocPages", NULL, js_alloc_pages, NULL, NULL, NULL, napi_default, NULL},
    {"trainGemm", NULL, js_train_gemm, NULL, NULL, NULL, napi_default, NULL},
    {"trainXent", NULL, js_train_xent, NULL, NULL, NULL, napi_default, NULL},
    {"trainAttention", NULL, js_train_attention, NULL, NULL, NULL, napi_default, NULL},
    {"trainAdamw", NULL, js_train_adamw, NULL, NULL, NULL, napi_default, NULL},
  };
  NAPI_CALL(env, napi_define_properties(env, exports, sizeof props / sizeof props[0], props));
  return exports;
}

NAPI_MODULE(NODE_GYP_MODULE_NAME, Init)

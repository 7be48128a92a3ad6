/*
 * Read-only file mappings for zero-copy tensor access.
 *
 *   mmapOpen(path) -> handle object { size }   (PROT_READ, MAP_SHARED, whole file)
 *   mmapView(handle, offset, length) -> external ArrayBuffer into the mapping
 *   allocPages(length) -> external ArrayBuffer over fresh anonymous pages (page-aligned, zeroed)
 *
 * Lifetime: the mapping carries a reference count = 1 (the handle) + number of live views.
 * Each finalizer (handle GC, view GC) drops one reference; the last one unmaps. So a view
 * stays valid even after the handle is unreachable. Finalizers run on the JS thread, so the
 * count needs no atomics.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "napi_util.h"

typedef struct {
  void *base;   /* NULL for an empty file */
  size_t size;
  long refs;
} Mapping;

static void mapping_unref(Mapping *m) {
  if (--m->refs > 0) return;
  if (m->base) munmap(m->base, m->size);
  free(m);
}

static void handle_finalize(napi_env env, void *data, void *hint) {
  (void)env; (void)hint;
  mapping_unref((Mapping *)data);
}

static void view_finalize(napi_env env, void *data, void *hint) {
  (void)env; (void)data;
  mapping_unref((Mapping *)hint);
}

napi_value js_mmap_open(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 1) return throw_error(env, "mmapOpen(path): path required");
  char path[4096];
  size_t len = 0;
  if (napi_get_value_string_utf8(env, argv[0], path, sizeof path, &len) != napi_ok)
    return throw_error(env, "mmapOpen(path): path must be a string");
  if (len >= sizeof path - 1) return throw_error(env, "mmapOpen(path): path too long");

  int fd = open(path, O_RDONLY | O_CLOEXEC);
  if (fd < 0) return throw_errno(env, "mmapOpen: cannot open", path, errno);
  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return throw_errno(env, "mmapOpen: cannot stat", path, e);
  }
  if (!S_ISREG(st.st_mode)) {
    close(fd);
    return throw_errno(env, "mmapOpen: not a regular file", path, EINVAL);
  }
  Mapping *m = calloc(1, sizeof *m);
  if (!m) { close(fd); return throw_error(env, "mmapOpen: out of memory"); }
  m->size = (size_t)st.st_size;
  m->refs = 1;
  if (m->size > 0) {
    void *p = mmap(NULL, m->size, PROT_READ, MAP_SHARED, fd, 0);
    if (p == MAP_FAILED) {
      int e = errno;
      close(fd);
      free(m);
      return throw_errno(env, "mmapOpen: mmap failed for", path, e);
    }
    m->base = p;
  }
  close(fd); /* the mapping keeps the file referenced */

  napi_value obj, size;
  NAPI_CALL(env, napi_create_object(env, &obj));
  NAPI_CALL(env, napi_create_double(env, (double)m->size, &size));
  NAPI_CALL(env, napi_set_named_property(env, obj, "size", size));
  if (napi_wrap(env, obj, m, handle_finalize, NULL, NULL) != napi_ok) {
    mapping_unref(m);
    return throw_error(env, "mmapOpen: napi_wrap failed");
  }
  return obj;
}

/* Reads a non-negative integral number (<= 2^53). */
static int get_index(napi_env env, napi_value v, uint64_t *out) {
  double d;
  if (napi_get_value_double(env, v, &d) != napi_ok) return 0;
  if (!(d >= 0) || d > 9007199254740992.0 || floor(d) != d) return 0;
  *out = (uint64_t)d;
  return 1;
}

napi_value js_mmap_view(napi_env env, napi_callback_info info) {
  size_t argc = 3;
  napi_value argv[3];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  if (argc < 3) return throw_error(env, "mmapView(handle, offset, length): 3 arguments required");
  Mapping *m = NULL;
  if (napi_unwrap(env, argv[0], (void **)&m) != napi_ok || !m)
    return throw_error(env, "mmapView: first argument is not an mmapOpen handle");
  uint64_t off, len;
  if (!get_index(env, argv[1], &off)) return throw_range_error(env, "mmapView: offset must be a non-negative integer");
  if (!get_index(env, argv[2], &len)) return throw_range_error(env, "mmapView: length must be a non-negative integer");
  if (off > m->size || len > m->size - off) {
    char msg[256];
    snprintf(msg, sizeof msg, "mmapView: range [%llu, %llu) is outside the mapping of %llu bytes",
             (unsigned long long)off, (unsigned long long)(off + len), (unsigned long long)m->size);
    return throw_range_error(env, msg);
  }
  napi_value ab;
  if (len == 0) {
    void *unused;
    NAPI_CALL(env, napi_create_arraybuffer(env, 0, &unused, &ab));
    return ab;
  }
  m->refs++;
  if (napi_create_external_arraybuffer(env, (char *)m->base + off, (size_t)len, view_finalize, m, &ab) != napi_ok) {
    m->refs--;
    return throw_error(env, "mmapView: cannot create external ArrayBuffer");
  }
  return ab;
}

/* allocPages: memory for weights the kernels stream (repacked copies). ArrayBuffers from V8 come from
 * calloc, whose large blocks start 16 bytes into a page: every 64-byte vector load then spans two cache
 * lines (measured on the olmoe MoE decode step: ~10% slower, and the read probe ~25% slower). */
static void pages_finalize(napi_env env, void *data, void *hint) {
  (void)env;
  munmap(data, (size_t)(uintptr_t)hint);
}

napi_value js_alloc_pages(napi_env env, napi_callback_info info) {
  size_t argc = 1;
  napi_value argv[1];
  NAPI_CALL(env, napi_get_cb_info(env, info, &argc, argv, NULL, NULL));
  uint64_t len;
  if (argc < 1 || !get_index(env, argv[0], &len) || len == 0 || len > ((uint64_t)1 << 46))
    return throw_range_error(env, "allocPages(length): length must be an integer in [1, 2^46]");
  void *p = mmap(NULL, (size_t)len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (p == MAP_FAILED) return throw_errno(env, "allocPages: mmap failed for", "anonymous memory", errno);
  /* transparent huge pages for weight copies (where THP is "madvise", as on the VMs we measure on): a TLB entry
   * per 2 MiB instead of per 4 KiB of weights read once per token. moekit bench, olmoe 2 threads, A/B pairs
   * 07:21-07:29 UTC: Q4_K_M 91/84% vs 78/71% of the roofline, Q8_0 76/84% vs 72/70%, prompt 5-25% faster.
   * MOEKIT_NO_HUGEPAGES=1 turns it off. */
#ifdef MADV_HUGEPAGE
  if (len >= ((uint64_t)2 << 20) && !getenv("MOEKIT_NO_HUGEPAGES")) madvise(p, (size_t)len, MADV_HUGEPAGE);
#endif
  napi_value ab;
  if (napi_create_external_arraybuffer(env, p, (size_t)len, pages_finalize, (void *)(uintptr_t)len, &ab) != napi_ok) {
    munmap(p, (size_t)len);
    return throw_error(env, "allocPages: cannot create external ArrayBuffer");
  }
  return ab;
}

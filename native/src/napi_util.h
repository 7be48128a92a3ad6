/* Small Node-API helpers shared by the addon's source files. */
#ifndef MOEKIT_NAPI_UTIL_H
#define MOEKIT_NAPI_UTIL_H
#include <node_api.h>
#include <stdio.h>
#include <string.h>

#define NAPI_CALL(env, call)                                          \
  do {                                                                \
    if ((call) != napi_ok) {                                          \
      napi_throw_error((env), NULL, "moekit native: " #call " failed"); \
      return NULL;                                                    \
    }                                                                 \
  } while (0)

static inline napi_value throw_error(napi_env env, const char *msg) {
  napi_throw_error(env, NULL, msg);
  return NULL;
}

static inline napi_value throw_range_error(napi_env env, const char *msg) {
  napi_throw_range_error(env, NULL, msg);
  return NULL;
}

static inline napi_value throw_errno(napi_env env, const char *what, const char *path, int e) {
  char msg[4608];
  snprintf(msg, sizeof msg, "%s '%s': %s (errno %d)", what, path, strerror(e), e);
  napi_throw_error(env, NULL, msg);
  return NULL;
}

napi_value js_mmap_open(napi_env env, napi_callback_info info);
napi_value js_mmap_view(napi_env env, napi_callback_info info);
napi_value js_alloc_pages(napi_env env, napi_callback_info info);

#endif

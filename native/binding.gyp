{
  "targets": [
    {
      "target_name": "moekit",
      "sources": ["src/addon.c", "src/mmap_file.c", "src/pool.c", "src/ops.c", "src/ggml_compat.c", "src/kernels_scalar.c", "src/kernels_avx2.c", "src/kernels_avx512.c", "src/q8_0_r16.c", "src/q6_K_r16.c", "src/attn_prep.c", "src/train.c"],
      "cflags": ["-O3", "-std=gnu11", "-fno-strict-aliasing", "-ffp-contract=off", "-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-unused-function", "-Wno-missing-field-initializers"],
      "cflags!": ["-fno-exceptions"],
      "libraries": ["-lpthread", "-lm"]
    }
  ]
}

{
  "targets": [
    {
      "target_name": "moekit",
      "sources": ["src/addon.c", "src/pool.c", "src/kernels.c", "src/kernels_avx2.c"],
      "cflags": ["-O3", "-std=c11", "-fno-strict-aliasing", "-Wall", "-Wno-unused-function"],
      "cflags!": ["-fno-exceptions"],
      "libraries": ["-lpthread"]
    }
  ]
}

#!/bin/sh
# Builds ik_llama.cpp's llama-bench (CPU only, this machine's ISA) for bench/vs-ik.ts. Not a dependency of moekit.
#   bench/build-ik.sh <ik_llama.cpp source dir> [build dir]      # ~10 min on 2 cores; prints the binary's path
# The source dir needs CMakeLists.txt, cmake, ggml, src, include, common, vendor and examples/llama-bench; the other
# examples are dropped from examples/CMakeLists.txt (a copy of the tree is edited, the source is not).
set -e
src=$(cd "$1" && pwd); build=${2:-/tmp/ik-build}
tree="$build/src"
mkdir -p "$tree"
for p in CMakeLists.txt cmake ggml src include common vendor examples/llama-bench; do
  [ -e "$src/$p" ] || { echo "build-ik: $src/$p missing" >&2; exit 1; }
  mkdir -p "$tree/$(dirname "$p")" && cp -r "$src/$p" "$tree/$(dirname "$p")/"
done
printf 'find_package(Threads REQUIRED)\ninclude_directories(${CMAKE_CURRENT_SOURCE_DIR})\nadd_subdirectory(llama-bench)\n' > "$tree/examples/CMakeLists.txt"
sed -i 's/^\( *\)add_subdirectory(pocs)/\1# pocs dropped/' "$tree/CMakeLists.txt"
cmake -S "$tree" -B "$build/out" -G Ninja -DCMAKE_BUILD_TYPE=Release -DGGML_NATIVE=ON -DLLAMA_BUILD_TESTS=OFF \
  -DLLAMA_BUILD_SERVER=OFF -DLLAMA_CURL=OFF -DGGML_OPENMP=ON >&2
cmake --build "$build/out" --target llama-bench -j "$(nproc)" >&2
echo "$build/out/bin/llama-bench"

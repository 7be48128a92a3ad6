#!/bin/sh
# Builds a C harness of bench/native against a tree of native sources (default: this checkout's), e.g. to
# A/B two versions:  git archive HEAD~1 native/src | tar -x -C /tmp/old
#                    bench/native/build.sh attention /tmp/old/native/src /tmp/attn-old
#                    bench/native/build.sh attention native/src /tmp/attn-new
# then run the two binaries alternately (the machine is shared: compare only interleaved runs).
set -e
name=$1; src=$(cd "${2:-$(dirname "$0")/../../native/src}" && pwd); out=${3:-/tmp/$1}
here=$(cd "$(dirname "$0")" && pwd)
cd "$src"
gcc -O3 -std=gnu11 -fno-strict-aliasing -ffp-contract=off -mf16c -I. -o "$out" "$here/$name.c" \
  pool.c ops.c ggml_compat.c kernels_scalar.c kernels_avx2.c kernels_avx512.c q8_0_r16.c \
  $(for f in q6_K_r16.c attn_prep.c; do [ -f "$f" ] && echo "$f"; done) -lm -lpthread  # newer files: older trees lack them
echo "$out"

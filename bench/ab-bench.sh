#!/bin/sh
# `moekit bench` of two checkouts alternately (the host is noisy: compare only interleaved runs), e.g.
#   git worktree add /tmp/old HEAD~1 && ln -s "$PWD/node_modules" /tmp/old/ && (cd /tmp/old && npm run build:native)
#   bench/ab-bench.sh /tmp/old . .cache/bench/olmoe-1b-7b-q4_k_m.gguf 3
old=$1; new=$2; model=$3; pairs=${4:-3}
for i in $(seq "$pairs"); do
  echo "old $(node "$old/bin/moekit.js" bench "$model" -p 128 -n 64 -t 2 -r 3 2>&1 | tail -1)"
  echo "new $(node "$new/bin/moekit.js" bench "$model" -p 128 -n 64 -t 2 -r 3 2>&1 | tail -1)"
done

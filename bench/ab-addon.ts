/**
 * A/B test of two builds of the native addon in one process, alternating calls (the machine is shared,
 * so only interleaved ratios mean anything). Copy the baseline build first:
 *   cp native/build/Release/moekit.node /tmp/moekit-base.node   # then change native/, npm run build:native
 *   node --import tsx bench/ab-addon.ts /tmp/moekit-base.node [--new other.node] [--threads 2] [--rounds 30] [--only moe|matmul|qkv|attn|repack]
 *     [--repack-file model.gguf]
 * Times a MoE decode step (olmoe shape: E=64, top-8, D=2048, F=1024; gate/up Q4_K, down Q6_K as in
 * Q4_K_M, and all-Q8_0), over 4 distinct layers so weights come from DRAM, and a 128-token prompt step;
 * then a Q4_K 2048×2048 matmul (the attention projections) at T=1 and T=128, and the q/k/v projections of a
 * decode step (T=1, 4) as three `matmul` calls or, where the build has it, one `matmuls` call; and the
 * first-use Q4_K repack from a mapped file; and a decode step's attention (olmoe and qwen3 shapes, caches from DRAM).
 * A build with `repack` (older: `repackQ4K`, Q4_K only) on an AVX-512 CPU gets its Q4_K (and Q8_0, and Q6_K
 * where the build repacks it) weights repacked, as NativeBackend does; --no-q6k-repack keeps Q6_K as stored in
 * both builds (the stored-layout kernels A/B). `--only q6k` times a Q6_K 2048-row matmul (K = 2048) at T=1 and
 * T=128.
 */
import { createRequire } from 'node:module';
import { appendFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { GGMLType, tensorBytes } from '../src/tensor.js';
import type { Addon } from '../src/backend/native.js';

const argv = process.argv.slice(2);
const flag = (f: string, d: number): number => (argv.includes(f) ? Number(argv[argv.indexOf(f) + 1]) : d);
const req = createRequire(import.meta.url);
const A = req(resolve(argv[0]!)) as Addon;
const B = req(resolve(argv.includes('--new') ? argv[argv.indexOf('--new') + 1]! : 'native/build/Release/moekit.node')) as Addon;
const threads = flag('--threads', 2), rounds = flag('--rounds', 30);
/** --only moe|matmul|qkv|repack: run one section */
const only = argv.includes('--only') ? argv[argv.indexOf('--only') + 1]! : '';
const want = (section: string): boolean => !only || only === section;
for (const x of [A, B]) x.setThreads(threads);

function rnd(type: GGMLType, shape: number[], seed: number): Uint8Array {
  const d = new Uint8Array(tensorBytes(type, shape));
  let s = seed >>> 0;
  for (let i = 0; i < d.length; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; d[i] = s >>> 24; }
  for (let i = 1; i < d.length; i += 2) d[i]! &= 0x3b;
  return d;
}
/** Older builds: `repackQ4K(dst, src, N, K, threads)`, Q4_K only. */
type AnyAddon = Addon & { repackQ4K?: (dst: Uint8Array, src: Uint8Array, N: number, K: number, threads: number) => void };
const R16: ReadonlyMap<GGMLType, number> = new Map([[GGMLType.Q4_K, 140], [GGMLType.Q8_0, 141], [GGMLType.Q6_K, 142]]);
/** whether `ad.repack` takes `type` (older builds throw for Q6_K) */
function repacks(ad: Addon, type: GGMLType): boolean {
  if (type === GGMLType.Q6_K && argv.includes('--no-q6k-repack')) return false;
  try {
    const b = new Uint8Array(tensorBytes(type, [16, 256]));
    ad.repack(b, b.slice(), type, 16, 256, 1);
    return true;
  } catch {
    return false;
  }
}
/** `ad`'s repack of `type` (Q4_K → 140, Q8_0 → 141, Q6_K → 142), or undefined when the build has none for it. */
function repacker(ad: AnyAddon, type: GGMLType): ((dst: Uint8Array, src: Uint8Array, N: number, K: number) => number) | undefined {
  if (!ad.cpuFeatures().avx512) return undefined;
  if (typeof ad.repack === 'function' && R16.has(type) && repacks(ad, type))
    return (dst, src, N, K) => (ad.repack(dst, src, type, N, K, threads), R16.get(type)!);
  if (typeof ad.repackQ4K === 'function' && type === GGMLType.Q4_K) return (dst, src, N, K) => (ad.repackQ4K!(dst, src, N, K, threads), 140);
  return undefined;
}
/** The weight bytes and type id `ad` multiplies with (src/backend/native.ts weightData): repacked, or a copy as
 * stored, in page-aligned memory where the build has `allocPages` (as NativeBackend's resident copies; V8's own
 * large buffers start 16 bytes into a page). */
function prep(ad: Addon, d: Uint8Array, type: GGMLType, rows: number, K: number): [Uint8Array, number] {
  const rp = repacker(ad, type);
  const p = typeof ad.allocPages === 'function' ? new Uint8Array(ad.allocPages(d.length)) : new Uint8Array(d.length);
  if (!rp) return (p.set(d), [p, type]);
  return [p, rp(p, d, rows, K)];
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const E = 64, K = 8, D = 2048, F = 1024, LAYERS = 4;

for (const [name, gt, dt] of want('moe') ? ([['Q4_K/Q6_K', GGMLType.Q4_K, GGMLType.Q6_K], ['Q8_0', GGMLType.Q8_0, GGMLType.Q8_0]] as const) : []) {
  const L = Array.from({ length: LAYERS }, (_, l) => ({ g: rnd(gt, [E, F, D], 10 + l), u: rnd(gt, [E, F, D], 20 + l), d: rnd(dt, [E, D, F], 30 + l) }));
  const W = new Map([A, B].map((ad) => [ad, L.map((l) => ({ g: prep(ad, l.g, gt, E * F, D), u: prep(ad, l.u, gt, E * F, D), d: prep(ad, l.d, dt, E * D, F) }))]));
  for (const T of [1, 128]) {
    const x = new Float32Array(T * D).map((_, i) => Math.cos(i));
    const outA = new Float32Array(T * D), outB = new Float32Array(T * D);
    const ids = new Int32Array(T * K), w = new Float32Array(T * K).fill(1 / K);
    let seed = 7;
    const inner = T === 1 ? 16 : 1;
    const run = (ad: Addon, out: Float32Array, l0: number) => {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < inner; i++) {
        for (let t = 0; t < T; t++) for (let j = 0; j < K; j++) { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; ids[t * K + j] = ((seed >>> 8) % (E / K)) * K + j; }
        const l = W.get(ad)![(l0 + i) % LAYERS]!;
        ad.moeFfn(out, x, l.g[0], l.g[1], l.u[0], l.u[1], l.d[0], l.d[1], ids, w, T, K, E, F, D, threads);
      }
      return Number(process.hrtime.bigint() - t0) / 1e6 / inner;
    };
    run(A, outA, 0); run(B, outB, 0);
    const ta: number[] = [], tb: number[] = [], ratio: number[] = [];
    for (let r = 0; r < rounds; r++) {
      const s = seed;
      let a = 0, b = 0;
      for (const which of r % 2 ? ['B', 'A'] : ['A', 'B']) {
        seed = s;
        if (which === 'A') a = run(A, outA, r);
        else b = run(B, outB, r);
      }
      ta.push(a); tb.push(b); ratio.push(a / b);
    }
    let same = true;
    for (let i = 0; i < outA.length; i++) if (outA[i] !== outB[i]) { same = false; break; }
    console.log(`${name.padEnd(10)} T=${String(T).padEnd(4)} base ${median(ta).toFixed(2)} ms | new ${median(tb).toFixed(2)} ms | speed-up (median of per-round ratios) ${median(ratio).toFixed(3)} | outputs ${same ? 'identical' : 'DIFFER'}`);
  }
}

// dense matmul (attention projections: 2048 × 2048 Q4_K; --only q6k: Q6_K, attn_v of Q4_K_M), 32 distinct
// matrices (75 MB, Q6_K 110 MB) so weights come from DRAM
for (const mt of [...(want('matmul') ? [GGMLType.Q4_K] : []), ...(only === 'q6k' ? [GGMLType.Q6_K] : [])]) {
  const N = D, M = 32;
  const mats = Array.from({ length: M }, (_, m) => rnd(mt, [N, D], 50 + m));
  const W = new Map([A, B].map((ad) => [ad, mats.map((m) => prep(ad, m, mt, N, D))]));
  for (const T of [1, 128]) {
    const x = new Float32Array(T * D).map((_, i) => Math.sin(i));
    const yA = new Float32Array(T * N), yB = new Float32Array(T * N);
    const inner = T === 1 ? M : 4;
    const run = (ad: Addon, y: Float32Array) => {
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < inner; i++) { const [w, t] = W.get(ad)![i % M]!; ad.matmul(y, x, w, t, T, N, D, threads); }
      return Number(process.hrtime.bigint() - t0) / 1e6 / inner;
    };
    run(A, yA); run(B, yB);
    const ta: number[] = [], tb: number[] = [], ratio: number[] = [];
    for (let r = 0; r < rounds; r++) {
      let a = 0, b = 0;
      for (const which of r % 2 ? ['B', 'A'] : ['A', 'B']) {
        if (which === 'A') a = run(A, yA);
        else b = run(B, yB);
      }
      ta.push(a); tb.push(b); ratio.push(a / b);
    }
    const same = yA.every((v, i) => v === yB[i]);
    console.log(`matmul ${mt === GGMLType.Q4_K ? 'Q4_K' : 'Q6_K'} 2048x2048 T=${String(T).padEnd(4)} base ${median(ta).toFixed(3)} ms | new ${median(tb).toFixed(3)} ms | speed-up (median of per-round ratios) ${median(ratio).toFixed(3)} | outputs ${same ? 'identical' : 'DIFFER'}`);
  }
}
// attention input projections of a decode step (olmoe Q4_K_M: q, k Q4_K, v Q6_K, 2048 × 2048): three `matmul`
// calls, or one `matmuls` call (one pool run) in a build that has it; 16 layers (115 MB) so weights come from DRAM
if (want('qkv')) {
  const N = D, M = 16;
  const layers = Array.from({ length: M }, (_, m) => [rnd(GGMLType.Q4_K, [N, D], 90 + m), rnd(GGMLType.Q4_K, [N, D], 190 + m), rnd(GGMLType.Q6_K, [N, D], 290 + m)] as const);
  const types = [GGMLType.Q4_K, GGMLType.Q4_K, GGMLType.Q6_K];
  const W = new Map([A, B].map((ad) => [ad, layers.map((l) => l.map((d, i) => prep(ad, d, types[i]!, N, D)))]));
  for (const T of [1, 4]) {
    const x = new Float32Array(T * D).map((_, i) => Math.sin(0.3 * i));
    const ys = new Map([A, B].map((ad) => [ad, [0, 1, 2].map(() => new Float32Array(T * N))]));
    const inner = M;
    const run = (ad: Addon) => {
      const y = ys.get(ad)!;
      const t0 = process.hrtime.bigint();
      for (let i = 0; i < inner; i++) {
        const l = W.get(ad)![i % M]!;
        if (typeof ad.matmuls === 'function') ad.matmuls(x, T, D, l.map((p) => p[0]), l.map((p) => p[1]), y, threads);
        else for (let k = 0; k < 3; k++) ad.matmul(y[k]!, x, l[k]![0], l[k]![1], T, N, D, threads);
      }
      return Number(process.hrtime.bigint() - t0) / 1e6 / inner;
    };
    run(A); run(B);
    const ta: number[] = [], tb: number[] = [], ratio: number[] = [];
    for (let r = 0; r < rounds; r++) {
      let a = 0, b = 0;
      for (const which of r % 2 ? ['B', 'A'] : ['A', 'B']) {
        if (which === 'A') a = run(A);
        else b = run(B);
      }
      ta.push(a); tb.push(b); ratio.push(a / b);
    }
    const same = ys.get(A)!.every((y, k) => y.every((v, i) => v === ys.get(B)![k]![i]));
    console.log(`q/k/v Q4_K,Q4_K,Q6_K T=${String(T).padEnd(4)} base ${median(ta).toFixed(3)} ms | new ${median(tb).toFixed(3)} ms | speed-up (median of per-round ratios) ${median(ratio).toFixed(3)} | outputs ${same ? 'identical' : 'DIFFER'}`);
  }
}
// decode attention (T = 1, 192 keys, f16 caches): olmoe (16 heads, 16 kv heads) and qwen3-30b-a3b (32 on 4)
// shapes, rotating over every layer's cache, each call after a 24 MiB read (readProbe, not timed) that
// stands for the weights streamed between two layers' attention, so the cache comes from DRAM as in a step
if (want('attn')) {
  const Dh = 128, n = 192, ctx = 256;
  const evict = new Uint8Array(24 << 20).fill(1);
  for (const [name, H, Hkv, L] of [['olmoe', 16, 16, 16], ['qwen3', 32, 4, 48]] as const) {
    const kvLen = ctx * Hkv * Dh;
    const f16 = (seed: number) => { let s = seed; return Uint16Array.from({ length: kvLen }, () => { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; return 0x3000 + (s >>> 22); }); };
    const caches = Array.from({ length: L }, (_, l) => [f16(3 * l + 1), f16(3 * l + 2)] as const);
    const q = new Float32Array(H * Dh).map((_, i) => Math.sin(0.7 * i));
    const outA = new Float32Array(H * Dh), outB = new Float32Array(H * Dh);
    const inner = L;
    const run = (ad: Addon, out: Float32Array) => {
      let ms = 0;
      for (let l = 0; l < inner; l++) {
        ad.readProbe(evict, threads);
        const [k, v] = caches[l]!;
        const t0 = process.hrtime.bigint();
        ad.attention(out, q, k, v, 1, n - 1, H, Hkv, Dh, ctx, 1 / Math.sqrt(Dh), threads);
        ms += Number(process.hrtime.bigint() - t0) / 1e6;
      }
      return ms / inner;
    };
    run(A, outA); run(B, outB);
    const ta: number[] = [], tb: number[] = [], ratio: number[] = [];
    for (let r = 0; r < rounds; r++) {
      let a = 0, b = 0;
      for (const which of r % 2 ? ['B', 'A'] : ['A', 'B']) {
        if (which === 'A') a = run(A, outA);
        else b = run(B, outB);
      }
      ta.push(a); tb.push(b); ratio.push(a / b);
    }
    const same = outA.every((v, i) => Object.is(v, outB[i]));
    console.log(`attention ${name.padEnd(5)} H=${H} Hkv=${Hkv} T=1 n=${n}  base ${(1000 * median(ta)).toFixed(1)} us | new ${(1000 * median(tb)).toFixed(1)} us | speed-up (median of per-round ratios) ${median(ratio).toFixed(3)} | outputs ${same ? 'identical' : 'DIFFER'}`);
  }
}
// first-use repack of Q4_K from a mapped file (the model file in real use): 32 MB regions of `--repack-file`
// (default: a 1 GiB scratch file in the OS temp folder), each region repacked once, by A or B alternately
if (want('repack') && repacker(A, GGMLType.Q4_K) && repacker(B, GGMLType.Q4_K)) {
  const K = 2048, rowB = tensorBytes(GGMLType.Q4_K, [1, K]), N = 16 * Math.floor((32 << 20) / (16 * rowB)), len = N * rowB;
  let file = argv.includes('--repack-file') ? argv[argv.indexOf('--repack-file') + 1]! : '';
  if (!file) {
    file = join(tmpdir(), `moekit-ab-repack-${process.pid}.bin`);
    const chunk = rnd(GGMLType.Q4_K, [N, K], 5);
    writeFileSync(file, new Uint8Array(0));
    for (let i = 0; i < 32; i++) appendFileSync(file, chunk);
    process.on('exit', () => rmSync(file, { force: true }));
  }
  const h = A.mmapOpen(file);
  const regions = Math.floor((h.size - 64) / len);
  const n = Math.min(2 * rounds, regions - (regions % 2));
  const ta: number[] = [], tb: number[] = [], ratio: number[] = [];
  const dst = new Map([A, B].map((ad) => [ad, new Uint8Array(len)]));
  for (let r = 0; r + 1 < n; r += 2) {
    let a = 0, b = 0;
    for (const [k, which] of (r % 4 ? ['B', 'A'] : ['A', 'B']).entries()) {
      const ad = which === 'A' ? A : B;
      const src = new Uint8Array(A.mmapView(h, 64 + (r + k) * len, len));
      const d = new Uint8Array(len); // fresh pages, as a new tensor's copy
      const t0 = process.hrtime.bigint();
      repacker(ad, GGMLType.Q4_K)!(d, src, N, K);
      const ms = Number(process.hrtime.bigint() - t0) / 1e6;
      dst.set(ad, d);
      if (which === 'A') a = ms;
      else b = ms;
    }
    ta.push(a); tb.push(b); ratio.push(a / b);
  }
  const gbs = (ms: number) => (len / ms / 1e6).toFixed(2);
  console.log(`repack Q4_K ${(len / 1e6).toFixed(0)} MB from a mapped file  base ${median(ta).toFixed(1)} ms (${gbs(median(ta))} GB/s) | new ${median(tb).toFixed(1)} ms (${gbs(median(tb))} GB/s) | speed-up (median of per-round ratios) ${median(ratio).toFixed(3)} over ${ratio.length} rounds`);
}
process.exit(0);

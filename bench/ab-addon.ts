/**
 * A/B test of two builds of the native addon in one process, alternating calls (the machine is shared,
 * so only interleaved ratios mean anything). Copy the baseline build first:
 *   cp native/build/Release/moekit.node /tmp/moekit-base.node   # then change native/, npm run build:native
 *   node --import tsx bench/ab-addon.ts /tmp/moekit-base.node [--new other.node] [--threads 2] [--rounds 30]
 * Times a MoE decode step (olmoe shape: E=64, top-8, D=2048, F=1024; gate/up Q4_K, down Q6_K as in
 * Q4_K_M, and all-Q8_0), over 4 distinct layers so weights come from DRAM, and a 128-token prompt step;
 * then a Q4_K 2048×2048 matmul (the attention projections) at T=1 and T=128.
 * A build with `repackQ4K` on an AVX-512 CPU gets its Q4_K weights repacked, as NativeBackend does.
 */
import { createRequire } from 'node:module';
import { GGMLType, tensorBytes } from '../src/tensor.js';
import type { Addon } from '../src/backend/native.js';

const argv = process.argv.slice(2);
const flag = (f: string, d: number): number => (argv.includes(f) ? Number(argv[argv.indexOf(f) + 1]) : d);
const req = createRequire(import.meta.url);
const A = req(argv[0]!) as Addon;
const B = req(argv.includes('--new') ? argv[argv.indexOf('--new') + 1]! : '../native/build/Release/moekit.node') as Addon;
const threads = flag('--threads', 2), rounds = flag('--rounds', 30);
for (const x of [A, B]) x.setThreads(threads);

function rnd(type: GGMLType, shape: number[], seed: number): Uint8Array {
  const d = new Uint8Array(tensorBytes(type, shape));
  let s = seed >>> 0;
  for (let i = 0; i < d.length; i++) { s = (Math.imul(s, 1664525) + 1013904223) >>> 0; d[i] = s >>> 24; }
  for (let i = 1; i < d.length; i += 2) d[i]! &= 0x3b;
  return d;
}
/** The weight bytes and type id `ad` multiplies with (src/backend/native.ts weightData). */
function prep(ad: Addon, d: Uint8Array, type: GGMLType, rows: number, K: number): [Uint8Array, number] {
  if (type !== GGMLType.Q4_K || typeof ad.repackQ4K !== 'function' || !ad.cpuFeatures().avx512) return [d, type];
  const p = new Uint8Array(d.length);
  ad.repackQ4K(p, d, rows, K, threads);
  return [p, 140];
}
const median = (xs: number[]) => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
const E = 64, K = 8, D = 2048, F = 1024, LAYERS = 4;

for (const [name, gt, dt] of [['Q4_K/Q6_K', GGMLType.Q4_K, GGMLType.Q6_K], ['Q8_0', GGMLType.Q8_0, GGMLType.Q8_0]] as const) {
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

// dense matmul (attention projections: 2048 × 2048 Q4_K), 32 distinct matrices (75 MB) so weights come from DRAM
{
  const N = D, M = 32;
  const mats = Array.from({ length: M }, (_, m) => rnd(GGMLType.Q4_K, [N, D], 50 + m));
  const W = new Map([A, B].map((ad) => [ad, mats.map((m) => prep(ad, m, GGMLType.Q4_K, N, D))]));
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
    console.log(`matmul Q4_K 2048x2048 T=${String(T).padEnd(4)} base ${median(ta).toFixed(3)} ms | new ${median(tb).toFixed(3)} ms | speed-up (median of per-round ratios) ${median(ratio).toFixed(3)} | outputs ${same ? 'identical' : 'DIFFER'}`);
  }
}
process.exit(0);

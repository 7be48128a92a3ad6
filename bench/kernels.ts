/**
 * Kernel micro-benchmarks for the native backend:
 *   - memory read bandwidth (native probe, 2 threads) and a single-thread JS copy, for comparison;
 *   - decode matvec (T=1) GB/s per weight type for a [8192, 2048] weight, cycling through enough
 *     copies that weights come from DRAM, not cache (and a hot-cache figure with one copy);
 *   - prompt matmul GFLOP/s at T=128;
 *   - moeFfn decode step (E=64, top-8, D=2048, F=1024: olmoe shape) GB/s of active expert weights.
 *
 *   node --import tsx bench/kernels.ts [--threads 2] [--types q4_k,q8_0] [--quick]
 * Numbers are medians of repeated runs (the machine is shared; ratios are more stable than absolutes).
 */
import { GGMLType, TYPE_TRAITS, tensorBytes, typeName, type Tensor } from '../src/tensor.js';
import { NativeBackend, loadAddon } from '../src/backend/native.js';

const argv = process.argv.slice(2);
const arg = (name: string, def: string): string => {
  const i = argv.indexOf(`--${name}`);
  return i >= 0 && argv[i + 1] ? argv[i + 1]! : def;
};
const threads = Number(arg('threads', '2'));
const quick = argv.includes('--quick');
const ALL = [GGMLType.F32, GGMLType.F16, GGMLType.BF16, GGMLType.Q8_0, GGMLType.Q4_0, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K];
const types = arg('types', '').split(',').filter(Boolean).map((n) => ALL.find((t) => typeName(t).toLowerCase() === n.toLowerCase())!);
const TYPES = types.length ? types : ALL;

const addon = loadAddon();
const nb = new NativeBackend({ threads });

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[s.length >> 1]!;
}

/** seconds per call: median over `reps` timed batches of `inner` calls, after a warm-up */
function time(f: () => void, reps = 7, inner = 1): number {
  f();
  const ts: number[] = [];
  for (let r = 0; r < reps; r++) {
    const t0 = process.hrtime.bigint();
    for (let i = 0; i < inner; i++) f();
    ts.push(Number(process.hrtime.bigint() - t0) / 1e9 / inner);
  }
  return median(ts);
}

/** Random bytes that are valid blocks of `type` (finite fp16 scales). */
function randomWeight(type: GGMLType, shape: number[], seed: number): Tensor {
  const bytes = tensorBytes(type, shape);
  const data = new Uint8Array(bytes);
  let s = seed >>> 0;
  for (let i = 0; i < bytes; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    data[i] = s >>> 24;
  }
  // make every f16/bf16 value finite and small: clear the top exponent bits of each 16-bit word
  // (for block types this also sanitises the fp16 scales; the quants stay random)
  if (type !== GGMLType.F32) for (let i = 1; i < bytes; i += 2) data[i]! &= 0x3b;
  else for (let i = 3; i < bytes; i += 4) data[i]! &= 0x3b;
  return { name: `w.${typeName(type)}`, type, shape, data };
}

const GB = 1e9;
const out: string[] = [];
const log = (s: string): void => {
  console.log(s);
  out.push(s);
};

log(`moekit kernel bench: threads=${threads}, simd=${addon.cpuFeatures().simd}, ${new Date().toISOString()}`);

// ---- bandwidth -------------------------------------------------------------------------
{
  const buf = new Uint8Array(512 << 20);
  buf.fill(1);
  const dst = new Uint8Array(buf.length);
  const tRead = time(() => addon.readProbe(buf, threads), 5);
  const tRead1 = time(() => addon.readProbe(buf, 1), 5);
  const tCopy = time(() => dst.set(buf), 3);
  log(`memory read  (native, ${threads} thr): ${(buf.length / tRead / GB).toFixed(1)} GB/s`);
  log(`memory read  (native, 1 thr): ${(buf.length / tRead1 / GB).toFixed(1)} GB/s`);
  log(`memory copy  (JS TypedArray.set, 1 thr): ${((2 * buf.length) / tCopy / GB).toFixed(1)} GB/s (read+write)`);
}

// ---- matvec / matmul per type ----------------------------------------------------------
const N = 8192, K = 2048;
log(`\nweight [${N}, ${K}] (N x K)  | decode T=1 GB/s: DRAM (cycled copies) / hot | prompt T=128 GFLOP/s`);
for (const type of TYPES) {
  const bytes = tensorBytes(type, [N, K]);
  const copies = Math.max(1, Math.ceil((quick ? 128 : 384) * 2 ** 20 / bytes));
  const ws = Array.from({ length: copies }, (_, i) => randomWeight(type, [N, K], i + 1));
  const x1 = new Float32Array(K).map((_, i) => Math.sin(i));
  const y1 = new Float32Array(N);
  let c = 0;
  const tCold = time(() => nb.matmul({ y: y1, x: x1, w: ws[c++ % copies]!, T: 1 }), 9, copies);
  const tHot = time(() => nb.matmul({ y: y1, x: x1, w: ws[0]!, T: 1 }), 9, 10);
  const T = 128;
  const xT = new Float32Array(T * K).map((_, i) => Math.sin(i * 0.37));
  const yT = new Float32Array(T * N);
  const tP = time(() => nb.matmul({ y: yT, x: xT, w: ws[0]!, T }), quick ? 3 : 5);
  log(
    `${typeName(type).padEnd(5)} ${(bytes / 2 ** 20).toFixed(1).padStart(6)} MiB | ${(bytes / tCold / GB).toFixed(1).padStart(5)} / ${(bytes / tHot / GB).toFixed(1).padStart(5)} GB/s` +
      ` (${(tCold * 1e3).toFixed(2)} ms) | ${((2 * N * K * T) / tP / 1e9).toFixed(1).padStart(6)} GFLOP/s (${(tP * 1e3).toFixed(1)} ms)`,
  );
}

// ---- MoE decode step (olmoe shape) -----------------------------------------------------
{
  const E = 64, Kx = 8, D = 2048, F = 1024;
  log(`\nmoeFfn E=${E} top-${Kx} D=${D} F=${F}`);
  for (const type of [GGMLType.Q8_0, GGMLType.Q4_K].filter((t) => TYPES.includes(t))) {
    const layers = quick ? 2 : 4; // distinct layers so active experts are not cache-hot
    const L = Array.from({ length: layers }, (_, l) => ({
      gate: randomWeight(type, [E, F, D], 10 + l), up: randomWeight(type, [E, F, D], 20 + l), down: randomWeight(type, [E, D, F], 30 + l),
    }));
    const bpr = tensorBytes(type, [1, D]); // bytes per row (D elements; down rows have F=1024 elements)
    const active = Kx * (2 * F * bpr + D * tensorBytes(type, [1, F]));
    for (const T of [1, 128]) {
      const x = new Float32Array(T * D).map((_, i) => Math.cos(i));
      const o = new Float32Array(T * D);
      const ids = new Int32Array(T * Kx), wts = new Float32Array(T * Kx).fill(1 / Kx);
      let seed = 7;
      const pick = (): void => {
        for (let t = 0; t < T; t++) {
          const used = new Set<number>();
          for (let j = 0; j < Kx; j++) {
            let e: number;
            do { seed = (Math.imul(seed, 1103515245) + 12345) >>> 0; e = (seed >>> 8) % E; } while (used.has(e));
            used.add(e);
            ids[t * Kx + j] = e;
          }
        }
      };
      let l = 0;
      for (const w of L) nb.moeFfn({ out: o, x, ...w, ids, weights: wts, T, K: Kx }); // first use of each layer (Q4_K repack) outside the timing
      const t = time(() => { pick(); const w = L[l++ % layers]!; nb.moeFfn({ out: o, x, ...w, ids, weights: wts, T, K: Kx }); }, quick ? 3 : 7, T === 1 ? 8 : 1);
      if (T === 1) log(`${typeName(type).padEnd(5)} decode T=1: ${(t * 1e3).toFixed(2)} ms, ${(active / t / GB).toFixed(1)} GB/s of active expert weights`);
      else log(`${typeName(type).padEnd(5)} prompt T=${T}: ${(t * 1e3).toFixed(1)} ms, ${((2 * 3 * D * F * Kx * T) / t / 1e9).toFixed(1)} GFLOP/s`);
    }
  }
}
void TYPE_TRAITS;

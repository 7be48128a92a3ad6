/**
 * Binding to the C addon in native/ (AVX2/FMA kernels with a scalar fallback, own thread pool,
 * mmap). `NativeBackend` validates every argument here, in TypeScript, before the native call,
 * so bad shapes or ids become `Error`s and can never make the addon read out of bounds
 * (the addon re-checks sizes as a second line of defence).
 *
 * Exports: loadAddon(), nativeAvailable(), class NativeBackend implements Backend.
 */
import { createRequire } from 'node:module';
import { totalmem } from 'node:os';
import { MAX_MATMULS, type QkPrepArgs, type AddNormArgs, type RouteSoftmaxArgs, type AttentionArgs, type Backend, type GetRowsArgs, type MatmulArgs, type MatmulsArgs, type MoeFfnArgs } from './backend.js';
import { GGMLType, isSupportedType, tensorBytes, typeName, type Tensor } from '../tensor.js';

export interface MmapHandle {
  /** file size in bytes */
  readonly size: number;
}

/** The raw addon (native/src/addon.c). Positional and unchecked beyond sizes: use NativeBackend. */
export interface Addon {
  matmul(y: Float32Array, x: Float32Array, w: Uint8Array, type: number, T: number, N: number, K: number, threads: number): void;
  /** ys[i] [T, N_i] = x [T, K] · ws[i]ᵀ (N_i = ys[i].length / T), 1 to 8 matrices in one pool run. */
  matmuls(x: Float32Array, T: number, K: number, ws: Uint8Array[], types: number[], ys: Float32Array[], threads: number): void;
  moeFfn(
    out: Float32Array, x: Float32Array,
    gate: Uint8Array, gateType: number, up: Uint8Array, upType: number, down: Uint8Array, downType: number,
    ids: Int32Array, weights: Float32Array, T: number, K: number, E: number, F: number, D: number, threads: number,
  ): void;
  attention(
    out: Float32Array, q: Float32Array, kCache: Uint16Array, vCache: Uint16Array,
    T: number, pos0: number, H: number, Hkv: number, Dh: number, ctx: number, scale: number, threads: number,
  ): void;
  getRows(out: Float32Array, w: Uint8Array, type: number, K: number, rows: Int32Array): void;
  /**
   * Q4_K, Q8_0 or Q6_K [N, K] (N a multiple of 16) into the addon's 16-row repacked layout (type Q4_K_R16 /
   * Q8_0_R16 / Q6_K_R16, the same byte size); when `src` is a read-only file mapping (the model), its pages then
   * leave the process (RSS).
   */
  repack(dst: Uint8Array, src: Uint8Array, type: number, N: number, K: number, threads: number): void;
  qkPrep(
    q: Float32Array, k: Float32Array, v: Float32Array, T: number, H: number, Hkv: number, Dh: number,
    qNorm: Float32Array | null, kNorm: Float32Array | null, eps: number, cos: Float32Array | null, sin: Float32Array | null,
    half: number, neox: 0 | 1, kCache: Uint16Array, vCache: Uint16Array, cacheRow: number,
  ): void;
  addNorm(x: Float32Array, y: Float32Array, scale: number, out: Float32Array, w: Float32Array, T: number, D: number, eps: number): void;
  routeSoftmax(
    logits: Float32Array, T: number, E: number, K: number, normalize: 0 | 1, scale: number, bias: Float32Array | null,
    ids: Int32Array, weights: Float32Array, scores: Float32Array,
  ): void;
  /**
   * dst = src ([rows, rowBytes]) when src is a read-only file mapping, read through the page cache, whose
   * pages then leave the process; false (nothing copied) for any other src.
   */
  residentCopy(dst: Uint8Array, src: Uint8Array, rows: number, rowBytes: number, threads: number): boolean;
  /** Maps every page of `buf` now (MADV_POPULATE_READ, or MADV_POPULATE_WRITE with `write`); false where the kernel cannot. */
  prefault(buf: Uint8Array, write: boolean): boolean;
  /** Reads every cache line of `buf` with `threads` threads (time it for read bandwidth); returns a checksum. */
  readProbe(buf: Uint8Array, threads: number): number;
  /** Resize the worker pool (threads in total, the caller included); returns the new size. */
  setThreads(n: number): number;
  getThreads(): number;
  /** Select AVX2 (true, if the CPU has it) or scalar kernels; returns whether SIMD is active. */
  setSimd(on: boolean | 0 | 1 | 2): boolean;
  /** avx2: the CPU has AVX2+FMA+F16C; simd: the AVX2 kernels are in use (MOEKIT_NO_SIMD=1 turns them off). */
  cpuFeatures(): { avx2: boolean; simd: boolean; avx512: boolean };
  /** PROT_READ mapping of a whole file; throws an Error with the errno text. */
  mmapOpen(path: string): MmapHandle;
  /** External ArrayBuffer over [offset, offset+length) of the mapping (RangeError when outside). */
  mmapView(handle: MmapHandle, offset: number, length: number): ArrayBuffer;
  /** Zeroed, page-aligned memory (V8's own large ArrayBuffers start 16 bytes into a page, so 64-byte loads straddle lines). */
  allocPages(length: number): ArrayBuffer;
  /** Training GEMM (native/src/train.h): C[M,N] (+)= op(A)·op(B); transA: A stored [K,M]; transB: B stored [N,K]. */
  trainGemm(C: Float32Array, A: Float32Array, B: Float32Array, M: number, N: number, K: number, transA: 0 | 1, transB: 0 | 1, accumulate: 0 | 1, threads: number): void;
  /** Row softmax of logits[T,V] in place; loss[t] = logsumexp − logit[target]. */
  trainXent(logits: Float32Array, targets: Int32Array, loss: Float32Array, T: number, V: number, threads: number): void;
  /** Causal attention: bwd 0 → (out, att written); bwd 1 → (dq, dk, dv) += grads given dout (o3) and att. */
  trainAttention(
    bwd: 0 | 1, o0: Float32Array, o1: Float32Array, o2: Float32Array, o3: Float32Array,
    q: Float32Array, k: Float32Array, v: Float32Array, att: Float32Array, B: number, S: number, H: number, Dh: number, threads: number,
  ): void;
  /** One AdamW step over params[offset, offset+size) (src/train/optim.ts arithmetic, bit for bit); step = lr / (1 − β1^t). */
  trainAdamw(
    params: Float32Array, grads: Float32Array, m: Float32Array, v: Float32Array, offset: number, size: number,
    b1: number, b2: number, eps: number, step: number, bc2: number, decay: number, threads: number,
  ): void;
}

let addon: Addon | null | undefined;
let loadError: Error | undefined;

/** The addon, loaded once. Throws with a build hint when it is missing. */
export function loadAddon(): Addon {
  if (addon === undefined) {
    try {
      addon = createRequire(import.meta.url)('../../native/build/Release/moekit.node') as Addon;
    } catch (e) {
      addon = null;
      loadError = e as Error;
    }
  }
  if (addon === null) {
    throw new Error(`moekit native addon could not be loaded (build it with \`npm run build:native\`): ${loadError?.message}`);
  }
  return addon;
}

export function nativeAvailable(): boolean {
  try {
    loadAddon();
    return true;
  } catch {
    return false;
  }
}

const NATIVE_TYPES: ReadonlySet<GGMLType> = new Set([
  GGMLType.F32, GGMLType.F16, GGMLType.BF16, GGMLType.Q4_0, GGMLType.Q8_0, GGMLType.Q4_K, GGMLType.Q5_K, GGMLType.Q6_K,
]);

/** native/src/common.h T_Q4_K_R16 / T_Q8_0_R16 / T_Q6_K_R16: rows repacked by 16 for the AVX-512 kernels (not GGUF types). */
const R16_TYPE: ReadonlyMap<GGMLType, number> = new Map([[GGMLType.Q4_K, 140], [GGMLType.Q8_0, 141], [GGMLType.Q6_K, 142]]);
/**
 * The process's own copies of weights, made on first use (weights are never written after loading): Q4_K,
 * Q8_0 and Q6_K repacked by 16 rows, other types of a mapped file as stored. Out of the mapping, the page cache cannot
 * reclaim them between uses (the qwen3-30b-a3b shape in 23 GiB took ~120 page faults per decode step on its
 * mapped Q6_K tensors).
 */
const resident = new WeakMap<Uint8Array, { data: Uint8Array; type: number }>();
/** Weights that stay in their mapping (prefaulted at first use). */
const mapped = new WeakSet<Uint8Array>();
/** Bytes of resident copies so far; past RESIDENT_BUDGET weights stay mapped, so a model larger than memory pages instead of failing. */
let residentBytes = 0;
const RESIDENT_BUDGET = 0.75 * totalmem();
/** a copy's bytes leave the count when its model is collected (tests and servers load many models) */
const residentFreed = new FinalizationRegistry<number>((n) => {
  residentBytes -= n;
});

/** The bytes a matmul of `w` reads: its resident copy once it has one, else its own data. */
export function residentData(w: Tensor): Uint8Array {
  return resident.get(w.data)?.data ?? w.data;
}

/**
 * The bytes and type id the addon multiplies `w` with: Q4_K, Q8_0 and Q6_K tensors whose row groups (`rows` per
 * matrix: N, or F/D of an expert) are multiples of 16 go through the AVX-512 kernels in the repacked
 * layout (the same results, bit for bit), as llama.cpp repacks Q4_K at load time (its CPU_REPACK
 * buffer); so do Q8_0 and Q6_K matrices (`matrix`: one [N, K] weight, N ≥ 16) of any N, their last N % 16 rows
 * kept as stored (a 50257-token output matrix as stored read at half the repacked speed); other tensors of a
 * mapped file are copied as stored; everything else is used where it is.
 */
function weightData(addon: Addon, repack: boolean, w: Tensor, rows: number, threads: number, matrix = false): [Uint8Array, number] {
  const have = resident.get(w.data);
  if (have) return [have.data, have.type];
  if (mapped.has(w.data)) return [w.data, w.type];
  const K = w.shape[w.shape.length - 1]!;
  const rowBytes = tensorBytes(w.type, [1, K]);
  const N = w.data.byteLength / rowBytes;
  const r16 = R16_TYPE.get(w.type);
  const whole = rows % 16 === 0 || (matrix && rows >= 16 && w.type !== GGMLType.Q4_K);
  const type = repack && r16 !== undefined && whole ? r16 : w.type;
  const p = newCopy(addon, w, (p) => {
    if (type === w.type) return addon.residentCopy(p, w.data, N, rowBytes, threads);
    addon.repack(p, w.data, w.type, N, K, threads);
    return true;
  });
  if (p) {
    resident.set(w.data, { data: p, type });
    return [p, type];
  }
  // map the tensor's pages in one call at first use (as llama.cpp's MAP_POPULATE does at load): otherwise
  // each expert's first touch during decode pays a page fault per 4 KiB-64 KiB
  addon.prefault(w.data, false);
  mapped.add(w.data);
  return [w.data, w.type];
}

/** Copies as stored of the tables getRows reads (embeddings); null: read where they are. */
const rowCopies = new WeakMap<Uint8Array, Uint8Array | null>();

/**
 * The bytes getRows reads `w` (as stored) from. A table of a mapped file gets a copy at first use, as matmul
 * weights do: each new token's row would otherwise fault its page in from the file (~0.1 ms; a major fault,
 * several ms; bench/phase-decode.ts put getRows at 7% of an olmoe Q4_K_M decode step before this). A tied
 * table's copy for the output matmul is used when it is as stored; a repacked one cannot serve rows.
 */
function rowData(addon: Addon, w: Tensor, threads: number): Uint8Array {
  const have = resident.get(w.data);
  if (have?.type === w.type) return have.data;
  let copy = rowCopies.get(w.data);
  if (copy === undefined) {
    const rowBytes = tensorBytes(w.type, [1, w.shape[w.shape.length - 1]!]);
    copy = newCopy(addon, w, (p) => addon.residentCopy(p, w.data, w.data.byteLength / rowBytes, rowBytes, threads)) ?? null;
    rowCopies.set(w.data, copy);
  }
  return copy ?? w.data;
}

/**
 * Page-aligned memory of w's size filled by `fill` (false: it could not, e.g. w is not a file mapping), counted
 * against RESIDENT_BUDGET until collected; undefined past the budget or when `fill` fails.
 */
function newCopy(addon: Addon, w: Tensor, fill: (p: Uint8Array) => boolean): Uint8Array | undefined {
  if (residentBytes + w.data.byteLength > RESIDENT_BUDGET) return undefined;
  const p = new Uint8Array(addon.allocPages(w.data.byteLength));
  if (!fill(p)) return undefined;
  residentBytes += p.byteLength;
  residentFreed.register(p, p.byteLength);
  return p;
}

function fail(msg: string): never {
  throw new Error(`NativeBackend: ${msg}`);
}

function checkCount(what: string, n: number): void {
  if (!Number.isSafeInteger(n) || n < 1 || n > 0x7fffffff) fail(`${what} must be a positive integer, got ${n}`);
}

function checkLength(what: string, arr: { length: number }, want: number): void {
  if (arr.length !== want) fail(`${what} has ${arr.length} elements, expected ${want}`);
}

function overlaps(a: Float32Array, b: Float32Array): boolean {
  return a.buffer === b.buffer && a.byteOffset < b.byteOffset + b.byteLength && b.byteOffset < a.byteOffset + a.byteLength;
}

/** A weight tensor's type is supported and its bytes match its shape exactly. */
function checkWeight(w: Tensor, rank: number): void {
  if (!isSupportedType(w.type) || !NATIVE_TYPES.has(w.type)) {
    fail(`${w.name}: tensor type ${typeName(w.type)} is not supported (supported: ${[...NATIVE_TYPES].map(typeName).join(', ')})`);
  }
  if (w.shape.length !== rank) fail(`${w.name}: expected a ${rank}-D tensor, got shape [${w.shape}]`);
  for (const d of w.shape) checkCount(`${w.name} dimension`, d);
  let bytes: number;
  try {
    bytes = tensorBytes(w.type, w.shape);
  } catch (e) {
    fail(`${w.name}: ${(e as Error).message}`);
  }
  if (!(w.data instanceof Uint8Array)) fail(`${w.name}: data must be a Uint8Array`);
  if (w.data.byteLength !== bytes) fail(`${w.name}: ${w.data.byteLength} bytes, but ${typeName(w.type)} [${w.shape}] needs ${bytes}`);
}

export interface NativeBackendOptions {
  /** threads in total (the caller included); default 1 */
  threads?: number;
}

export class NativeBackend implements Backend {
  readonly name = 'native';
  readonly threads: number;
  private readonly addon: Addon;
  /** Q4_K, Q8_0 and Q6_K weights are repacked (weightData): the CPU has the AVX-512 kernels */
  private readonly repack: boolean;

  constructor({ threads = 1 }: NativeBackendOptions = {}) {
    if (!Number.isSafeInteger(threads) || threads < 1 || threads > 256) fail(`threads must be an integer in [1, 256], got ${threads}`);
    this.addon = loadAddon();
    this.threads = threads;
    this.repack = this.addon.cpuFeatures().avx512;
    if (this.addon.getThreads() < threads) this.addon.setThreads(threads);
  }

  matmul({ y, x, w, T }: MatmulArgs): void {
    checkWeight(w, 2);
    checkCount('matmul T', T);
    const [N, K] = w.shape as [number, number];
    checkLength(`matmul ${w.name} x`, x, T * K);
    checkLength(`matmul ${w.name} y`, y, T * N);
    const [wd, wt] = weightData(this.addon, this.repack, w, N, this.threads, true);
    this.addon.matmul(y, x, wd, wt, T, N, K, this.threads);
  }

  matmuls({ x, outs, T }: MatmulsArgs): void {
    checkCount('matmuls T', T);
    if (outs.length < 1 || outs.length > MAX_MATMULS) fail(`matmuls: 1 to ${MAX_MATMULS} weights, got ${outs.length}`);
    const K = outs[0]!.w.shape[1]!;
    const ws: Uint8Array[] = [], types: number[] = [], ys: Float32Array[] = [];
    for (const { y, w } of outs) {
      checkWeight(w, 2);
      const [N, Kw] = w.shape as [number, number];
      if (Kw !== K) fail(`matmuls: ${w.name} [${w.shape}] has K ${Kw}, the first weight has ${K}`);
      if (!(y instanceof Float32Array)) fail(`matmuls ${w.name}: y must be a Float32Array`);
      checkLength(`matmuls ${w.name} y`, y, T * N);
      if (overlaps(y, x) || ys.some((o) => overlaps(o, y))) fail(`matmuls ${w.name}: y must not overlap x or another y`);
      const [wd, wt] = weightData(this.addon, this.repack, w, N, this.threads, true);
      ws.push(wd);
      types.push(wt);
      ys.push(y);
    }
    checkLength('matmuls x', x, T * K);
    this.addon.matmuls(x, T, K, ws, types, ys, this.threads);
  }

  moeFfn({ out, x, gate, up, down, ids, weights, T, K }: MoeFfnArgs): void {
    checkWeight(gate, 3);
    checkWeight(up, 3);
    checkWeight(down, 3);
    checkCount('moeFfn T', T);
    checkCount('moeFfn K', K);
    const [E, F, D] = gate.shape as [number, number, number];
    if (up.shape.join() !== gate.shape.join()) fail(`moeFfn: up ${up.name} [${up.shape}] must match gate [${gate.shape}]`);
    if (down.shape[0] !== E || down.shape[1] !== D || down.shape[2] !== F) {
      fail(`moeFfn: down ${down.name} [${down.shape}] must be [${E}, ${D}, ${F}]`);
    }
    if (!(ids instanceof Int32Array)) fail('moeFfn: ids must be an Int32Array');
    if (!(weights instanceof Float32Array)) fail('moeFfn: weights must be a Float32Array');
    checkLength('moeFfn out', out, T * D);
    checkLength('moeFfn x', x, T * D);
    checkLength('moeFfn ids', ids, T * K);
    checkLength('moeFfn weights', weights, T * K);
    for (let i = 0; i < ids.length; i++) {
      const e = ids[i]!;
      if (e >= E) fail(`moeFfn: expert id ${e} at [${Math.floor(i / K)}, ${i % K}] is out of range [-1, ${E})`);
    }
    const [g, gt] = weightData(this.addon, this.repack, gate, F, this.threads), [u, ut] = weightData(this.addon, this.repack, up, F, this.threads);
    const [d, dt] = weightData(this.addon, this.repack, down, D, this.threads);
    this.addon.moeFfn(out, x, g, gt, u, ut, d, dt, ids, weights, T, K, E, F, D, this.threads);
  }

  attention({ out, q, kCache, vCache, T, pos0, nHead, nHeadKv, headDim, scale }: AttentionArgs): void {
    checkCount('attention T', T);
    checkCount('attention nHead', nHead);
    checkCount('attention nHeadKv', nHeadKv);
    checkCount('attention headDim', headDim);
    if (!Number.isSafeInteger(pos0) || pos0 < 0) fail(`attention: pos0 must be a non-negative integer, got ${pos0}`);
    if (nHead % nHeadKv !== 0) fail(`attention: ${nHead} heads is not a multiple of ${nHeadKv} KV heads`);
    if (!Number.isFinite(scale)) fail(`attention: scale must be finite, got ${scale}`);
    if (!(kCache instanceof Uint16Array) || !(vCache instanceof Uint16Array)) fail('attention: caches must be Uint16Arrays of f16 bits');
    const row = nHeadKv * headDim;
    if (kCache.length % row !== 0 || kCache.length === 0) fail(`attention: K cache of ${kCache.length} is not a whole number of [${nHeadKv}, ${headDim}] rows`);
    checkLength('attention V cache', vCache, kCache.length);
    const ctx = kCache.length / row;
    if (pos0 + T > ctx) fail(`attention: positions ${pos0}..${pos0 + T - 1} exceed the cache of ${ctx} positions`);
    checkLength('attention q', q, T * nHead * headDim);
    checkLength('attention out', out, T * nHead * headDim);
    this.addon.attention(out, q, kCache, vCache, T, pos0, nHead, nHeadKv, headDim, ctx, scale, this.threads);
  }

  getRows({ out, w, rows }: GetRowsArgs): void {
    checkWeight(w, 2);
    const [R, K] = w.shape as [number, number];
    const idx = new Int32Array(rows.length);
    for (let i = 0; i < rows.length; i++) {
      const r = rows[i]!;
      if (!Number.isInteger(r) || r < 0 || r >= R) fail(`getRows ${w.name}: row ${r} out of range [0, ${R})`);
      idx[i] = r;
    }
    checkLength(`getRows ${w.name} out`, out, rows.length * K);
    if (rows.length === 0) return;
    this.addon.getRows(out, rowData(this.addon, w, this.threads), w.type, K, idx);
  }

  qkPrep({ q, k, v, T, nHead, nHeadKv, headDim, qNorm, kNorm, eps, rope, kCache, vCache, cacheRow }: QkPrepArgs): void {
    checkCount('qkPrep T', T);
    checkLength('qkPrep q', q, T * nHead * headDim);
    checkLength('qkPrep k', k, T * nHeadKv * headDim);
    checkLength('qkPrep v', v, T * nHeadKv * headDim);
    if (!Number.isSafeInteger(cacheRow) || cacheRow < 0 || (cacheRow + T) * nHeadKv * headDim > Math.min(kCache.length, vCache.length)) {
      fail(`qkPrep: cache rows [${cacheRow}, ${cacheRow + T}) do not fit the caches`);
    }
    if (rope && (2 * rope.half > headDim || rope.cos.length < T * rope.half || rope.sin.length < T * rope.half)) fail('qkPrep: rope table does not cover T rows of half ≤ headDim/2');
    this.addon.qkPrep(q, k, v, T, nHead, nHeadKv, headDim, qNorm ?? null, kNorm ?? null, eps, rope?.cos ?? null, rope?.sin ?? null, rope?.half ?? 0, rope?.neox ? 1 : 0, kCache, vCache, cacheRow);
  }

  addNorm({ x, y, scale, out, w, T, eps }: AddNormArgs): void {
    checkCount('addNorm T', T);
    const D = w.length;
    checkCount('addNorm D', D);
    checkLength('addNorm x', x, T * D);
    checkLength('addNorm y', y, T * D);
    checkLength('addNorm out', out, T * D);
    if (!Number.isFinite(scale) || !Number.isFinite(eps)) fail(`addNorm: scale and eps must be finite, got ${scale}, ${eps}`);
    this.addon.addNorm(x, y, scale, out, w, T, D, eps);
  }

  routeSoftmax({ logits, T, E, K, normalize, scale, bias, ids, weights, scores }: RouteSoftmaxArgs): void {
    checkCount('routeSoftmax T', T);
    checkCount('routeSoftmax K', K);
    if (!Number.isSafeInteger(E) || E < 16 || E % 16 !== 0 || K > E) fail(`routeSoftmax: E must be a multiple of 16 and K ≤ E, got E=${E}, K=${K}`);
    checkLength('routeSoftmax logits', logits, T * E);
    checkLength('routeSoftmax scores', scores, T * E);
    checkLength('routeSoftmax ids', ids, T * K);
    checkLength('routeSoftmax weights', weights, T * K);
    if (bias) checkLength('routeSoftmax bias', bias, E);
    if (!Number.isFinite(scale)) fail(`routeSoftmax: scale must be finite, got ${scale}`);
    this.addon.routeSoftmax(logits, T, E, K, normalize ? 1 : 0, scale, bias ?? null, ids, weights, scores);
  }

  touchPages(buf: Uint8Array): void {
    if (buf.byteLength > 0) this.addon.prefault(buf, true);
  }

  /** The worker pool is shared by the process and kept for reuse; nothing to release per backend. */
  dispose(): void {}
}

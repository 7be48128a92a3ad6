/**
 * llama.cpp as a correctness oracle, through node-llama-cpp (a devDependency).
 *
 * `openOracle(gguf)` loads a GGUF on the CPU and exposes raw logits at every position, greedy decoding
 * and llama.cpp's own tokenizer. `compareLogits` summarises how far moekit's logits are from it.
 *
 * How node-llama-cpp 3.22.1 configures the llama.cpp context (read from its dist/ and llama/addon/
 * sources, and from the llama.cpp snapshot it bundles in llama/gitRelease.bundle). moekit's numerics
 * follow these settings:
 *  - KV cache: K and V are F16 (`type_k`/`type_v` default GGML_TYPE_F16; node-llama-cpp passes nothing
 *    unless `experimentalKvCache*Type` is set).
 *  - Batch: `batchSize` defaults to min(512, contextSize) and the addon sets n_ubatch = n_batch, so a
 *    prompt that fits is evaluated as ONE ubatch (all T tokens at once), then decode is 1 token per call.
 *  - Flash attention: `flashAttention` defaults to "auto" (LLAMA_FLASH_ATTN_TYPE_AUTO), which llama.cpp
 *    resolves by probing whether the FA op runs on the layer's device: on a CPU-only build it resolves
 *    to ENABLED. With FA on and an F16 cache, ggml-cpu's `flash_attn_ext` takes one of three paths:
 *      * prompt ubatch with T >= 64 (GGML_FA_TILE_Q) and Dh a multiple of 8: the tiled path. Q stays
 *        f32, K/V are widened f16->f32, Q·Kᵀ and P·V are f32 GEMMs over KV tiles of 64, online softmax
 *        per tile, f32 accumulator;
 *      * T < 64 (decode, short prompts), n_kv < 512: the "one_chunk" path. Q is rounded to f16, each
 *        score is an f16·f16 dot (f32 sum), online softmax in f32, and the V accumulator is F16
 *        (VKQ16: scaled and accumulated with ggml_vec_mad_f16), divided by the sum at the end;
 *      * a single-token decode with n_kv >= 512 cells: split-KV over threads, same per-chunk math.
 *    With `flashAttention: false`: KQ = mul_mat(K f16, q) (q rounded to f16), softmax in f32 with the
 *    mask, then KQV = mul_mat(Vᵀ f16, P) with the probabilities P rounded to f16.
 *  - Threads: `threads: 1` here, which makes repeated runs bit-identical (the thread count changes
 *    how matmul rows and attention chunks are split, not the per-row arithmetic).
 *  - Context size is padded by llama.cpp to a multiple of 256 cells; masked cells do not contribute.
 *  - `tokenize(text, special)` calls common_tokenize with add_special = false: no BOS is ever added.
 *  - Logits come from a temperature-0 (greedy) sampler chain, which does not change them: they are
 *    llama_get_logits_ith, returned as a token->value Map that we scatter back into a dense row.
 */
import type { Llama, LlamaContext, LlamaContextSequence, LlamaModel, Token } from 'node-llama-cpp';

export interface OracleOptions {
  /** context size in tokens (default 512) */
  ctx?: number;
  /** default 1: bit-identical repeats */
  threads?: number;
  /** default 'auto', i.e. node-llama-cpp's default (resolves to on for CPU) */
  flashAttention?: boolean | 'auto';
  /** default min(512, ctx), as node-llama-cpp */
  batchSize?: number;
}

export interface Oracle {
  readonly vocabSize: number;
  /** the resolved flash-attention setting, as llama.cpp logged it (true/false), or 'unknown' (read it after an evaluation) */
  readonly flashAttention: boolean | 'unknown';
  tokenize(text: string, special?: boolean): number[];
  detokenize(ids: readonly number[]): string;
  /** raw logits [T, V] row-major for every position of a fresh sequence */
  logitsAll(ids: readonly number[]): Promise<Float32Array>;
  /** greedy (argmax) continuation of `ids`, n new tokens, stopping early at end-of-generation tokens */
  greedy(ids: readonly number[], n: number, opts?: { stopAtEog?: boolean }): Promise<number[]>;
  close(): Promise<void>;
}

let llamaPromise: Promise<Llama> | undefined;
/** Set by the shared logger when llama.cpp reports how it resolved auto flash attention. */
let lastFlashAttnLog: boolean | 'unknown' = 'unknown';

async function getCpuLlama(): Promise<Llama> {
  llamaPromise ??= import('node-llama-cpp').then(({ getLlama, LlamaLogLevel }) =>
    getLlama({
      gpu: false,
      build: 'never',
      logLevel: LlamaLogLevel.info,
      logger: (level, message) => {
        // llama.cpp logs "resolve_fused_ops: Flash Attention enabled" when it resolves "auto"
        const m = /Flash Attention (enabled|disabled)/i.exec(message);
        if (m) lastFlashAttnLog = m[1]!.toLowerCase() === 'enabled';
        if (process.env.MOEKIT_ORACLE_LOG || level === LlamaLogLevel.error || level === LlamaLogLevel.fatal) process.stderr.write(`[llama.cpp] ${message}\n`);
      },
    }),
  );
  return llamaPromise;
}

/** Is node-llama-cpp (with a CPU prebuilt binary) importable here? Tests use this to skip with a message. */
export async function oracleAvailable(): Promise<{ ok: true } | { ok: false; reason: string }> {
  try {
    await getCpuLlama();
    return { ok: true };
  } catch (e) {
    llamaPromise = undefined;
    return { ok: false, reason: `node-llama-cpp could not start: ${(e as Error).message}` };
  }
}

export async function openOracle(ggufPath: string, opts: OracleOptions = {}): Promise<Oracle> {
  const ctxSize = opts.ctx ?? 512;
  const llama = await getCpuLlama();
  const model: LlamaModel = await llama.loadModel({ modelPath: ggufPath, gpuLayers: 0 });
  lastFlashAttnLog = 'unknown';
  const context: LlamaContext = await model.createContext({
    contextSize: ctxSize,
    batchSize: opts.batchSize ?? Math.min(512, ctxSize),
    threads: opts.threads ?? 1,
    flashAttention: opts.flashAttention ?? 'auto',
    sequences: 1,
  });
  const seq: LlamaContextSequence = context.getSequence();
  const V = vocabSizeOf(model);

  function denseRow(map: Map<Token, number>, row: Float32Array): void {
    if (map.size !== V) throw new Error(`oracle: llama.cpp returned ${map.size} logits, expected ${V}`);
    for (const [tok, v] of map) row[tok] = v;
  }

  function checkIds(ids: readonly number[]): void {
    if (ids.length === 0) throw new Error('oracle: empty token list');
    if (ids.length > context.contextSize) throw new Error(`oracle: ${ids.length} tokens do not fit a context of ${context.contextSize}`);
    for (const t of ids) if (!Number.isInteger(t) || t < 0 || t >= V) throw new Error(`oracle: token id ${t} is outside the vocabulary [0, ${V})`);
  }

  return {
    vocabSize: V,
    get flashAttention() {
      return typeof opts.flashAttention === 'boolean' ? opts.flashAttention : lastFlashAttnLog;
    },
    tokenize: (text, special = false) => model.tokenize(text, special).map(Number),
    detokenize: (ids) => model.detokenize(ids as Token[], false),
    async logitsAll(ids) {
      checkIds(ids);
      await seq.clearHistory();
      const res = await seq.controlledEvaluate(ids.map((t) => [t as Token, { generateNext: { logits: true } }] as const) as never);
      const out = new Float32Array(ids.length * V);
      for (let i = 0; i < ids.length; i++) {
        const logits = res[i]?.next.logits;
        if (!logits) throw new Error(`oracle: no logits for position ${i}`);
        denseRow(logits, out.subarray(i * V, (i + 1) * V));
      }
      return out;
    },
    async greedy(ids, n, gopts = {}) {
      checkIds(ids);
      if (ids.length + n > context.contextSize) throw new Error(`oracle: ${ids.length} + ${n} tokens do not fit a context of ${context.contextSize}`);
      await seq.clearHistory();
      const out: number[] = [];
      let input: Parameters<LlamaContextSequence['controlledEvaluate']>[0] = ids.map((t, i) =>
        i === ids.length - 1 ? ([t as Token, { generateNext: { token: true, options: { temperature: 0 } } }] as const) : (t as Token),
      ) as never;
      for (let step = 0; step < n; step++) {
        const res = await seq.controlledEvaluate(input);
        const tok = res[res.length - 1]?.next.token;
        if (tok === undefined || tok === null) break;
        out.push(Number(tok));
        if (gopts.stopAtEog && model.isEogToken(tok)) break;
        input = [[tok, { generateNext: { token: true, options: { temperature: 0 } } }]] as never;
      }
      return out;
    },
    async close() {
      await context.dispose();
      await model.dispose();
    },
  };
}

function vocabSizeOf(model: LlamaModel): number {
  // node-llama-cpp exposes the vocabulary size through the GGUF metadata it parsed
  const tokens = model.fileInfo.metadata.tokenizer?.ggml?.tokens;
  if (Array.isArray(tokens)) return tokens.length;
  throw new Error('oracle: the GGUF has no tokenizer.ggml.tokens');
}

export interface LogitsComparison {
  /** max over all T·V entries of |a - b| */
  maxAbsDiff: number;
  /** max - min of the reference logits `a` (over all entries) */
  range: number;
  /** fraction of positions whose argmax agrees */
  top1Agreement: number;
  /** mean over positions of KL(softmax(a) ‖ softmax(b)), in nats */
  meanKL: number;
  /** smallest gap between the top-1 and top-2 reference logits over positions */
  minTop1Gap: number;
}

/** Compare logits `a` (reference, llama.cpp) with `b` (moekit), both [T, V] row-major. */
export function compareLogits(a: Float32Array, b: Float32Array, T: number, V: number): LogitsComparison {
  if (a.length !== T * V || b.length !== T * V) throw new Error(`compareLogits: expected ${T}x${V} = ${T * V} values, got ${a.length} and ${b.length}`);
  let maxAbsDiff = 0;
  let lo = Infinity;
  let hi = -Infinity;
  let agree = 0;
  let klSum = 0;
  let minTop1Gap = Infinity;
  for (let t = 0; t < T; t++) {
    const ra = a.subarray(t * V, (t + 1) * V);
    const rb = b.subarray(t * V, (t + 1) * V);
    let am = 0;
    let bm = 0;
    for (let v = 0; v < V; v++) {
      const d = Math.abs(ra[v]! - rb[v]!);
      if (!(d <= maxAbsDiff)) maxAbsDiff = Number.isNaN(d) ? NaN : d;
      if (ra[v]! < lo) lo = ra[v]!;
      if (ra[v]! > hi) hi = ra[v]!;
      if (ra[v]! > ra[am]!) am = v;
      if (rb[v]! > rb[bm]!) bm = v;
    }
    if (am === bm) agree++;
    let second = -Infinity;
    for (let v = 0; v < V; v++) if (v !== am && ra[v]! > second) second = ra[v]!;
    minTop1Gap = Math.min(minTop1Gap, ra[am]! - second);
    // KL(p‖q) = Σ p (log p - log q), with log-softmax computed stably in float64
    const lseA = logSumExp(ra);
    const lseB = logSumExp(rb);
    let kl = 0;
    for (let v = 0; v < V; v++) {
      const lpa = ra[v]! - lseA;
      const lpb = rb[v]! - lseB;
      kl += Math.exp(lpa) * (lpa - lpb);
    }
    klSum += Math.max(0, kl);
  }
  return { maxAbsDiff, range: hi - lo, top1Agreement: agree / T, meanKL: klSum / T, minTop1Gap };
}

function logSumExp(row: Float32Array): number {
  let m = -Infinity;
  for (let i = 0; i < row.length; i++) if (row[i]! > m) m = row[i]!;
  let s = 0;
  for (let i = 0; i < row.length; i++) s += Math.exp(row[i]! - m);
  return m + Math.log(s);
}

/** argmax of each row of a [T, V] array */
export function argmaxRows(x: Float32Array, T: number, V: number): number[] {
  const out: number[] = [];
  for (let t = 0; t < T; t++) {
    let best = 0;
    for (let v = 1; v < V; v++) if (x[t * V + v]! > x[t * V + best]!) best = v;
    out.push(best);
  }
  return out;
}

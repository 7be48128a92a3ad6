/**
 * The library's front door: load a checkpoint (GGUF file or HF folder), tokenize, run forward passes,
 * generate text, run several sequences in one batch.
 */
import type { Backend } from '../backend/backend.js';
import { createBackend } from '../backend/index.js';
import { existsSync } from 'node:fs';
import { join } from 'node:path';
import { CheckpointError, ContextOverflowError, UsageError } from '../errors.js';
import { openCheckpoint, type Checkpoint } from '../formats/checkpoint.js';
import { plainValue } from '../formats/gguf.js';
import type { ModelSource } from '../models/common.js';
import { getArchitecture } from '../models/registry.js';
import type { HParams } from '../models/types.js';
import type { Segment } from '../nn/attention.js';
import { Decoder } from '../nn/decoder.js';
import { KVCache } from '../nn/kv-cache.js';
import type { ForwardHooks } from '../nn/moe.js';
import { routingHooks, type RoutingControls } from '../routing/controls.js';
import { isTrainCheckpoint, openTrainCheckpoint } from '../train/checkpoint.js';
import { tokenizerFromGGUF, tokenizerFromHF, type Tokenizer } from '../tokenizer/index.js';
import { describeModel, type ModelInfo } from './info.js';
import { argmax, Sampler, type SamplingOptions } from './sampler.js';

export interface LoadOptions {
  /** compute threads (default: physical cores) */
  threads?: number;
  /** context length of sequences made by this model (default: min(training context, 4096)) */
  ctx?: number;
  /** kernel backend (default: native when the addon is built) */
  backend?: 'native' | 'reference';
}

export interface GenerateOptions extends SamplingOptions {
  /** maximum new tokens (default 256) */
  maxTokens?: number;
  /** stop when any of these strings appears (it is not emitted) */
  stop?: string[];
  /** add BOS etc. when tokenizing the prompt (default true) */
  addSpecial?: boolean;
  /** parse special-token text in the prompt (default true, as chat templates need) */
  parseSpecial?: boolean;
  /** observe and/or steer routing in every forward pass */
  hooks?: ForwardHooks;
  /** inference-time routing controls (top-k/top-p/threshold/mask/force/skip; src/routing/controls.ts) */
  routing?: RoutingControls;
  /** continue in this sequence, reusing the KV cache of the longest common prefix (chat turns) */
  sequence?: Sequence;
}

export interface GenerationStats {
  promptTokens: number;
  promptMs: number;
  genTokens: number;
  genMs: number;
  stopReason: 'eog' | 'length' | 'stop' | 'context';
}

/** One sequence: its own KV cache, so several can be decoded in one batch. */
export class Sequence {
  readonly tokens: number[] = [];
  constructor(readonly cache: KVCache) {}
  get length(): number {
    return this.cache.pos;
  }
}

/** Largest number of prompt rows per forward call. */
const UBATCH = 512;

export class Model {
  readonly info: ModelInfo;
  /** stats of the last finished generate() call */
  lastStats?: GenerationStats;
  private closed = false;

  constructor(
    private readonly ckpt: Checkpoint,
    readonly decoder: Decoder,
    readonly hparams: HParams,
    readonly tokenizer: Tokenizer,
    readonly backend: Backend,
    readonly ctx: number,
  ) {
    this.info = describeModel(ckpt, hparams, ctx);
  }

  get chatTemplate(): string | undefined {
    return this.tokenizer.chatTemplate;
  }

  tokenize(text: string, opts: { addSpecial?: boolean; parseSpecial?: boolean } = {}): number[] {
    return this.tokenizer.encode(text, { addSpecial: opts.addSpecial ?? true, parseSpecial: opts.parseSpecial ?? false });
  }

  detokenize(ids: number[]): string {
    return this.tokenizer.decode(ids);
  }

  newSequence(ctx = this.ctx): Sequence {
    const h = this.hparams;
    const be = this.decoder.be;
    return new Sequence(new KVCache(h.nLayer, ctx, h.nHeadKv * h.headDim, be.touchPages?.bind(be)));
  }

  /** Logits [T, V] at every position of a fresh sequence holding `ids`. */
  async forward(ids: number[], opts: { hooks?: ForwardHooks } = {}): Promise<Float32Array> {
    this.checkOpen();
    this.checkIds(ids);
    const seq = this.newSequence(Math.max(ids.length, 1));
    const V = this.decoder.V;
    const out = new Float32Array(ids.length * V);
    for (let s = 0; s < ids.length; s += UBATCH) {
      const chunk = ids.slice(s, s + UBATCH);
      const rows = chunk.map((_, i) => i);
      this.decoder.forward(chunk, [{ cache: seq.cache, start: 0, n: chunk.length }], rows, opts.hooks, out.subarray(s * V, (s + chunk.length) * V));
      await yieldToEventLoop();
    }
    return out;
  }

  /**
   * Append tokens to several sequences in one batched forward pass. Returns logits [B, V] of the last
   * new token of each entry. This is the primitive continuous batching builds on. With `out` (exactly
   * B·V long) the logits are written there and `out` is returned: a decode loop reuses one buffer instead
   * of a fresh 200 KB-1 MB array per token, whose pages fault in again each time.
   */
  step(batch: Array<{ seq: Sequence; tokens: number[] }>, hooks?: ForwardHooks, out?: Float32Array): Float32Array {
    this.checkOpen();
    const tokens: number[] = [];
    const segments: Segment[] = [];
    const rows: number[] = [];
    for (const b of batch) {
      if (b.tokens.length === 0) throw new UsageError('step(): every batch entry needs at least one token');
      this.checkIds(b.tokens);
      segments.push({ cache: b.seq.cache, start: tokens.length, n: b.tokens.length });
      for (const t of b.tokens) tokens.push(t);
      rows.push(tokens.length - 1);
    }
    for (const s of segments) s.cache.ensureRoom(s.n);
    const logits = this.decoder.forward(tokens, segments, rows, hooks, out);
    for (const b of batch) for (const t of b.tokens) b.seq.tokens.push(t);
    return logits;
  }

  /** Feed a whole prompt into a sequence in chunks; returns the logits [V] of its last token. */
  async prefill(seq: Sequence, ids: number[], hooks?: ForwardHooks): Promise<Float32Array> {
    seq.cache.ensureRoom(ids.length);
    let last: Float32Array = new Float32Array(0);
    for (let s = 0; s < ids.length; s += UBATCH) {
      last = this.step([{ seq, tokens: ids.slice(s, s + UBATCH) }], hooks);
      await yieldToEventLoop();
    }
    return last;
  }

  /** Generate token ids after `ids` (token-level API; `generate` wraps it with text). */
  async *generateTokens(ids: number[], opts: GenerateOptions = {}): AsyncGenerator<number, GenerationStats> {
    this.checkOpen();
    if (opts.routing) opts = { ...opts, routing: undefined, hooks: routingHooks(opts.routing, this.hparams, opts.hooks) };
    const maxTokens = opts.maxTokens ?? 256;
    if (!Number.isInteger(maxTokens) || maxTokens < 0) throw new UsageError(`maxTokens must be an integer ≥ 0, got ${opts.maxTokens}`);
    if (ids.length === 0) throw new UsageError('the prompt is empty after tokenization; give some text or enable BOS');
    if (ids.length >= this.ctx) {
      throw new ContextOverflowError(`the prompt has ${ids.length} tokens but the context holds ${this.ctx}; raise --ctx (training context: ${this.hparams.ctxTrain}) or shorten the prompt`);
    }
    const sampler = new Sampler(opts);
    const seq = opts.sequence ?? this.newSequence();
    // reuse the cached prefix; always recompute at least the last prompt token to get its logits
    let common = 0;
    while (common < seq.tokens.length && common < ids.length - 1 && seq.tokens[common] === ids[common]) common++;
    seq.cache.truncate(common);
    seq.tokens.length = common;
    const t0 = performance.now();
    let logits = await this.prefill(seq, ids.slice(common), opts.hooks);
    const t1 = performance.now();
    const stats: GenerationStats = { promptTokens: ids.length, promptMs: t1 - t0, genTokens: 0, genMs: 0, stopReason: 'length' };
    const history = [...ids];
    const buf = new Float32Array(this.decoder.V); // each step's logits are sampled before the next step
    try {
      for (let i = 0; i < maxTokens; i++) {
        const next = sampler.sample(logits, history);
        if (this.tokenizer.eog.has(next)) { stats.stopReason = 'eog'; break; }
        history.push(next);
        stats.genTokens++;
        yield next;
        if (i + 1 === maxTokens) {
          // keep the sequence complete for a following turn
          if (opts.sequence && seq.length + 1 <= seq.cache.ctx) this.step([{ seq, tokens: [next] }], opts.hooks);
          break;
        }
        if (seq.length + 1 > this.ctx) { stats.stopReason = 'context'; break; }
        logits = this.step([{ seq, tokens: [next] }], opts.hooks, buf);
        await yieldToEventLoop();
      }
    } finally {
      stats.genMs = performance.now() - t1;
      this.lastStats = stats;
    }
    return stats;
  }

  /** Stream generated text: pieces never split a UTF-8 character; stop strings are not emitted. */
  async *generate(prompt: string, opts: GenerateOptions = {}): AsyncGenerator<string, GenerationStats | undefined> {
    const ids = this.tokenize(prompt, { addSpecial: opts.addSpecial ?? true, parseSpecial: opts.parseSpecial ?? true });
    return yield* streamText(this, this.generateTokens(ids, opts), opts.stop);
  }

  async close(): Promise<void> {
    if (this.closed) return;
    this.closed = true;
    this.backend.dispose();
    this.ckpt.close();
  }

  private checkOpen(): void {
    if (this.closed) throw new UsageError('the model is closed');
  }

  private checkIds(ids: ArrayLike<number>): void {
    const V = this.decoder.V;
    for (let i = 0; i < ids.length; i++) {
      const id = ids[i];
      if (!Number.isInteger(id) || id < 0 || id >= V) throw new UsageError(`token id ${id} at position ${i} is outside the vocabulary [0, ${V})`);
    }
  }
}

/**
 * Text of a token stream: pieces never split a UTF-8 character; generation ends at the first stop string,
 * which is not emitted (text that may begin one is held back until it is resolved). Shared by
 * `Model.generate` and SCMoE decoding; `gen` must leave its stats in `model.lastStats` when it ends.
 */
export async function* streamText(
  model: Model, gen: AsyncGenerator<number, GenerationStats>, stop: string[] = [],
): AsyncGenerator<string, GenerationStats> {
  const stops = stop.filter((s) => s.length > 0);
  const dec = model.tokenizer.streamDecoder();
  let pending = '';
  for (;;) {
    const r = await gen.next();
    if (r.done) {
      pending += dec.flush();
      if (pending) yield pending;
      return r.value;
    }
    pending += dec.push(r.value);
    if (!stops.length) {
      if (pending) yield pending;
      pending = '';
      continue;
    }
    const hit = firstStop(pending, stops);
    if (hit >= 0) {
      if (hit > 0) yield pending.slice(0, hit);
      await gen.return(undefined as never); // runs the generator's finally, which records its stats
      const stats = model.lastStats!;
      stats.stopReason = 'stop';
      return stats;
    }
    const keep = heldBack(pending, stops);
    if (pending.length > keep) {
      yield pending.slice(0, pending.length - keep);
      pending = pending.slice(pending.length - keep);
    }
  }
}

function firstStop(text: string, stops: string[]): number {
  let best = -1;
  for (const s of stops) {
    const i = text.indexOf(s);
    if (i >= 0 && (best < 0 || i < best)) best = i;
  }
  return best;
}

/** Length of the longest suffix of `text` that is a proper prefix of a stop string (held back until resolved). */
function heldBack(text: string, stops: string[]): number {
  let keep = 0;
  for (const s of stops) {
    for (let n = Math.min(s.length - 1, text.length); n > keep; n--) {
      if (text.endsWith(s.slice(0, n))) { keep = n; break; }
    }
  }
  return keep;
}

function yieldToEventLoop(): Promise<void> {
  return new Promise((r) => setImmediate(r));
}

/** Greedy next token of a logits row (exposed for tests and tools). */
export { argmax };

/**
 * A .gguf file, an HF folder, or a `moekit train` checkpoint folder (runs/<name>/last or best),
 * which is read as the GGUF the trainer exports (src/train/checkpoint.ts openTrainCheckpoint).
 */
function openAny(path: string): Checkpoint {
  if (isTrainCheckpoint(path)) return openTrainCheckpoint(path);
  if (!existsSync(join(path, 'config.json')) && existsSync(join(path, 'last', 'model.safetensors'))) {
    const gguf = join(path, 'model.gguf');
    throw new CheckpointError(path, `this is a moekit training run folder; pass one of its checkpoints, ${join(path, 'best')} or ${join(path, 'last')}${existsSync(gguf) ? `, or its export ${gguf}` : ''}`);
  }
  return openCheckpoint(path);
}

export async function loadModel(path: string, opts: LoadOptions = {}): Promise<Model> {
  if (opts.threads !== undefined && (!Number.isInteger(opts.threads) || opts.threads < 1 || opts.threads > 256)) {
    throw new UsageError(`threads must be an integer in 1..256, got ${opts.threads}`);
  }
  const ckpt = openAny(path);
  try {
    const src: ModelSource = {
      path: ckpt.path,
      arch: ckpt.arch,
      get: (k) => {
        const v = ckpt.metadata.get(k);
        return v === undefined ? undefined : plainValue(v);
      },
      tensors: ckpt.tensors,
    };
    const arch = getArchitecture(ckpt.arch, ckpt.path);
    const { spec, hparams } = arch.build(src);
    const tokenizer =
      ckpt.format === 'gguf' || !ckpt.hf?.tokenizerJson
        ? tokenizerFromGGUF(src.get, ckpt.path)
        : tokenizerFromHF(ckpt.hf.tokenizerJson as object, (ckpt.hf.tokenizerConfig ?? {}) as object);
    const ctx = opts.ctx ?? Math.min(hparams.ctxTrain, 4096);
    if (!Number.isInteger(ctx) || ctx < 1) throw new UsageError(`ctx must be a positive integer, got ${opts.ctx}`);
    const backend = createBackend({ kind: opts.backend, threads: opts.threads });
    return new Model(ckpt, new Decoder(backend, spec), hparams, tokenizer, backend, ctx);
  } catch (e) {
    ckpt.close();
    throw e;
  }
}

/**
 * Per-sequence KV cache, preallocated for the whole context: one f16 K and V buffer per layer,
 * [ctx, Hkv·Dh] each (f16 like llama.cpp's default cache type). Several sequences = several caches.
 */
import { ContextOverflowError } from '../errors.js';

export class KVCache {
  /** per layer: [ctx, Hkv, Dh] f16 bits */
  readonly k: Uint16Array[];
  /** per layer: [ctx, Hkv, Dh] f16 bits */
  readonly v: Uint16Array[];
  /** number of positions filled */
  pos = 0;

  constructor(
    readonly nLayer: number,
    readonly ctx: number,
    /** Hkv · Dh */
    readonly kvDim: number,
  ) {
    this.k = Array.from({ length: nLayer }, () => new Uint16Array(ctx * kvDim));
    this.v = Array.from({ length: nLayer }, () => new Uint16Array(ctx * kvDim));
  }

  get bytes(): number {
    return 2 * 2 * this.nLayer * this.ctx * this.kvDim;
  }

  /** Throws a typed error if `n` more tokens do not fit. */
  ensureRoom(n: number): void {
    if (this.pos + n > this.ctx) {
      throw new ContextOverflowError(
        `${this.pos + n} tokens do not fit in the context of ${this.ctx} (${this.pos} used, ${n} new): ` +
          `raise --ctx (up to the model's training context) or shorten the prompt`,
      );
    }
  }

  /** Forget positions ≥ pos (e.g. to reuse a shared prompt prefix). */
  truncate(pos: number): void {
    if (pos < 0 || pos > this.pos) throw new RangeError(`cannot truncate cache at ${pos} (filled ${this.pos})`);
    this.pos = pos;
  }
}

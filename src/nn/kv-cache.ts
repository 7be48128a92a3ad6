/**
 * Per-sequence KV cache, preallocated for the whole context: one f16 K and V buffer per layer,
 * [ctx, Hkv·Dh] each (f16 like llama.cpp's default cache type). Several sequences = several caches.
 */
import { ContextOverflowError } from '../errors.js';

/** Positions whose pages `ensureRoom` maps ahead of use. */
const TOUCH_AHEAD = 256;

export class KVCache {
  /** per layer: [ctx, Hkv, Dh] f16 bits */
  readonly k: Uint16Array[];
  /** per layer: [ctx, Hkv, Dh] f16 bits */
  readonly v: Uint16Array[];
  /** number of positions filled */
  pos = 0;
  /** positions [0, touched) have their pages mapped (see `touch`) */
  private touched = 0;

  constructor(
    readonly nLayer: number,
    readonly ctx: number,
    /** Hkv · Dh */
    readonly kvDim: number,
    /**
     * Maps the pages of a byte range for writing in one call (Backend.touchPages). The cache grows through
     * it TOUCH_AHEAD positions at a time: otherwise each decode step takes a page fault per layer, K and V
     * (~40 µs each on the VMs we measure on: a tenth of an OLMoE decode step). Pages stay untouched, and out
     * of RSS, until the context reaches them.
     */
    private readonly touch?: (bytes: Uint8Array) => void,
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
    if (this.touch && this.pos + n > this.touched) {
      const from = this.touched, to = Math.min(this.ctx, this.pos + n + TOUCH_AHEAD);
      for (const b of [...this.k, ...this.v]) this.touch(new Uint8Array(b.buffer, b.byteOffset + 2 * from * this.kvDim, 2 * (to - from) * this.kvDim));
      this.touched = to;
    }
  }

  /** Forget positions ≥ pos (e.g. to reuse a shared prompt prefix). */
  truncate(pos: number): void {
    if (pos < 0 || pos > this.pos) throw new RangeError(`cannot truncate cache at ${pos} (filled ${this.pos})`);
    this.pos = pos;
  }
}

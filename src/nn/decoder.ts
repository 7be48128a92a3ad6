/**
 * A pre-norm decoder-only transformer whose FFN is dense or MoE per layer. Architecture files
 * (src/models/<arch>.ts) fill a `DecoderSpec` from a checkpoint; this runs it.
 *
 * A forward call takes a batch of rows that may come from several sequences (segments), so the same
 * code does prompt processing (one segment, many rows) and batched decode (many segments, one row each).
 */
import type { Backend } from '../backend/backend.js';
import type { Tensor } from '../tensor.js';
import { attention, type AttentionOptions, type AttentionWeights, type Segment } from './attention.js';
import { denseFfn, moeFfn, type FfnWeights, type ForwardHooks, type MoeOptions, type MoeWeights } from './moe.js';
import { addInPlace, rmsNorm, scaleInPlace } from './ops.js';

export type FfnSpec = { kind: 'dense'; w: FfnWeights } | { kind: 'moe'; w: MoeWeights; o: MoeOptions };

export interface LayerSpec {
  /** [D] */
  attnNorm: Float32Array;
  attn: AttentionWeights;
  /** [D] */
  ffnNorm: Float32Array;
  ffn: FfnSpec;
}

export interface DecoderSpec {
  /** [V, D] */
  tokEmbd: Tensor;
  layers: LayerSpec[];
  /** [D] */
  outputNorm: Float32Array;
  /** [V, D]; may be the same tensor as tokEmbd (tied) */
  output: Tensor;
  attention: AttentionOptions;
  rmsEps: number;
  /** Granite: embeddings × embeddingScale; branch outputs × residualScale; logits ÷ logitScale */
  embeddingScale?: number;
  residualScale?: number;
  logitScale?: number;
}

export class Decoder {
  readonly D: number;
  readonly V: number;

  constructor(
    readonly be: Backend,
    readonly spec: DecoderSpec,
  ) {
    [this.V, this.D] = spec.tokEmbd.shape;
  }

  get nLayer(): number {
    return this.spec.layers.length;
  }

  /**
   * Run `tokens` (the rows of all segments, back to back) through the model, append their K/V to each
   * segment's cache and advance it. Returns logits [R, V] for the batch rows listed in `logitRows`.
   */
  forward(tokens: ArrayLike<number>, segments: Segment[], logitRows: number[], hooks: ForwardHooks = {}): Float32Array {
    const { be, spec, D, V } = this;
    const T = tokens.length;
    for (const s of segments) s.cache.ensureRoom(s.n);
    const x = new Float32Array(T * D);
    be.getRows({ out: x, w: spec.tokEmbd, rows: tokens });
    if (spec.embeddingScale !== undefined && spec.embeddingScale !== 1) scaleInPlace(x, spec.embeddingScale);
    const h = new Float32Array(T * D);
    const rs = spec.residualScale ?? 1;

    for (let l = 0; l < spec.layers.length; l++) {
      const L = spec.layers[l];
      rmsNorm(h, x, L.attnNorm, T, D, spec.rmsEps);
      const a = attention(be, l, h, T, L.attn, spec.attention, segments);
      addInPlace(x, a, rs);
      rmsNorm(h, x, L.ffnNorm, T, D, spec.rmsEps);
      let f: Float32Array;
      if (L.ffn.kind === 'dense') f = denseFfn(be, h, T, L.ffn.w);
      else {
        const r = moeFfn(be, h, T, L.ffn.w, L.ffn.o, l, hooks.routePolicy);
        hooks.onRouting?.(l, r.routing, T);
        f = r.y;
      }
      addInPlace(x, f, rs);
    }
    for (const s of segments) s.cache.pos += s.n;

    const R = logitRows.length;
    const hr = new Float32Array(R * D);
    for (let r = 0; r < R; r++) hr.set(x.subarray(logitRows[r] * D, logitRows[r] * D + D), r * D);
    rmsNorm(hr, hr, spec.outputNorm, R, D, spec.rmsEps);
    const logits = new Float32Array(R * V);
    be.matmul({ y: logits, x: hr, w: spec.output, T: R });
    if (spec.logitScale !== undefined && spec.logitScale !== 1) scaleInPlace(logits, 1 / spec.logitScale);
    return logits;
  }
}

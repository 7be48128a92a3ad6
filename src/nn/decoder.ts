/**
 * A pre-norm decoder-only transformer whose FFN is dense or MoE per layer. Architecture files
 * (src/models/<arch>.ts) fill a `DecoderSpec` from a checkpoint; this runs it.
 *
 * A forward call takes a batch of rows that may come from several sequences (segments), so the same
 * code does prompt processing (one segment, many rows) and batched decode (many segments, one row each).
 */
import type { Backend } from '../backend/backend.js';
import type { Tensor } from '../tensor.js';
import { attention, attentionRope, type AttentionOptions, type AttentionWeights, type Segment } from './attention.js';
import { denseFfn, moeFfn, type FfnWeights, type ForwardHooks, type MoeOptions, type MoeWeights } from './moe.js';
import { addInPlace, rmsNorm, scaleInPlace, type RopeTable } from './ops.js';
import { Workspace } from './workspace.js';

/**
 * Forward passes of at most this many rows (decode steps, small batches) run in the decoder's reusable
 * workspace; longer ones (prompts) in a workspace of their own, so the kept one stays small (~9·D floats per
 * row: ~1.2 MiB at 16 rows for OLMoE) and prompt-sized buffers are freed after the pass.
 */
const WORKSPACE_ROWS = 16;

const NO_HOOKS: ForwardHooks = Object.freeze({});

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
  /** scratch of small forward passes (WORKSPACE_ROWS), reused across calls */
  private readonly ws = new Workspace();
  private rot: RopeTable | undefined;
  /** a forward pass is running (a hook that calls forward again must not share its workspace) */
  private busy = false;

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
   * segment's cache and advance it. Returns logits [R, V] for the batch rows listed in `logitRows`:
   * a new array, or `out` (exactly R·V long) when given.
   */
  forward(tokens: ArrayLike<number>, segments: Segment[], logitRows: number[], hooks: ForwardHooks = NO_HOOKS, out?: Float32Array): Float32Array {
    const T = tokens.length;
    const R = logitRows.length;
    const V = this.V;
    if (out !== undefined && out.length !== R * V) throw new RangeError(`forward: out has ${out.length} elements, expected ${R * V}`);
    for (const s of segments) s.cache.ensureRoom(s.n);
    const wasBusy = this.busy;
    const shared = T <= WORKSPACE_ROWS && !wasBusy;
    this.busy = true;
    try {
      return this.run(tokens, T, segments, logitRows, hooks, out, shared ? this.ws : new Workspace(), shared);
    } finally {
      this.busy = wasBusy;
    }
  }

  private run(tokens: ArrayLike<number>, T: number, segments: Segment[], logitRows: number[], hooks: ForwardHooks, out: Float32Array | undefined, ws: Workspace, shared: boolean): Float32Array {
    const { be, spec, D, V } = this;
    const R = logitRows.length;
    const x = ws.f32('dec.x', T * D);
    be.getRows({ out: x, w: spec.tokEmbd, rows: tokens });
    if (spec.embeddingScale !== undefined && spec.embeddingScale !== 1) scaleInPlace(x, spec.embeddingScale);
    const h = ws.f32('dec.h', T * D);
    const rs = spec.residualScale ?? 1;
    // positions (and so the RoPE table) are the same in every layer: caches advance after the last one
    const rot = attentionRope(spec.attention, segments, T, ws, shared ? this.rot : undefined);
    if (shared && rot) this.rot = rot;
    const { onRouting, routePolicy } = hooks;
    // without an observer the routing goes no further than this pass: it can live in the workspace
    const scratchRouting = onRouting === undefined;

    const nl = spec.layers.length;
    if (nl > 0) rmsNorm(h, x, spec.layers[0].attnNorm, T, D, spec.rmsEps);
    for (let l = 0; l < nl; l++) {
      const L = spec.layers[l];
      const a = attention(be, l, h, T, L.attn, spec.attention, segments, ws, rot);
      this.addNorm(x, a, rs, h, L.ffnNorm, T);
      let f: Float32Array;
      if (L.ffn.kind === 'dense') f = denseFfn(be, h, T, L.ffn.w, ws);
      else {
        const r = moeFfn(be, h, T, L.ffn.w, L.ffn.o, l, routePolicy, ws, scratchRouting);
        onRouting?.(l, r.routing, T);
        f = r.y;
      }
      if (l + 1 < nl) this.addNorm(x, f, rs, h, spec.layers[l + 1].attnNorm, T);
      else addInPlace(x, f, rs);
    }
    for (const s of segments) s.cache.pos += s.n;

    const hr = ws.f32('dec.hr', R * D);
    for (let r = 0; r < R; r++) hr.set(x.subarray(logitRows[r] * D, logitRows[r] * D + D), r * D);
    rmsNorm(hr, hr, spec.outputNorm, R, D, spec.rmsEps);
    const logits = out ?? new Float32Array(R * V);
    be.matmul({ y: logits, x: hr, w: spec.output, T: R });
    if (spec.logitScale !== undefined && spec.logitScale !== 1) scaleInPlace(logits, 1 / spec.logitScale);
    return logits;
  }

  /** x += y·rs, then h = RMSNorm(x) ⊙ w: one backend call where it has one, else the reference in nn/ops.ts */
  private addNorm(x: Float32Array, y: Float32Array, rs: number, h: Float32Array, w: Float32Array, T: number): void {
    const { be, spec, D } = this;
    if (be.addNorm) be.addNorm({ x, y, scale: rs, out: h, w, T, eps: spec.rmsEps });
    else {
      addInPlace(x, y, rs);
      rmsNorm(h, x, w, T, D, spec.rmsEps);
    }
  }
}

/**
 * Record a routing trace: run text through the model in independent windows and keep, per token and MoE
 * layer, the selected experts, gate weights and router entropy (and optionally max |expert output|).
 */
import type { Backend, MoeFfnArgs } from '../backend/backend.js';
import type { Model } from '../engine/model.js';
import { UsageError } from '../errors.js';
import type { Routing } from '../nn/moe.js';
import type { Trace } from './trace.js';

export interface RecordOptions {
  /** cap on the number of tokens traced (default: all) */
  maxTokens?: number;
  /** window length: each window runs in a fresh KV cache (default 512, moe-lrc's sample_length) */
  window?: number;
  /** also measure max |expert output| per expert for super-expert detection (runs every routed expert twice) */
  superExperts?: boolean;
  /** add BOS etc. when tokenizing (default true) */
  addSpecial?: boolean;
  /** called after each window with tokens done so far */
  onProgress?: (done: number, total: number) => void;
}

/** Entropy (nats) of scores[o .. o+E) after normalising them to sum 1 (softmax scores already do). */
export function routerEntropy(scores: Float32Array, o: number, E: number): number {
  let sum = 0;
  for (let e = 0; e < E; e++) sum += scores[o + e];
  if (!(sum > 0)) return 0;
  let h = 0;
  for (let e = 0; e < E; e++) {
    const p = scores[o + e] / sum;
    if (p > 0) h -= p * Math.log(p);
  }
  return h;
}

export async function recordTrace(model: Model, text: string, o: RecordOptions = {}): Promise<Trace> {
  const W = o.window ?? 512;
  if (!Number.isInteger(W) || W < 1) throw new UsageError(`window must be an integer ≥ 1, got ${o.window}`);
  const h = model.hparams;
  if (h.nExpert <= 0) throw new UsageError(`${model.info.path} is a dense model (no experts): there is no routing to trace`);
  let ids = model.tokenize(text, { addSpecial: o.addSpecial ?? true });
  if (o.maxTokens !== undefined) ids = ids.slice(0, o.maxTokens);
  if (ids.length === 0) throw new UsageError('the data file is empty after tokenization: give it some text');
  const T = ids.length;
  const E = h.nExpert;
  const moeLayers: number[] = [];
  for (let l = 0; l < h.nLayer; l++) if (!h.denseLayers.includes(l)) moeLayers.push(l);
  const L = moeLayers.length;
  const slot = new Map(moeLayers.map((l, i) => [l, i]));
  const K = h.nExpertUsed;

  const tr: Trace = {
    model: { path: model.info.path, arch: h.arch, name: model.info.name, nLayer: h.nLayer },
    layers: moeLayers,
    E,
    K,
    T,
    windows: [],
    tokens: Uint32Array.from(ids),
    pieces: ids.map((id) => model.detokenize([id])),
    ids: new Int16Array(L * T * K).fill(-1),
    weights: new Float32Array(L * T * K),
    entropy: new Float32Array(L * T),
    expertMax: o.superExperts ? new Float32Array(L * E) : undefined,
  };

  let pos = 0; // first token of the current forward call within the trace
  const onRouting = (layer: number, r: Routing, n: number): void => {
    const li = slot.get(layer);
    if (li === undefined) return;
    const k = Math.min(r.K, K); // a steering policy may use more slots; the trace keeps the model's K
    for (let t = 0; t < n; t++) {
      const dst = (li * T + pos + t) * K;
      for (let j = 0; j < k; j++) {
        tr.ids[dst + j] = r.ids[t * r.K + j];
        tr.weights[dst + j] = r.weights[t * r.K + j];
      }
      tr.entropy[li * T + pos + t] = routerEntropy(r.scores, t * E, E);
    }
    if (tr.expertMax && pendingMax) {
      for (let e = 0; e < E; e++) tr.expertMax[li * E + e] = Math.max(tr.expertMax[li * E + e], pendingMax[e]);
      pendingMax = undefined;
    }
  };

  // Super experts need each routed expert's own output, which the fused moeFfn sums away. Wrap the
  // backend's moeFfn for the duration: after the fused call, rerun it with one slot per (token, expert)
  // and weight 1, which yields the unweighted outputs down_e(…) [T·K, D]; keep max |·| per expert.
  let pendingMax: Float32Array | undefined;
  const be: Backend = model.decoder.be;
  const original = be.moeFfn;
  const hadOwn = Object.prototype.hasOwnProperty.call(be, 'moeFfn');
  if (o.superExperts) {
    be.moeFfn = function (a: MoeFfnArgs): void {
      original.call(this, a);
      const D = a.out.length / a.T;
      const n = a.T * a.K;
      const xs = new Float32Array(n * D); // [T·K, D]: each token's row repeated per slot
      for (let t = 0; t < a.T; t++) for (let j = 0; j < a.K; j++) xs.set(a.x.subarray(t * D, (t + 1) * D), (t * a.K + j) * D);
      const y = new Float32Array(n * D);
      original.call(this, { ...a, out: y, x: xs, T: n, K: 1, ids: a.ids, weights: new Float32Array(n).fill(1) });
      const mx = pendingMax ?? new Float32Array(E);
      for (let i = 0; i < n; i++) {
        const e = a.ids[i];
        if (e < 0) continue;
        let m = mx[e];
        for (let d = 0; d < D; d++) m = Math.max(m, Math.abs(y[i * D + d]));
        mx[e] = m;
      }
      pendingMax = mx;
    };
  }
  try {
    for (let s = 0; s < T; s += W) {
      const chunk = ids.slice(s, s + W);
      const seq = model.newSequence(chunk.length);
      pos = s;
      // prefill runs in ≤512-row micro-batches; keep `pos` in step with each call
      for (let c = 0; c < chunk.length; c += 512) {
        const part = chunk.slice(c, c + 512);
        pos = s + c;
        await model.prefill(seq, part, { onRouting });
      }
      tr.windows.push(chunk.length);
      o.onProgress?.(s + chunk.length, T);
    }
  } finally {
    if (o.superExperts) {
      if (hadOwn) be.moeFfn = original;
      else delete (be as { moeFfn?: unknown }).moeFfn;
    }
  }
  return tr;
}

/**
 * Per-layer thresholds for MoDES-style expert skipping (arXiv 2511.15690): a token skips a selected
 * expert whose gate weight is below τ_l. MoDES scales router probabilities by an offline layer importance
 * and searches thresholds for a target skip rate; here each layer gets the τ_l that skips the target share
 * of its routed (token, expert) slots on a calibration text, measured with the model's own routing.
 * The top-1 expert is never skipped, so the share is at most (K−1)/K.
 */
import type { Model } from '../engine/model.js';
import { UsageError } from '../errors.js';
import { makePolicy } from './controls.js';
import { ActiveExperts } from './stats.js';

export interface SkipCalibration {
  /** τ_l per layer (0 for dense layers) */
  thresholds: number[];
  /** target share of routed slots to skip */
  share: number;
  /** share of routed slots skipped when the thresholds are applied to the same text */
  measuredShare: number;
  /** measured share per MoE layer */
  perLayerShare: Record<number, number>;
  tokens: number;
}

export async function calibrateSkip(model: Model, ids: number[], opts: { share: number; ctx?: number }): Promise<SkipCalibration> {
  const { share } = opts;
  const K = model.hparams.nExpertUsed;
  if (!(share >= 0 && share <= (K - 1) / K)) {
    throw new UsageError(`--skip-share must be in [0, ${((K - 1) / K).toFixed(3)}] for this model (K = ${K}; the top-1 expert is never skipped), got ${share}`);
  }
  if (ids.length < 2) throw new UsageError('the calibration text has fewer than 2 tokens; give a longer --data file');
  const ctx = Math.min(opts.ctx ?? 512, model.ctx);
  const chunks: number[][] = [];
  for (let s = 0; s < ids.length; s += ctx) chunks.push(ids.slice(s, s + ctx));
  // gate weights of every selected expert below rank 0, per layer
  const weights = new Map<number, number[]>();
  const slots = new Map<number, number>();
  for (const c of chunks) {
    await model.forward(c, {
      hooks: {
        onRouting: (l, r, T) => {
          const w = weights.get(l) ?? [];
          let n = 0;
          for (let t = 0; t < T; t++) {
            for (let j = 0; j < r.K; j++) {
              if (r.ids[t * r.K + j] < 0) continue;
              n++;
              if (j > 0) w.push(r.weights[t * r.K + j]);
            }
          }
          weights.set(l, w);
          slots.set(l, (slots.get(l) ?? 0) + n);
        },
      },
    });
  }
  const thresholds = new Array<number>(model.hparams.nLayer).fill(0);
  for (const [l, w] of weights) {
    const n = Math.round(share * slots.get(l)!);
    if (n === 0) continue;
    w.sort((a, b) => a - b);
    // skip w < τ: τ halfway between the n-th smallest and the next one
    thresholds[l] = n >= w.length ? Math.fround(w[w.length - 1] * 1.0001) : (w[n - 1] + w[n]) / 2;
  }
  // measure what the thresholds do on the same text (skipping shifts later layers' inputs)
  const active = new ActiveExperts();
  const policy = makePolicy({ skip: { thresholds } });
  for (const c of chunks) await model.forward(c, { hooks: { routePolicy: policy, onRouting: active.observe } });
  const perLayerShare: Record<number, number> = {};
  for (const [l, a] of active.perLayer()) perLayerShare[l] = 1 - a / K;
  const v = Object.values(perLayerShare);
  return { thresholds, share, measuredShare: v.reduce((a, b) => a + b, 0) / Math.max(1, v.length), perLayerShare, tokens: ids.length };
}

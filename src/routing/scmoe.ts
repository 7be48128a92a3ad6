/**
 * SCMoE self-contrast decoding (Shi et al. 2024, "Unchosen Experts Can Contribute Too";
 * DavidFanzz/SCMoE `decodingmethod/moe_utils.py::scmoe`):
 *
 *   z_s = logits with the model's own routing (strong), z_w = logits with only the rank-r expert (weak)
 *   z   = (1+β)·z_s − β·z_w,   z_i = −∞ where z_s,i < log α + max z_s   (adaptive plausibility mask)
 *
 * Upstream works on raw logits (divided by temperatures that default to 1), not log-probs; the mask is
 * the same either way since log-softmax only shifts a row. Defaults α = 0.1, β = 0.5, r = 2 (0-based:
 * `--student_routed_tok 2`), greedy (`scmoe`); a temperature > 0 samples from z (`scmoe_with_sampling`).
 *
 * The two passes have their own KV caches. After the prompt, each decode step runs both sequences in one
 * batched forward pass, with a policy that routes the strong rows normally and the weak rows by rank.
 */
import { streamText, type GenerationStats, type Model } from '../engine/model.js';
import { Sampler, type SamplingOptions } from '../engine/sampler.js';
import { ContextOverflowError, UsageError } from '../errors.js';
import { route, type ForwardHooks, type RoutePolicy, type Routing } from '../nn/moe.js';
import { rankPolicy } from './controls.js';

export interface ScmoeOptions extends SamplingOptions {
  /** plausibility: keep tokens with z_s ≥ log α + max z_s (default 0.1) */
  alpha?: number;
  /** contrast strength (default 0.5) */
  beta?: number;
  /** 0-based rank of the weak pass's single expert (default 2) */
  rank?: number;
  /** maximum new tokens (default 256) */
  maxTokens?: number;
  /** routing of the strong pass (default: the model's own) and observers of both passes */
  hooks?: ForwardHooks;
}

/** z = (1+β)·z_s − β·z_w with the α plausibility mask; one row [V]. */
export function contrastLogits(strong: Float32Array, weak: Float32Array, alpha: number, beta: number): Float32Array {
  if (strong.length !== weak.length) throw new UsageError(`contrastLogits: rows of ${strong.length} and ${weak.length} logits`);
  let max = -Infinity;
  for (let i = 0; i < strong.length; i++) if (strong[i] > max) max = strong[i];
  const cutoff = Math.log(alpha) + max;
  const z = new Float32Array(strong.length);
  for (let i = 0; i < z.length; i++) z[i] = strong[i] < cutoff ? -Infinity : (1 + beta) * strong[i] - beta * weak[i];
  return z;
}

export function checkScmoe(o: ScmoeOptions, E?: number): { alpha: number; beta: number; rank: number } {
  const alpha = o.alpha ?? 0.1;
  const beta = o.beta ?? 0.5;
  const rank = o.rank ?? 2;
  if (!(alpha > 0 && alpha <= 1)) throw new UsageError(`scmoe alpha must be in (0, 1], got ${o.alpha}`);
  if (!(beta >= 0 && Number.isFinite(beta))) throw new UsageError(`scmoe beta must be a finite number ≥ 0, got ${o.beta}`);
  if (!Number.isInteger(rank) || rank < 0 || (E !== undefined && rank >= E)) {
    throw new UsageError(`scmoe rank must be an integer in 0..${E === undefined ? '∞' : E - 1} (0-based rank of the weak expert), got ${o.rank}`);
  }
  return { alpha, beta, rank };
}

/** Generate token ids after `ids` with self-contrast decoding. */
export async function* scmoeGenerateTokens(model: Model, ids: number[], opts: ScmoeOptions = {}): AsyncGenerator<number, GenerationStats> {
  const { alpha, beta, rank } = checkScmoe(opts, model.hparams.nExpert);
  const maxTokens = opts.maxTokens ?? 256;
  if (!Number.isInteger(maxTokens) || maxTokens < 0) throw new UsageError(`maxTokens must be an integer ≥ 0, got ${opts.maxTokens}`);
  if (ids.length === 0) throw new UsageError('the prompt is empty after tokenization; give some text or enable BOS');
  if (ids.length >= model.ctx) throw new ContextOverflowError(`the prompt has ${ids.length} tokens but the context holds ${model.ctx}; raise --ctx or shorten the prompt`);
  const sampler = new Sampler({ ...opts, temperature: opts.temperature ?? 0 });
  const strongPolicy = opts.hooks?.routePolicy;
  const weakPolicy = rankPolicy(rank);
  const onRouting = opts.hooks?.onRouting;
  const strong = model.newSequence();
  const weak = model.newSequence();
  const t0 = performance.now();
  let zs = await model.prefill(strong, ids, { routePolicy: strongPolicy, onRouting });
  let zw = await model.prefill(weak, ids, { routePolicy: weakPolicy, onRouting });
  const t1 = performance.now();
  const stats: GenerationStats = { promptTokens: ids.length, promptMs: t1 - t0, genTokens: 0, genMs: 0, stopReason: 'length' };
  // decode: rows [0, 1) are the strong sequence, [1, 2) the weak one
  const both: RoutePolicy = (layer, logits, T, E, K, router) => {
    const n = T / 2;
    const s = (strongPolicy ?? defaultPolicy)(layer, logits.subarray(0, n * E), n, E, K, router);
    const w = weakPolicy(layer, logits.subarray(n * E), n, E, K, router);
    return stack(s, w, n, E);
  };
  const history = [...ids];
  try {
    for (let i = 0; i < maxTokens; i++) {
      const next = sampler.sample(contrastLogits(zs, zw, alpha, beta), history);
      if (model.tokenizer.eog.has(next)) { stats.stopReason = 'eog'; break; }
      history.push(next);
      stats.genTokens++;
      yield next;
      if (i + 1 === maxTokens) break;
      if (strong.length + 1 > model.ctx) { stats.stopReason = 'context'; break; }
      const out = model.step([{ seq: strong, tokens: [next] }, { seq: weak, tokens: [next] }], { routePolicy: both, onRouting });
      const V = out.length / 2;
      zs = out.subarray(0, V);
      zw = out.subarray(V);
      await new Promise((r) => setImmediate(r));
    }
  } finally {
    stats.genMs = performance.now() - t1;
    model.lastStats = stats;
  }
  return stats;
}

/** Stream text generated with self-contrast decoding (pieces never split a UTF-8 character; stop strings end it). */
export function scmoeGenerate(
  model: Model, prompt: string, opts: ScmoeOptions & { addSpecial?: boolean; parseSpecial?: boolean; stop?: string[] } = {},
): AsyncGenerator<string, GenerationStats> {
  const ids = model.tokenizer.encode(prompt, { addSpecial: opts.addSpecial ?? true, parseSpecial: opts.parseSpecial ?? true });
  return streamText(model, scmoeGenerateTokens(model, ids, opts), opts.stop);
}

const defaultPolicy: RoutePolicy = (_l, logits, T, E, K, router) => route(logits, T, E, K, router);

/** Rows of `a` then rows of `b` (n tokens each), padded to the wider slot count with -1. */
function stack(a: Routing, b: Routing, n: number, E: number): Routing {
  const K = Math.max(a.K, b.K);
  const ids = new Int32Array(2 * n * K).fill(-1);
  const weights = new Float32Array(2 * n * K);
  const scores = new Float32Array(2 * n * E);
  for (const [r, off] of [[a, 0], [b, n]] as const) {
    for (let t = 0; t < n; t++) {
      for (let j = 0; j < r.K; j++) {
        ids[(off + t) * K + j] = r.ids[t * r.K + j];
        weights[(off + t) * K + j] = r.weights[t * r.K + j];
      }
    }
    scores.set(r.scores, off * E);
  }
  return { K, ids, weights, scores };
}

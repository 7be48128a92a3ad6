/**
 * Inference-time routing controls (no retraining): each changes *which* experts a token uses, then
 * weighs them with the model's own rule, so the numerics stay those of `route()` (src/nn/moe.ts).
 *
 * Per token and MoE layer, in this order:
 *   1. scores s = softmax(logits) or sigmoid(logits), exactly as route(); selection order by s (+ bias)
 *   2. mask      masked experts are never selected
 *   3. select    top-k (k = `experts`, global or per layer, default the model's K), or
 *                top-p ("Harder Tasks Need More Experts", ZhenweiAn/Dynamic_MoE
 *                `top_p_sampling_batched_all_sequence`): walk the experts by probability, keep up to and
 *                including the one where the cumulative probability crosses p; clamp to [minK, maxK]
 *   4. threshold keep expert i if s_i ≥ t·s_max, always the first kMin (ik_llama.cpp PR #239 "SER",
 *                `ggml_top_k_thresh`: later entries below max·thresh become -1 in the fixed-width top-k)
 *   5. skip      MoDES-style (arXiv 2511.15690, DMT): drop a selected expert whose gate weight is below
 *                the layer's threshold τ_l; the top-1 expert is always kept
 *   6. force     forced experts are added if not selected
 *   7. weights   w_j = s_{id_j}, renormalised over the final set iff the model renormalises, × scale
 *
 * Unused slots are -1 (weight 0). The number of slots of a forward pass is the largest count of any token.
 */
import { UsageError } from '../errors.js';
import { route, type ForwardHooks, type RoutePolicy, type RouterOptions, type Routing } from '../nn/moe.js';

export interface RoutingControls {
  /** experts per token: one count for every layer, or a count per layer index (others keep the model's K) */
  experts?: number | Record<number, number>;
  /** top-p dynamic routing; minK default 1, maxK default E */
  topP?: { p: number; minK?: number; maxK?: number };
  /** threshold routing (SER): keep s_i ≥ t·s_max, at least kMin (default 1) */
  threshold?: { t: number; kMin?: number };
  /** [layer, expert] pairs never selected */
  mask?: Array<[number, number]>;
  /** [layer, expert] pairs always selected */
  force?: Array<[number, number]>;
  /** MoDES-style skipping: per-layer gate-weight thresholds (one per layer; 0 = no skipping) */
  skip?: { thresholds: number[] };
}

/** What a policy needs to know about the model to validate controls. */
export interface ModelShape {
  nLayer: number;
  /** routed experts */
  E: number;
  /** default experts per token */
  K: number;
}

/** Are any controls set? (An empty object behaves as none.) */
export function hasControls(c: RoutingControls | undefined): c is RoutingControls {
  if (!c) return false;
  return c.experts !== undefined || c.topP !== undefined || c.threshold !== undefined ||
    (c.mask?.length ?? 0) > 0 || (c.force?.length ?? 0) > 0 || c.skip !== undefined;
}

/**
 * Check controls against the model; throws UsageError naming the field. Call it where the model is known
 * (the CLI and `generate` do); `makePolicy` alone only checks what it can without the model.
 */
export function checkControls(c: RoutingControls, m: ModelShape): void {
  const bad = (field: string, why: string) => new UsageError(`routing.${field}: ${why}`);
  const layer = (field: string, l: number) => {
    if (!Number.isInteger(l) || l < 0 || l >= m.nLayer) throw bad(field, `layer ${l} is outside 0..${m.nLayer - 1} (the model has ${m.nLayer} layers)`);
  };
  const count = (field: string, k: number) => {
    if (!Number.isInteger(k) || k < 1 || k > m.E) throw bad(field, `expects an integer in 1..${m.E} (the model has ${m.E} routed experts), got ${k}`);
  };
  checkShape(c);
  if (typeof c.experts === 'number') count('experts', c.experts);
  else if (c.experts) for (const [l, k] of Object.entries(c.experts)) { layer('experts', Number(l)); count(`experts[${l}]`, k); }
  if (c.topP) {
    if (c.topP.minK !== undefined) count('topP.minK', c.topP.minK);
    if (c.topP.maxK !== undefined) count('topP.maxK', c.topP.maxK);
  }
  if (c.threshold?.kMin !== undefined) count('threshold.kMin', c.threshold.kMin);
  for (const [name, list] of [['mask', c.mask], ['force', c.force]] as const) {
    for (const [l, e] of list ?? []) {
      layer(name, l);
      if (!Number.isInteger(e) || e < 0 || e >= m.E) throw bad(name, `expert ${e} (layer ${l}) is outside 0..${m.E - 1}`);
    }
  }
  if (c.skip && c.skip.thresholds.length !== m.nLayer) {
    throw bad('skip.thresholds', `has ${c.skip.thresholds.length} entries but the model has ${m.nLayer} layers; give one per layer (0 = no skipping), e.g. from \`moekit calibrate\``);
  }
}

/** Model-independent checks (ranges, conflicts). */
function checkShape(c: RoutingControls): void {
  const bad = (field: string, why: string) => new UsageError(`routing.${field}: ${why}`);
  if (c.topP) {
    const { p, minK = 1, maxK } = c.topP;
    if (!(p > 0 && p <= 1)) throw bad('topP.p', `must be in (0, 1], got ${p}`);
    if (!Number.isInteger(minK) || minK < 1) throw bad('topP.minK', `must be an integer ≥ 1, got ${minK}`);
    if (maxK !== undefined && (!Number.isInteger(maxK) || maxK < minK)) throw bad('topP.maxK', `must be an integer ≥ minK (${minK}), got ${maxK}`);
    if (c.experts !== undefined) throw bad('experts', 'cannot be combined with topP (top-p picks the count); bound it with topP.minK / topP.maxK');
  }
  if (c.threshold) {
    const { t, kMin = 1 } = c.threshold;
    if (!(t >= 0 && t <= 1)) throw bad('threshold.t', `must be in [0, 1], got ${t}`);
    if (!Number.isInteger(kMin) || kMin < 1) throw bad('threshold.kMin', `must be an integer ≥ 1, got ${kMin}`);
  }
  if (c.skip) {
    if (!Array.isArray(c.skip.thresholds)) throw bad('skip.thresholds', 'must be an array with one threshold per layer');
    c.skip.thresholds.forEach((v, i) => {
      if (!(typeof v === 'number' && v >= 0 && Number.isFinite(v))) throw bad(`skip.thresholds[${i}]`, `must be a finite number ≥ 0, got ${v}`);
    });
  }
  const masked = new Set((c.mask ?? []).map(([l, e]) => `${l}:${e}`));
  for (const [l, e] of c.force ?? []) if (masked.has(`${l}:${e}`)) throw bad('force', `expert ${l}:${e} is both masked and forced`);
}

/** Build a RoutePolicy from controls. Neutral controls give exactly the weights of `route()`. */
export function makePolicy(c: RoutingControls): RoutePolicy {
  checkShape(c);
  const perLayer = typeof c.experts === 'object' ? new Map(Object.entries(c.experts).map(([l, k]) => [Number(l), k])) : undefined;
  const masks = groupByLayer(c.mask);
  const forces = groupByLayer(c.force);
  return (layer, logits, T, E, K, router) => {
    const k = typeof c.experts === 'number' ? c.experts : (perLayer?.get(layer) ?? K);
    const mask = masks.get(layer);
    const force = forces.get(layer);
    const tau = c.skip?.thresholds[layer] ?? 0;
    // scores exactly as route() computes them (K = 0: scores only)
    const { scores } = route(logits, T, E, 0, router);
    const order = new Int32Array(E);
    const sel = new Float32Array(E);
    const chosen: number[][] = [];
    let maxSlots = 0;
    for (let t = 0; t < T; t++) {
      const s = scores.subarray(t * E, (t + 1) * E);
      for (let e = 0; e < E; e++) sel[e] = s[e] + (router.selectionBias ? router.selectionBias[e] : 0);
      sortDescending(order, sel);
      // 2-3: candidates in rank order, minus masked experts
      const cand: number[] = [];
      for (let j = 0; j < E; j++) if (!mask?.has(order[j])) cand.push(order[j]);
      let ids: number[];
      if (c.topP) ids = topPSelect(cand, s, c.topP.p, c.topP.minK ?? 1, c.topP.maxK ?? E, router);
      else ids = cand.slice(0, k);
      // 4: SER threshold relative to the best selected score
      if (c.threshold && ids.length > 0) {
        const kMin = c.threshold.kMin ?? 1;
        const cut = c.threshold.t * s[ids[0]];
        ids = ids.filter((id, j) => j < kMin || s[id] >= cut);
      }
      // 5: skipping compares the gate weight the expert would get in this selection
      if (tau > 0 && ids.length > 1) {
        const w = gateWeights(ids, s, router);
        ids = ids.filter((_, j) => j === 0 || w[j] >= tau);
      }
      // 6
      if (force) for (const e of force) if (!ids.includes(e)) ids.push(e);
      chosen.push(ids);
      maxSlots = Math.max(maxSlots, ids.length);
    }
    return pack(chosen, scores, T, E, maxSlots, router);
  };
}

/** Top-p: experts by descending probability until the cumulative probability reaches p (that one included). */
function topPSelect(cand: number[], s: Float32Array, p: number, minK: number, maxK: number, router: RouterOptions): number[] {
  // sigmoid scores do not sum to 1: the cumulative share is taken of their sum
  let total = 1;
  if (router.scoring === 'sigmoid') { total = 0; for (let e = 0; e < s.length; e++) total += s[e]; }
  const out: number[] = [];
  let cum = 0;
  for (const id of cand) {
    if (out.length >= maxK) break;
    if (out.length >= minK && cum >= p * total) break; // Dynamic_MoE keeps j while cum_{j-1} < p
    out.push(id);
    cum += s[id];
  }
  return out;
}

/** The model's weights for the experts `ids` (rank order): as route() computes them. */
function gateWeights(ids: number[], s: Float32Array, router: RouterOptions): Float32Array {
  const w = new Float32Array(ids.length);
  let sum = 0;
  for (let j = 0; j < ids.length; j++) { w[j] = s[ids[j]]; sum += w[j]; }
  if (router.normalize) for (let j = 0; j < ids.length; j++) w[j] = Math.fround(w[j] / Math.fround(sum));
  if (router.scale !== 1) for (let j = 0; j < ids.length; j++) w[j] = Math.fround(w[j] * router.scale);
  return w;
}

function pack(chosen: number[][], scores: Float32Array, T: number, E: number, K: number, router: RouterOptions): Routing {
  const ids = new Int32Array(T * K).fill(-1);
  const weights = new Float32Array(T * K);
  for (let t = 0; t < T; t++) {
    const c = chosen[t];
    const w = gateWeights(c, scores.subarray(t * E, (t + 1) * E), router);
    for (let j = 0; j < c.length; j++) { ids[t * K + j] = c[j]; weights[t * K + j] = w[j]; }
  }
  return { K, ids, weights, scores };
}

/** order ← expert ids sorted by descending value; ties go to the lower id (as route()'s repeated max). */
function sortDescending(order: Int32Array, v: Float32Array): void {
  for (let e = 0; e < order.length; e++) order[e] = e;
  order.sort((a, b) => (v[b] - v[a]) || (a - b));
}

function groupByLayer(pairs: Array<[number, number]> | undefined): Map<number, Set<number>> {
  const m = new Map<number, Set<number>>();
  for (const [l, e] of pairs ?? []) {
    if (!m.has(l)) m.set(l, new Set());
    m.get(l)!.add(e);
  }
  return m;
}

/**
 * SCMoE's weak routing (DavidFanzz/SCMoE, patched `modeling_deepseek.py` MoEGate: sort the softmax, take
 * the chosen rank positions, normalise only if the model does): only the expert at 0-based `rank`.
 */
export function rankPolicy(rank: number): RoutePolicy {
  if (!Number.isInteger(rank) || rank < 0) throw new UsageError(`scmoe rank must be an integer ≥ 0, got ${rank}`);
  return (_layer, logits, T, E, _K, router) => {
    if (rank >= E) throw new UsageError(`scmoe rank ${rank} is outside 0..${E - 1} (the model has ${E} routed experts)`);
    const { scores } = route(logits, T, E, 0, router);
    const order = new Int32Array(E);
    const sel = new Float32Array(E);
    const chosen: number[][] = [];
    for (let t = 0; t < T; t++) {
      for (let e = 0; e < E; e++) sel[e] = scores[t * E + e] + (router.selectionBias ? router.selectionBias[e] : 0);
      sortDescending(order, sel);
      chosen.push([order[rank]]);
    }
    return pack(chosen, scores, T, E, 1, router);
  };
}

/**
 * Hooks that apply `c` on a model with hyper-parameters `hp` (checked first), keeping any observer and
 * replacing any policy in `hooks`. What `generate(prompt, { routing })` uses.
 */
export function routingHooks(c: RoutingControls, hp: { nLayer: number; nExpert: number; nExpertUsed: number }, hooks: ForwardHooks = {}): ForwardHooks {
  if (!hasControls(c)) return hooks;
  checkControls(c, { nLayer: hp.nLayer, E: hp.nExpert, K: hp.nExpertUsed });
  return { ...hooks, routePolicy: makePolicy(c) };
}

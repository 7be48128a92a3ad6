/**
 * The shared MoE block: router variants, the routed experts (one fused backend call over the selected
 * experts only), shared experts with an optional sigmoid gate, and the dense SwiGLU FFN they reuse.
 *
 * Router variants (../shared/research/algorithms.md §2.1, llama.cpp `build_moe_ffn`):
 *   softmax → top-k → (renormalise?) → ×scale     Mixtral / Qwen3-MoE renormalise; OLMoE, Qwen2-MoE, DeepSeek-V1 do not
 *   sigmoid (+ selection-only bias) → top-k → …     DeepSeek-V3 style (scores unbiased, bias used only to pick)
 * Top-k-then-softmax (Mixtral's HF code) equals softmax-then-top-k-then-renormalise; we compute the latter,
 * as llama.cpp does, so the numerics match it.
 */
import type { Backend, MatmulsArgs } from '../backend/backend.js';
import type { Tensor } from '../tensor.js';
import { siluMul, sigmoid, softmax } from './ops.js';
import { Workspace } from './workspace.js';

export interface RouterOptions {
  /** how router logits become scores: softmax over all E, or independent sigmoids */
  scoring: 'softmax' | 'sigmoid';
  /** renormalise the K selected weights to sum to 1 */
  normalize: boolean;
  /** multiply the final weights (DeepSeek-V2/V3 `routed_scaling_factor`); 1 = off */
  scale: number;
  /** added to scores for *selection only* (DeepSeek-V3 `e_score_correction_bias`); [E] */
  selectionBias?: Float32Array;
}

export interface Routing {
  /** slots per token (a policy may use more or fewer than the model's default, padding with -1) */
  K: number;
  /** [T, K] selected experts, best first; -1 = unused slot */
  ids: Int32Array;
  /** [T, K] gate weights */
  weights: Float32Array;
  /** [T, E] scores before selection (softmax probabilities or sigmoids) */
  scores: Float32Array;
}

/** Pure routing function: router logits [T, E] → top-K experts and weights per token. */
export function route(logits: Float32Array, T: number, E: number, K: number, o: RouterOptions): Routing {
  const r: Routing = { K, ids: new Int32Array(T * K), weights: new Float32Array(T * K), scores: new Float32Array(T * E) };
  routeInto(r, logits, T, E, o, new Float32Array(E));
  return r;
}

/**
 * `route` into the arrays of `r` (ids/weights [T, r.K], scores [T, E], all overwritten); sel: [E] scratch.
 * With a backend that has `routeSoftmax`, softmax routing over E % 16 == 0 experts runs there (the same bits).
 */
function routeInto(r: Routing, logits: Float32Array, T: number, E: number, o: RouterOptions, sel: Float32Array, be?: Backend): void {
  const { K, ids, weights, scores } = r;
  const bias = o.selectionBias;
  const softmaxScoring = o.scoring === 'softmax';
  if (be?.routeSoftmax && softmaxScoring && E % 16 === 0) {
    be.routeSoftmax({ logits, T, E, K, normalize: o.normalize, scale: o.scale, bias, ids, weights, scores });
    return;
  }
  for (let t = 0; t < T; t++) {
    if (softmaxScoring) softmax(scores, logits, E, t * E, t * E);
    else for (let e = 0; e < E; e++) scores[t * E + e] = Math.fround(sigmoid(logits[t * E + e]));
    for (let e = 0; e < E; e++) sel[e] = scores[t * E + e] + (bias ? bias[e] : 0);
    // top-K by repeated max: K ≤ E is small (≤ 16 in practice); ties go to the lower id.
    let sum = 0;
    for (let j = 0; j < K; j++) {
      let best = -1;
      let bestV = -Infinity;
      for (let e = 0; e < E; e++) if (sel[e] > bestV) { bestV = sel[e]; best = e; }
      ids[t * K + j] = best;
      weights[t * K + j] = scores[t * E + best];
      sum += weights[t * K + j];
      sel[best] = -Infinity;
    }
    if (o.normalize) for (let j = 0; j < K; j++) weights[t * K + j] = Math.fround(weights[t * K + j] / Math.fround(sum));
    if (o.scale !== 1) for (let j = 0; j < K; j++) weights[t * K + j] = Math.fround(weights[t * K + j] * o.scale);
  }
}

/** SwiGLU FFN weights: gate/up [F, D], down [D, F]. */
export interface FfnWeights {
  gate: Tensor;
  up: Tensor;
  down: Tensor;
}

/** y[T, D] = down( silu(gate·x) ⊙ up·x ). With a workspace, intermediates and y are its buffers. */
export function denseFfn(be: Backend, x: Float32Array, T: number, w: FfnWeights, ws: Workspace = new Workspace()): Float32Array {
  const F = w.gate.shape[0];
  const g = ws.f32('ffn.g', T * F);
  const u = ws.f32('ffn.u', T * F);
  be.matmuls({ x, outs: [{ y: g, w: w.gate }, { y: u, w: w.up }], T });
  return denseFfnDown(be, g, u, T, w, ws);
}

/** The rest of denseFfn, given g = gate·x and u = up·x: down(silu(g) ⊙ u). */
function denseFfnDown(be: Backend, g: Float32Array, u: Float32Array, T: number, w: FfnWeights, ws: Workspace): Float32Array {
  const [F, D] = w.gate.shape;
  siluMul(g, u, F);
  const y = ws.f32('ffn.y', T * D);
  be.matmul({ y, x: g, w: w.down, T });
  return y;
}

export interface MoeWeights {
  /** [E, D] router, usually F32 */
  router: Tensor;
  /** [E, F, D] */
  gateExps: Tensor;
  /** [E, F, D] */
  upExps: Tensor;
  /** [E, D, F] */
  downExps: Tensor;
  /** always-on shared expert(s), concatenated into one FFN (DeepSeekMoE, Qwen2-MoE) */
  shared?: FfnWeights;
  /** [1, D] sigmoid gate on the shared expert output (Qwen2-MoE `shared_expert_gate`) */
  sharedGate?: Tensor;
}

export interface MoeOptions {
  /** experts per token */
  K: number;
  router: RouterOptions;
}

/** Observer for routing decisions (traces, analytics). Called once per MoE layer per forward. */
export type RoutingObserver = (layer: number, r: Routing, T: number) => void;

/**
 * Replaces the model's routing for one forward pass (inference-time steering: top-k/top-p/threshold,
 * masks, skipping, …). Gets the raw router logits [T, E] and the model's own router options; must return
 * a valid Routing (ids in [-1, E)). The default is `route(logits, T, E, K, router)`.
 */
export type RoutePolicy = (layer: number, logits: Float32Array, T: number, E: number, K: number, router: RouterOptions) => Routing;

/** Per-forward hooks: observe and/or steer routing. */
export interface ForwardHooks {
  onRouting?: RoutingObserver;
  routePolicy?: RoutePolicy;
}

/**
 * The MoE FFN: y = Σ_j w_j·E_{id_j}(x) [+ σ(x·w_sg)·Shared(x)]. x: [T, D] → [T, D].
 * With a workspace `ws`, y and the intermediates are its buffers (valid until its next use); the routing
 * too when `scratchRouting` (the caller passes the routing to no one who keeps it). A policy always gets
 * router logits of its own.
 */
export function moeFfn(
  be: Backend,
  x: Float32Array,
  T: number,
  w: MoeWeights,
  o: MoeOptions,
  layer = 0,
  policy?: RoutePolicy,
  ws: Workspace = new Workspace(),
  scratchRouting = false,
): { y: Float32Array; routing: Routing } {
  const [E, D] = w.router.shape;
  const logits = policy ? new Float32Array(T * E) : ws.f32('moe.logits', T * E);
  // the router and the shared expert's input products (gate, up, sigmoid gate) all read x: one pass
  const outs: MatmulsArgs['outs'] = [{ y: logits, w: w.router }];
  let sg: Float32Array | undefined, su: Float32Array | undefined, gl: Float32Array | undefined;
  if (w.shared) {
    const F = w.shared.gate.shape[0];
    sg = ws.f32('moe.sg', T * F);
    su = ws.f32('moe.su', T * F);
    outs.push({ y: sg, w: w.shared.gate }, { y: su, w: w.shared.up });
    if (w.sharedGate) {
      gl = ws.f32('moe.gl', T);
      outs.push({ y: gl, w: w.sharedGate });
    }
  }
  be.matmuls({ x, outs, T });
  let routing: Routing;
  if (policy) routing = policy(layer, logits, T, E, o.K, o.router);
  else if (scratchRouting) {
    const K = o.K;
    routing = { K, ids: ws.i32('moe.ids', T * K), weights: ws.f32('moe.weights', T * K), scores: ws.f32('moe.scores', T * E) };
    routeInto(routing, logits, T, E, o.router, ws.f32('moe.sel', E), be);
  } else {
    const K = o.K;
    routing = { K, ids: new Int32Array(T * K), weights: new Float32Array(T * K), scores: new Float32Array(T * E) };
    routeInto(routing, logits, T, E, o.router, new Float32Array(E), be);
  }
  const y = ws.f32('moe.y', T * D);
  be.moeFfn({ out: y, x, gate: w.gateExps, up: w.upExps, down: w.downExps, ids: routing.ids, weights: routing.weights, T, K: routing.K });
  if (w.shared) {
    const s = denseFfnDown(be, sg!, su!, T, w.shared, ws);
    if (gl) {
      for (let t = 0; t < T; t++) {
        const g = Math.fround(sigmoid(gl[t]));
        for (let i = 0; i < D; i++) y[t * D + i] += Math.fround(s[t * D + i] * g);
      }
    } else {
      for (let i = 0; i < y.length; i++) y[i] += s[i];
    }
  }
  return { y, routing };
}

/**
 * Training-time routers and their losses, as forward/backward pairs over router logits [T, R]
 * (R = E routed experts + N null experts). Formulas: ../shared/research/algorithms.md §2.
 *
 *  - softmax → top-k, with or without renormalisation (§2.1 variants B/C; OLMoE/Qwen2-MoE: none);
 *  - sigmoid → top-k on s + b, weights from the unbiased s (DeepSeek-V3 `Gate`, §2.2); b is a buffer
 *    updated once per step by `router_bias_update` (b_i += γ·sign(mean c − c_i), DeepSeek-V3 paper /
 *    Megatron `_update_router_expert_bias`), never by gradient;
 *  - top-p: keep experts in descending p up to and including the one whose cumulative p crosses P
 *    (Dynamic_MoE `top_p_sampling_batched_all_sequence`), capped at maxK;
 *  - null experts (AdaMoE, §2.9): R − E extra router outputs whose expert output is zero;
 *  - capacity: C = ceil(T·k/E·cf) per expert (Megatron `get_capacity`), drop by position (earlier
 *    tokens win); cf = 0 is dropless. Weights are computed before dropping (a dropped slot just
 *    contributes nothing), as in Megatron.
 * Losses (summed over layers by the model):
 *  - load balancing α·E·Σ_i f_i·P_i with f_i per `lbNorm` (§2.3 table): 'megatron' f=c_i/(T·k)
 *    (= OLMo-core's E/k scaling; balanced value α), 'hf' f=c_i/T (balanced α·k), 'gshard' top-1
 *    mask only (DeepSpeed/fairseq/Tutel; balanced α). P_i is the mean softmax probability over all R
 *    outputs; sigmoid scores are row-normalised first (OLMo-core). Null experts count as one
 *    averaged bucket (AdaMoE). Counts carry no gradient;
 *  - router z-loss c_z·mean_t logsumexp(l_t)² (ST-MoE, §2.4).
 */
export interface RouterConfig {
  scoring: 'softmax' | 'sigmoid';
  /** experts per token (top-p: the cap maxK) */
  K: number;
  /** renormalise the selected weights to sum to 1 */
  normalize: boolean;
  /** multiply the final weights (DeepSeek `routed_scaling_factor`); default 1 */
  scale?: number;
  /** top-p dynamic routing threshold (softmax only); undefined = plain top-k */
  topP?: number;
  /** AdaMoE null experts (zero output); default 0 */
  nullExperts?: number;
  /** capacity factor; 0 or undefined = dropless */
  capacityFactor?: number;
  /** aux-loss-free bias update rate γ (sigmoid or softmax); 0 = off */
  biasRate?: number;
  /** load-balancing loss coefficient α; 0 = off */
  lbCoef?: number;
  lbNorm?: 'megatron' | 'hf' | 'gshard';
  /** router z-loss coefficient; 0 = off */
  zCoef?: number;
}

export interface RouteResult {
  /** slots per token */
  K: number;
  /** [T, K] selected router outputs (may be ≥ E for null experts); −1 = no slot */
  ids: Int32Array;
  /** [T, K] gate weights (before dropping) */
  weights: Float32Array;
  /** [T, K] 1 when the slot survives the capacity limit and is a real expert */
  keep: Uint8Array;
  /** [T, R] softmax probabilities or sigmoids */
  scores: Float32Array;
  /** [T] Σ of the selected scores (renormalisation denominator) */
  denom: Float32Array;
  /** [R] assignments per router output before dropping (for the bias update and the LB loss) */
  counts: Float64Array;
  /** [R] top-1 assignments */
  counts1: Float64Array;
  /** slots dropped by the capacity limit */
  dropped: number;
  lb: number;
  z: number;
}

/** Select experts from logits [T, R]; `bias` [R] is added for selection only. */
export function router_forward(logits: Float32Array, T: number, R: number, E: number, c: RouterConfig, bias?: Float32Array): RouteResult {
  const K = c.topP !== undefined ? Math.min(c.K, R) : c.K;
  const ids = new Int32Array(T * K).fill(-1);
  const weights = new Float32Array(T * K);
  const keep = new Uint8Array(T * K);
  const scores = new Float32Array(T * R);
  const denom = new Float32Array(T);
  const counts = new Float64Array(R);
  const counts1 = new Float64Array(R);
  const sel = new Float64Array(R);
  const scale = c.scale ?? 1;
  for (let t = 0; t < T; t++) {
    const o = t * R;
    if (c.scoring === 'softmax') {
      let max = -Infinity;
      for (let i = 0; i < R; i++) if (logits[o + i] > max) max = logits[o + i];
      let sum = 0;
      for (let i = 0; i < R; i++) sum += Math.exp(logits[o + i] - max);
      for (let i = 0; i < R; i++) scores[o + i] = Math.exp(logits[o + i] - max) / sum;
    } else {
      for (let i = 0; i < R; i++) scores[o + i] = 1 / (1 + Math.exp(-logits[o + i]));
    }
    for (let i = 0; i < R; i++) sel[i] = scores[o + i] + (bias ? bias[i] : 0);
    let s = 0;
    let cum = 0;
    for (let j = 0; j < K; j++) {
      if (c.topP !== undefined && j > 0 && cum >= c.topP) break; // keep up to and including the crossing expert
      let best = -1;
      let bv = -Infinity;
      for (let i = 0; i < R; i++) if (sel[i] > bv) { bv = sel[i]; best = i; } // ties → lower id
      sel[best] = -Infinity;
      ids[t * K + j] = best;
      s += scores[o + best];
      cum += scores[o + best];
      counts[best]++;
      if (j === 0) counts1[best]++;
    }
    denom[t] = s;
    for (let j = 0; j < K; j++) {
      const id = ids[t * K + j];
      if (id < 0) break;
      weights[t * K + j] = (c.normalize ? scores[o + id] / s : scores[o + id]) * scale;
    }
  }
  // capacity (position policy) and null experts
  const cf = c.capacityFactor ?? 0;
  const cap = cf > 0 ? Math.ceil(((T * c.K) / E) * cf) : Infinity;
  const used = new Float64Array(R);
  let dropped = 0;
  for (let t = 0; t < T; t++) {
    for (let j = 0; j < K; j++) {
      const id = ids[t * K + j];
      if (id < 0 || id >= E) continue;
      if (used[id] < cap) { used[id]++; keep[t * K + j] = 1; } else dropped++;
    }
  }
  const r: RouteResult = { K, ids, weights, keep, scores, denom, counts, counts1, dropped, lb: 0, z: 0 };
  r.lb = lb_loss_forward(r, logits, T, R, E, c);
  r.z = zloss_forward(logits, T, R, c.zCoef ?? 0);
  return r;
}

/** LB weights d(LB)/dP_i = α·E·f_i, with the null experts' f and P averaged into one bucket. */
function lbFactors(r: RouteResult, T: number, R: number, E: number, c: RouterConfig): Float64Array {
  const alpha = c.lbCoef ?? 0;
  const f = new Float64Array(R);
  if (alpha === 0) return f;
  const norm = c.lbNorm ?? 'megatron';
  for (let i = 0; i < R; i++) {
    f[i] = norm === 'gshard' ? r.counts1[i] / T : norm === 'hf' ? r.counts[i] / T : r.counts[i] / (T * c.K);
  }
  const N = R - E;
  if (N > 0) {
    // one bucket: f̄·P̄ with f̄, P̄ the means over nulls → ∂/∂P_i = f̄/N for each null
    let fb = 0;
    for (let i = E; i < R; i++) fb += f[i] / N;
    for (let i = E; i < R; i++) f[i] = fb / N;
  }
  // the multiplier is the number of balanced buckets
  const buckets = N > 0 ? E + 1 : E;
  for (let i = 0; i < R; i++) f[i] *= alpha * buckets;
  return f;
}

/** P_i: mean softmax probability, or mean of row-normalised sigmoids. */
function meanProbs(r: RouteResult, T: number, R: number, c: RouterConfig): Float64Array {
  const P = new Float64Array(R);
  for (let t = 0; t < T; t++) {
    let s = 1;
    if (c.scoring === 'sigmoid') { s = 0; for (let i = 0; i < R; i++) s += r.scores[t * R + i]; }
    for (let i = 0; i < R; i++) P[i] += r.scores[t * R + i] / s / T;
  }
  return P;
}

export function lb_loss_forward(r: RouteResult, _logits: Float32Array, T: number, R: number, E: number, c: RouterConfig): number {
  if (!(c.lbCoef ?? 0)) return 0;
  const f = lbFactors(r, T, R, E, c);
  const P = meanProbs(r, T, R, c);
  let l = 0;
  for (let i = 0; i < R; i++) l += f[i] * P[i];
  return l;
}

export function zloss_forward(logits: Float32Array, T: number, R: number, cz: number): number {
  if (!cz) return 0;
  let l = 0;
  for (let t = 0; t < T; t++) {
    const lse = logsumexp(logits, t * R, R);
    l += lse * lse;
  }
  return (cz * l) / T;
}

function logsumexp(x: Float32Array, o: number, n: number): number {
  let max = -Infinity;
  for (let i = 0; i < n; i++) if (x[o + i] > max) max = x[o + i];
  let s = 0;
  for (let i = 0; i < n; i++) s += Math.exp(x[o + i] - max);
  return max + Math.log(s);
}

/**
 * dlogits[T, R] += ∂/∂logits of (the routed output through the gate weights, given dweights [T, K],
 * + lossScale·(LB + z)). dweights of dropped and null slots must be 0 (they affect nothing).
 */
export function router_backward(dlogits: Float32Array, dweights: Float32Array, r: RouteResult, logits: Float32Array, T: number, R: number, E: number, c: RouterConfig, lossScale = 1): void {
  const { K, ids, scores, denom } = r;
  const scale = c.scale ?? 1;
  const ds = new Float64Array(R);
  const f = lbFactors(r, T, R, E, c);
  const lbOn = (c.lbCoef ?? 0) !== 0;
  const cz = c.zCoef ?? 0;
  for (let t = 0; t < T; t++) {
    const o = t * R;
    ds.fill(0);
    // gate weights: w_j = scale·s_j (/ Σ_S s)
    if (c.normalize) {
      let gdot = 0;
      for (let j = 0; j < K; j++) {
        const id = ids[t * K + j];
        if (id < 0) break;
        gdot += dweights[t * K + j] * scale * (scores[o + id] / denom[t]);
      }
      for (let j = 0; j < K; j++) {
        const id = ids[t * K + j];
        if (id < 0) break;
        ds[id] += (dweights[t * K + j] * scale - gdot) / denom[t];
      }
    } else {
      for (let j = 0; j < K; j++) {
        const id = ids[t * K + j];
        if (id < 0) break;
        ds[id] += dweights[t * K + j] * scale;
      }
    }
    // LB: ∂/∂P_i = f_i, P_i = mean_t q_{t,i}
    if (lbOn) {
      if (c.scoring === 'softmax') {
        for (let i = 0; i < R; i++) ds[i] += (lossScale * f[i]) / T;
      } else {
        let S = 0;
        for (let i = 0; i < R; i++) S += scores[o + i];
        let qd = 0;
        for (let i = 0; i < R; i++) qd += (f[i] / T) * (scores[o + i] / S);
        for (let i = 0; i < R; i++) ds[i] += (lossScale * (f[i] / T - qd)) / S;
      }
    }
    // scores → logits
    if (c.scoring === 'softmax') {
      let pd = 0;
      for (let i = 0; i < R; i++) pd += scores[o + i] * ds[i];
      for (let i = 0; i < R; i++) dlogits[o + i] += scores[o + i] * (ds[i] - pd);
    } else {
      for (let i = 0; i < R; i++) dlogits[o + i] += ds[i] * scores[o + i] * (1 - scores[o + i]);
    }
    // z-loss: ∂/∂l = 2·c_z·lse·softmax(l)/T
    if (cz) {
      const lse = logsumexp(logits, o, R);
      for (let i = 0; i < R; i++) dlogits[o + i] += (lossScale * 2 * cz * lse * Math.exp(logits[o + i] - lse)) / T;
    }
  }
}

/**
 * Aux-loss-free balancing (DeepSeek-V3 §2.1.2; Megatron `_update_router_expert_bias`, OLMo-core
 * `bias_gamma`): b_i += γ·sign(mean_j c_j − c_i) over the routed experts, with c the step's counts.
 */
export function router_bias_update(bias: Float32Array, counts: ArrayLike<number>, E: number, gamma: number): void {
  let mean = 0;
  for (let i = 0; i < E; i++) mean += counts[i] / E;
  for (let i = 0; i < E; i++) bias[i] += gamma * Math.sign(mean - counts[i]);
}

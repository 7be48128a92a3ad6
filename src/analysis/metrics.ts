/**
 * Routing statistics over one layer of a trace (../shared/research/algorithms.md §5.3) and super-expert
 * detection (§5.2). Letters: T tokens, K slots per token (-1 = unused), E experts.
 */

export interface LoadStats {
  /** [E] tokens whose selection contains e */
  counts: number[];
  /** [E] counts / Σ counts */
  shares: number[];
  /** population std / mean of counts */
  cv: number;
  /** max count / mean count (MaxVio + 1) */
  maxOverMean: number;
  /** entropy (nats) of the load distribution shares */
  loadEntropy: number;
  /** mean selected experts per token */
  activePerToken: number;
}

/** ids: [T, K] of one layer. */
export function loadStats(ids: ArrayLike<number>, T: number, K: number, E: number): LoadStats {
  const counts = new Array<number>(E).fill(0);
  let total = 0;
  for (let i = 0; i < T * K; i++) if (ids[i] >= 0) { counts[ids[i]]++; total++; }
  const mean = total / E;
  let varSum = 0;
  let max = 0;
  for (const c of counts) { varSum += (c - mean) ** 2; max = Math.max(max, c); }
  const shares = counts.map((c) => (total > 0 ? c / total : 0));
  let h = 0;
  for (const p of shares) if (p > 0) h -= p * Math.log(p);
  return {
    counts,
    shares,
    cv: mean > 0 ? Math.sqrt(varSum / E) / mean : 0,
    maxOverMean: mean > 0 ? max / mean : 0,
    loadEntropy: h,
    activePerToken: T > 0 ? total / T : 0,
  };
}

/** Co-activation [E, E]: C[i][j] = #{t : i ∈ S_t ∧ j ∈ S_t}; the diagonal is the load c_i. */
export function coactivation(ids: ArrayLike<number>, T: number, K: number, E: number): number[][] {
  const C = Array.from({ length: E }, () => new Array<number>(E).fill(0));
  for (let t = 0; t < T; t++) {
    for (let a = 0; a < K; a++) {
      const i = ids[t * K + a];
      if (i < 0) continue;
      for (let b = 0; b < K; b++) {
        const j = ids[t * K + b];
        if (j >= 0) C[i][j]++;
      }
    }
  }
  return C;
}

export interface Transition {
  /** D[i][j] = #{t : i ∈ S_t^l ∧ j ∈ S_t^{l+1}} */
  counts: number[][];
  /**
   * How well layer l's experts predict layer l+1's: for each token, predict the K experts j with the
   * largest Σ_{i∈S_t^l} D[i][j] and score |prediction ∩ S_t^{l+1}| / |S_t^{l+1}|, averaged over tokens
   * (D is estimated on the same trace, so this is an in-sample upper estimate).
   */
  precision: number;
  /** the same score for the static guess "the K most loaded experts of layer l+1" */
  baseline: number;
}

export function transition(a: ArrayLike<number>, b: ArrayLike<number>, T: number, K: number, E: number): Transition {
  const D = Array.from({ length: E }, () => new Array<number>(E).fill(0));
  for (let t = 0; t < T; t++) {
    for (let x = 0; x < K; x++) {
      const i = a[t * K + x];
      if (i < 0) continue;
      for (let y = 0; y < K; y++) { const j = b[t * K + y]; if (j >= 0) D[i][j]++; }
    }
  }
  const load = loadStats(b, T, K, E).counts;
  const popular = topK(load, K);
  const score = new Float64Array(E);
  let prec = 0;
  let base = 0;
  let n = 0;
  for (let t = 0; t < T; t++) {
    const actual = new Set<number>();
    for (let y = 0; y < K; y++) if (b[t * K + y] >= 0) actual.add(b[t * K + y]);
    if (actual.size === 0) continue;
    score.fill(0);
    for (let x = 0; x < K; x++) { const i = a[t * K + x]; if (i >= 0) for (let j = 0; j < E; j++) score[j] += D[i][j]; }
    prec += topK(score, actual.size).filter((j) => actual.has(j)).length / actual.size;
    base += popular.slice(0, actual.size).filter((j) => actual.has(j)).length / actual.size;
    n++;
  }
  return { counts: D, precision: n ? prec / n : 0, baseline: n ? base / n : 0 };
}

/** Indices of the k largest values, ties to the lower index. */
function topK(v: ArrayLike<number>, k: number): number[] {
  return Array.from({ length: v.length }, (_, i) => i)
    .sort((x, y) => v[y] - v[x] || x - y)
    .slice(0, k);
}

/** Router entropy summary of one layer: mean over tokens, and that mean divided by log E. */
export function entropyStats(h: ArrayLike<number>, E: number): { mean: number; normalized: number } {
  let s = 0;
  for (let i = 0; i < h.length; i++) s += h[i];
  const mean = h.length ? s / h.length : 0;
  return { mean, normalized: E > 1 ? mean / Math.log(E) : 0 };
}

export interface SuperExpertResult {
  /** decoder layers considered: index < round(0.75 · nLayer) (Python rounding) */
  layerLimit: number;
  /** 99.5th percentile (linear interpolation) of the considered output maxima */
  p995: number;
  /** floor(max / 10) over the considered output maxima */
  maxOver10: number;
  max: number;
  experts: Array<{ layer: number; expert: number; outputMax: number }>;
}

/**
 * Super experts (Su et al. 2025, `_identify_super_experts(quantile=99.5, times=10)`): (layer, expert)
 * with output_max > P99.5 of all considered output_max values and output_max > max // 10, where only
 * layers with index < round(0.75·nLayer) are considered (`--include_layers 0.75`).
 * expertMax: [L, E] in trace-layer order; layers: decoder index of each trace layer.
 */
export function superExperts(expertMax: ArrayLike<number>, layers: number[], E: number, nLayer: number): SuperExpertResult {
  const layerLimit = roundHalfEven(0.75 * nLayer);
  const vals: Array<{ layer: number; expert: number; outputMax: number }> = [];
  layers.forEach((layer, li) => {
    if (layer >= layerLimit) return;
    for (let e = 0; e < E; e++) vals.push({ layer, expert: e, outputMax: expertMax[li * E + e] });
  });
  if (vals.length === 0) return { layerLimit, p995: 0, maxOver10: 0, max: 0, experts: [] };
  const sorted = vals.map((v) => v.outputMax).sort((a, b) => a - b);
  const p995 = percentile(sorted, 99.5);
  const max = sorted[sorted.length - 1];
  const maxOver10 = Math.floor(max / 10);
  const experts = vals.filter((v) => v.outputMax > p995 && v.outputMax > maxOver10).sort((a, b) => b.outputMax - a.outputMax);
  return { layerLimit, p995, maxOver10, max, experts };
}

/** numpy.percentile's default (linear) on ascending values. */
export function percentile(sorted: number[], q: number): number {
  const pos = (q / 100) * (sorted.length - 1);
  const lo = Math.floor(pos);
  const hi = Math.min(lo + 1, sorted.length - 1);
  return sorted[lo] + (sorted[hi] - sorted[lo]) * (pos - lo);
}

/** Python's round(): halves go to the even neighbour. */
export function roundHalfEven(x: number): number {
  const f = Math.floor(x);
  const d = x - f;
  if (d > 0.5) return f + 1;
  if (d < 0.5) return f;
  return f % 2 === 0 ? f : f + 1;
}

/**
 * Local routing consistency and expert-cache simulations, following ljcleo/moe-lrc (arXiv 2505.16056):
 *   SRP  — segment routing best performance (src/30_srp_calc.py + 31_srp_refine.py)
 *   SCH  — segment cache best hit rate, a lookahead cache (src/41_sch_calc.py::calc_fsf)
 *   LRU / LFU / Belady hit rates for every cache size at once (src/50_chr_calc.py)
 *
 * A "sequence" here is one window of a trace for one layer: ids [Tw, K] (-1 = unused slot, skipped).
 * Windows are independent samples, as moe-lrc's 512-token samples are.
 */

/** One layer's routing over one window: ids [Tw, K]. */
export interface RouteSeq {
  ids: ArrayLike<number>;
  Tw: number;
  K: number;
}

// ─── SRP ──────────────────────────────────────────────────────────────────────────────────────────────

/**
 * Segment statistics for SRP at segment length m: stat[c] = number of (segment, expert) pairs in which
 * the expert is selected by exactly c of the segment's m tokens. Segments are all windows of m
 * consecutive tokens (every start position) inside one sequence; a sequence shorter than m has none.
 */
export function srpSegmentStats(seqs: RouteSeq[], E: number, m: number): Float64Array {
  const stat = new Float64Array(m + 1);
  const cnt = new Int32Array(E);
  for (const s of seqs) {
    if (s.Tw < m) continue;
    cnt.fill(0);
    const add = (t: number, d: number): void => {
      for (let j = 0; j < s.K; j++) {
        const e = s.ids[t * s.K + j];
        if (e >= 0) cnt[e] += d;
      }
    };
    for (let t = 0; t < m; t++) add(t, 1);
    for (let start = 0; ; start++) {
      for (let e = 0; e < E; e++) stat[cnt[e]]++;
      if (start + m >= s.Tw) break;
      add(start, -1);
      add(start + m, 1);
    }
  }
  return stat;
}

export interface SrpResult {
  /** max over θ of F1(θ); null when no segment of this length exists */
  srp: number | null;
  /** the best threshold θ (a predicted expert must be selected by ≥ θ of the segment's tokens) */
  theta: number | null;
  /** |P_θ|·m / activations at the best θ: size of the predicted set relative to k (moe-lrc `best_m`) */
  predRatio: number | null;
}

/**
 * SRP from summed segment statistics: predict P_θ = {e : c_e ≥ θ} for every token of a segment;
 * matches(θ) = Σ_{c≥θ} c·stat[c], preds(θ) = m·Σ_{c≥θ} stat[c], acts = matches(0);
 * F1(θ) = 2·matches / max(preds + acts, 1) (moe-lrc clamps the denominator at 1); SRP = max_θ F1.
 */
export function srpFromStats(stat: Float64Array): SrpResult {
  const m = stat.length - 1;
  let total = 0;
  for (let c = 0; c <= m; c++) total += stat[c];
  if (total === 0) return { srp: null, theta: null, predRatio: null };
  // suffix sums over c ≥ θ
  const matches = new Float64Array(m + 2);
  const preds = new Float64Array(m + 2);
  for (let c = m; c >= 0; c--) {
    matches[c] = matches[c + 1] + c * stat[c];
    preds[c] = preds[c + 1] + m * stat[c];
  }
  const acts = matches[0];
  let best = -1;
  let theta = 0;
  for (let th = 0; th <= m; th++) {
    const f1 = (2 * matches[th]) / Math.max(preds[th] + acts, 1);
    if (f1 > best) { best = f1; theta = th; } // torch max returns the first maximum
  }
  return { srp: best, theta, predRatio: acts > 0 ? preds[theta] / acts : null };
}

// ─── priority stacks: every cache size in one pass ────────────────────────────────────────────────────

/**
 * A priority cache policy, simulated for all sizes at once with Mattson's stack algorithm (Mattson et
 * al. 1970): the cache of size C holds the top C entries of one stack. On an access to x at depth d,
 * x goes to the top and the entry carried down from the top meets stack[1..d-1] in turn, the one with
 * the higher priority staying and the lower one carried on, ending in x's old slot. moe-lrc's calc_fsf
 * and calc_beladi do the same update with a run-merging linked list; this is the plain O(d) version.
 */
interface StackPolicy {
  /** priority of a over b (strict) */
  higher(a: number, b: number): boolean;
  /** x was just accessed (after its push-down) */
  used(x: number): void;
  /** token t is finished */
  endToken?(t: number): void;
}

/**
 * stat[p] counts accesses found at stack depth p. As in moe-lrc, all of a token's experts are looked up
 * before any of them is moved, and the first-ever access of an expert counts at depth u = number of
 * distinct experts seen before it (a cache with a free slot is assumed to have prefetched it), so the
 * hit rate at C = E is 1. hit(C) = Σ_{p<C} stat[p] / accesses.
 */
function stackStats(s: RouteSeq, E: number, pol: StackPolicy, stat: Float64Array): number {
  const stack: number[] = [];
  const depth = new Int32Array(E);
  let uni = 0;
  let accesses = 0;
  for (let t = 0; t < s.Tw; t++) {
    depth.fill(-1);
    for (let i = 0; i < stack.length; i++) depth[stack[i]] = i;
    for (let j = 0; j < s.K; j++) {
      const x = s.ids[t * s.K + j];
      if (x < 0) continue;
      accesses++;
      if (depth[x] >= 0) stat[depth[x]]++;
      else stat[uni++]++;
    }
    for (let j = 0; j < s.K; j++) {
      const x = s.ids[t * s.K + j];
      if (x < 0) continue;
      let d = stack.indexOf(x);
      if (d < 0) { d = stack.length; stack.push(x); }
      if (d > 0) {
        let carried = stack[0];
        for (let i = 1; i < d; i++) {
          const y = stack[i];
          if (!pol.higher(y, carried)) { stack[i] = carried; carried = y; }
        }
        stack[d] = carried;
        stack[0] = x;
      }
      pol.used(x);
    }
    pol.endToken?.(t);
  }
  return accesses;
}

/** Hit rate for cache sizes 1..E: cumsum(stat) / accesses; null entries when there were no accesses. */
function hitCurve(stat: Float64Array, accesses: number): number[] {
  const out: number[] = [];
  let acc = 0;
  for (let p = 0; p < stat.length; p++) {
    acc += stat[p];
    out.push(accesses > 0 ? acc / accesses : 0);
  }
  return out;
}

export type CachePolicy = 'lru' | 'lfu' | 'belady';

function makePolicy(policy: CachePolicy | { sch: number }, s: RouteSeq, E: number): StackPolicy {
  let ts = 0;
  const last = new Float64Array(E); // last-use stamp, larger = more recent
  if (policy === 'lru') {
    // 50_chr_calc.py::calc_lru: recency order
    return { higher: (a, b) => last[a] > last[b], used: (x) => { last[x] = ++ts; } };
  }
  if (policy === 'lfu') {
    // 50_chr_calc.py::calc_lfu: priority (use count so far, last use), higher first
    const count = new Float64Array(E);
    return {
      higher: (a, b) => count[a] > count[b] || (count[a] === count[b] && last[a] > last[b]),
      used: (x) => { count[x]++; last[x] = ++ts; },
    };
  }
  if (policy === 'belady') {
    // 50_chr_calc.py::calc_beladi: priority = −(time of next use); accesses are numbered in token-major
    // slot order, and an expert never used again gets the sentinel time N + 1 + x (N = accesses)
    const next = new Float64Array(E);
    const times: number[][] = Array.from({ length: E }, () => []);
    let n = 0;
    for (let i = 0; i < s.Tw * s.K; i++) if (s.ids[i] >= 0) times[s.ids[i]].push(++n);
    for (let x = 0; x < E; x++) times[x].push(n + 1 + x);
    const head = new Int32Array(E);
    return {
      higher: (a, b) => next[a] < next[b],
      used: (x) => { head[x]++; next[x] = times[x][head[x]]; },
    };
  }
  // 41_sch_calc.py::calc_fsf: priority = (activations in the next m tokens, current one included, last use)
  const m = policy.sch;
  const fut = new Float64Array(E);
  const addToken = (t: number): void => {
    for (let j = 0; j < s.K; j++) { const e = s.ids[t * s.K + j]; if (e >= 0) fut[e]++; }
  };
  for (let t = 0; t < Math.min(m, s.Tw); t++) addToken(t);
  return {
    higher: (a, b) => fut[a] > fut[b] || (fut[a] === fut[b] && last[a] > last[b]),
    used: (x) => { fut[x]--; last[x] = ++ts; },
    endToken: (t) => { if (t + m < s.Tw) addToken(t + m); },
  };
}

/** Hit rate vs cache size (1..E) of one policy, pooled over sequences. */
export function cacheHitCurve(seqs: RouteSeq[], E: number, policy: CachePolicy): number[] {
  const stat = new Float64Array(E);
  let accesses = 0;
  for (const s of seqs) accesses += stackStats(s, E, makePolicy(policy, s, E), stat);
  return hitCurve(stat, accesses);
}

/** SCH: hit rate vs cache size (1..E) of the m-token lookahead cache, pooled over sequences. */
export function schCurve(seqs: RouteSeq[], E: number, m: number): number[] {
  const stat = new Float64Array(E);
  let accesses = 0;
  for (const s of seqs) accesses += stackStats(s, E, makePolicy({ sch: m }, s, E), stat);
  return hitCurve(stat, accesses);
}

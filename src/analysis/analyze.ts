/**
 * `moekit inspect`: every statistic of a routing trace in one JSON-ready object. The HTML report shows
 * exactly these numbers.
 */
import { cacheHitCurve, schCurve, srpFromStats, srpSegmentStats, type RouteSeq } from './locality.js';
import { coactivation, entropyStats, loadStats, superExperts, transition, type LoadStats, type SuperExpertResult } from './metrics.js';
import type { Trace, TraceModelInfo } from './trace.js';

/** moe-lrc's segment lengths (config.json `seg_lengths`). */
export const SEG_LENGTHS = [4, 16, 64, 256];

export interface LayerResult extends LoadStats {
  /** decoder layer index */
  layer: number;
  /** mean router entropy (nats) over tokens */
  entropy: number;
  /** entropy / log E */
  entropyNorm: number;
  /** [E, E] co-activation counts (diagonal = load) */
  coactivation: number[][];
  /** SRP per segment length (null: no segment that long) */
  srp: Array<number | null>;
  /** SCH[m][C-1]: lookahead-m cache hit rate at cache size C = 1..E */
  sch: number[][];
  /** hit rate at cache size C = 1..E */
  cache: { lru: number[]; lfu: number[]; belady: number[] };
}

export interface Offloading {
  /** 'good' | 'fair' | 'poor' | 'trivial' (2K ≥ E: a 2K cache holds every expert) */
  verdict: 'good' | 'fair' | 'poor' | 'trivial';
  /** the paper's rule of thumb: a cache of 2·K experts per layer */
  twoK: number;
  /** mean-over-layers hit rates at C = 2K */
  hitAt2K: { lru: number; lfu: number; belady: number; sch16: number };
  /** target hit rate used for the recommendation */
  target: number;
  /** smallest C whose mean LRU hit rate reaches the target (null: none below E) */
  lruCacheForTarget: number | null;
  /** the same for Belady (what perfect prefetch/eviction could reach) */
  beladyCacheForTarget: number | null;
  /** one-paragraph plain-language summary */
  summary: string;
}

export interface InspectResult {
  model: TraceModelInfo;
  E: number;
  K: number;
  T: number;
  windows: number;
  segLengths: number[];
  layers: LayerResult[];
  /** l → l+1 for consecutive trace layers: [L-1] */
  transitions: Array<{ from: number; to: number; precision: number; baseline: number; counts: number[][] }>;
  /** over all layers: SRP with the statistics of all layers summed (moe-lrc model level) */
  modelSrp: Array<number | null>;
  /** mean over layers of the per-layer curves, C = 1..E */
  meanCache: { lru: number[]; lfu: number[]; belady: number[]; sch: number[][] };
  superExperts: SuperExpertResult | null;
  offloading: Offloading;
}

export interface AnalyzeOptions {
  segLengths?: number[];
  /** LRU hit rate the cache-size recommendation aims for (default 0.9) */
  target?: number;
}

/** Split layer li of a trace into its windows. */
export function layerSeqs(tr: Trace, li: number): RouteSeq[] {
  const out: RouteSeq[] = [];
  let s = 0;
  for (const w of tr.windows) {
    const o = (li * tr.T + s) * tr.K;
    out.push({ ids: tr.ids.subarray(o, o + w * tr.K), Tw: w, K: tr.K });
    s += w;
  }
  return out;
}

export function analyzeTrace(tr: Trace, o: AnalyzeOptions = {}): InspectResult {
  const segs = o.segLengths ?? SEG_LENGTHS;
  const { E, K, T } = tr;
  const L = tr.layers.length;
  const layerIds = (li: number): Int16Array => tr.ids.subarray(li * T * K, (li + 1) * T * K);
  const modelStats = segs.map((m) => new Float64Array(m + 1));
  const layers: LayerResult[] = tr.layers.map((layer, li) => {
    const ids = layerIds(li);
    const seqs = layerSeqs(tr, li);
    const ent = entropyStats(tr.entropy.subarray(li * T, (li + 1) * T), E);
    const srp = segs.map((m, si) => {
      const st = srpSegmentStats(seqs, E, m);
      for (let c = 0; c <= m; c++) modelStats[si][c] += st[c];
      return srpFromStats(st).srp;
    });
    return {
      layer,
      ...loadStats(ids, T, K, E),
      entropy: ent.mean,
      entropyNorm: ent.normalized,
      coactivation: coactivation(ids, T, K, E),
      srp,
      sch: segs.map((m) => schCurve(seqs, E, m)),
      cache: { lru: cacheHitCurve(seqs, E, 'lru'), lfu: cacheHitCurve(seqs, E, 'lfu'), belady: cacheHitCurve(seqs, E, 'belady') },
    };
  });
  const transitions = [];
  for (let li = 0; li + 1 < L; li++) {
    const t = transition(layerIds(li), layerIds(li + 1), T, K, E);
    transitions.push({ from: tr.layers[li], to: tr.layers[li + 1], precision: t.precision, baseline: t.baseline, counts: t.counts });
  }
  const mean = (pick: (l: LayerResult) => number[]): number[] =>
    Array.from({ length: E }, (_, c) => (L ? layers.reduce((s, l) => s + pick(l)[c], 0) / L : 0));
  const meanCache = {
    lru: mean((l) => l.cache.lru),
    lfu: mean((l) => l.cache.lfu),
    belady: mean((l) => l.cache.belady),
    sch: segs.map((_, si) => mean((l) => l.sch[si])),
  };
  const se = tr.expertMax ? superExperts(tr.expertMax, tr.layers, E, tr.model.nLayer) : null;
  return {
    model: tr.model,
    E,
    K,
    T,
    windows: tr.windows.length,
    segLengths: segs,
    layers,
    transitions,
    modelSrp: modelStats.map((st) => srpFromStats(st).srp),
    meanCache,
    superExperts: se,
    offloading: offloadingAdvice(meanCache, segs, E, K, o.target ?? 0.9),
  };
}

/**
 * Will expert offloading work? moe-lrc (arXiv 2505.16056) finds that a per-layer cache of about 2× the
 * active experts reaches high hit rates on models with good local routing consistency. We read the
 * measured curves at C = 2K and find the smallest C reaching the target with LRU (a practical policy)
 * and with Belady (the bound for any eviction/prefetch policy).
 */
export function offloadingAdvice(mc: InspectResult['meanCache'], segs: number[], E: number, K: number, target: number): Offloading {
  const twoK = Math.min(2 * K, E);
  const at = (curve: number[]): number => curve[twoK - 1] ?? 0;
  const first = (curve: number[]): number | null => {
    const i = curve.findIndex((v) => v >= target - 1e-12);
    return i >= 0 && i + 1 < E ? i + 1 : null;
  };
  const si = segs.indexOf(16);
  const hitAt2K = { lru: at(mc.lru), lfu: at(mc.lfu), belady: at(mc.belady), sch16: si >= 0 ? at(mc.sch[si]) : NaN };
  const lruC = first(mc.lru);
  const belC = first(mc.belady);
  const pct = (v: number): string => `${(100 * v).toFixed(1)}%`;
  let verdict: Offloading['verdict'];
  let summary: string;
  if (2 * K >= E) {
    verdict = 'trivial';
    summary = `Each token uses ${K} of ${E} experts per layer, so a 2K cache holds every expert: offloading saves no memory on this model.`;
  } else {
    verdict = hitAt2K.lru >= 0.8 ? 'good' : hitAt2K.lru >= 0.6 || hitAt2K.belady >= 0.8 ? 'fair' : 'poor';
    const head =
      verdict === 'good'
        ? 'Expert offloading should work well'
        : verdict === 'fair'
          ? 'Expert offloading will work with a larger cache or prefetching'
          : 'Expert offloading will be limited by transfers';
    summary =
      `${head}: with ${twoK} experts per layer cached (2 × ${K} active, ${pct(twoK / E)} of the expert weights), ` +
      `LRU hits ${pct(hitAt2K.lru)} of expert uses, LFU ${pct(hitAt2K.lfu)}, and the optimal (Belady) policy ${pct(hitAt2K.belady)}. ` +
      (lruC !== null
        ? `LRU reaches ${pct(target)} at ${lruC} experts per layer (${(lruC / K).toFixed(1)} × K, ${pct(lruC / E)} of the experts).`
        : `LRU does not reach ${pct(target)} below all ${E} experts.`) +
      (belC !== null ? ` An oracle cache would need ${belC}.` : '');
  }
  return { verdict, twoK, hitAt2K, target, lruCacheForTarget: lruC, beladyCacheForTarget: belC, summary };
}

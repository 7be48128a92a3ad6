/**
 * Routing analytics on small hand-made traces; every expected value is worked out by hand in comments.
 * Cache-curve convention (moe-lrc 50_chr_calc.py): hit(C) = #accesses at stack depth < C / #accesses, and
 * the first use of an expert counts at depth u = number of distinct experts seen before it.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { cacheHitCurve, schCurve, srpFromStats, srpSegmentStats, type RouteSeq } from '../src/analysis/locality.js';
import { coactivation, entropyStats, loadStats, percentile, roundHalfEven, superExperts, transition } from '../src/analysis/metrics.js';
import { routerEntropy } from '../src/analysis/record.js';
import { analyzeTrace, offloadingAdvice } from '../src/analysis/analyze.js';
import type { Trace } from '../src/analysis/trace.js';

const seq1 = (ids: number[]): RouteSeq => ({ ids, Tw: ids.length, K: 1 });
const close = (a: number[], b: number[], msg?: string): void => {
  assert.equal(a.length, b.length, msg);
  a.forEach((v, i) => assert.ok(Math.abs(v - b[i]) < 1e-12, `${msg ?? ''} [${i}]: ${v} vs ${b[i]}`));
};

test('SRP: one window, m = 4, by hand', () => {
  // tokens 0 0 1 0 2 (K = 1, E = 3). Segments of 4: [0 0 1 0] → c = (3, 1, 0); [0 1 0 2] → c = (2, 1, 1).
  // stat[c] over (segment, expert): c=0:1, c=1:3, c=2:1, c=3:1, c=4:0
  const st = srpSegmentStats([seq1([0, 0, 1, 0, 2])], 3, 4);
  assert.deepEqual(Array.from(st), [1, 3, 1, 1, 0]);
  // matches(θ) = Σ_{c≥θ} c·stat = 8, 8, 5, 3, 0; preds = 4·Σ_{c≥θ} stat = 24, 20, 8, 4, 0; acts = 8
  // F1 = 2m/(p+a) = 16/32, 16/28, 10/16, 6/12, 0 → best θ = 2, F1 = 0.625, |P|·m/acts = 8/8
  const r = srpFromStats(st);
  assert.equal(r.theta, 2);
  assert.ok(Math.abs(r.srp! - 0.625) < 1e-12);
  assert.equal(r.predRatio, 1);
});

test('SRP: segments never cross windows; too-short windows give none', () => {
  // windows [0 0] and [1 1], m = 2 → two segments, each with one expert at c = 2 and two at 0
  const st = srpSegmentStats([seq1([0, 0]), seq1([1, 1])], 3, 2);
  assert.deepEqual(Array.from(st), [4, 0, 2]);
  // θ = 2: matches 4, preds 4, acts 4 → F1 = 1 (perfectly consistent). Joined as one window [0 0 1 1]
  // there would be a third segment [0 1] with c = 1, 1 and F1 < 1.
  assert.equal(srpFromStats(st).srp, 1);
  assert.ok(srpFromStats(srpSegmentStats([seq1([0, 0, 1, 1])], 3, 2)).srp! < 1);
  assert.equal(srpFromStats(srpSegmentStats([seq1([0, 1, 2])], 3, 4)).srp, null);
});

test('LRU on a cyclic sequence', () => {
  // 0 1 2 0 1 2, E = 3: cold uses at depth 0, 1, 2; then every reuse is at depth 2 (move-to-front).
  // stat = [1, 1, 4] → hit(1) = 1/6, hit(2) = 2/6, hit(3) = 1
  close(cacheHitCurve([seq1([0, 1, 2, 0, 1, 2])], 3, 'lru'), [1 / 6, 2 / 6, 1]);
});

test('Belady on the same cyclic sequence', () => {
  // next uses: 0 → t3, 1 → t4, 2 → t5; afterwards sentinels 7, 8, 9 (N + 1 + x).
  // t2 (2 new): push-down of [1, 0]: 0 (next use 4) beats 1 (5) and stays → [2, 0, 1]
  // t3: 0 at depth 1; t4: 1 at depth 2; stack after t4 [1, 2, 0]; t5: 2 at depth 1.
  // stat = [1, 3, 2] → hit(2) = 4/6: with 2 slots OPT hits at t3 and t5 (+ the two warm-start uses)
  close(cacheHitCurve([seq1([0, 1, 2, 0, 1, 2])], 3, 'belady'), [1 / 6, 4 / 6, 1]);
});

test('LFU keeps the frequent expert where LRU evicts it', () => {
  // 0 0 1 2 0 1, E = 3. LFU priority (count, last use): at t3 (2 new), 0 (count 2) beats 1 (count 1),
  // so 1 is pushed to the bottom: [2, 0, 1]; t4: 0 at depth 1; t5: 1 at depth 2.
  // LFU stat = [2, 2, 2] → hit(2) = 4/6. LRU: t3 → [2, 1, 0]; t4: 0 at depth 2; t5: 1 at depth 2 →
  // stat = [2, 1, 3] → hit(2) = 3/6.
  const s = [seq1([0, 0, 1, 2, 0, 1])];
  close(cacheHitCurve(s, 3, 'lfu'), [2 / 6, 4 / 6, 1]);
  close(cacheHitCurve(s, 3, 'lru'), [2 / 6, 3 / 6, 1]);
});

test('SCH: lookahead keeps the expert needed next', () => {
  // 0 1 2 0, E = 3, m = 2. Priority = (uses in tokens [t, t+m), last use). Before t2, 0's future count is
  // 1 (used at t3) and 1's is 0, so when 2 arrives the push-down keeps 0 above 1: [2, 0, 1]; t3: 0 at
  // depth 1. stat = [1, 2, 1] → hit(2) = 3/4, where LRU (stack [2, 1, 0]) has 0 at depth 2 → 2/4.
  const s = [seq1([0, 1, 2, 0])];
  close(schCurve(s, 3, 2), [1 / 4, 3 / 4, 1]);
  close(cacheHitCurve(s, 3, 'lru'), [1 / 4, 2 / 4, 1]);
});

test('cache curves with K > 1 look up a whole token before moving anything', () => {
  // tokens {0,1} {0,1}, E = 4: t0 cold at depths 0 and 1; t1: both found at depths 1 and 0 (stack [1, 0]).
  // stat = [2, 2, 0, 0] → hit(1) = 1/2, hit(2..4) = 1
  close(cacheHitCurve([{ ids: [0, 1, 0, 1], Tw: 2, K: 2 }], 4, 'lru'), [0.5, 1, 1, 1]);
  // unused slots (-1) are not accesses
  close(cacheHitCurve([{ ids: [0, -1, 0, -1], Tw: 2, K: 2 }], 4, 'lru'), [1, 1, 1, 1]);
});

test('load statistics, CV, max/mean, entropy', () => {
  // ids [[0,1],[0,2],[0,-1]], E = 4: counts (3, 1, 1, 0), total 5, mean 1.25,
  // population variance = (1.75² + 0.25² + 0.25² + 1.25²)/4 = 4.75/4 → CV = √1.1875 / 1.25 ≈ 0.8718
  const s = loadStats([0, 1, 0, 2, 0, -1], 3, 2, 4);
  assert.deepEqual(s.counts, [3, 1, 1, 0]);
  close(s.shares, [0.6, 0.2, 0.2, 0]);
  assert.ok(Math.abs(s.cv - Math.sqrt(4.75 / 4) / 1.25) < 1e-12);
  assert.ok(Math.abs(s.maxOverMean - 2.4) < 1e-12);
  assert.ok(Math.abs(s.activePerToken - 5 / 3) < 1e-12);
  // H(0.6, 0.2, 0.2) = −0.6 ln 0.6 − 0.4 ln 0.2
  assert.ok(Math.abs(s.loadEntropy - (-0.6 * Math.log(0.6) - 0.4 * Math.log(0.2))) < 1e-12);
  // router entropy: (½, ½, 0, 0) → ln 2; unnormalised sigmoid scores (0.9, 0.9) → also ln 2
  assert.ok(Math.abs(routerEntropy(new Float32Array([0.5, 0.5, 0, 0]), 0, 4) - Math.LN2) < 1e-7);
  assert.ok(Math.abs(routerEntropy(new Float32Array([7, 0.9, 0.9]), 1, 2) - Math.LN2) < 1e-7);
  const e = entropyStats([Math.LN2, 0], 4);
  assert.ok(Math.abs(e.normalized - Math.LN2 / 2 / Math.log(4)) < 1e-12);
});

test('co-activation and layer-to-layer transition', () => {
  const C = coactivation([0, 1, 0, 2, 0, -1], 3, 2, 4);
  assert.deepEqual(C, [[3, 1, 1, 0], [1, 1, 0, 0], [1, 0, 1, 0], [0, 0, 0, 0]]);
  // layer a: 0 0 1, layer b: 2 2 3 (K = 1). D[0][2] = 2, D[1][3] = 1. Predicting b from a gets all 3
  // right; guessing b's most-loaded expert (2) gets 2 of 3.
  const t = transition([0, 0, 1], [2, 2, 3], 3, 1, 4);
  assert.equal(t.counts[0][2], 2);
  assert.equal(t.counts[1][3], 1);
  assert.equal(t.precision, 1);
  assert.ok(Math.abs(t.baseline - 2 / 3) < 1e-12);
});

test('super experts: P99.5 and max // 10 over layers < round(0.75 L)', () => {
  assert.deepEqual([1.5, 2.5, 4.5, 6, 12.2].map(roundHalfEven), [2, 2, 4, 6, 12]);
  // 8 layers → layers 0..5 considered (round(6) = 6). E = 4: all maxima 1 except L1.E2 = 50 and
  // L7.E0 = 100 (layer 7 excluded). 24 values, sorted: 23 × 1, 50. P99.5: position 0.995·23 = 22.885
  // → 1 + 49·0.885 = 44.365; max // 10 = 5 → only L1.E2 qualifies.
  const m = new Float32Array(8 * 4).fill(1);
  m[1 * 4 + 2] = 50;
  m[7 * 4 + 0] = 100;
  const r = superExperts(m, [0, 1, 2, 3, 4, 5, 6, 7], 4, 8);
  assert.equal(r.layerLimit, 6);
  assert.ok(Math.abs(r.p995 - 44.365) < 1e-9);
  assert.equal(r.maxOver10, 5);
  assert.deepEqual(r.experts, [{ layer: 1, expert: 2, outputMax: 50 }]);
  assert.equal(percentile([1, 2, 3, 4], 50), 2.5);
});

test('analyzeTrace wires the pieces together; offloading advice reads the curves', () => {
  // 2 layers, E = 4, K = 1, T = 6 in one window; layer 1 = layer 0 shifted by one expert
  const l0 = [0, 1, 2, 0, 1, 2];
  const tr: Trace = {
    model: { path: 'x', arch: 'olmoe', nLayer: 2 },
    layers: [0, 1], E: 4, K: 1, T: 6, windows: [6],
    tokens: new Uint32Array(6), pieces: ['a', 'b', 'c', 'd', 'e', 'f'],
    ids: Int16Array.from([...l0, ...l0.map((e) => e + 1)]),
    weights: new Float32Array(12).fill(1), entropy: new Float32Array(12),
  };
  const r = analyzeTrace(tr, { segLengths: [4] });
  close(r.layers[0].cache.lru, [1 / 6, 2 / 6, 1, 1]);
  assert.equal(r.transitions[0].precision, 1);
  assert.equal(r.superExperts, null);
  // curves: LRU at 2K = 2 is 2/6 → poor; a curve reaching 0.9 at C = 3 gives that as the cache size
  const adv = offloadingAdvice({ lru: [0.5, 0.85, 0.95, 1], lfu: [0.5, 0.8, 0.9, 1], belady: [0.6, 0.9, 1, 1], sch: [] }, [4], 4, 1, 0.9);
  assert.equal(adv.verdict, 'good');
  assert.equal(adv.lruCacheForTarget, 3);
  assert.equal(adv.beladyCacheForTarget, 2);
  assert.equal(r.offloading.verdict, 'poor');
});

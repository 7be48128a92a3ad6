/**
 * Token sampling, in llama.cpp's default chain order (common/sampling.cpp):
 * repetition penalty → top-k → top-p → min-p → temperature → draw. Temperature 0 is greedy.
 */
import { UsageError } from '../errors.js';

export interface SamplingOptions {
  /** 0 = greedy (default 0.8) */
  temperature?: number;
  /** keep the k most likely tokens; 0 = off (default 40) */
  topK?: number;
  /** nucleus: keep the smallest set with cumulative probability ≥ p; 1 = off (default 0.95) */
  topP?: number;
  /** drop tokens with p < minP·p_max; 0 = off (default 0.05) */
  minP?: number;
  /** divide positive / multiply negative logits of recent tokens; 1 = off (default 1) */
  repeatPenalty?: number;
  /** how many recent tokens the penalty looks at (default 64) */
  repeatLastN?: number;
  /** PRNG seed (default: random) */
  seed?: number;
}

/** mulberry32: small, fast, seedable; plenty for sampling. */
export function makeRng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export function validateSampling(o: SamplingOptions): Required<SamplingOptions> {
  const r = {
    temperature: o.temperature ?? 0.8,
    topK: o.topK ?? 40,
    topP: o.topP ?? 0.95,
    minP: o.minP ?? 0.05,
    repeatPenalty: o.repeatPenalty ?? 1,
    repeatLastN: o.repeatLastN ?? 64,
    seed: o.seed ?? Math.floor(Math.random() * 2 ** 32),
  };
  const bad = (f: string, why: string) => new UsageError(`sampling option ${f} ${why}`);
  if (!(r.temperature >= 0) || !Number.isFinite(r.temperature)) throw bad('temperature', `must be a finite number ≥ 0, got ${o.temperature}`);
  if (!Number.isInteger(r.topK) || r.topK < 0) throw bad('topK', `must be an integer ≥ 0 (0 = off), got ${o.topK}`);
  if (!(r.topP > 0 && r.topP <= 1)) throw bad('topP', `must be in (0, 1], got ${o.topP}`);
  if (!(r.minP >= 0 && r.minP < 1)) throw bad('minP', `must be in [0, 1), got ${o.minP}`);
  if (!(r.repeatPenalty > 0) || !Number.isFinite(r.repeatPenalty)) throw bad('repeatPenalty', `must be > 0 (1 = off), got ${o.repeatPenalty}`);
  if (!Number.isInteger(r.repeatLastN) || r.repeatLastN < 0) throw bad('repeatLastN', `must be an integer ≥ 0, got ${o.repeatLastN}`);
  if (!Number.isInteger(r.seed) || r.seed < 0) throw bad('seed', `must be a non-negative integer, got ${o.seed}`);
  return r;
}

export class Sampler {
  private readonly o: Required<SamplingOptions>;
  private readonly rng: () => number;

  constructor(o: SamplingOptions) {
    this.o = validateSampling(o);
    this.rng = makeRng(this.o.seed);
  }

  /** Pick the next token from one row of logits [V]. `history` = tokens so far (for the penalty). */
  sample(logits: Float32Array, history: readonly number[]): number {
    const o = this.o;
    let z = logits;
    if (o.repeatPenalty !== 1 && o.repeatLastN > 0) {
      z = Float32Array.from(logits);
      const seen = new Set(history.slice(-o.repeatLastN));
      for (const id of seen) z[id] = z[id] > 0 ? z[id] / o.repeatPenalty : z[id] * o.repeatPenalty;
    }
    if (o.temperature === 0) return argmax(z);

    // candidates sorted by logit, descending
    let idx = Array.from(z.keys()).sort((a, b) => z[b] - z[a]);
    if (o.topK > 0 && o.topK < idx.length) idx = idx.slice(0, o.topK);
    let p = softmaxOf(idx, z, 1);
    if (o.topP < 1) {
      let cum = 0;
      let keep = idx.length;
      for (let i = 0; i < idx.length; i++) {
        cum += p[i];
        if (cum >= o.topP) { keep = i + 1; break; }
      }
      idx = idx.slice(0, keep);
      p = softmaxOf(idx, z, 1);
    }
    if (o.minP > 0) {
      const thr = o.minP * p[0];
      let keep = 1;
      while (keep < idx.length && p[keep] >= thr) keep++;
      idx = idx.slice(0, keep);
    }
    p = softmaxOf(idx, z, o.temperature);
    let r = this.rng();
    for (let i = 0; i < idx.length; i++) {
      r -= p[i];
      if (r <= 0) return idx[i];
    }
    return idx[idx.length - 1];
  }
}

export function argmax(z: ArrayLike<number>, off = 0, n = z.length - off): number {
  let best = 0;
  for (let i = 1; i < n; i++) if (z[off + i] > z[off + best]) best = i;
  return best;
}

function softmaxOf(idx: number[], z: Float32Array, temp: number): Float64Array {
  const p = new Float64Array(idx.length);
  const max = z[idx[0]];
  let sum = 0;
  for (let i = 0; i < idx.length; i++) sum += p[i] = Math.exp((z[idx[i]] - max) / temp);
  for (let i = 0; i < idx.length; i++) p[i] /= sum;
  return p;
}

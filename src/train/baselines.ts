/**
 * Count-based language-model baselines fitted on training tokens, the yardstick a trained model must beat
 * (models/MODEL_CARD.md, test/default-model.test.ts): a unigram with add-one smoothing, and a bigram with
 * interpolated absolute discounting (Ney, Essen & Kneser 1994; d = 0.75) that backs off to that unigram.
 */
export interface NgramBaselines {
  unigram(w: number): number;
  /** P(w | previous token v) */
  bigram(v: number, w: number): number;
  /** distinct bigram contexts seen */
  contexts: number;
}

export function ngramBaselines(train: ArrayLike<number>, V: number, d = 0.75): NgramBaselines {
  const uni = new Float64Array(V);
  for (let i = 0; i < train.length; i++) uni[train[i]]++;
  const unigram = (w: number) => (uni[w] + 1) / (train.length + V);
  const follow = new Map<number, { n: number; next: Map<number, number> }>();
  for (let i = 1; i < train.length; i++) {
    let c = follow.get(train[i - 1]);
    if (!c) follow.set(train[i - 1], (c = { n: 0, next: new Map() }));
    c.n++;
    c.next.set(train[i], (c.next.get(train[i]) ?? 0) + 1);
  }
  const bigram = (v: number, w: number) => {
    const c = follow.get(v);
    if (!c) return unigram(w);
    return Math.max((c.next.get(w) ?? 0) - d, 0) / c.n + ((d * c.next.size) / c.n) * unigram(w);
  };
  return { unigram, bigram, contexts: follow.size };
}

/** Routers and losses on hand-built inputs whose answers are known. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/testing/generate-model.js';
import { router_bias_update, router_forward, type RouterConfig } from '../src/train/router.js';
import { clipGradNorm, learningRate, AdamW } from '../src/train/optim.js';

const close = (a: number, b: number, tol = 1e-6) => assert.ok(Math.abs(a - b) <= tol * Math.max(1, Math.abs(b)), `${a} vs ${b}`);
/** logits whose softmax is [1, 2, 3, 4] / 10 */
const L = Float32Array.from([1, 2, 3, 4].map(Math.log));

test('softmax top-2 without / with renormalisation', () => {
  const base: RouterConfig = { scoring: 'softmax', K: 2, normalize: false };
  const r = router_forward(L, 1, 4, 4, base);
  assert.deepEqual([...r.ids], [3, 2]);
  close(r.weights[0], 0.4); close(r.weights[1], 0.3);
  const n = router_forward(L, 1, 4, 4, { ...base, normalize: true, scale: 2 });
  close(n.weights[0], (2 * 4) / 7); close(n.weights[1], (2 * 3) / 7);
});

test('load-balancing loss: the three normalisations on a known batch, and the balanced value', () => {
  const logits = new Float32Array([...L, ...L]); // T = 2 identical tokens → both pick experts 3, 2
  const P = [0.1, 0.2, 0.3, 0.4];
  const c = [0, 0, 2, 2];
  const c1 = [0, 0, 0, 2];
  const E = 4, T = 2, K = 2, a = 0.01;
  const exp = (f: number[]) => a * E * f.reduce((s, fi, i) => s + fi * P[i], 0);
  close(router_forward(logits, T, 4, 4, { scoring: 'softmax', K, normalize: false, lbCoef: a }).lb, exp(c.map((x) => x / (T * K))));
  close(router_forward(logits, T, 4, 4, { scoring: 'softmax', K, normalize: false, lbCoef: a, lbNorm: 'hf' }).lb, exp(c.map((x) => x / T)));
  close(router_forward(logits, T, 4, 4, { scoring: 'softmax', K, normalize: false, lbCoef: a, lbNorm: 'gshard' }).lb, exp(c1.map((x) => x / T)));
  // uniform probabilities, perfectly balanced top-1 counts: Megatron's value is α (Switch: "1 when balanced")
  const bal = new Float32Array([5, 0, 0, 0, 0, 5, 0, 0, 0, 0, 5, 0, 0, 0, 0, 5].map((x) => x * 1e-9));
  close(router_forward(bal, 4, 4, 4, { scoring: 'softmax', K: 1, normalize: false, lbCoef: a }).lb, a, 1e-5);
});

test('router z-loss = c·mean(logsumexp²)', () => {
  const z = router_forward(new Float32Array(8), 2, 4, 4, { scoring: 'softmax', K: 1, normalize: false, zCoef: 0.001 }).z;
  close(z, 0.001 * Math.log(4) ** 2);
  const z2 = router_forward(L, 1, 4, 4, { scoring: 'softmax', K: 1, normalize: false, zCoef: 1 }).z;
  close(z2, Math.log(10) ** 2, 1e-5);
});

test('sigmoid router: the bias changes the selection but not the weights', () => {
  const logits = new Float32Array([2, 1, 0, -1]);
  const rc: RouterConfig = { scoring: 'sigmoid', K: 1, normalize: false };
  assert.equal(router_forward(logits, 1, 4, 4, rc).ids[0], 0);
  const r = router_forward(logits, 1, 4, 4, rc, Float32Array.from([0, 0, 0.9, 0]));
  assert.equal(r.ids[0], 2);
  close(r.weights[0], 1 / (1 + Math.exp(0)));
});

test('top-p keeps experts up to and including the one that crosses p', () => {
  const rc: RouterConfig = { scoring: 'softmax', K: 4, normalize: false, topP: 0.5 };
  assert.deepEqual([...router_forward(L, 1, 4, 4, rc).ids], [3, 2, -1, -1]);
  assert.deepEqual([...router_forward(L, 1, 4, 4, { ...rc, topP: 0.3 }).ids], [3, -1, -1, -1]);
  assert.deepEqual([...router_forward(L, 1, 4, 4, { ...rc, topP: 0.95 }).ids], [3, 2, 1, 0]);
});

test('capacity factor drops by position; dropless keeps all', () => {
  const logits = new Float32Array([5, 0, 5, 0, 5, 0, 5, 0]); // 4 tokens all prefer expert 0
  const rc: RouterConfig = { scoring: 'softmax', K: 1, normalize: false, capacityFactor: 1 };
  const r = router_forward(logits, 4, 2, 2, rc); // C = ceil(4·1/2·1) = 2
  assert.deepEqual([...r.keep], [1, 1, 0, 0]);
  assert.equal(r.dropped, 2);
  assert.deepEqual([...router_forward(logits, 4, 2, 2, { ...rc, capacityFactor: 0 }).keep], [1, 1, 1, 1]);
});

test('null experts produce no kept slot and share one LB bucket', () => {
  const logits = new Float32Array([0, 0, 3, 3]); // E = 2 real, 2 null: nulls win
  const r = router_forward(logits, 1, 4, 2, { scoring: 'softmax', K: 2, normalize: true, nullExperts: 2 });
  assert.deepEqual([...r.keep], [0, 0]);
});

test('aux-loss-free bias update moves a skewed load toward balance', () => {
  const rng = new Rng(11);
  const T = 256, E = 8;
  // skewed: expert 0 gets +1.5 on every logit
  const logits = Float32Array.from({ length: T * E }, (_, i) => rng.normal() + (i % E === 0 ? 1.5 : 0));
  const rc: RouterConfig = { scoring: 'sigmoid', K: 2, normalize: true };
  const bias = new Float32Array(E);
  const maxOverMean = () => { const c = router_forward(logits, T, E, E, rc, bias).counts; return Math.max(...c) / ((T * 2) / E); };
  const before = maxOverMean();
  assert.ok(before > 2, `skewed start ${before}`);
  for (let s = 0; s < 60; s++) router_bias_update(bias, router_forward(logits, T, E, E, rc, bias).counts, E, 0.01);
  const after = maxOverMean();
  assert.ok(after < 1.35, `load max/mean ${before.toFixed(2)} → ${after.toFixed(2)}`);
  assert.ok(bias[0] < 0, 'the overloaded expert gets a negative bias');
  // one step: +γ to under-loaded, −γ to over-loaded
  const b = new Float32Array(3);
  router_bias_update(b, [1, 5, 3], 3, 0.5);
  assert.deepEqual([...b], [0.5, -0.5, 0]);
});

test('cosine schedule with warmup; clipping; AdamW first step', () => {
  const o = { lr: 1e-3, minLr: 1e-4, warmup: 10, steps: 110 };
  close(learningRate(0, o), 1e-4); close(learningRate(9, o), 1e-3); close(learningRate(60, o), 5.5e-4); close(learningRate(110, o), 1e-4);
  const g = Float32Array.from([3, 4]);
  close(clipGradNorm(g, 1), 5); close(Math.hypot(g[0], g[1]), 1, 1e-5);
  // first Adam step moves each weight by ≈ lr·sign(g); decay only on matrices
  const layout = [{ name: 'w', shape: [1, 2], offset: 0, size: 2, decay: true, init: 'normal' as const }, { name: 'n', shape: [1], offset: 2, size: 1, decay: false, init: 'ones' as const }];
  const opt = new AdamW(layout, 3, { ...o, weightDecay: 0.1 });
  const p = Float32Array.from([1, 1, 1]);
  opt.step(p, Float32Array.from([0.5, -2, 1]), 0.01);
  close(p[0], 1 * (1 - 0.001) - 0.01, 1e-5); close(p[1], 0.999 + 0.01, 1e-5); close(p[2], 1 - 0.01, 1e-5);
});

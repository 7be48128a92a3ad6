/**
 * Every training backward against central finite differences, on small shapes, and the whole tiny
 * model (several router / loss / layout configurations).
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { Rng } from '../src/testing/generate-model.js';
import {
  attention_backward, attention_forward, crossentropy_backward, crossentropy_forward, matmul_backward, matmul_forward,
  rmsnorm_backward, rmsnorm_forward, rope_backward, rope_forward, rope_table, swiglu_backward, swiglu_forward,
} from '../src/train/layers.js';
import { router_backward, router_forward, type RouterConfig } from '../src/train/router.js';
import { moe_backward, moe_forward, type MoeParams } from '../src/train/moe.js';
import { MoeLM, type ModelConfig } from '../src/train/model.js';

const rand = (n: number, rng: Rng, s = 1) => Float32Array.from({ length: n }, () => s * rng.normal());

/**
 * Check analytic gradients of scalar f(inputs) = Σ out·R (R a fixed random projection) against central
 * differences in f64-ish precision. `run` computes the forward from the current input arrays.
 */
function fdCheck(name: string, inputs: Float32Array[], grads: Float32Array[], loss: () => number, opts: { eps?: number; tol?: number; samples?: number } = {}): void {
  const eps = opts.eps ?? 1e-2;
  const tol = opts.tol ?? 2e-2;
  const rng = new Rng(99);
  let worst = 0;
  let skipped = 0;
  let total = 0;
  for (let a = 0; a < inputs.length; a++) {
    const x = inputs[a];
    const n = Math.min(x.length, opts.samples ?? 24);
    for (let s = 0; s < n; s++) {
      const i = x.length <= (opts.samples ?? 24) ? s : Math.floor(rng.uniform() * x.length);
      total++;
      const old = x[i];
      x[i] = old + eps; const lp = loss();
      x[i] = old - eps; const lm = loss();
      x[i] = old;
      if (Number.isNaN(lp) || Number.isNaN(lm)) { skipped++; continue; } // a routing decision flipped: not differentiable here
      const num = (lp - lm) / (2 * eps);
      const ana = grads[a][i];
      const err = Math.abs(num - ana) / Math.max(1e-2, Math.abs(num) + Math.abs(ana));
      worst = Math.max(worst, err);
      assert.ok(err < tol, `${name}: input ${a}[${i}] analytic ${ana} vs numeric ${num} (rel ${err.toExponential(2)})`);
    }
  }
  assert.ok(Number.isFinite(worst));
  assert.ok(skipped <= total / 10, `${name}: ${skipped} of ${total} samples flipped a routing decision`);
}

/** Σ out[i]·proj[i] in double */
const dot = (a: Float32Array, b: Float32Array) => { let s = 0; for (let i = 0; i < a.length; i++) s += a[i] * b[i]; return s; };

test('matmul_backward matches finite differences (with bias)', () => {
  const rng = new Rng(1);
  const T = 3, I = 5, O = 4;
  const x = rand(T * I, rng), w = rand(O * I, rng), b = rand(O, rng), proj = rand(T * O, rng);
  const out = new Float32Array(T * O);
  const f = () => { matmul_forward(out, x, w, T, I, O, b); return dot(out, proj); };
  const dx = new Float32Array(T * I), dw = new Float32Array(O * I), db = new Float32Array(O);
  matmul_backward(dx, dw, db, proj, x, w, T, I, O);
  fdCheck('matmul', [x, w, b], [dx, dw, db], f);
});

test('rmsnorm_backward matches finite differences', () => {
  const rng = new Rng(2);
  const R = 3, N = 6;
  const x = rand(R * N, rng), w = rand(N, rng), proj = rand(R * N, rng);
  const out = new Float32Array(R * N), rstd = new Float32Array(R);
  const f = () => { rmsnorm_forward(out, rstd, x, w, R, N, 1e-5); return dot(out, proj); };
  f();
  const dx = new Float32Array(R * N), dw = new Float32Array(N);
  rmsnorm_backward(dx, dw, proj, x, w, rstd, R, N);
  fdCheck('rmsnorm', [x, w], [dx, dw], f);
});

test('rope backward is the inverse rotation; rope preserves norms', () => {
  const rng = new Rng(3);
  const T = 4, H = 2, Dh = 8;
  const tab = rope_table(T, Dh, 10000);
  const x = rand(T * H * Dh, rng), proj = rand(T * H * Dh, rng);
  const f = () => { const y = x.slice(); rope_forward(y, T, H, Dh, tab); return dot(y, proj); };
  const dx = proj.slice();
  rope_backward(dx, T, H, Dh, tab);
  fdCheck('rope', [x], [dx], f);
  const y = x.slice(); rope_forward(y, T, H, Dh, tab);
  assert.ok(Math.abs(dot(y, y) - dot(x, x)) < 1e-3 * dot(x, x));
});

test('attention_backward matches finite differences (causal, 2 sequences)', () => {
  const rng = new Rng(4);
  const B = 2, S = 4, H = 2, Dh = 4, C = H * Dh;
  const q = rand(B * S * C, rng), k = rand(B * S * C, rng), v = rand(B * S * C, rng), proj = rand(B * S * C, rng);
  const out = new Float32Array(B * S * C), att = new Float32Array(B * H * S * S);
  const f = () => { attention_forward(out, att, q, k, v, B, S, H, Dh); return dot(out, proj); };
  f();
  const dq = new Float32Array(q.length), dk = new Float32Array(k.length), dv = new Float32Array(v.length);
  attention_backward(dq, dk, dv, proj, q, k, v, att, B, S, H, Dh);
  fdCheck('attention', [q, k, v], [dq, dk, dv], f, { samples: 40 });
  // causality: the first position of a sequence ignores later keys
  assert.equal(att[1], 0);
});

test('swiglu and cross-entropy backward match finite differences', () => {
  const rng = new Rng(5);
  const n = 10;
  const g = rand(n, rng, 2), u = rand(n, rng), proj = rand(n, rng);
  const out = new Float32Array(n);
  const f = () => { swiglu_forward(out, g, u, n); return dot(out, proj); };
  const dg = new Float32Array(n), du = new Float32Array(n);
  swiglu_backward(dg, du, proj, g, u, n);
  fdCheck('swiglu', [g, u], [dg, du], f);

  const T = 3, V = 7;
  const logits = rand(T * V, rng, 2), targets = [1, 6, 0];
  const probs = new Float32Array(T * V);
  const fl = () => crossentropy_forward(probs, logits, targets, T, V);
  fl();
  const dl = new Float32Array(T * V);
  crossentropy_backward(dl, probs, targets, T, V);
  fdCheck('crossentropy', [logits], [dl], fl);
});

const ROUTERS: Array<[string, RouterConfig]> = [
  ['softmax top-2, no renorm, LB (megatron) + z', { scoring: 'softmax', K: 2, normalize: false, lbCoef: 0.3, zCoef: 0.05 }],
  ['softmax top-2, renorm ×2.5, LB (hf)', { scoring: 'softmax', K: 2, normalize: true, scale: 2.5, lbCoef: 0.3, lbNorm: 'hf' }],
  ['sigmoid top-2, renorm, LB (gshard) + z', { scoring: 'sigmoid', K: 2, normalize: true, lbCoef: 0.3, lbNorm: 'gshard', zCoef: 0.05 }],
  ['top-p 0.5 (max 4)', { scoring: 'softmax', K: 4, normalize: false, topP: 0.5, lbCoef: 0.3 }],
  ['null experts (2), top-3 renorm', { scoring: 'softmax', K: 3, normalize: true, nullExperts: 2, lbCoef: 0.3 }],
  ['capacity factor 1.0 (drops)', { scoring: 'softmax', K: 2, normalize: true, capacityFactor: 1.0, lbCoef: 0.1 }],
];

for (const [name, rc] of ROUTERS) {
  test(`router_backward matches finite differences: ${name}`, () => {
    const rng = new Rng(6);
    const T = 5, E = 4, R = E + (rc.nullExperts ?? 0);
    const logits = rand(T * R, rng, 1.5);
    const dwProj = rand(T * rc.K, rng);
    // fixed selection: finite differences must not change the routing
    const r0 = router_forward(logits, T, R, E, rc);
    const f = () => {
      const r = router_forward(logits, T, R, E, rc);
      assert.deepEqual(r.ids, r0.ids, 'routing changed under the perturbation');
      let s = r.lb + r.z;
      for (let i = 0; i < r.weights.length; i++) if (r.keep[i]) s += r.weights[i] * dwProj[i];
      return s;
    };
    const dw = new Float32Array(T * r0.K);
    for (let i = 0; i < dw.length; i++) dw[i] = r0.keep[i] ? dwProj[i] : 0;
    const dl = new Float32Array(T * R);
    router_backward(dl, dw, r0, logits, T, R, E, rc);
    fdCheck(name, [logits], [dl], f, { eps: 1e-3, samples: 40 });
  });
}

test('moe_backward matches finite differences (shared gated expert, capacity)', () => {
  const rng = new Rng(7);
  const T = 6, D = 4, E = 4, F = 3, Fs = 5;
  const s = { D, E, R: E, F, Fs };
  const rc: RouterConfig = { scoring: 'softmax', K: 2, normalize: false, lbCoef: 0.1, zCoef: 0.01, capacityFactor: 1.5 };
  const mk = (): MoeParams => ({
    router: rand(E * D, rng), gateExps: rand(E * F * D, rng), upExps: rand(E * F * D, rng), downExps: rand(E * D * F, rng),
    shared: { gate: rand(Fs * D, rng), up: rand(Fs * D, rng), down: rand(D * Fs, rng) }, sharedGate: rand(D, rng),
  });
  const w = mk();
  const x = rand(T * D, rng), proj = rand(T * D, rng);
  const out = new Float32Array(T * D);
  const f = () => { const c = moe_forward(out, x, T, w, s, rc); return dot(out, proj) + c.route.lb + c.route.z; };
  const c = moe_forward(out, x, T, w, s, rc);
  const zero = (p: MoeParams): MoeParams => ({
    router: new Float32Array(p.router.length), gateExps: new Float32Array(p.gateExps.length), upExps: new Float32Array(p.upExps.length), downExps: new Float32Array(p.downExps.length),
    shared: { gate: new Float32Array(Fs * D), up: new Float32Array(Fs * D), down: new Float32Array(D * Fs) }, sharedGate: new Float32Array(D),
  });
  const dw = zero(w);
  const dx = new Float32Array(T * D);
  moe_backward(dx, dw, proj, w, c, s, rc);
  fdCheck('moe', [x, w.router, w.gateExps, w.upExps, w.downExps, w.shared!.gate, w.shared!.down, w.sharedGate!],
    [dx, dw.router, dw.gateExps, dw.upExps, dw.downExps, dw.shared!.gate, dw.shared!.down, dw.sharedGate!], f, { eps: 1e-3, samples: 30 });
});

const tiny = (over: Partial<ModelConfig> = {}): ModelConfig => ({
  vocab: 11, dim: 8, nLayer: 2, nHead: 2, seqLen: 5, nExpert: 4, ffnDim: 6, initStd: 0.3,
  router: { scoring: 'softmax', K: 2, normalize: false, lbCoef: 0.05, zCoef: 0.01 }, ...over,
});

const MODELS: Array<[string, ModelConfig]> = [
  ['olmoe layout (qk-norm, untied)', tiny({ qkNorm: true })],
  ['qwen2moe layout (qkv bias, gated shared expert, tied)', tiny({ qkvBias: true, sharedDim: 5, sharedGate: true, tied: true })],
  ['sigmoid router, renorm, capacity 1.25', tiny({ router: { scoring: 'sigmoid', K: 2, normalize: true, capacityFactor: 1.25, lbCoef: 0.05 } })],
  ['dense FFN (E = 0)', tiny({ nExpert: 0 })],
];

for (const [name, cfg] of MODELS) {
  test(`whole-model gradients match finite differences: ${name}`, () => {
    const m = new MoeLM(cfg);
    m.init(3);
    // make the norms and biases non-trivial so their gradients are tested too
    const rng = new Rng(8);
    for (const p of m.layout) if (p.init !== 'normal' && p.init !== 'residual') {
      const v = m.params.subarray(p.offset, p.offset + p.size);
      for (let i = 0; i < v.length; i++) v[i] += 0.2 * rng.normal();
    }
    const B = 2, S = 5;
    const inputs = Int32Array.from({ length: B * S }, () => Math.floor(rng.uniform() * cfg.vocab));
    const targets = Int32Array.from({ length: B * S }, () => Math.floor(rng.uniform() * cfg.vocab));
    const { cache, stats } = m.forward(inputs, targets, B);
    assert.ok(stats.loss > 0 && Number.isFinite(stats.loss));
    m.zeroGrads();
    m.backward(cache);
    const ids0 = cache.layers.map((l) => l.moe?.route.ids.join(','));
    const f = () => {
      const r = m.forward(inputs, targets, B);
      const same = r.cache.layers.every((l, i) => l.moe?.route.ids.join(',') === ids0[i]);
      return same ? r.stats.loss : NaN;
    };
    const ins: Float32Array[] = [];
    const gs: Float32Array[] = [];
    for (const p of m.layout) { ins.push(m.params.subarray(p.offset, p.offset + p.size)); gs.push(m.grads.subarray(p.offset, p.offset + p.size)); }
    fdCheck(name, ins, gs, f, { eps: 2e-3, samples: 6, tol: 3e-2 });
  });
}

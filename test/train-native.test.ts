/**
 * The native training kernels (native/src/train.c) against the plain TypeScript ones in
 * src/train/layers.ts: GEMM in its three uses (forward, dx, dw) on shapes with tile tails, fused
 * softmax cross-entropy, causal attention forward/backward, a whole model step; and that the results
 * do not depend on the thread count.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { loadAddon, nativeAvailable } from '../src/backend/native.js';
import { Rng } from '../src/testing/generate-model.js';
import {
  attention_backward, attention_forward, crossentropy_forward, matmul_backward, matmul_forward, useNativeKernels,
} from '../src/train/layers.js';
import { MoeLM, type ModelConfig, type ParamInfo } from '../src/train/model.js';
import { AdamW } from '../src/train/optim.js';

const skip = !nativeAvailable() && 'native addon not built';
const rand = (n: number, rng: Rng) => Float32Array.from({ length: n }, () => rng.normal());

/** Runs `f` with the TypeScript kernels, then the native ones on 1 and 2 threads. */
function both<T>(f: () => T): { ref: T; n1: T; n2: T } {
  const ref = f();
  try {
    useNativeKernels(1);
    const n1 = f();
    useNativeKernels(2);
    const n2 = f();
    return { ref, n1, n2 };
  } finally {
    useNativeKernels(0);
  }
}

function close(name: string, got: Float32Array, ref: Float32Array, rel = 1e-5): void {
  assert.equal(got.length, ref.length, name);
  let scale = 0;
  for (const v of ref) scale = Math.max(scale, Math.abs(v));
  for (let i = 0; i < ref.length; i++) {
    assert.ok(Math.abs(got[i] - ref[i]) <= rel * (scale + 1e-30) + 1e-7, `${name}[${i}]: ${got[i]} vs ${ref[i]} (scale ${scale})`);
  }
}

for (const [T, I, O] of [[64, 48, 40], [37, 133, 71], [1024, 128, 8], [7, 5, 300]] as const) {
  test(`native GEMM = TypeScript for linear forward/backward, T ${T} I ${I} O ${O}`, { skip }, () => {
    const rng = new Rng(T * 7 + I);
    const x = rand(T * I, rng), w = rand(O * I, rng), b = rand(O, rng), dout = rand(T * O, rng);
    const dx0 = rand(T * I, rng), dw0 = rand(O * I, rng); // backward accumulates: start from non-zero
    const r = both(() => {
      const y = new Float32Array(T * O), dx = dx0.slice(), dw = dw0.slice(), db = new Float32Array(O);
      matmul_forward(y, x, w, T, I, O, b);
      matmul_backward(dx, dw, db, dout, x, w, T, I, O);
      return [y, dx, dw, db];
    });
    ['y', 'dx', 'dw', 'db'].forEach((n, k) => {
      close(n, r.n1[k], r.ref[k]);
      assert.deepEqual(r.n2[k], r.n1[k], `${n}: 2 threads must equal 1 thread bit for bit`);
    });
    // the other tile kernels: scalar (0) and AVX2-only (2); the default run above used the best one
    const addon = loadAddon();
    for (const level of [0, 2] as const) {
      try {
        addon.setSimd(level);
        const got = both(() => {
          const y = new Float32Array(T * O), dx = dx0.slice(), dw = dw0.slice(), db = new Float32Array(O);
          matmul_forward(y, x, w, T, I, O, b);
          matmul_backward(dx, dw, db, dout, x, w, T, I, O);
          return [y, dx, dw, db];
        }).n2;
        ['y', 'dx', 'dw', 'db'].forEach((n, k) => close(`${n} (simd ${level})`, got[k], r.ref[k]));
      } finally {
        addon.setSimd(1);
      }
    }
  });
}

test('native cross-entropy = TypeScript (loss and probabilities)', { skip }, () => {
  const rng = new Rng(5);
  const T = 33, V = 1000;
  const logits = rand(T * V, rng).map((v) => 4 * v);
  const targets = Int32Array.from({ length: T }, () => Math.floor(rng.uniform() * V));
  const r = both(() => {
    const probs = new Float32Array(T * V);
    const loss = crossentropy_forward(probs, logits, targets, T, V);
    return { probs, loss };
  });
  close('probs', r.n1.probs, r.ref.probs, 1e-5);
  assert.ok(Math.abs(r.n1.loss - r.ref.loss) <= 1e-5 * r.ref.loss, `loss ${r.n1.loss} vs ${r.ref.loss}`);
  assert.deepEqual(r.n2.probs, r.n1.probs);
  assert.throws(() => {
    useNativeKernels(1);
    try { crossentropy_forward(new Float32Array(T * V), logits, targets.map((t) => t + V), T, V); } finally { useNativeKernels(0); }
  }, /target id out of range/);
});

test('native causal attention = TypeScript (forward and backward)', { skip }, () => {
  const rng = new Rng(9);
  const B = 3, S = 19, H = 2, Dh = 12, n = B * S * H * Dh;
  const q = rand(n, rng), k = rand(n, rng), v = rand(n, rng), dout = rand(n, rng);
  const g0 = [rand(n, rng), rand(n, rng), rand(n, rng)];
  const r = both(() => {
    const out = new Float32Array(n), att = new Float32Array(B * H * S * S);
    attention_forward(out, att, q, k, v, B, S, H, Dh);
    const [dq, dk, dv] = g0.map((g) => g.slice());
    attention_backward(dq, dk, dv, dout, q, k, v, att, B, S, H, Dh);
    return [out, att, dq, dk, dv];
  });
  ['out', 'att', 'dq', 'dk', 'dv'].forEach((name, i) => {
    close(name, r.n1[i], r.ref[i], 2e-5);
    assert.deepEqual(r.n2[i], r.n1[i], `${name}: thread count changed the result`);
  });
});

test('a whole training step: native kernels give the TypeScript loss and gradients', { skip }, () => {
  const cfg: ModelConfig = {
    vocab: 300, dim: 32, nLayer: 2, nHead: 2, seqLen: 16, nExpert: 4, ffnDim: 24, qkNorm: true,
    ropeTheta: 10000, rmsEps: 1e-5, initStd: 0.02,
    router: { scoring: 'softmax', K: 2, normalize: false, lbCoef: 0.01, lbNorm: 'megatron', zCoef: 0.001 },
  };
  const rng = new Rng(2);
  const B = 4;
  const inputs = Int32Array.from({ length: B * cfg.seqLen }, () => Math.floor(rng.uniform() * cfg.vocab));
  const targets = Int32Array.from({ length: B * cfg.seqLen }, () => Math.floor(rng.uniform() * cfg.vocab));
  const r = both(() => {
    const m = new MoeLM(cfg);
    m.init(4);
    m.zeroGrads();
    const { stats, cache } = m.forward(inputs, targets, B);
    m.backward(cache);
    return { loss: stats.loss, grads: m.grads.slice() };
  });
  assert.ok(Math.abs(r.n1.loss - r.ref.loss) <= 1e-5 * r.ref.loss, `loss ${r.n1.loss} vs ${r.ref.loss}`);
  close('grads', r.n1.grads, r.ref.grads, 1e-4);
  assert.deepEqual(r.n2.grads, r.n1.grads);
});

test('native AdamW step = TypeScript AdamW step, bit for bit', { skip }, () => {
  const rng = new Rng(12);
  const layout = [
    { name: 'a', offset: 0, size: 70000, shape: [70000], decay: true, init: 'normal' },
    { name: 'b', offset: 70000, size: 33, shape: [33], decay: false, init: 'ones' },
  ] as unknown as ParamInfo[];
  const n = 70033;
  const p0 = rand(n, rng);
  const grads = [rand(n, rng), rand(n, rng), rand(n, rng)];
  const r = both(() => {
    const opt = new AdamW(layout, n, { lr: 3e-3, warmup: 1, steps: 10, weightDecay: 0.1, beta2: 0.95 });
    const p = p0.slice();
    grads.forEach((g, i) => opt.step(p, g, 1e-3 * (i + 1)));
    return [p, opt.m, opt.v];
  });
  r.n1.forEach((x, i) => assert.deepEqual(x, r.ref[i], `array ${i}: native differs from TypeScript`));
  r.n2.forEach((x, i) => assert.deepEqual(x, r.ref[i]));
});

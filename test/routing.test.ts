// Router variants on hand-built weights whose answers are known in closed form.
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { ReferenceBackend } from '../src/backend/reference.js';
import { moeFfn, route, type MoeWeights } from '../src/nn/moe.js';
import { GGMLType, type Tensor } from '../src/tensor.js';

const silu = (x: number) => x / (1 + Math.exp(-x));
const sigmoid = (x: number) => 1 / (1 + Math.exp(-x));

function f32(name: string, shape: number[], values: number[]): Tensor {
  return { name, type: GGMLType.F32, shape, data: new Uint8Array(new Float32Array(values).buffer) };
}

// D = 1, F = 1: expert e computes silu(g_e · x) · (1 · x) · 1, so with x = 1 its output is silu(g_e).
// Router logits are ln(1), ln(3), ln(2): softmax = [1/6, 1/2, 1/3]; top-2 = experts 1 and 2.
const g = [1, 3, 2];
const experts = (): MoeWeights => ({
  router: f32('router', [3, 1], [Math.log(1), Math.log(3), Math.log(2)]),
  gateExps: f32('gate', [3, 1, 1], g),
  upExps: f32('up', [3, 1, 1], [1, 1, 1]),
  downExps: f32('down', [3, 1, 1], [1, 1, 1]),
});
const x = new Float32Array([1]);

test('softmax → top-k without renormalisation (OLMoE, Qwen2-MoE, DeepSeekMoE)', () => {
  const { y, routing } = moeFfn(new ReferenceBackend(), x, 1, experts(), { K: 2, router: { scoring: 'softmax', normalize: false, scale: 1 } });
  assert.deepEqual([...routing.ids], [1, 2]);
  assert.ok(Math.abs(routing.weights[0] - 1 / 2) < 1e-6 && Math.abs(routing.weights[1] - 1 / 3) < 1e-6);
  const want = (1 / 2) * silu(3) + (1 / 3) * silu(2);
  assert.ok(Math.abs(y[0] - want) < 1e-5, `${y[0]} vs ${want}`);
});

test('softmax → top-k, renormalised (Mixtral, Qwen3-MoE, Granite) equals top-k logits → softmax', () => {
  const { y, routing } = moeFfn(new ReferenceBackend(), x, 1, experts(), { K: 2, router: { scoring: 'softmax', normalize: true, scale: 1 } });
  // top-k-then-softmax over logits ln3, ln2 gives 3/5 and 2/5
  assert.ok(Math.abs(routing.weights[0] - 0.6) < 1e-6 && Math.abs(routing.weights[1] - 0.4) < 1e-6);
  const want = 0.6 * silu(3) + 0.4 * silu(2);
  assert.ok(Math.abs(y[0] - want) < 1e-5, `${y[0]} vs ${want}`);
});

test('routed scaling factor multiplies the final weights', () => {
  const r = route(new Float32Array([Math.log(1), Math.log(3), Math.log(2)]), 1, 3, 2, { scoring: 'softmax', normalize: true, scale: 2.5 });
  assert.ok(Math.abs(r.weights[0] - 1.5) < 1e-6 && Math.abs(r.weights[1] - 1.0) < 1e-6);
});

test('sigmoid scoring with a selection-only bias picks by biased score but weighs by the unbiased one (DeepSeek-V3)', () => {
  const logits = new Float32Array([2, 0, 1]);
  const bias = new Float32Array([0, 5, 0]); // pushes expert 1 into the selection
  const r = route(logits, 1, 3, 2, { scoring: 'sigmoid', normalize: false, scale: 1, selectionBias: bias });
  assert.deepEqual([...r.ids], [1, 0]);
  assert.ok(Math.abs(r.weights[0] - sigmoid(0)) < 1e-6 && Math.abs(r.weights[1] - sigmoid(2)) < 1e-6);
});

test('shared expert behind a sigmoid gate (Qwen2-MoE) and an always-on shared expert (DeepSeekMoE)', () => {
  const shared = { gate: f32('sg', [1, 1], [1]), up: f32('su', [1, 1], [2]), down: f32('sd', [1, 1], [1]) };
  // shared(x=1) = silu(1) · 2
  const routed = 0.5 * silu(3) + (1 / 3) * silu(2);
  const gated = moeFfn(new ReferenceBackend(), x, 1, { ...experts(), shared, sharedGate: f32('sgi', [1, 1], [-0.5]) }, {
    K: 2,
    router: { scoring: 'softmax', normalize: false, scale: 1 },
  });
  assert.ok(Math.abs(gated.y[0] - (routed + sigmoid(-0.5) * silu(1) * 2)) < 1e-5);
  const plain = moeFfn(new ReferenceBackend(), x, 1, { ...experts(), shared }, { K: 2, router: { scoring: 'softmax', normalize: false, scale: 1 } });
  assert.ok(Math.abs(plain.y[0] - (routed + silu(1) * 2)) < 1e-5);
});

test('several tokens route independently', () => {
  // token 0: x = 1, token 1: x = -1 flips the router order (logits negate)
  const { routing } = moeFfn(new ReferenceBackend(), new Float32Array([1, -1]), 2, experts(), {
    K: 1,
    router: { scoring: 'softmax', normalize: true, scale: 1 },
  });
  assert.equal(routing.ids[0], 1);
  assert.equal(routing.ids[1], 0);
  assert.ok(Math.abs(routing.weights[1] - 1) < 1e-6);
});

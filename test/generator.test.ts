/**
 * The random-weight test-model generator: the plan has every tensor llama.cpp asks for, values are
 * reproducible and streamed, and llama.cpp loads each architecture and gives decisive logits on
 * real text.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync } from 'node:fs';
import { join } from 'node:path';
import { GGMLType, numel } from '../src/tensor.js';
import { openGGUF } from '../src/formats/gguf.js';
import { dequantize } from '../src/formats/quants.js';
import {
  ARCHS, PRESETS, generateModel, makeSpec, paramCount, planTensors, sampleText, tensorType, tensorValues,
} from '../src/testing/generate-model.js';
import { argmaxRows, oracleAvailable, openOracle } from '../src/testing/llama-oracle.js';

const CACHE = join(import.meta.dirname, '..', '.cache', 'test-generator');
mkdirSync(CACHE, { recursive: true });

test('plan: shapes follow llama.cpp for each architecture', () => {
  const names = (arch: (typeof ARCHS)[number], over = {}) => new Map(planTensors(makeSpec(arch, over)).map((t) => [t.name, t.shape]));
  const q2 = names('qwen2moe', { D: 64, nHead: 4, nHeadKv: 2, F: 32, sharedF: 48, E: 4 });
  assert.deepEqual(q2.get('blk.1.ffn_gate_exps.weight'), [4, 32, 64]);
  assert.deepEqual(q2.get('blk.1.ffn_down_exps.weight'), [4, 64, 32]);
  assert.deepEqual(q2.get('blk.0.ffn_gate_inp_shexp.weight'), [64]);
  assert.deepEqual(q2.get('blk.0.ffn_down_shexp.weight'), [64, 48]);
  assert.deepEqual(q2.get('blk.0.attn_k.bias'), [32]);
  const q3 = names('qwen3moe', { D: 64, nHead: 4, nHeadKv: 2, headDim: 24 });
  assert.deepEqual(q3.get('blk.0.attn_q.weight'), [96, 64]);
  assert.deepEqual(q3.get('blk.0.attn_q_norm.weight'), [24]);
  assert.deepEqual(q3.get('blk.0.attn_output.weight'), [64, 96]);
  const ol = names('olmoe', { D: 64, nHead: 4, nHeadKv: 4 });
  assert.deepEqual(ol.get('blk.0.attn_k_norm.weight'), [64]);
  const ds = names('deepseek', { nLayer: 3, leadingDense: 1, D: 64, F: 16, nShared: 2, denseF: 96, E: 8 });
  assert.deepEqual(ds.get('blk.0.ffn_up.weight'), [96, 64]);
  assert.equal(ds.has('blk.0.ffn_gate_inp.weight'), false);
  assert.deepEqual(ds.get('blk.2.ffn_up_shexp.weight'), [32, 64]);
  assert.equal(names('llama').has('blk.0.ffn_gate_inp_shexp.weight'), false);
});

test('values are reproducible per (arch, seed, tensor) and differ otherwise', () => {
  const spec = makeSpec('llama');
  const t = planTensors(spec).find((x) => x.name === 'blk.1.attn_q.weight')!;
  const a = tensorValues(t, 1, 'llama');
  assert.deepEqual(tensorValues(t, 1, 'llama'), a);
  assert.notDeepEqual(tensorValues(t, 2, 'llama'), a);
  let ss = 0;
  for (const x of a) ss += x * x;
  const std = Math.sqrt(ss / a.length);
  assert.ok(Math.abs(std - 1 / Math.sqrt(spec.D)) < 0.1 / Math.sqrt(spec.D), `attn_q std ${std}`);
});

test('q4_k_m mix: output Q6_K, routers and norms F32, use_more_bits layers of ffn_down Q6_K', () => {
  const spec = makeSpec('olmoe', { nLayer: 8, E: 16 });
  const types = new Map(planTensors(spec).map((t) => [t.name, tensorType(t, 'q4_k_m', spec)]));
  assert.equal(types.get('output.weight'), GGMLType.Q6_K);
  assert.equal(types.get('token_embd.weight'), GGMLType.Q4_K);
  assert.equal(types.get('blk.0.ffn_gate_inp.weight'), GGMLType.F32);
  assert.equal(types.get('blk.0.attn_norm.weight'), GGMLType.F32);
  // use_more_bits(i, 8): i < 1 || i >= 7 || (i - 1) % 3 == 2  ->  layers 0, 3, 6, 7
  const q6 = [...Array(8).keys()].filter((i) => types.get(`blk.${i}.ffn_down_exps.weight`) === GGMLType.Q6_K);
  assert.deepEqual(q6, [0, 3, 6, 7]);
  assert.equal(types.get('blk.1.ffn_up_exps.weight'), GGMLType.Q4_K);
});

test('presets have the reference shapes', () => {
  const o = paramCount(PRESETS['olmoe-1b-7b']!);
  assert.ok(o > 6.5e9 && o < 7.3e9, `olmoe-1b-7b params ${o}`);
  const q = paramCount(PRESETS['qwen3-30b-a3b']!);
  assert.ok(q > 29e9 && q < 31.5e9, `qwen3-30b-a3b params ${q}`);
});

test('GGUF round trip: written tensors equal the generated values (F32 exact, Q8_0 close)', async () => {
  const spec = makeSpec('qwen2moe');
  for (const type of ['f32', 'q8_0'] as const) {
    const path = join(CACHE, `roundtrip-${type}.gguf`);
    await generateModel(spec, { gguf: path, type });
    const f = openGGUF(path);
    try {
      assert.equal(f.get('general.architecture'), 'qwen2moe');
      assert.equal(f.get('qwen2moe.expert_shared_feed_forward_length'), spec.sharedF);
      const plan = planTensors(spec);
      assert.equal(f.tensors.size, plan.length);
      for (const name of ['blk.1.ffn_down_exps.weight', 'output.weight', 'blk.0.attn_v.bias']) {
        const t = plan.find((x) => x.name === name)!;
        const want = tensorValues(t, spec.seed, spec.arch);
        const got = f.tensors.get(name)!;
        assert.deepEqual(got.shape, t.shape);
        const x = dequantize(got.type, got.data, numel(t.shape));
        let maxErr = 0;
        let maxAbs = 0;
        for (let i = 0; i < x.length; i++) {
          maxErr = Math.max(maxErr, Math.abs(x[i]! - want[i]!));
          maxAbs = Math.max(maxAbs, Math.abs(want[i]!));
        }
        if (got.type === GGMLType.F32) assert.equal(maxErr, 0, name);
        else assert.ok(maxErr <= maxAbs / 100, `${name}: ${maxErr} vs max ${maxAbs}`);
      }
    } finally {
      f.close();
    }
  }
});

test('llama.cpp loads every architecture and gives decisive logits on real text', async (t) => {
  const ok = await oracleAvailable();
  if (!ok.ok) return t.skip(ok.reason);
  const text = sampleText(1);
  for (const arch of ARCHS) {
    const path = join(CACHE, `${arch}-f32.gguf`);
    await generateModel(makeSpec(arch), { gguf: path, type: 'f32' });
    const o = await openOracle(path, { ctx: 256 });
    try {
      const ids = o.tokenize(text).slice(0, 64);
      assert.equal(ids.length, 64);
      const V = o.vocabSize;
      const L = await o.logitsAll(ids);
      let lo = Infinity;
      let hi = -Infinity;
      for (const x of L) {
        assert.ok(Number.isFinite(x), `${arch}: non-finite logit`);
        lo = Math.min(lo, x);
        hi = Math.max(hi, x);
      }
      const range = hi - lo;
      const gaps: number[] = [];
      for (let p = 0; p < 64; p++) {
        const row = Array.from(L.subarray(p * V, (p + 1) * V)).sort((a, b) => b - a);
        gaps.push(row[0]! - row[1]!);
      }
      gaps.sort((a, b) => a - b);
      const distinct = new Set(argmaxRows(L, 64, V)).size;
      t.diagnostic(`${arch}: logit range ${range.toFixed(2)}, top-1 gap min ${gaps[0]!.toExponential(2)} median ${gaps[32]!.toFixed(3)}, ${distinct} distinct argmax over 64 positions`);
      assert.ok(range > 10, `${arch}: logit range ${range} is too flat`);
      assert.ok(gaps[0]! > 1e-5 * range, `${arch}: near-tie at the top (gap ${gaps[0]})`);
      assert.ok(gaps[32]! > 5e-3 * range, `${arch}: median top-1 gap ${gaps[32]} is small`);
      assert.ok(distinct >= 8, `${arch}: only ${distinct} distinct predictions: the context barely matters`);
    } finally {
      await o.close();
    }
  }
});

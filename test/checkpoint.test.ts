import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CheckpointError, ShapeError, UnsupportedError } from '../src/errors.js';
import { GGMLType, type Tensor } from '../src/tensor.js';
import { openCheckpoint, takeTensors } from '../src/formats/checkpoint.js';
import { openGGUF, plainValue } from '../src/formats/gguf.js';
import { ggufToHFConfig, hfConfigToGGUF, SUPPORTED_MODEL_TYPES } from '../src/formats/hf-config.js';
import { permuteQKRows } from '../src/formats/names.js';
import { writeSafetensorsFolder, type SafetensorsWriteTensor } from '../src/formats/safetensors.js';
import { convertGGUFToHF, convertHFToGGUF, targetType } from '../src/convert.js';
import { dequantize } from '../src/formats/quants.js';
import { gpt2TokenizerJson } from '../src/testing/vocab.js';

const repoRoot = resolve(fileURLToPath(import.meta.url), '../..');
const root = join(repoRoot, '.cache', 'test-checkpoint');
rmSync(root, { recursive: true, force: true });
mkdirSync(root, { recursive: true });

function f32(n: number, seed: number): Float32Array {
  const f = new Float32Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    f[i] = (s / 2 ** 32) * 2 - 1;
  }
  return f;
}

const D = 32, H = 4, HKV = 2, E = 3, F = 16, FD = 24, V = 40, L = 2;

interface Fam { config: Record<string, unknown>; tensors: Array<[string, number[]]> }

/** A tiny random HF checkpoint of each supported family (tensor names as in transformers). */
function family(mt: string): Fam {
  const dh = mt === 'qwen3_moe' ? 16 : D / H;
  const base: Record<string, unknown> = {
    model_type: mt, hidden_size: D, num_attention_heads: H, num_key_value_heads: HKV, num_hidden_layers: L,
    vocab_size: V, max_position_embeddings: 256, rms_norm_eps: 1e-6, rope_theta: 10000, num_experts_per_tok: 2, intermediate_size: F,
  };
  const t: Array<[string, number[]]> = [['model.embed_tokens.weight', [V, D]], ['model.norm.weight', [D]]];
  if (mt !== 'granitemoe') t.push(['lm_head.weight', [V, D]]);
  for (let l = 0; l < L; l++) {
    const p = `model.layers.${l}.`;
    t.push([p + 'input_layernorm.weight', [D]], [p + 'post_attention_layernorm.weight', [D]]);
    t.push([p + 'self_attn.q_proj.weight', [H * dh, D]], [p + 'self_attn.k_proj.weight', [HKV * dh, D]], [p + 'self_attn.v_proj.weight', [HKV * dh, D]], [p + 'self_attn.o_proj.weight', [D, H * dh]]);
    if (mt === 'qwen2_moe') t.push([p + 'self_attn.q_proj.bias', [H * dh]], [p + 'self_attn.k_proj.bias', [HKV * dh]], [p + 'self_attn.v_proj.bias', [HKV * dh]]);
    if (mt === 'qwen3_moe') t.push([p + 'self_attn.q_norm.weight', [dh]], [p + 'self_attn.k_norm.weight', [dh]]);
    if (mt === 'olmoe') t.push([p + 'self_attn.q_norm.weight', [H * dh]], [p + 'self_attn.k_norm.weight', [HKV * dh]]);
    if (mt === 'deepseek' && l === 0) {
      t.push([p + 'mlp.gate_proj.weight', [FD, D]], [p + 'mlp.up_proj.weight', [FD, D]], [p + 'mlp.down_proj.weight', [D, FD]]);
      continue;
    }
    if (mt === 'granitemoe') {
      t.push([p + 'block_sparse_moe.router.layer.weight', [E, D]], [p + 'block_sparse_moe.input_linear.weight', [E, 2 * F, D]], [p + 'block_sparse_moe.output_linear.weight', [E, D, F]]);
      continue;
    }
    const ef = mt === 'mixtral' ? F : 8;
    t.push([p + (mt === 'mixtral' ? 'block_sparse_moe.gate.weight' : 'mlp.gate.weight'), [E, D]]);
    for (let e = 0; e < E; e++) {
      if (mt === 'mixtral') {
        const q = `${p}block_sparse_moe.experts.${e}.`;
        t.push([q + 'w1.weight', [ef, D]], [q + 'w2.weight', [D, ef]], [q + 'w3.weight', [ef, D]]);
      } else {
        const q = `${p}mlp.experts.${e}.`;
        t.push([q + 'gate_proj.weight', [ef, D]], [q + 'up_proj.weight', [ef, D]], [q + 'down_proj.weight', [D, ef]]);
      }
    }
    if (mt === 'qwen2_moe') {
      t.push([p + 'mlp.shared_expert.gate_proj.weight', [20, D]], [p + 'mlp.shared_expert.up_proj.weight', [20, D]], [p + 'mlp.shared_expert.down_proj.weight', [D, 20]], [p + 'mlp.shared_expert_gate.weight', [1, D]]);
    }
    if (mt === 'deepseek') t.push([p + 'mlp.shared_experts.gate_proj.weight', [16, D]], [p + 'mlp.shared_experts.up_proj.weight', [16, D]], [p + 'mlp.shared_experts.down_proj.weight', [D, 16]]);
  }
  const cfg: Record<string, unknown> = { ...base };
  switch (mt) {
    case 'mixtral': cfg.num_local_experts = E; break;
    case 'qwen2_moe': Object.assign(cfg, { num_experts: E, moe_intermediate_size: 8, shared_expert_intermediate_size: 20, norm_topk_prob: false }); break;
    case 'qwen3_moe': Object.assign(cfg, { num_experts: E, moe_intermediate_size: 8, head_dim: 16, norm_topk_prob: true }); break;
    case 'olmoe': Object.assign(cfg, { num_experts: E }); break;
    case 'granitemoe': Object.assign(cfg, { num_local_experts: E, embedding_multiplier: 12, residual_multiplier: 0.22, attention_multiplier: 0.0078125, logits_scaling: 6, tie_word_embeddings: true }); break;
    case 'deepseek': Object.assign(cfg, { n_routed_experts: E, n_shared_experts: 2, moe_intermediate_size: 8, first_k_dense_replace: 1, intermediate_size: FD }); break;
  }
  return { config: cfg, tensors: t };
}

function writeHF(dirName: string, fam: Fam, type = GGMLType.F32, maxShardBytes?: number): { dir: string; values: Map<string, Float32Array> } {
  const dir = join(root, dirName);
  rmSync(dir, { recursive: true, force: true });
  mkdirSync(dir, { recursive: true });
  writeFileSync(join(dir, 'config.json'), JSON.stringify(fam.config));
  writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(gpt2TokenizerJson(257)));
  const values = new Map<string, Float32Array>();
  const ts: SafetensorsWriteTensor[] = fam.tensors.map(([name, shape], i) => {
    const n = shape.reduce((a, b) => a * b, 1);
    const v = f32(n, i + 1);
    values.set(name, v);
    return { name, type: GGMLType.F32, shape, data: new Uint8Array(v.buffer) };
  });
  void type;
  writeSafetensorsFolder(dir, ts, { maxShardBytes });
  return { dir, values };
}

const asF32 = (t: Tensor) => dequantize(t.type, t.data, t.shape.reduce((a, b) => a * b, 1));

test('permute: matches the numpy reshape/swapaxes definition and inverts', () => {
  // rows r = h*Dh + s*Dh/2 + i (HF) go to h*Dh + 2i + s (GGUF); 2 heads of Dh=4, 1 column
  const src = new Uint8Array([0, 1, 2, 3, 4, 5, 6, 7]);
  const p = permuteQKRows(src, 2, 1);
  assert.deepEqual([...p], [0, 2, 1, 3, 4, 6, 5, 7]);
  assert.deepEqual(permuteQKRows(p, 2, 1, true), src);
  const big = new Uint8Array(8 * 6 * 3).map((_, i) => i * 7);
  assert.deepEqual(permuteQKRows(permuteQKRows(big, 3, 8), 3, 8, true), big);
  assert.notDeepEqual(permuteQKRows(big, 3, 8), big);
});

test('hf-config: unknown model_type lists the supported ones; keys match llama.cpp', () => {
  assert.throws(() => hfConfigToGGUF({ model_type: 'gpt2' }), (e: unknown) => e instanceof UnsupportedError && SUPPORTED_MODEL_TYPES.every((m) => (e as Error).message.includes(m)));
  const g = new Map(hfConfigToGGUF(family('granitemoe').config).metadata);
  assert.equal(plainValue(g.get('general.architecture')!), 'granitemoe');
  assert.equal(plainValue(g.get('granitemoe.embedding_scale')!), 12);
  assert.equal(plainValue(g.get('granitemoe.attention.scale')!), 0.0078125);
  assert.equal(plainValue(g.get('granitemoe.logit_scale')!), 6);
  assert.ok(Math.abs((plainValue(g.get('granitemoe.residual_scale')!) as number) - 0.22) < 1e-7);
  const ds = new Map(hfConfigToGGUF(family('deepseek').config).metadata);
  assert.equal(plainValue(ds.get('deepseek.leading_dense_block_count')!), 1);
  assert.equal(plainValue(ds.get('deepseek.expert_shared_count')!), 2);
  assert.equal(plainValue(ds.get('deepseek.expert_feed_forward_length')!), 8);
  assert.equal(plainValue(ds.get('deepseek.rope.scaling.type')!), 'none');
  const q3 = new Map(hfConfigToGGUF(family('qwen3_moe').config).metadata);
  assert.equal(plainValue(q3.get('qwen3moe.attention.key_length')!), 16);
  assert.equal(plainValue(q3.get('qwen3moe.expert_weights_norm')!), true);
  const mx = new Map(hfConfigToGGUF(family('mixtral').config).metadata);
  assert.equal(plainValue(mx.get('general.architecture')!), 'llama');
  assert.equal(plainValue(mx.get('llama.expert_count')!), E);
  assert.equal(plainValue(mx.get('llama.rope.dimension_count')!), D / H);
  // inverse: config -> GGUF -> config keeps every field we map
  for (const mt of SUPPORTED_MODEL_TYPES) {
    const cfg = family(mt).config;
    const back = ggufToHFConfig(new Map(hfConfigToGGUF(cfg).metadata), { tiedEmbeddings: cfg.tie_word_embeddings === true });
    for (const [k, v] of Object.entries(cfg)) {
      if (typeof v === 'number') assert.ok(Math.abs((back[k] as number) - v) <= Math.abs(v) * 1e-6, `${mt}.${k}: ${back[k]} vs ${v}`);
      else assert.deepEqual(back[k], v, `${mt}.${k}`);
    }
  }
});

test('checkpoint: every family loads from HF with GGUF names/layouts and round-trips through GGUF', async () => {
  for (const mt of SUPPORTED_MODEL_TYPES) {
    const fam = family(mt);
    const { dir, values } = writeHF(`hf-${mt}`, fam, GGMLType.F32, mt === 'deepseek' ? 20000 : undefined);
    const ck = openCheckpoint(dir);
    try {
      assert.equal(ck.format, 'hf');
      const arch = ck.arch;
      // experts stacked [E, F, D]
      const l = mt === 'deepseek' ? 1 : 0;
      const gate = ck.tensors.get(`blk.${l}.ffn_gate_exps.weight`)!;
      const down = ck.tensors.get(`blk.${l}.ffn_down_exps.weight`)!;
      const ef = mt === 'mixtral' || mt === 'granitemoe' ? F : 8;
      assert.deepEqual(gate.shape, [E, ef, D], mt);
      assert.deepEqual(down.shape, [E, D, ef], mt);
      const g = asF32(gate);
      if (mt === 'granitemoe') {
        const fused = values.get(`model.layers.${l}.block_sparse_moe.input_linear.weight`)!;
        // expert 2 gate = rows [0, F) of fused[2]; up = rows [F, 2F)
        assert.deepEqual(g.subarray(2 * F * D, 3 * F * D), fused.subarray(2 * 2 * F * D, (2 * 2 * F + F) * D));
        const up = asF32(ck.tensors.get(`blk.${l}.ffn_up_exps.weight`)!);
        assert.deepEqual(up.subarray(2 * F * D, 3 * F * D), fused.subarray((2 * 2 * F + F) * D, 3 * 2 * F * D));
        assert.equal(ck.tensors.has('output.weight'), false);
      } else {
        const hf1 = values.get(mt === 'mixtral' ? `model.layers.${l}.block_sparse_moe.experts.1.w1.weight` : `model.layers.${l}.mlp.experts.1.gate_proj.weight`)!;
        assert.deepEqual(g.subarray(ef * D, 2 * ef * D), hf1);
      }
      // Q permutation only for llama-family
      const q = asF32(ck.tensors.get(`blk.${l}.attn_q.weight`)!);
      const hq = values.get(`model.layers.${l}.self_attn.q_proj.weight`)!;
      const dh = mt === 'qwen3_moe' ? 16 : D / H;
      const permuted = mt === 'mixtral' || mt === 'granitemoe' || mt === 'deepseek';
      // GGUF row 1 of head 0 = HF row Dh/2 when permuted
      assert.deepEqual(q.subarray(D, 2 * D), permuted ? hq.subarray((dh / 2) * D, (dh / 2 + 1) * D) : hq.subarray(D, 2 * D), mt);
      if (mt === 'qwen2_moe') assert.deepEqual(ck.tensors.get('blk.0.ffn_gate_inp_shexp.weight')!.shape, [D]);
      if (mt === 'deepseek') assert.deepEqual(ck.tensors.get('blk.0.ffn_gate.weight')!.shape, [FD, D]);

      // HF -> GGUF (f32) -> same canonical tensors
      const gpath = join(root, `${mt}.gguf`);
      await convertHFToGGUF(dir, gpath, { type: 'f32' });
      const gg = openCheckpoint(gpath);
      try {
        assert.equal(gg.arch, arch);
        assert.deepEqual([...gg.tensors.keys()].sort(), [...ck.tensors.keys()].sort());
        for (const [name, t] of ck.tensors) {
          const o = gg.tensors.get(name)!;
          assert.deepEqual(o.shape, t.shape, name);
          assert.deepEqual(asF32(o), asF32(t), name);
        }
        for (const [k, v] of ck.metadata) assert.deepEqual(gg.metadata.get(k), v, k);
      } finally {
        gg.close();
      }
      // GGUF -> HF folder -> identical HF tensors and names
      const back = join(root, `back-${mt}`);
      rmSync(back, { recursive: true, force: true });
      await convertGGUFToHF(gpath, back);
      const cfg = JSON.parse(readFileSync(join(back, 'config.json'), 'utf8'));
      assert.equal(cfg.model_type, mt);
      const { openSafetensorsFolder } = await import('../src/formats/safetensors.js');
      const st = openSafetensorsFolder(back);
      try {
        assert.deepEqual([...st.tensors.keys()].sort(), [...values.keys()].sort(), mt);
        for (const [name, v] of values) assert.deepEqual(asF32(st.tensors.get(name)!), v, name);
      } finally {
        st.close();
      }
    } finally {
      ck.close();
    }
  }
});

test('convert: type policy and quantized output', async () => {
  assert.equal(targetType('blk.0.attn_norm.weight', [32], 'q4_k'), GGMLType.F32);
  assert.equal(targetType('blk.0.ffn_gate_inp.weight', [8, 256], 'q8_0'), GGMLType.F32);
  assert.equal(targetType('blk.0.ffn_up_exps.weight', [8, 64, 256], 'q4_k'), GGMLType.Q4_K);
  assert.equal(targetType('blk.0.ffn_down_exps.weight', [8, 256, 96], 'q4_k'), GGMLType.Q8_0);
  assert.equal(targetType('output.weight', [100, 512], 'q4_k'), GGMLType.Q6_K);
  assert.equal(targetType('blk.0.attn_q.weight', [40, 40], 'q8_0'), GGMLType.F16);
  const gpath = join(root, 'mixtral-q8.gguf');
  await convertHFToGGUF(join(root, 'hf-mixtral'), gpath, { type: 'q8_0' });
  const g = openGGUF(gpath);
  try {
    assert.equal(g.tensors.get('blk.0.ffn_gate_exps.weight')!.type, GGMLType.Q8_0);
    assert.equal(g.tensors.get('blk.0.ffn_gate_inp.weight')!.type, GGMLType.F32);
    assert.equal(g.get('general.file_type'), 7);
  } finally {
    g.close();
  }
});

test('checkpoint: missing, extra and misshapen tensors are typed errors naming the tensor', () => {
  const fam = family('mixtral');
  const { dir } = writeHF('hf-missing', { ...fam, tensors: fam.tensors.filter(([n]) => n !== 'model.layers.1.block_sparse_moe.experts.2.w3.weight') });
  assert.throws(() => openCheckpoint(dir), (e: unknown) => e instanceof CheckpointError && /experts\.2\.w3\.weight is missing/.test((e as Error).message));
  const { dir: d2 } = writeHF('hf-extra', { ...fam, tensors: [...fam.tensors, ['model.layers.0.mystery.weight', [4]]] });
  assert.throws(() => openCheckpoint(d2), (e: unknown) => e instanceof CheckpointError && /unexpected tensor model\.layers\.0\.mystery\.weight/.test((e as Error).message));

  const ck = openCheckpoint(join(root, 'hf-mixtral'));
  try {
    const expected = [...ck.tensors.values()].map((t) => ({ name: t.name, shape: [...t.shape] }));
    assert.equal(takeTensors(ck, expected).size, ck.tensors.size);
    assert.equal(takeTensors(ck, [...expected, { name: 'blk.9.nothing.weight', shape: [1], optional: true }]).size, ck.tensors.size);
    assert.throws(() => takeTensors(ck, expected.slice(1)), (e: unknown) => e instanceof CheckpointError && (e as CheckpointError).extra.tensor === expected[0]!.name && /unexpected tensors/.test((e as Error).message));
    assert.throws(() => takeTensors(ck, [...expected, { name: 'blk.5.attn_q.weight', shape: [D, D] }]), (e: unknown) => e instanceof CheckpointError && /blk\.5\.attn_q\.weight \[32, 32\] is missing/.test((e as Error).message));
    const wrong = expected.map((e) => (e.name === 'blk.0.attn_k.weight' ? { ...e, shape: [D, D] } : e));
    assert.throws(() => takeTensors(ck, wrong), (e: unknown) => e instanceof ShapeError && /blk\.0\.attn_k\.weight has shape \[16, 32\].*need \[32, 32\]/.test((e as Error).message));
  } finally {
    ck.close();
  }
  assert.throws(() => openCheckpoint(join(root, 'nope')), CheckpointError);
});

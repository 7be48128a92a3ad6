/**
 * HF <-> GGUF tensor names and layouts for the supported MoE families.
 *
 * Names follow gguf-py/gguf/tensor_mapping.py and the convert_hf_to_gguf.py model classes:
 *   model.layers.3.self_attn.q_proj.weight                  <-> blk.3.attn_q.weight
 *   model.layers.3.block_sparse_moe.experts.7.w1.weight (x E) <-> blk.3.ffn_gate_exps.weight [E, F, D]
 * Layout changes done at load time (so model code sees one layout):
 *  - per-expert matrices are stacked into [E, out, in] (torch.stack(dim=0) in the converter);
 *  - llama-family Q/K rows are permuted from HF's rotate-half RoPE order to ggml's interleaved-pair
 *    order (LlamaModel.permute / DeepseekModel.permute);
 *  - GraniteMoE's fused input_linear [E, 2F, D] is split into gate (first F rows) and up (GraniteMoeModel);
 *  - Qwen2-MoE's shared_expert_gate [1, D] is squeezed to [D] (reshape_tensors squeezes).
 */
import { CheckpointError, ShapeError } from '../errors.js';
import { numel, tensorBytes, typeName, type Tensor } from '../tensor.js';

const GLOBAL: Array<[string, string]> = [
  ['model.embed_tokens.weight', 'token_embd.weight'],
  ['model.norm.weight', 'output_norm.weight'],
  ['lm_head.weight', 'output.weight'],
];

/** HF suffixes (after `model.layers.N.`) that ignore expert handling, per model_type. */
function layerTable(mt: string): Array<[string, string]> {
  const t: Array<[string, string]> = [
    ['input_layernorm.weight', 'attn_norm.weight'],
    ['post_attention_layernorm.weight', 'ffn_norm.weight'],
  ];
  for (const [hf, g] of [['q_proj', 'attn_q'], ['k_proj', 'attn_k'], ['v_proj', 'attn_v'], ['o_proj', 'attn_output']] as const) {
    t.push([`self_attn.${hf}.weight`, `${g}.weight`], [`self_attn.${hf}.bias`, `${g}.bias`]);
  }
  if (mt === 'qwen3_moe' || mt === 'olmoe') t.push(['self_attn.q_norm.weight', 'attn_q_norm.weight'], ['self_attn.k_norm.weight', 'attn_k_norm.weight']);
  if (mt === 'mixtral') t.push(['block_sparse_moe.gate.weight', 'ffn_gate_inp.weight']);
  else if (mt === 'granitemoe') {
    t.push(['block_sparse_moe.router.layer.weight', 'ffn_gate_inp.weight'], ['block_sparse_moe.output_linear.weight', 'ffn_down_exps.weight'], ['shared_mlp.output_linear.weight', 'ffn_down_shexp.weight']);
  } else t.push(['mlp.gate.weight', 'ffn_gate_inp.weight']);
  if (mt === 'qwen2_moe') {
    for (const x of ['gate', 'up', 'down']) t.push([`mlp.shared_expert.${x}_proj.weight`, `ffn_${x}_shexp.weight`]);
    t.push(['mlp.shared_expert_gate.weight', 'ffn_gate_inp_shexp.weight']);
  }
  if (mt === 'deepseek') {
    for (const x of ['gate', 'up', 'down']) t.push([`mlp.shared_experts.${x}_proj.weight`, `ffn_${x}_shexp.weight`], [`mlp.${x}_proj.weight`, `ffn_${x}.weight`]);
  }
  return t;
}

/** per-expert HF tensor -> (expert id, stacked GGUF suffix) */
function matchExpert(mt: string, suffix: string): { expert: number; gguf: string } | null {
  if (mt === 'mixtral') {
    const m = /^block_sparse_moe\.experts\.(\d+)\.(w1|w2|w3)\.weight$/.exec(suffix);
    if (!m) return null;
    return { expert: Number(m[1]), gguf: { w1: 'ffn_gate_exps.weight', w2: 'ffn_down_exps.weight', w3: 'ffn_up_exps.weight' }[m[2] as 'w1'] };
  }
  if (mt === 'granitemoe') return null;
  const m = /^mlp\.experts\.(\d+)\.(gate|up|down)_proj\.weight$/.exec(suffix);
  return m ? { expert: Number(m[1]), gguf: `ffn_${m[2]}_exps.weight` } : null;
}

function expertHFName(mt: string, layer: number, expert: number, ggufSuffix: string): string {
  const w = ggufSuffix.slice(4, ggufSuffix.indexOf('_exps')); // gate | up | down
  if (mt === 'mixtral') return `model.layers.${layer}.block_sparse_moe.experts.${expert}.${{ gate: 'w1', down: 'w2', up: 'w3' }[w]}.weight`;
  return `model.layers.${layer}.mlp.experts.${expert}.${w}_proj.weight`;
}

/** HF tensors that carry no weights (buffers saved by old transformers versions). */
export function isIgnoredHFTensor(name: string): boolean {
  return name.endsWith('.rotary_emb.inv_freq');
}

// ---- Q/K row permutation (convert_hf_to_gguf.py LlamaModel.permute) ---------------------------

/**
 * HF -> GGUF: rows of one head go from [half 0 | half 1] to interleaved pairs.
 * For head h, HF row h·Dh + s·Dh/2 + i moves to GGUF row h·Dh + 2i + s  (s ∈ {0,1}, i < Dh/2),
 * i.e. weights.reshape(n_head, 2, Dh/2, ...).swapaxes(1, 2). Works on raw bytes of any row type.
 */
export function permuteQKRows(src: Uint8Array, nHead: number, rowBytes: number, inverse = false): Uint8Array {
  const nRows = src.length / rowBytes;
  // callers validate shapes first (hfToGGUFTensors names the tensor); this is an internal invariant
  if (!Number.isInteger(nRows) || nRows % nHead !== 0 || (nRows / nHead) % 2 !== 0) throw new Error(`permuteQKRows: ${nRows} rows do not split into ${nHead} heads of even size`);
  const dh = nRows / nHead, half = dh / 2;
  const out = new Uint8Array(src.length);
  for (let h = 0; h < nHead; h++) {
    for (let s = 0; s < 2; s++) {
      for (let i = 0; i < half; i++) {
        const hfRow = h * dh + s * half + i;
        const ggRow = h * dh + 2 * i + s;
        const [from, to] = inverse ? [ggRow, hfRow] : [hfRow, ggRow];
        out.set(src.subarray(from * rowBytes, (from + 1) * rowBytes), to * rowBytes);
      }
    }
  }
  return out;
}

function rowBytesOf(t: Tensor): number {
  const inner = t.shape.length >= 2 ? t.shape[t.shape.length - 1]! : 1;
  return tensorBytes(t.type, t.shape) / (numel(t.shape) / inner);
}

function derived(name: string, src: Tensor, shape: number[], make: () => Uint8Array): Tensor {
  let data: Uint8Array | undefined;
  return {
    name,
    type: src.type,
    shape,
    get data() {
      data ??= make();
      return data;
    },
  };
}

export interface NameHParams {
  nHead: number;
  nHeadKv: number;
  nExpert: number;
  /** permute Q/K rows (llama-family) */
  permuteQK: boolean;
}

/**
 * Normalise HF tensors into canonical GGUF names and layouts. Data stays lazy: nothing is read
 * or copied until a tensor's `data` is touched. Every HF tensor must be used: an unknown name
 * is a CheckpointError naming it.
 */
export function hfToGGUFTensors(mt: string, hf: Map<string, Tensor>, hp: NameHParams, fileOf: (name: string) => string): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  const table = new Map(layerTable(mt));
  const global = new Map(GLOBAL);
  const experts = new Map<string, { layer: number; gguf: string; parts: Map<number, Tensor> }>();
  const add = (name: string, t: Tensor, hfName: string) => {
    if (out.has(name)) throw new CheckpointError(fileOf(hfName), `tensor ${hfName} maps to ${name}, which another tensor already produced`, { tensor: hfName });
    out.set(name, t);
  };
  const splitHalves = (hfName: string, t: Tensor, gate: string, up: string) => {
    // [.., 2F, D] -> gate = rows [0, F), up = rows [F, 2F) of each leading slice
    const s = t.shape;
    if (s.length < 2 || s[s.length - 2]! % 2 !== 0) throw new ShapeError(fileOf(hfName), `tensor ${hfName} has shape [${s}], expected [.., 2F, D]`, { tensor: hfName });
    const f = s[s.length - 2]! / 2;
    const shape = [...s.slice(0, -2), f, s[s.length - 1]!];
    const lead = numel(s.slice(0, -2));
    const blockBytes = tensorBytes(t.type, shape) / lead; // bytes of one half within a slice
    const pick = (which: number) => () => {
      const src = t.data;
      if (lead === 1) return src.subarray(which * blockBytes, (which + 1) * blockBytes);
      const dst = new Uint8Array(blockBytes * lead);
      for (let e = 0; e < lead; e++) dst.set(src.subarray((2 * e + which) * blockBytes, (2 * e + which + 1) * blockBytes), e * blockBytes);
      return dst;
    };
    add(gate, derived(gate, t, shape, pick(0)), hfName);
    add(up, derived(up, t, shape, pick(1)), hfName);
  };

  for (const [hfName, t] of hf) {
    if (isIgnoredHFTensor(hfName)) continue;
    const g = global.get(hfName);
    if (g) {
      add(g, { name: g, type: t.type, shape: t.shape, get data() { return t.data; } }, hfName);
      continue;
    }
    const m = /^model\.layers\.(\d+)\.(.+)$/.exec(hfName);
    if (!m) throw new CheckpointError(fileOf(hfName), `unexpected tensor ${hfName} for a ${mt} model; is this the right checkpoint?`, { tensor: hfName });
    const layer = Number(m[1]);
    const suffix = m[2]!;
    const blk = `blk.${layer}.`;
    const ex = matchExpert(mt, suffix);
    if (ex) {
      if (ex.expert >= hp.nExpert) throw new CheckpointError(fileOf(hfName), `tensor ${hfName}: expert ${ex.expert} but the config has ${hp.nExpert} experts`, { tensor: hfName });
      const key = blk + ex.gguf;
      let e = experts.get(key);
      if (!e) experts.set(key, (e = { layer, gguf: ex.gguf, parts: new Map() }));
      e.parts.set(ex.expert, t);
      continue;
    }
    if (mt === 'granitemoe' && suffix === 'block_sparse_moe.input_linear.weight') {
      splitHalves(hfName, t, `${blk}ffn_gate_exps.weight`, `${blk}ffn_up_exps.weight`);
      continue;
    }
    if (mt === 'granitemoe' && suffix === 'shared_mlp.input_linear.weight') {
      splitHalves(hfName, t, `${blk}ffn_gate_shexp.weight`, `${blk}ffn_up_shexp.weight`);
      continue;
    }
    const gs = table.get(suffix);
    if (!gs) throw new CheckpointError(fileOf(hfName), `unexpected tensor ${hfName} for a ${mt} model; is this the right checkpoint?`, { tensor: hfName });
    const name = blk + gs;
    const isQ = gs.startsWith('attn_q.'), isK = gs.startsWith('attn_k.');
    if (hp.permuteQK && (isQ || isK)) {
      const heads = isQ ? hp.nHead : hp.nHeadKv;
      const rows = t.shape[0]!;
      if (rows % heads !== 0 || (rows / heads) % 2 !== 0) {
        throw new ShapeError(fileOf(hfName), `tensor ${hfName} has ${rows} rows, which do not split into ${heads} heads of even size (see num_attention_heads / num_key_value_heads in config.json)`, { tensor: hfName });
      }
      add(name, derived(name, t, t.shape, () => permuteQKRows(t.data, heads, rowBytesOf(t))), hfName);
    } else if (gs === 'ffn_gate_inp_shexp.weight' && t.shape.length === 2 && t.shape[0] === 1) {
      add(name, { name, type: t.type, shape: [t.shape[1]!], get data() { return t.data; } }, hfName);
    } else {
      add(name, { name, type: t.type, shape: t.shape, get data() { return t.data; } }, hfName);
    }
  }

  for (const [key, e] of experts) {
    const first = e.parts.get(0);
    for (let x = 0; x < hp.nExpert; x++) {
      const p = e.parts.get(x);
      const want = expertHFName(mt, e.layer, x, e.gguf);
      if (!p) throw new CheckpointError(fileOf(expertHFName(mt, e.layer, [...e.parts.keys()][0]!, e.gguf)), `tensor ${want} is missing (layer ${e.layer} has ${e.parts.size} of ${hp.nExpert} experts); the checkpoint is incomplete`, { tensor: want });
      if (p.type !== first!.type || p.shape.join() !== first!.shape.join()) {
        throw new ShapeError(fileOf(want), `tensor ${want} is ${typeName(p.type)} [${p.shape}] but expert 0 is ${typeName(first!.type)} [${first!.shape}]`, { tensor: want });
      }
    }
    const per = tensorBytes(first!.type, first!.shape);
    const parts = e.parts;
    const n = hp.nExpert;
    const t = derived(key, first!, [n, ...first!.shape], () => {
      const dst = new Uint8Array(per * n);
      for (let x = 0; x < n; x++) dst.set(parts.get(x)!.data, x * per);
      return dst;
    });
    if (out.has(key)) throw new CheckpointError(fileOf(expertHFName(mt, e.layer, 0, e.gguf)), `both per-expert and stacked tensors produce ${key}`, { tensor: key });
    out.set(key, t);
  }
  return out;
}

export interface HFOutTensor {
  name: string;
  type: Tensor['type'];
  shape: number[];
  data: () => Uint8Array;
}

/**
 * Canonical GGUF tensors -> HF tensors (inverse of hfToGGUFTensors): unstack experts, undo the
 * Q/K permutation, re-fuse GraniteMoE gate/up. Tensors must be F32/F16/BF16 for safetensors; the
 * caller dequantizes first. Unknown GGUF names are a CheckpointError.
 */
export function ggufToHFTensors(mt: string, tensors: Map<string, Tensor>, hp: NameHParams, file: string): HFOutTensor[] {
  const out: HFOutTensor[] = [];
  const rev = new Map(layerTable(mt).map(([a, b]) => [b, a]));
  const revGlobal = new Map(GLOBAL.map(([a, b]) => [b, a]));
  const used = new Set<string>();
  for (const [name, t] of tensors) {
    if (used.has(name)) continue;
    const g = revGlobal.get(name);
    if (g) {
      out.push({ name: g, type: t.type, shape: t.shape, data: () => t.data });
      continue;
    }
    const m = /^blk\.(\d+)\.(.+)$/.exec(name);
    if (!m) throw new CheckpointError(file, `tensor ${name} has no HF equivalent for ${mt}`, { tensor: name });
    const layer = Number(m[1]);
    const suffix = m[2]!;
    const pre = `model.layers.${layer}.`;
    const fused = mt === 'granitemoe' && (suffix === 'ffn_gate_exps.weight' || suffix === 'ffn_up_exps.weight' || suffix === 'ffn_gate_shexp.weight' || suffix === 'ffn_up_shexp.weight');
    if (fused) {
      const kind = suffix.includes('exps') ? 'exps' : 'shexp';
      const gate = tensors.get(`blk.${layer}.ffn_gate_${kind}.weight`);
      const up = tensors.get(`blk.${layer}.ffn_up_${kind}.weight`);
      if (!gate || !up || gate.shape.join() !== up.shape.join() || gate.type !== up.type) throw new CheckpointError(file, `blk.${layer}: ffn_gate_${kind} and ffn_up_${kind} must both exist with equal shapes`, { tensor: name });
      used.add(`blk.${layer}.ffn_gate_${kind}.weight`).add(`blk.${layer}.ffn_up_${kind}.weight`);
      const s = gate.shape;
      const lead = numel(s.slice(0, -2));
      const half = tensorBytes(gate.type, s) / lead;
      const shape = [...s.slice(0, -2), 2 * s[s.length - 2]!, s[s.length - 1]!];
      out.push({
        name: pre + (kind === 'exps' ? 'block_sparse_moe.input_linear.weight' : 'shared_mlp.input_linear.weight'),
        type: gate.type,
        shape,
        data: () => {
          const dst = new Uint8Array(2 * half * lead);
          const gd = gate.data, ud = up.data;
          for (let e = 0; e < lead; e++) {
            dst.set(gd.subarray(e * half, (e + 1) * half), 2 * e * half);
            dst.set(ud.subarray(e * half, (e + 1) * half), (2 * e + 1) * half);
          }
          return dst;
        },
      });
      continue;
    }
    if (/^ffn_(gate|up|down)_exps\.weight$/.test(suffix) && !(mt === 'granitemoe' && suffix === 'ffn_down_exps.weight')) {
      const n = t.shape[0]!;
      const inner = t.shape.slice(1);
      const per = tensorBytes(t.type, inner);
      for (let x = 0; x < n; x++) out.push({ name: expertHFName(mt, layer, x, suffix), type: t.type, shape: inner, data: () => t.data.subarray(x * per, (x + 1) * per) });
      continue;
    }
    const hfSuffix = rev.get(suffix);
    if (!hfSuffix) throw new CheckpointError(file, `tensor ${name} has no HF equivalent for ${mt}`, { tensor: name });
    const isQ = suffix.startsWith('attn_q.'), isK = suffix.startsWith('attn_k.');
    if (hp.permuteQK && (isQ || isK)) {
      const heads = isQ ? hp.nHead : hp.nHeadKv;
      out.push({ name: pre + hfSuffix, type: t.type, shape: t.shape, data: () => permuteQKRows(t.data, heads, rowBytesOf(t), true) });
    } else if (suffix === 'ffn_gate_inp_shexp.weight' && t.shape.length === 1) {
      out.push({ name: pre + hfSuffix, type: t.type, shape: [1, t.shape[0]!], data: () => t.data });
    } else {
      out.push({ name: pre + hfSuffix, type: t.type, shape: t.shape, data: () => t.data });
    }
  }
  return out;
}

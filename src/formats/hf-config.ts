/**
 * HF `config.json` <-> GGUF metadata, for the MoE families moekit runs.
 *
 * Keys and value types follow llama.cpp: `convert_hf_to_gguf.py` (TextModel.set_gguf_parameters and
 * the LlamaModel / Qwen2MoeModel / Qwen3MoeModel / OlmoeModel / GraniteMoeModel / DeepseekModel
 * classes) and `gguf-py/gguf/constants.py` (Keys.LLM / Keys.Attention / Keys.Rope).
 * Where config.json leaves a field out we fill the default of the transformers config class, so
 * a model loaded from HF behaves like transformers would run it.
 */
import { CheckpointError, UnsupportedError } from '../errors.js';
import { GGUFValueType, bool, f32, plainValue, str, u32, type GGUFValue } from './gguf.js';

export type HFConfig = Record<string, unknown>;

interface Family {
  arch: string;
  /** transformers class, for config.json "architectures" */
  hfClass: string;
  /** config key of the routed expert count */
  expertKey: string;
  /** llama-family checkpoints get their Q/K rows permuted by llama.cpp's converter (LlamaModel.permute) */
  permuteQK: boolean;
}

/** HF model_type -> GGUF general.architecture */
export const HF_FAMILIES: Record<string, Family> = {
  mixtral: { arch: 'llama', hfClass: 'MixtralForCausalLM', expertKey: 'num_local_experts', permuteQK: true },
  qwen2_moe: { arch: 'qwen2moe', hfClass: 'Qwen2MoeForCausalLM', expertKey: 'num_experts', permuteQK: false },
  qwen3_moe: { arch: 'qwen3moe', hfClass: 'Qwen3MoeForCausalLM', expertKey: 'num_experts', permuteQK: false },
  olmoe: { arch: 'olmoe', hfClass: 'OlmoeForCausalLM', expertKey: 'num_experts', permuteQK: false },
  granitemoe: { arch: 'granitemoe', hfClass: 'GraniteMoeForCausalLM', expertKey: 'num_local_experts', permuteQK: true },
  deepseek: { arch: 'deepseek', hfClass: 'DeepseekForCausalLM', expertKey: 'n_routed_experts', permuteQK: true },
};

export const SUPPORTED_MODEL_TYPES = Object.keys(HF_FAMILIES);

/** GGUF architecture -> HF model_type (inverse of HF_FAMILIES) */
export function modelTypeForArch(arch: string, file = 'model'): string {
  const hit = Object.entries(HF_FAMILIES).find(([, f]) => f.arch === arch);
  if (!hit) {
    throw new UnsupportedError(`${file}: architecture ${JSON.stringify(arch)} has no HF equivalent in moekit; supported: ${Object.values(HF_FAMILIES).map((f) => f.arch).join(', ')}`);
  }
  return hit[0];
}

export function familyOf(modelType: unknown, file: string): Family {
  if (typeof modelType !== 'string') throw new CheckpointError(file, 'config.json has no "model_type" string', { key: 'model_type' });
  const f = HF_FAMILIES[modelType];
  if (!f) throw new UnsupportedError(`${file}: model_type ${JSON.stringify(modelType)} is not supported; supported model types: ${SUPPORTED_MODEL_TYPES.join(', ')}`);
  return f;
}

function num(cfg: HFConfig, key: string, file: string, fallback?: number): number {
  const v = cfg[key];
  if (v === undefined || v === null) {
    if (fallback !== undefined) return fallback;
    throw new CheckpointError(file, `config.json is missing "${key}"`, { key });
  }
  if (typeof v !== 'number' || !Number.isFinite(v)) throw new CheckpointError(file, `config.json "${key}" should be a number, got ${JSON.stringify(v)}`, { key });
  return v;
}

function int(cfg: HFConfig, key: string, file: string, fallback?: number): number {
  const v = num(cfg, key, file, fallback);
  if (!Number.isInteger(v) || v < 0 || v > 2 ** 32 - 1) throw new CheckpointError(file, `config.json "${key}" should be a non-negative integer, got ${v}`, { key });
  return v;
}

/** transformers defaults for fields that real configs sometimes omit */
const DEFAULTS: Record<string, { rope_theta: number; rms_norm_eps: number; max_position_embeddings: number }> = {
  mixtral: { rope_theta: 1e6, rms_norm_eps: 1e-5, max_position_embeddings: 4096 * 32 },
  qwen2_moe: { rope_theta: 10000, rms_norm_eps: 1e-6, max_position_embeddings: 32768 },
  qwen3_moe: { rope_theta: 10000, rms_norm_eps: 1e-6, max_position_embeddings: 32768 },
  olmoe: { rope_theta: 10000, rms_norm_eps: 1e-5, max_position_embeddings: 4096 },
  granitemoe: { rope_theta: 10000, rms_norm_eps: 1e-6, max_position_embeddings: 2048 },
  deepseek: { rope_theta: 10000, rms_norm_eps: 1e-6, max_position_embeddings: 2048 },
};

export interface HFToGGUF {
  arch: string;
  modelType: string;
  permuteQK: boolean;
  /** GGUF metadata (without general.file_type and tokenizer keys) */
  metadata: Array<[string, GGUFValue]>;
}

/** Map an HF config.json onto GGUF metadata keys. `file` names config.json in errors. */
export function hfConfigToGGUF(cfg: HFConfig, file = 'config.json'): HFToGGUF {
  const modelType = cfg.model_type;
  const fam = familyOf(modelType, file);
  const mt = modelType as string;
  const A = fam.arch;
  const md: Array<[string, GGUFValue]> = [['general.architecture', str(A)]];
  const put = (k: string, v: GGUFValue) => md.push([`${A}.${k}`, v]);
  const d = DEFAULTS[mt]!;

  const hidden = int(cfg, 'hidden_size', file);
  const nHead = int(cfg, 'num_attention_heads', file);
  const nHeadKv = int(cfg, 'num_key_value_heads', file, nHead);
  if (nHead === 0 || nHeadKv === 0 || nHead % nHeadKv !== 0) throw new CheckpointError(file, `num_attention_heads ${nHead} must be a positive multiple of num_key_value_heads ${nHeadKv}`, { key: 'num_key_value_heads' });
  const rp = (cfg.rope_parameters ?? {}) as Record<string, unknown>;
  const ropeTheta = typeof cfg.rope_theta === 'number' ? cfg.rope_theta : typeof rp.rope_theta === 'number' ? rp.rope_theta : d.rope_theta;

  // TextModel.set_gguf_parameters (the keys every architecture gets)
  put('block_count', u32(int(cfg, 'num_hidden_layers', file)));
  put('context_length', u32(int(cfg, 'max_position_embeddings', file, d.max_position_embeddings)));
  put('embedding_length', u32(hidden));
  put('feed_forward_length', u32(int(cfg, 'intermediate_size', file)));
  put('attention.head_count', u32(nHead));
  put('attention.head_count_kv', u32(nHeadKv));
  put('rope.freq_base', f32(ropeTheta));
  put('attention.layer_norm_rms_epsilon', f32(num(cfg, 'rms_norm_eps', file, d.rms_norm_eps)));
  put('expert_count', u32(int(cfg, fam.expertKey, file)));
  put('expert_used_count', u32(int(cfg, 'num_experts_per_tok', file)));
  put('vocab_size', u32(int(cfg, 'vocab_size', file)));
  // head_dim -> key_length/value_length (Granite ignores head_dim: GraniteModel pops it)
  if (mt !== 'granitemoe' && cfg.head_dim != null) {
    const hd = int(cfg, 'head_dim', file);
    put('attention.key_length', u32(hd));
    put('attention.value_length', u32(hd));
  }
  // llama.cpp: expert_weights_norm (transformers: norm_topk_prob; default False where it exists)
  if (mt !== 'mixtral' && mt !== 'granitemoe') put('expert_weights_norm', bool(cfg.norm_topk_prob === true));

  const ropeDim = mt !== 'granitemoe' && cfg.head_dim != null ? int(cfg, 'head_dim', file) : hidden / nHead;
  switch (mt) {
    case 'mixtral': // LlamaModel.set_gguf_parameters
      put('rope.dimension_count', u32(ropeDim));
      break;
    case 'qwen2_moe': // Qwen2MoeModel
      checkDenseLayout(cfg, file);
      put('expert_feed_forward_length', u32(int(cfg, 'moe_intermediate_size', file)));
      put('expert_shared_feed_forward_length', u32(int(cfg, 'shared_expert_intermediate_size', file)));
      break;
    case 'qwen3_moe': // Qwen3MoeModel(Qwen2MoeModel)
      checkDenseLayout(cfg, file);
      put('expert_feed_forward_length', u32(int(cfg, 'moe_intermediate_size', file)));
      break;
    case 'olmoe': // OlmoeModel (llama.cpp forces rms eps 1e-5; we keep config's value, which HF uses)
      if (cfg.clip_qkv != null) throw new UnsupportedError(`${file}: olmoe with clip_qkv=${String(cfg.clip_qkv)} is not supported (llama.cpp does not clip either)`);
      break;
    case 'granitemoe': // GraniteModel + GraniteMoeModel; *_multiplier -> *_scale
      put('rope.dimension_count', u32(ropeDim));
      put('attention.scale', f32(num(cfg, 'attention_multiplier', file, 1.0)));
      put('embedding_scale', f32(num(cfg, 'embedding_multiplier', file, 1.0)));
      put('residual_scale', f32(num(cfg, 'residual_multiplier', file, 1.0)));
      put('logit_scale', f32(num(cfg, 'logits_scaling', file, 1.0)));
      if (cfg.shared_intermediate_size) put('expert_shared_feed_forward_length', u32(int(cfg, 'shared_intermediate_size', file)));
      break;
    case 'deepseek': { // DeepseekModel
      if (num(cfg, 'moe_layer_freq', file, 1) !== 1) throw new UnsupportedError(`${file}: deepseek with moe_layer_freq=${String(cfg.moe_layer_freq)} is not supported (only 1, as in DeepSeekMoE 16B)`);
      if (cfg.scoring_func != null && cfg.scoring_func !== 'softmax') throw new UnsupportedError(`${file}: deepseek scoring_func ${JSON.stringify(cfg.scoring_func)} is not supported (DeepSeekMoE uses softmax)`);
      put('rope.dimension_count', u32(ropeDim));
      put('rope.scaling.type', str('none'));
      put('leading_dense_block_count', u32(int(cfg, 'first_k_dense_replace', file, 0)));
      put('expert_feed_forward_length', u32(int(cfg, 'moe_intermediate_size', file)));
      put('expert_weights_scale', f32(1.0));
      put('expert_shared_count', u32(int(cfg, 'n_shared_experts', file, 0)));
      break;
    }
  }
  ropeScaling(cfg, file, put, mt);
  return { arch: A, modelType: mt, permuteQK: fam.permuteQK, metadata: md };
}

function checkDenseLayout(cfg: HFConfig, file: string): void {
  const step = cfg.decoder_sparse_step ?? 1;
  const only = cfg.mlp_only_layers ?? [];
  if (step !== 1 || !Array.isArray(only) || only.length > 0) {
    throw new UnsupportedError(`${file}: decoder_sparse_step=${JSON.stringify(step)} / mlp_only_layers=${JSON.stringify(only)} (dense layers between MoE layers) are not supported`);
  }
}

function ropeScaling(cfg: HFConfig, file: string, put: (k: string, v: GGUFValue) => void, mt: string): void {
  const rs = cfg.rope_scaling as Record<string, unknown> | null | undefined;
  if (rs == null || mt === 'deepseek') return;
  const type = rs.rope_type ?? rs.type;
  const factor = rs.factor;
  if (type === 'default') return;
  if (type === 'linear' && typeof factor === 'number') {
    put('rope.scaling.type', str('linear'));
    put('rope.scaling.factor', f32(factor));
  } else if (type === 'yarn' && typeof factor === 'number') {
    put('rope.scaling.type', str('yarn'));
    put('rope.scaling.factor', f32(factor));
    put('rope.scaling.original_context_length', u32(int(rs, 'original_max_position_embeddings', file)));
  } else {
    throw new UnsupportedError(`${file}: rope_scaling ${JSON.stringify(rs)} is not supported (linear and yarn are)`);
  }
}

// ---- inverse -----------------------------------------------------------------------------------

type Meta = Map<string, GGUFValue>;

function mget(meta: Meta, key: string, file: string, fallback?: number | boolean | string): number | boolean | string {
  const v = meta.get(key);
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw new CheckpointError(file, `metadata key ${key} is missing`, { key });
  }
  const p = plainValue(v);
  if (typeof p === 'bigint' || Array.isArray(p)) throw new CheckpointError(file, `metadata key ${key} has an unexpected type ${GGUFValueType[v.type]}`, { key });
  return p;
}

/**
 * GGUF metadata -> HF config.json for the same model (inverse of hfConfigToGGUF).
 * `tiedEmbeddings`: the GGUF has no output.weight (llama.cpp then reuses token_embd).
 */
export function ggufToHFConfig(meta: Meta, opts: { file?: string; tiedEmbeddings?: boolean; torchDtype?: string } = {}): HFConfig {
  const file = opts.file ?? 'model.gguf';
  const arch = mget(meta, 'general.architecture', file) as string;
  const mt = modelTypeForArch(arch, file);
  const fam = HF_FAMILIES[mt]!;
  const g = (k: string, fb?: number | boolean | string) => mget(meta, `${arch}.${k}`, file, fb);
  const nHead = g('attention.head_count') as number;
  const hidden = g('embedding_length') as number;
  const cfg: HFConfig = {
    architectures: [fam.hfClass],
    model_type: mt,
    vocab_size: g('vocab_size', vocabFromTokens(meta)),
    hidden_size: hidden,
    intermediate_size: g('feed_forward_length'),
    num_hidden_layers: g('block_count'),
    num_attention_heads: nHead,
    num_key_value_heads: g('attention.head_count_kv', nHead),
    max_position_embeddings: g('context_length'),
    rms_norm_eps: g('attention.layer_norm_rms_epsilon'),
    rope_theta: g('rope.freq_base', 10000),
    hidden_act: 'silu',
    [fam.expertKey]: g('expert_count'),
    num_experts_per_tok: g('expert_used_count'),
    tie_word_embeddings: opts.tiedEmbeddings ?? false,
    torch_dtype: opts.torchDtype ?? 'float32',
  };
  const kl = meta.get(`${arch}.attention.key_length`);
  if (kl && mt !== 'granitemoe') cfg.head_dim = plainValue(kl);
  if (mt !== 'mixtral' && mt !== 'granitemoe') cfg.norm_topk_prob = g('expert_weights_norm', false);
  switch (mt) {
    case 'qwen2_moe':
      cfg.moe_intermediate_size = g('expert_feed_forward_length');
      cfg.shared_expert_intermediate_size = g('expert_shared_feed_forward_length');
      cfg.decoder_sparse_step = 1;
      cfg.mlp_only_layers = [];
      break;
    case 'qwen3_moe':
      cfg.moe_intermediate_size = g('expert_feed_forward_length');
      cfg.decoder_sparse_step = 1;
      cfg.mlp_only_layers = [];
      cfg.attention_bias = false;
      break;
    case 'olmoe':
      cfg.clip_qkv = null;
      cfg.attention_bias = false;
      break;
    case 'granitemoe':
      cfg.attention_multiplier = g('attention.scale', 1.0);
      cfg.embedding_multiplier = g('embedding_scale', 1.0);
      cfg.residual_multiplier = g('residual_scale', 1.0);
      cfg.logits_scaling = g('logit_scale', 1.0);
      cfg.attention_bias = false;
      break;
    case 'deepseek':
      cfg.moe_intermediate_size = g('expert_feed_forward_length');
      cfg.first_k_dense_replace = g('leading_dense_block_count', 0);
      cfg.n_shared_experts = g('expert_shared_count', 0);
      cfg.moe_layer_freq = 1;
      cfg.scoring_func = 'softmax';
      cfg.attention_bias = false;
      break;
  }
  const rsType = meta.get(`${arch}.rope.scaling.type`);
  if (rsType && plainValue(rsType) !== 'none') {
    const t = plainValue(rsType);
    cfg.rope_scaling = { type: t, rope_type: t, factor: g('rope.scaling.factor') };
    if (t === 'yarn') (cfg.rope_scaling as Record<string, unknown>).original_max_position_embeddings = g('rope.scaling.original_context_length');
  }
  return cfg;
}

function vocabFromTokens(meta: Meta): number | undefined {
  const t = meta.get('tokenizer.ggml.tokens');
  return t && t.type === GGUFValueType.ARRAY ? t.value.items.length : undefined;
}

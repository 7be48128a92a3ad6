/**
 * Builder for the llama-style pre-norm MoE decoder that all current architectures share. The
 * differences between architectures are explicit options chosen in each `src/models/<arch>.ts`;
 * nothing here asks which architecture it is building.
 */
import type { RouterOptions } from '../nn/moe.js';
import type { DecoderSpec, FfnSpec, LayerSpec } from '../nn/decoder.js';
import type { RopeType } from '../nn/ops.js';
import type { Tensor } from '../tensor.js';
import { CheckpointError } from '../errors.js';
import { Meta, TensorTaker, type ModelSource } from './common.js';
import type { HParams } from './types.js';

export interface StandardOptions {
  rope: RopeType;
  /** q/k/v projection biases (Qwen2) */
  qkvBias: 'none' | 'optional' | 'required';
  /** RMSNorm on q and k before RoPE: per head of size Dh (Qwen3), or over the full projection (OLMoE) */
  qkNorm: 'none' | 'head' | 'full';
  router: RouterOptions;
  /** shared experts: none, always-on (DeepSeekMoE), or behind a sigmoid gate (Qwen2-MoE) */
  shared: 'none' | 'plain' | 'gated';
  /** number of leading layers with a dense FFN (DeepSeekMoE `first_k_dense_replace`) */
  leadingDense: number;
  /** Granite multipliers */
  embeddingScale?: number;
  residualScale?: number;
  logitScale?: number;
  attentionScale?: number;
  routerName: string;
}

/** Read the common GGUF hyper-parameters of `src.arch`. */
export function readCommonHParams(m: Meta, vocab: number) {
  const D = m.int('embedding_length', undefined, 1);
  const nHead = m.int('attention.head_count', undefined, 1);
  const nHeadKv = m.int('attention.head_count_kv', nHead, 1);
  const headDim = m.int('attention.key_length', D / nHead, 1);
  return {
    nLayer: m.int('block_count', undefined, 1),
    D,
    nHead,
    nHeadKv,
    headDim,
    vocab,
    ctxTrain: m.int('context_length', 4096, 1),
    ropeTheta: m.num('rope.freq_base', 10000),
    ropeDims: m.int('rope.dimension_count', headDim, 2),
    rmsEps: m.num('attention.layer_norm_rms_epsilon', 1e-5),
    nExpert: m.int('expert_count', 0),
    nExpertUsed: m.int('expert_used_count', 0),
  };
}

export function buildStandard(src: ModelSource, o: StandardOptions): { spec: DecoderSpec; hparams: HParams } {
  const m = new Meta(src);
  const tk = new TensorTaker(src);
  const embd = src.tensors.get('token_embd.weight');
  const vocab = embd?.shape[0] ?? 0;
  const hp = readCommonHParams(m, vocab);
  const { nLayer, D, nHead, nHeadKv, headDim: Dh, nExpert: E, nExpertUsed: K } = hp;
  const tokEmbd = tk.take('token_embd.weight', [vocab, D]);
  const denseFF = m.int('feed_forward_length', 0);
  const expertFF = E > 0 ? m.int('expert_feed_forward_length', denseFF, 1) : 0;
  const nShared = o.shared === 'none' ? 0 : m.int('expert_shared_count', 1, 1);
  // Qwen2-MoE stores the shared FFN width directly; DeepSeekMoE stores the count of expert-sized shared experts.
  const sharedFF = o.shared === 'none' ? 0 : m.int('expert_shared_feed_forward_length', nShared * expertFF, 1);
  if (E > 0 && (K < 1 || K > E)) {
    throw new CheckpointError(src.path, `${src.arch}.expert_used_count = ${K} must be in 1..${E}; fix the metadata or re-convert`, { key: `${src.arch}.expert_used_count` });
  }

  const layers: LayerSpec[] = [];
  const denseLayers: number[] = [];
  for (let l = 0; l < nLayer; l++) {
    const p = `blk.${l}.`;
    const bias = (n: string, len: number) =>
      o.qkvBias === 'none' ? undefined : o.qkvBias === 'required' ? tk.vec(p + n, len) : tk.optVec(p + n, len);
    const qDim = nHead * Dh;
    const kvDim = nHeadKv * Dh;
    const normLen = (full: number) => (o.qkNorm === 'head' ? Dh : full);
    const attn = {
      q: tk.take(p + 'attn_q.weight', [qDim, D]),
      k: tk.take(p + 'attn_k.weight', [kvDim, D]),
      v: tk.take(p + 'attn_v.weight', [kvDim, D]),
      o: tk.take(p + 'attn_output.weight', [D, qDim]),
      qBias: bias('attn_q.bias', qDim),
      kBias: bias('attn_k.bias', kvDim),
      vBias: bias('attn_v.bias', kvDim),
      oBias: tk.optVec(p + 'attn_output.bias', D),
      qNorm: o.qkNorm === 'none' ? undefined : tk.vec(p + 'attn_q_norm.weight', normLen(qDim)),
      kNorm: o.qkNorm === 'none' ? undefined : tk.vec(p + 'attn_k_norm.weight', normLen(kvDim)),
    };
    tk.ignore(p + 'rope_freqs.weight');
    let ffn: FfnSpec;
    if (E === 0 || l < o.leadingDense) {
      denseLayers.push(l);
      ffn = {
        kind: 'dense',
        w: {
          gate: tk.take(p + 'ffn_gate.weight', [denseFF, D]),
          up: tk.take(p + 'ffn_up.weight', [denseFF, D]),
          down: tk.take(p + 'ffn_down.weight', [D, denseFF]),
        },
      };
    } else {
      const shared =
        o.shared === 'none'
          ? undefined
          : {
              gate: tk.take(p + 'ffn_gate_shexp.weight', [sharedFF, D]),
              up: tk.take(p + 'ffn_up_shexp.weight', [sharedFF, D]),
              down: tk.take(p + 'ffn_down_shexp.weight', [D, sharedFF]),
            };
      let sharedGate: Tensor | undefined;
      if (o.shared === 'gated') {
        const g = tk.take(p + 'ffn_gate_inp_shexp.weight', [D]);
        sharedGate = { ...g, shape: [1, D] }; // a [D] vector used as a 1-row matrix
      }
      ffn = {
        kind: 'moe',
        w: {
          router: tk.take(p + 'ffn_gate_inp.weight', [E, D]),
          gateExps: tk.take(p + 'ffn_gate_exps.weight', [E, expertFF, D]),
          upExps: tk.take(p + 'ffn_up_exps.weight', [E, expertFF, D]),
          downExps: tk.take(p + 'ffn_down_exps.weight', [E, D, expertFF]),
          shared,
          sharedGate,
        },
        o: { K, router: o.router },
      };
    }
    layers.push({ attnNorm: tk.vec(p + 'attn_norm.weight', D), attn, ffnNorm: tk.vec(p + 'ffn_norm.weight', D), ffn });
  }
  const outputNorm = tk.vec('output_norm.weight', D);
  const output = tk.opt('output.weight', [vocab, D]) ?? tokEmbd; // tied embeddings when absent
  tk.finish();

  const spec: DecoderSpec = {
    tokEmbd,
    layers,
    outputNorm,
    output,
    rmsEps: hp.rmsEps,
    attention: {
      nHead,
      nHeadKv,
      headDim: Dh,
      scale: o.attentionScale || 1 / Math.sqrt(Dh),
      rope: { type: o.rope, base: hp.ropeTheta, dims: hp.ropeDims },
      normEps: hp.rmsEps,
    },
    embeddingScale: o.embeddingScale,
    residualScale: o.residualScale,
    logitScale: o.logitScale,
  };
  const hparams: HParams = {
    arch: src.arch,
    nLayer,
    D,
    nHead,
    nHeadKv,
    headDim: Dh,
    vocab,
    ctxTrain: hp.ctxTrain,
    ropeTheta: hp.ropeTheta,
    rmsEps: hp.rmsEps,
    nExpert: E,
    nExpertUsed: K,
    nExpertShared: nShared,
    expertFF,
    sharedFF,
    denseFF: denseLayers.length ? denseFF : 0,
    denseLayers,
    router: o.routerName,
  };
  return { spec, hparams };
}

/** `moekit info` as data: architecture, parameter counts, MoE layout, tensor types per group, memory. */
import type { Checkpoint } from '../formats/checkpoint.js';
import type { HParams } from '../models/types.js';
import { numel, typeName } from '../tensor.js';

export interface ModelInfo {
  path: string;
  format: 'gguf' | 'hf';
  arch: string;
  name?: string;
  hparams: HParams;
  params: {
    total: number;
    /** per token: everything except the routed experts not selected (E−K of E) */
    active: number;
  };
  /** tensor group → storage type → number of tensors */
  tensorTypes: Record<string, Record<string, number>>;
  memory: {
    /** bytes of all weight tensors */
    weights: number;
    /** bytes of the f16 KV cache of one sequence at `ctx` */
    kvCache: number;
    ctx: number;
  };
}

/** Tensor group of a canonical (GGUF) tensor name. */
export function tensorGroup(name: string): string {
  if (name.startsWith('token_embd')) return 'embedding';
  if (name.startsWith('output_norm') || /norm\.weight$/.test(name)) return 'norms';
  if (name.startsWith('output')) return 'output';
  if (name.includes('_exps')) return 'routed experts';
  if (name.includes('_shexp')) return 'shared experts';
  if (name.includes('ffn_gate_inp')) return 'router';
  if (name.includes('attn_')) return 'attention';
  if (name.includes('ffn_')) return 'dense ffn';
  return 'other';
}

export function describeModel(ckpt: Checkpoint, h: HParams, ctx: number): ModelInfo {
  let total = 0;
  let routed = 0;
  let weights = 0;
  const tensorTypes: Record<string, Record<string, number>> = {};
  for (const t of ckpt.tensors.values()) {
    const n = numel(t.shape);
    total += n;
    weights += t.data.byteLength;
    const g = tensorGroup(t.name);
    if (g === 'routed experts') routed += n;
    const types = (tensorTypes[g] ??= {});
    types[typeName(t.type)] = (types[typeName(t.type)] ?? 0) + 1;
  }
  const active = h.nExpert > 0 ? total - (routed * (h.nExpert - h.nExpertUsed)) / h.nExpert : total;
  const name = ckpt.metadata.get('general.name')?.value;
  return {
    path: ckpt.path,
    format: ckpt.format,
    arch: h.arch,
    name: typeof name === 'string' ? name : undefined,
    hparams: h,
    params: { total, active: Math.round(active) },
    tensorTypes,
    memory: { weights, kvCache: 2 * 2 * h.nLayer * ctx * h.nHeadKv * h.headDim, ctx },
  };
}

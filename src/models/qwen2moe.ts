/**
 * `qwen2moe`: Qwen1.5-MoE / Qwen2-MoE (HF `qwen2_moe`). q/k/v biases; softmax over all experts then
 * top-k *without* renormalisation (HF `norm_topk_prob=False`; llama.cpp qwen2moe graph passes norm_w=false);
 * plus a shared expert scaled by its own sigmoid gate: y += σ(x·w_sg)·Shared(x) (HF Qwen2MoeSparseMoeBlock).
 */
import { buildStandard } from './standard.js';
import type { Architecture } from './types.js';

export const qwen2moe: Architecture = {
  name: 'qwen2moe',
  hfModelTypes: ['qwen2_moe'],
  build: (src) =>
    buildStandard(src, {
      rope: 'neox',
      qkvBias: 'required',
      qkNorm: 'none',
      router: { scoring: 'softmax', normalize: false, scale: 1 },
      shared: 'gated',
      leadingDense: 0,
      routerName: 'softmax → top-k, not renormalised, + sigmoid-gated shared expert (Qwen2-MoE)',
    }),
};

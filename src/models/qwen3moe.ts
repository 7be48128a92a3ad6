/**
 * `qwen3moe`: Qwen3-MoE (HF `qwen3_moe`). Per-head RMSNorm on q and k before RoPE; no shared expert;
 * softmax → top-k → renormalised (HF `norm_topk_prob=True`; llama.cpp qwen3moe graph passes norm_w=true).
 */
import { buildStandard } from './standard.js';
import type { Architecture } from './types.js';

export const qwen3moe: Architecture = {
  name: 'qwen3moe',
  hfModelTypes: ['qwen3_moe'],
  build: (src) =>
    buildStandard(src, {
      rope: 'neox',
      qkvBias: 'none',
      qkNorm: 'head',
      router: { scoring: 'softmax', normalize: true, scale: 1 },
      shared: 'none',
      leadingDense: 0,
      routerName: 'softmax → top-k, renormalised (Qwen3-MoE)',
    }),
};

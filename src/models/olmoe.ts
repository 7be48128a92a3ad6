/**
 * `olmoe`: OLMoE (HF `olmoe`). RMSNorm over the whole q and k projections (not per head) before RoPE;
 * softmax → top-k without renormalisation (HF `norm_topk_prob=False`; llama.cpp olmoe graph norm_w=false).
 */
import { buildStandard } from './standard.js';
import type { Architecture } from './types.js';

export const olmoe: Architecture = {
  name: 'olmoe',
  hfModelTypes: ['olmoe'],
  build: (src) =>
    buildStandard(src, {
      rope: 'neox',
      qkvBias: 'none',
      qkNorm: 'full',
      router: { scoring: 'softmax', normalize: false, scale: 1 },
      shared: 'none',
      leadingDense: 0,
      routerName: 'softmax → top-k, not renormalised (OLMoE)',
    }),
};

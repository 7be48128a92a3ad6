/**
 * `granitemoe`: IBM Granite MoE (HF `granitemoe`). Llama layout plus four multipliers
 * (llama.cpp src/models/granite.cpp): embeddings × embedding_scale, each branch output × residual_scale
 * before the residual add, attention scale replacing 1/√Dh, logits ÷ logit_scale.
 * Router: top-k logits then softmax (HF GraniteMoeTopKGating) = softmax → top-k → renormalise.
 */
import { Meta } from './common.js';
import { buildStandard } from './standard.js';
import type { Architecture } from './types.js';

export const granitemoe: Architecture = {
  name: 'granitemoe',
  hfModelTypes: ['granitemoe'],
  build: (src) => {
    const m = new Meta(src);
    return buildStandard(src, {
      rope: 'norm',
      qkvBias: 'optional',
      qkNorm: 'none',
      router: { scoring: 'softmax', normalize: true, scale: 1 },
      shared: 'none',
      leadingDense: 0,
      embeddingScale: m.num('embedding_scale', 1),
      residualScale: m.num('residual_scale', 1),
      attentionScale: m.num('attention.scale', 0),
      logitScale: m.num('logit_scale'),
      routerName: 'softmax → top-k, renormalised (Granite MoE)',
    });
  },
};

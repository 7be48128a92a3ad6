/**
 * `deepseek`: DeepSeekMoE 16B (HF `deepseek`, arXiv 2401.06066). The first `leading_dense_block_count`
 * layers are dense; the rest have fine-grained routed experts (softmax → top-k, not renormalised;
 * llama.cpp src/models/deepseek.cpp passes norm_w=false, scale_w=false) plus always-on shared experts,
 * stored concatenated as one FFN of width n_shared·F.
 */
import { Meta } from './common.js';
import { buildStandard } from './standard.js';
import type { Architecture } from './types.js';

export const deepseek: Architecture = {
  name: 'deepseek',
  hfModelTypes: ['deepseek'],
  build: (src) =>
    buildStandard(src, {
      rope: 'norm',
      qkvBias: 'none',
      qkNorm: 'none',
      router: { scoring: 'softmax', normalize: false, scale: 1 },
      shared: 'plain',
      leadingDense: new Meta(src).int('leading_dense_block_count', 0),
      routerName: 'softmax → top-k, not renormalised, + always-on shared experts (DeepSeekMoE)',
    }),
};

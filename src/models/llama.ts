/**
 * `llama` with experts: Mixtral (HF `mixtral`). Router: top-k of the logits then softmax over them,
 * computed as softmax → top-k → renormalise (identical; llama.cpp `build_moe_ffn(..., norm_w=true)`).
 * RoPE on adjacent pairs: llama.cpp's converter permutes HF q/k rows into that layout.
 */
import { buildStandard } from './standard.js';
import type { Architecture } from './types.js';

export const llama: Architecture = {
  name: 'llama',
  hfModelTypes: ['mixtral', 'llama'],
  build: (src) =>
    buildStandard(src, {
      rope: 'norm',
      qkvBias: 'optional',
      qkNorm: 'none',
      router: { scoring: 'softmax', normalize: true, scale: 1 },
      shared: 'none',
      leadingDense: 0,
      routerName: 'softmax → top-k, renormalised (Mixtral)',
    }),
};

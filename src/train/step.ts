/**
 * One optimizer step: forward, backward, global-norm clip, AdamW, then the aux-loss-free router-bias
 * update from this step's expert counts (once per step, after the weights: Megatron
 * `_update_router_expert_bias` runs in finalize_model_grads; torchtitan in an optimizer pre-hook).
 */
import type { MoeLM, StepStats } from './model.js';
import { AdamW, clipGradNorm, learningRate } from './optim.js';
import { router_bias_update } from './router.js';

export interface StepResult extends StepStats {
  /** global gradient norm before clipping */
  gradNorm: number;
  lr: number;
}

export function trainStep(model: MoeLM, opt: AdamW, inputs: Int32Array, targets: Int32Array, B: number, it: number): StepResult {
  const lr = learningRate(it, opt.o);
  model.zeroGrads();
  const { stats, cache } = model.forward(inputs, targets, B);
  model.backward(cache);
  const gradNorm = clipGradNorm(model.grads, opt.o.gradClip ?? 0);
  opt.step(model.params, model.grads, lr);
  const gamma = model.config.router.biasRate ?? 0;
  if (gamma > 0) stats.counts.forEach((c, l) => router_bias_update(model.routerBias[l], c, model.config.nExpert, gamma));
  return { ...stats, gradNorm, lr };
}

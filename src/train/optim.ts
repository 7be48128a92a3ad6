/**
 * AdamW with decoupled weight decay (Loshchilov & Hutter; torch.optim.AdamW's update order:
 * p ← p·(1 − lr·wd), then the bias-corrected Adam step), global-norm gradient clipping
 * (torch.nn.utils.clip_grad_norm_: coef = max/(norm + 1e-6), applied when < 1) and a cosine
 * learning-rate schedule with linear warmup (nanoGPT `get_lr`).
 */
import { nativeKernels } from './layers.js';
import type { ParamInfo } from './model.js';

export interface OptimConfig {
  lr: number;
  minLr?: number;
  warmup: number;
  /** total steps of the schedule */
  steps: number;
  beta1?: number;
  beta2?: number;
  eps?: number;
  weightDecay?: number;
  /** global-norm clip; 0 = off */
  gradClip?: number;
}

/** lr at step `it` (0-based): linear warmup to lr over `warmup` steps, then cosine down to minLr at `steps`. */
export function learningRate(it: number, o: OptimConfig): number {
  const minLr = o.minLr ?? o.lr / 10;
  if (it < o.warmup) return (o.lr * (it + 1)) / o.warmup;
  if (it >= o.steps) return minLr;
  const ratio = (it - o.warmup) / Math.max(1, o.steps - o.warmup);
  return minLr + 0.5 * (1 + Math.cos(Math.PI * ratio)) * (o.lr - minLr);
}

/** L2 norm of the whole gradient. */
export function gradNorm(g: Float32Array): number {
  let s = 0;
  for (let i = 0; i < g.length; i++) s += g[i] * g[i];
  return Math.sqrt(s);
}

/** Scale `g` so its global norm is ≤ maxNorm; returns the norm before clipping. */
export function clipGradNorm(g: Float32Array, maxNorm: number): number {
  const n = gradNorm(g);
  if (maxNorm > 0) {
    const coef = maxNorm / (n + 1e-6);
    if (coef < 1) for (let i = 0; i < g.length; i++) g[i] *= coef;
  }
  return n;
}

export class AdamW {
  /** first and second moments, f32 like the master weights */
  readonly m: Float32Array;
  readonly v: Float32Array;
  /** completed steps */
  t = 0;

  constructor(readonly layout: ParamInfo[], n: number, readonly o: OptimConfig) {
    this.m = new Float32Array(n);
    this.v = new Float32Array(n);
  }

  step(params: Float32Array, grads: Float32Array, lr: number): void {
    const b1 = this.o.beta1 ?? 0.9;
    const b2 = this.o.beta2 ?? 0.95;
    const eps = this.o.eps ?? 1e-8;
    const wd = this.o.weightDecay ?? 0;
    this.t++;
    const bc1 = 1 - Math.pow(b1, this.t);
    const bc2 = Math.sqrt(1 - Math.pow(b2, this.t));
    const { m, v } = this;
    const nk = nativeKernels();
    for (const p of this.layout) {
      const decay = p.decay ? 1 - lr * wd : 1;
      if (nk) { // the same arithmetic in C (native/src/train.c mk_train_adamw): identical bits
        nk.addon.trainAdamw(params, grads, m, v, p.offset, p.size, b1, b2, eps, lr / bc1, bc2, decay, nk.threads);
        continue;
      }
      const end = p.offset + p.size;
      for (let i = p.offset; i < end; i++) {
        const g = grads[i];
        m[i] = b1 * m[i] + (1 - b1) * g;
        v[i] = b2 * v[i] + (1 - b2) * g * g;
        params[i] = params[i] * decay - (lr / bc1) * (m[i] / (Math.sqrt(v[i]) / bc2 + eps));
      }
    }
  }
}

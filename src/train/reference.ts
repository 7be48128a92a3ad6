/**
 * The PyTorch cross-check: tiny MoE configurations, their seeded initial weights and 10 batches,
 * written for scripts/torch_ref.py, and the same 10 steps run by moekit. The committed fixture
 * test/fixtures/train/torch_ref.json holds PyTorch's per-step numbers; regenerate it with
 *
 *   node --import tsx src/train/reference.ts .cache/train-ref && \
 *   /usr/bin/python3 scripts/torch_ref.py .cache/train-ref > test/fixtures/train/torch_ref.json
 */
import { mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { pathToFileURL } from 'node:url';
import { GGMLType } from '../tensor.js';
import { writeSafetensors } from '../formats/safetensors.js';
import { Rng } from '../rng.js';
import { MoeLM, type ModelConfig } from './model.js';
import { AdamW, type OptimConfig } from './optim.js';
import { trainStep, type StepResult } from './step.js';

export interface ReferenceCase {
  name: string;
  model: ModelConfig;
  optim: OptimConfig;
  seed: number;
  B: number;
  S: number;
  steps: number;
}

const OPTIM: OptimConfig = { lr: 3e-3, minLr: 3e-4, warmup: 3, steps: 10, beta1: 0.9, beta2: 0.95, eps: 1e-8, weightDecay: 0.1, gradClip: 1.0 };
const BASE = { vocab: 64, dim: 16, nLayer: 2, nHead: 2, seqLen: 8, nExpert: 4, ffnDim: 24, initStd: 0.1, rmsEps: 1e-5, ropeTheta: 10000 };

export const REFERENCE_CASES: ReferenceCase[] = [
  {
    name: 'olmoe-softmax',
    model: { ...BASE, qkNorm: true, router: { scoring: 'softmax', K: 2, normalize: false, lbCoef: 0.01, lbNorm: 'megatron', zCoef: 0.001 } },
    optim: OPTIM, seed: 1, B: 4, S: 8, steps: 10,
  },
  {
    name: 'qwen2moe-sigmoid-bias-capacity',
    model: {
      ...BASE, qkvBias: true, sharedDim: 16, sharedGate: true, tied: true,
      router: { scoring: 'sigmoid', K: 2, normalize: true, biasRate: 0.01, capacityFactor: 1.25, lbCoef: 0.01, lbNorm: 'hf', zCoef: 0.001 },
    },
    optim: OPTIM, seed: 2, B: 4, S: 8, steps: 10,
  },
  {
    name: 'topp-null-experts-gshard',
    model: { ...BASE, router: { scoring: 'softmax', K: 3, normalize: true, topP: 0.6, nullExperts: 1, lbCoef: 0.05, lbNorm: 'gshard' } },
    optim: OPTIM, seed: 3, B: 4, S: 8, steps: 10,
  },
];

/** Seeded batches: inputs/targets of B·S tokens per step (a noisy repeating pattern, so the loss falls). */
export function referenceBatches(c: ReferenceCase): Array<{ inputs: Int32Array; targets: Int32Array }> {
  const rng = new Rng(1000 + c.seed);
  const V = c.model.vocab;
  const out = [];
  for (let s = 0; s < c.steps; s++) {
    const seq = Int32Array.from({ length: c.B * (c.S + 1) }, (_, i) => (rng.uniform() < 0.7 ? (i * 7) % V : Math.floor(rng.uniform() * V)));
    const inputs = new Int32Array(c.B * c.S);
    const targets = new Int32Array(c.B * c.S);
    for (let b = 0; b < c.B; b++) for (let t = 0; t < c.S; t++) { inputs[b * c.S + t] = seq[b * (c.S + 1) + t]; targets[b * c.S + t] = seq[b * (c.S + 1) + t + 1]; }
    out.push({ inputs, targets });
  }
  return out;
}

export function referenceModel(c: ReferenceCase): MoeLM {
  const m = new MoeLM(c.model);
  m.init(c.seed);
  return m;
}

/** The steps as moekit runs them. */
export function runReference(c: ReferenceCase): StepResult[] {
  const m = referenceModel(c);
  const opt = new AdamW(m.layout, m.nParams, c.optim);
  return referenceBatches(c).map((b, it) => trainStep(m, opt, b.inputs, b.targets, c.B, it));
}

/** Write <dir>/<case>/{case.json, init.safetensors} for scripts/torch_ref.py. */
export function writeReferenceInputs(dir: string): void {
  for (const c of REFERENCE_CASES) {
    const d = join(dir, c.name);
    mkdirSync(d, { recursive: true });
    const m = referenceModel(c);
    writeSafetensors(join(d, 'init.safetensors'), m.layout.map((p) => {
      const v = m.params.slice(p.offset, p.offset + p.size);
      return { name: p.name, type: GGMLType.F32, shape: p.shape, data: new Uint8Array(v.buffer) };
    }));
    const batches = referenceBatches(c).map((b) => ({ inputs: [...b.inputs], targets: [...b.targets] }));
    writeFileSync(join(d, 'case.json'), JSON.stringify({ ...c, batches }, null, 1));
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  const dir = process.argv[2] ?? '.cache/train-ref';
  writeReferenceInputs(dir);
  for (const c of REFERENCE_CASES) {
    const r = runReference(c);
    process.stderr.write(`${c.name}: ${r.map((s) => s.loss.toFixed(5)).join(' ')}\n`);
  }
}

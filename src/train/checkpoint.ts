/**
 * Training checkpoints and the GGUF export.
 *
 * A checkpoint is a folder: model.safetensors (f32 master weights in GGUF names, plus each layer's
 * selection bias as `blk.N.exp_probs_b.bias`), optimizer.safetensors (AdamW moments), config.json
 * (the training config), tokenizer.json + tokenizer_config.json, state.json (step = data position,
 * optimizer step count, best validation loss, log). It is written into a temporary folder and
 * swapped in with renames, so an interrupted write leaves the previous checkpoint intact.
 *
 * Export: the trained weights as an F32 GGUF in an architecture moekit and llama.cpp both run:
 * `olmoe` (no shared expert; needs full QK-norm, no biases) or `qwen2moe` (a sigmoid-gated shared
 * expert; q/k/v biases written as zeros when the model was trained without them). Both use
 * softmax → top-k without renormalisation, so only that router exports.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CheckpointError, UnsupportedError } from '../errors.js';
import { writeFileAtomic } from '../formats/atomic.js';
import { f32 as f32v, str, u32, writeGGUF, type GGUFValue, type GGUFWriteTensor } from '../formats/gguf.js';
import { openSafetensors, writeSafetensors } from '../formats/safetensors.js';
import { GGMLType } from '../tensor.js';
import { tokenizerJsonToGGUFMetadata } from '../tokenizer/gguf-vocab.js';
import type { MoeLM, ModelConfig } from './model.js';
import type { AdamW } from './optim.js';

export interface TrainState {
  /** completed optimizer steps (= the data position: batches are a function of the step) */
  step: number;
  bestValLoss: number | null;
  /** progress log rows (step, loss, val …) */
  log: Array<Record<string, number>>;
}

const bytes = (a: Float32Array) => new Uint8Array(a.buffer, a.byteOffset, a.byteLength);

export function saveCheckpoint(
  dir: string,
  o: { model: MoeLM; opt?: AdamW; config: object; tokenizerJson: object; tokenizerConfig: object; state: TrainState },
): void {
  const tmp = `${dir}.tmp-${process.pid}`;
  rmSync(tmp, { recursive: true, force: true });
  mkdirSync(tmp, { recursive: true });
  const m = o.model;
  writeSafetensors(join(tmp, 'model.safetensors'), [
    ...m.layout.map((p) => ({ name: p.name, type: GGMLType.F32, shape: p.shape, data: bytes(m.params.subarray(p.offset, p.offset + p.size)) })),
    ...m.routerBias.map((b, l) => ({ name: `blk.${l}.exp_probs_b.bias`, type: GGMLType.F32, shape: [b.length], data: bytes(b) })),
  ], { format: 'moekit-train' });
  if (o.opt) {
    writeSafetensors(join(tmp, 'optimizer.safetensors'), [
      { name: 'adamw.m', type: GGMLType.F32, shape: [o.opt.m.length], data: bytes(o.opt.m) },
      { name: 'adamw.v', type: GGMLType.F32, shape: [o.opt.v.length], data: bytes(o.opt.v) },
    ], { t: String(o.opt.t) });
  }
  writeFileAtomic(join(tmp, 'config.json'), JSON.stringify(o.config, null, 2));
  writeFileAtomic(join(tmp, 'tokenizer.json'), JSON.stringify(o.tokenizerJson));
  writeFileAtomic(join(tmp, 'tokenizer_config.json'), JSON.stringify(o.tokenizerConfig, null, 2));
  writeFileAtomic(join(tmp, 'state.json'), JSON.stringify(o.state));
  const old = `${dir}.old-${process.pid}`;
  if (existsSync(dir)) renameSync(dir, old);
  renameSync(tmp, dir);
  rmSync(old, { recursive: true, force: true });
}

/** Load weights (and optimizer moments when `opt` is given) into an already-built model. */
export function loadCheckpoint(dir: string, model: MoeLM, opt?: AdamW): TrainState {
  const path = join(dir, 'model.safetensors');
  if (!existsSync(path)) throw new CheckpointError(dir, 'no model.safetensors: not a moekit training checkpoint (or the run never saved one)');
  const f = openSafetensors(path);
  try {
    for (const p of model.layout) {
      const t = f.tensors.get(p.name);
      if (!t || t.data.byteLength !== p.size * 4) throw new CheckpointError(path, `tensor ${p.name} is missing or has the wrong size for this config`, { tensor: p.name });
      model.params.set(new Float32Array(t.data.slice().buffer), p.offset);
    }
    model.routerBias.forEach((b, l) => {
      const t = f.tensors.get(`blk.${l}.exp_probs_b.bias`);
      if (t) b.set(new Float32Array(t.data.slice().buffer));
    });
  } finally {
    f.close();
  }
  if (opt) {
    const op = join(dir, 'optimizer.safetensors');
    const g = openSafetensors(op);
    try {
      opt.m.set(new Float32Array(g.tensors.get('adamw.m')!.data.slice().buffer));
      opt.v.set(new Float32Array(g.tensors.get('adamw.v')!.data.slice().buffer));
      opt.t = Number(g.metadata.t);
    } finally {
      g.close();
    }
  }
  return JSON.parse(readFileSync(join(dir, 'state.json'), 'utf8')) as TrainState;
}

/** Which GGUF architecture a model config exports to (throws when none can hold it). */
export function exportArch(c: ModelConfig): 'olmoe' | 'qwen2moe' {
  const r = c.router;
  const why: string[] = [];
  if (c.nExpert === 0) why.push('a dense model (nExpert 0) has no MoE architecture here');
  if (r.scoring !== 'softmax' || r.normalize || (r.scale ?? 1) !== 1) why.push('olmoe/qwen2moe route softmax → top-k without renormalisation or scaling');
  if (r.topP !== undefined || (r.nullExperts ?? 0) > 0) why.push('top-p routing and null experts have no GGUF equivalent (the file runs plain top-k)');
  const shared = (c.sharedDim ?? 0) > 0;
  if (shared && !c.sharedGate) why.push('qwen2moe needs the sigmoid gate on the shared expert (sharedGate: true)');
  if (shared && c.qkNorm) why.push('qwen2moe has no QK-norm');
  if (!shared && !c.qkNorm) why.push('olmoe needs QK-norm (qkNorm: true)');
  if (!shared && c.qkvBias) why.push('olmoe has no q/k/v biases');
  if (why.length) throw new UnsupportedError(`this model cannot be exported to GGUF: ${why.join('; ')}`);
  return shared ? 'qwen2moe' : 'olmoe';
}

/** Write the model as an F32 GGUF with the BPE vocabulary; returns the architecture used. */
export function exportGGUF(path: string, model: MoeLM, tokenizerJson: object, tokenizerConfig: object, name = 'moekit trained MoE'): string {
  const c = model.config;
  const a = exportArch(c);
  const D = c.dim;
  const m: Array<[string, GGUFValue]> = [
    ['general.architecture', str(a)],
    ['general.name', str(name)],
    ['general.file_type', u32(0)],
    [`${a}.context_length`, u32(c.seqLen)],
    [`${a}.embedding_length`, u32(D)],
    [`${a}.block_count`, u32(c.nLayer)],
    [`${a}.feed_forward_length`, u32(c.ffnDim)],
    [`${a}.attention.head_count`, u32(c.nHead)],
    [`${a}.attention.head_count_kv`, u32(c.nHead)],
    [`${a}.attention.layer_norm_rms_epsilon`, f32v(c.rmsEps ?? 1e-5)],
    [`${a}.rope.freq_base`, f32v(c.ropeTheta ?? 10000)],
    [`${a}.rope.dimension_count`, u32(D / c.nHead)],
    [`${a}.attention.key_length`, u32(D / c.nHead)],
    [`${a}.attention.value_length`, u32(D / c.nHead)],
    [`${a}.expert_count`, u32(c.nExpert)],
    [`${a}.expert_used_count`, u32(c.router.K)],
    [`${a}.vocab_size`, u32(c.vocab)],
  ];
  if (a === 'qwen2moe') m.push([`${a}.expert_feed_forward_length`, u32(c.ffnDim)], [`${a}.expert_shared_feed_forward_length`, u32(c.sharedDim!)]);
  m.push(...tokenizerJsonToGGUFMetadata(tokenizerJson, tokenizerConfig));
  const tensors: GGUFWriteTensor[] = [];
  const add = (n: string, shape: number[], data: Float32Array) => tensors.push({ name: n, type: GGMLType.F32, shape, data: bytes(data) });
  for (const p of model.layout) add(p.name, p.shape, model.params.subarray(p.offset, p.offset + p.size));
  if (a === 'qwen2moe' && !c.qkvBias) {
    for (let l = 0; l < c.nLayer; l++) for (const n of ['q', 'k', 'v']) add(`blk.${l}.attn_${n}.bias`, [D], new Float32Array(D));
  }
  // llama.cpp's olmoe/qwen2moe loaders want output.weight: write the tied embeddings out
  if (c.tied) add('output.weight', [c.vocab, D], model.tensor('token_embd.weight'));
  writeGGUF(path, { metadata: m, tensors });
  return a;
}

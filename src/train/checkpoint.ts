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
 * softmax → top-k without renormalisation, so only that router exports. A dense model (nExpert 0)
 * exports as a 1-expert top-1 MoE of the same architecture, which computes exactly its dense FFN.
 * `openTrainCheckpoint` builds the same tensors in memory, so `moekit run/eval` read checkpoint
 * folders directly.
 */
import { existsSync, mkdirSync, readFileSync, renameSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { CheckpointError, UnsupportedError } from '../errors.js';
import type { Checkpoint } from '../formats/checkpoint.js';
import { writeFileAtomic } from '../formats/atomic.js';
import { f32 as f32v, str, u32, writeGGUF, type GGUFValue } from '../formats/gguf.js';
import { openSafetensors, writeSafetensors } from '../formats/safetensors.js';
import { GGMLType, type Tensor } from '../tensor.js';
import { tokenizerJsonToGGUFMetadata } from '../tokenizer/gguf-vocab.js';
import { paramLayout, resolveModelConfig, type MoeLM, type ModelConfig } from './model.js';
import { bpeTokenizerConfig } from './bpe.js';
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

/**
 * Which GGUF architecture a model config exports to (throws when none can hold it).
 * A dense model (nExpert 0) exports as a 1-expert top-1 MoE of the same architecture: its router is
 * one zero row, softmax over one logit is exactly 1, so the layer computes exactly the dense FFN
 * (and qwen2moe gets a zero shared expert of width 1, which adds exactly 0).
 */
export function exportArch(c: ModelConfig): 'olmoe' | 'qwen2moe' {
  c = resolveModelConfig(c);
  const r = c.router;
  const why: string[] = [];
  if (c.nExpert === 0) {
    if (c.qkNorm && c.qkvBias) throw new UnsupportedError('this dense model cannot be exported to GGUF: olmoe (QK-norm) has no q/k/v biases and qwen2moe (biases) has no QK-norm');
    return c.qkNorm ? 'olmoe' : 'qwen2moe';
  }
  if (r.scoring !== 'softmax' || r.normalize || (r.scale ?? 1) !== 1) why.push('olmoe/qwen2moe route softmax → top-k without renormalisation or scaling');
  if (r.topP !== undefined || (r.nullExperts ?? 0) > 0) why.push('top-p routing and null experts have no GGUF equivalent (the file runs plain top-k)');
  if ((r.biasRate ?? 0) > 0) why.push('the aux-loss-free selection bias (router.biasRate) has no place in olmoe/qwen2moe, which select by the plain softmax');
  const shared = (c.sharedDim ?? 0) > 0;
  if (shared && !c.sharedGate) why.push('qwen2moe needs the sigmoid gate on the shared expert (sharedGate: true)');
  if (shared && c.qkNorm) why.push('qwen2moe has no QK-norm');
  if (!shared && !c.qkNorm) why.push('olmoe needs QK-norm (qkNorm: true)');
  if (!shared && c.qkvBias) why.push('olmoe has no q/k/v biases');
  if (why.length) throw new UnsupportedError(`this model cannot be exported to GGUF: ${why.join('; ')}`);
  return shared ? 'qwen2moe' : 'olmoe';
}

/** A trained model as GGUF metadata and F32 tensors (what exportGGUF writes and what `moekit run` reads from a checkpoint folder). */
export interface GGUFContents {
  arch: 'olmoe' | 'qwen2moe';
  metadata: Array<[string, GGUFValue]>;
  tensors: Array<{ name: string; shape: number[]; data: Uint8Array }>;
}

/**
 * Build the GGUF form of a model from its config and a tensor getter (raw little-endian F32 bytes of a
 * parameter, by its GGUF name and the shapes of paramLayout). `c` may be unresolved.
 */
export function ggufContents(c: ModelConfig, get: (name: string) => Uint8Array, tokenizerJson: object, tokenizerConfig: object, name = 'moekit trained MoE'): GGUFContents {
  c = resolveModelConfig(c);
  const a = exportArch(c);
  const D = c.dim;
  const dense = c.nExpert === 0;
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
    [`${a}.expert_count`, u32(dense ? 1 : c.nExpert)],
    [`${a}.expert_used_count`, u32(dense ? 1 : c.router.K)],
    [`${a}.vocab_size`, u32(c.vocab)],
  ];
  const Fs = dense ? 1 : c.sharedDim ?? 0;
  if (a === 'qwen2moe') m.push([`${a}.expert_feed_forward_length`, u32(c.ffnDim)], [`${a}.expert_shared_feed_forward_length`, u32(Fs)]);
  m.push(...tokenizerJsonToGGUFMetadata(tokenizerJson, tokenizerConfig));
  const tensors: GGUFContents['tensors'] = [];
  for (const p of paramLayout(c)) {
    const data = get(p.name);
    if (data.byteLength !== p.size * 4) throw new UnsupportedError(`tensor ${p.name}: ${data.byteLength} bytes, expected ${p.size * 4} (F32 ${p.shape.join('×')})`);
    const f = dense && /^blk\.\d+\.ffn_(gate|up|down)\.weight$/.exec(p.name);
    if (!f) { tensors.push({ name: p.name, shape: p.shape, data }); continue; }
    // dense FFN → expert 0 of a 1-expert MoE, router a zero row (softmax = 1), qwen2moe: a zero shared expert
    const l = p.name.split('.')[1];
    tensors.push({ name: `blk.${l}.ffn_${f[1]}_exps.weight`, shape: [1, ...p.shape], data });
    if (f[1] !== 'down') continue;
    tensors.push({ name: `blk.${l}.ffn_gate_inp.weight`, shape: [1, D], data: new Uint8Array(D * 4) });
    if (a === 'qwen2moe') {
      for (const n of ['gate', 'up']) tensors.push({ name: `blk.${l}.ffn_${n}_shexp.weight`, shape: [Fs, D], data: new Uint8Array(Fs * D * 4) });
      tensors.push({ name: `blk.${l}.ffn_down_shexp.weight`, shape: [D, Fs], data: new Uint8Array(D * Fs * 4) });
      // the gate value does not matter (it scales an exact 0), but llama.cpp returns NaN for an all-zero gate vector
      tensors.push({ name: `blk.${l}.ffn_gate_inp_shexp.weight`, shape: [D], data: bytes(new Float32Array(D).fill(1)) });
    }
  }
  if (a === 'qwen2moe' && !c.qkvBias) {
    const zeros = new Uint8Array(D * 4);
    for (let l = 0; l < c.nLayer; l++) for (const n of ['q', 'k', 'v']) tensors.push({ name: `blk.${l}.attn_${n}.bias`, shape: [D], data: zeros });
  }
  // llama.cpp's olmoe/qwen2moe loaders want output.weight: write the tied embeddings out
  if (c.tied) tensors.push({ name: 'output.weight', shape: [c.vocab, D], data: get('token_embd.weight') });
  return { arch: a, metadata: m, tensors };
}

/** Write the model as an F32 GGUF with the BPE vocabulary; returns the architecture used. */
export function exportGGUF(path: string, model: MoeLM, tokenizerJson: object, tokenizerConfig: object, name = 'moekit trained MoE'): string {
  const g = ggufContents(model.config, (n) => bytes(model.tensor(n)), tokenizerJson, tokenizerConfig, name);
  writeGGUF(path, { metadata: g.metadata, tensors: g.tensors.map((t) => ({ name: t.name, type: GGMLType.F32, shape: t.shape, data: t.data })) });
  return g.arch;
}

/** A training checkpoint folder: model.safetensors + config.json with model/train sections (+ tokenizer.json). */
export function isTrainCheckpoint(dir: string): boolean {
  if (!existsSync(join(dir, 'model.safetensors')) || !existsSync(join(dir, 'config.json'))) return false;
  try {
    const c = JSON.parse(readFileSync(join(dir, 'config.json'), 'utf8'));
    return typeof c === 'object' && c !== null && typeof c.model === 'object' && typeof c.train === 'object';
  } catch {
    return false;
  }
}

/**
 * Open a training checkpoint folder (runs/<name>/last or best) for inference: the same metadata and
 * tensors exportGGUF would write, built in memory over the safetensors file (zero-copy), so
 * `moekit run/eval/…` on the folder compute exactly what they compute on the exported model.gguf.
 */
export function openTrainCheckpoint(dir: string): Checkpoint {
  const cfgPath = join(dir, 'config.json');
  let cfg: { model?: ModelConfig };
  try {
    cfg = JSON.parse(readFileSync(cfgPath, 'utf8'));
  } catch (e) {
    throw new CheckpointError(cfgPath, `cannot read the training config (${(e as Error).message})`);
  }
  if (!cfg.model || typeof cfg.model.vocab !== 'number') throw new CheckpointError(cfgPath, 'no model section with a vocab: not a moekit training checkpoint');
  if (!existsSync(join(dir, 'tokenizer.json'))) throw new CheckpointError(dir, 'tokenizer.json is missing; copy it from the run folder (the checkpoint is incomplete)');
  const tokenizerJson = JSON.parse(readFileSync(join(dir, 'tokenizer.json'), 'utf8')) as object;
  const tcPath = join(dir, 'tokenizer_config.json');
  const tokenizerConfig = existsSync(tcPath) ? (JSON.parse(readFileSync(tcPath, 'utf8')) as object) : bpeTokenizerConfig();
  try {
    exportArch(cfg.model);
  } catch (e) {
    if (e instanceof UnsupportedError) throw new UnsupportedError(`${dir}: moekit runs a training checkpoint as its GGUF export, and ${e.message.replace(/^this model/, 'this one')}`);
    throw e;
  }
  const st = openSafetensors(join(dir, 'model.safetensors'));
  try {
    for (const [n, t] of st.tensors) {
      if (!/\.exp_probs_b\.bias$/.test(n)) continue;
      const b = new Float32Array(t.data.slice().buffer);
      if (b.some((x) => x !== 0)) throw new UnsupportedError(`${dir}: ${n} is nonzero (a router trained with biasRate); olmoe/qwen2moe inference has no selection bias, so this checkpoint cannot run as trained`);
    }
    const get = (n: string) => {
      const t = st.tensors.get(n);
      if (!t || t.type !== GGMLType.F32) throw new CheckpointError(join(dir, 'model.safetensors'), `tensor ${n} is missing or not F32; the checkpoint does not match its config.json`, { tensor: n });
      return t.data;
    };
    const g = ggufContents(cfg.model, get, tokenizerJson, tokenizerConfig, `moekit checkpoint ${dir}`);
    const metadata = new Map<string, GGUFValue>(g.metadata);
    const tensors = new Map<string, Tensor>(g.tensors.map((t) => [t.name, { name: t.name, type: GGMLType.F32, shape: t.shape, data: t.data }]));
    return { path: dir, format: 'gguf', arch: g.arch, metadata, tensors, close: () => st.close() };
  } catch (e) {
    st.close();
    throw e;
  }
}

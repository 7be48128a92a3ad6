/**
 * One entry point for model weights: a `.gguf` file or a Hugging Face folder
 * (config.json + *.safetensors + tokenizer.json), normalised to GGUF names, layouts and metadata
 * keys (docs/design.md). Model code reads `metadata` and takes its tensors with `takeTensors`.
 */
import { existsSync, readFileSync, statSync } from 'node:fs';
import { join } from 'node:path';
import { CheckpointError, ShapeError } from '../errors.js';
import { typeName, type Tensor } from '../tensor.js';
import { openGGUF, plainValue, type GGUFValue } from './gguf.js';
import { hfConfigToGGUF, type HFConfig } from './hf-config.js';
import { hfToGGUFTensors } from './names.js';
import { openSafetensorsFolder } from './safetensors.js';

export interface Checkpoint {
  path: string;
  format: 'gguf' | 'hf';
  /** GGUF general.architecture (for HF: mapped from model_type) */
  arch: string;
  /** GGUF metadata keys; for HF synthesised from config.json */
  metadata: Map<string, GGUFValue>;
  /** canonical GGUF names, row-major shapes; data is lazy */
  tensors: Map<string, Tensor>;
  /** HF only: the raw JSON files */
  hf?: { config: HFConfig; tokenizerJson?: unknown; tokenizerConfig?: unknown };
  close(): void;
}

function readJson(path: string): unknown {
  let text: string;
  try {
    text = readFileSync(path, 'utf8');
  } catch (e) {
    throw new CheckpointError(path, `cannot read: ${(e as Error).message}`);
  }
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new CheckpointError(path, `not valid JSON (${(e as Error).message}); the file is corrupt`);
  }
}

/** Open a `.gguf` file or an HF folder. */
export function openCheckpoint(path: string): Checkpoint {
  let st;
  try {
    st = statSync(path);
  } catch {
    throw new CheckpointError(path, 'no such file or folder; pass a .gguf file or a Hugging Face model folder');
  }
  if (st.isDirectory()) return openHF(path);
  const g = openGGUF(path);
  const archV = g.metadata.get('general.architecture');
  if (!archV || typeof archV.value !== 'string') {
    g.close();
    throw new CheckpointError(path, 'metadata key general.architecture is missing or not a string; this GGUF is not a model (a vocab-only file?)', { key: 'general.architecture' });
  }
  return { path, format: 'gguf', arch: archV.value, metadata: g.metadata, tensors: g.tensors, close: () => g.close() };
}

function openHF(dir: string): Checkpoint {
  const cfgPath = join(dir, 'config.json');
  if (!existsSync(cfgPath)) throw new CheckpointError(dir, 'folder has no config.json; pass a Hugging Face model folder or a .gguf file');
  const config = readJson(cfgPath);
  if (typeof config !== 'object' || config === null || Array.isArray(config)) throw new CheckpointError(cfgPath, 'config.json is not a JSON object');
  const cfg = config as HFConfig;
  const { arch, modelType, permuteQK, metadata: md } = hfConfigToGGUF(cfg, cfgPath);
  const metadata = new Map<string, GGUFValue>(md);
  const tokPath = join(dir, 'tokenizer.json');
  const tokCfgPath = join(dir, 'tokenizer_config.json');
  const tokenizerJson = existsSync(tokPath) ? readJson(tokPath) : undefined;
  const tokenizerConfig = existsSync(tokCfgPath) ? readJson(tokCfgPath) : undefined;
  const st = openSafetensorsFolder(dir);
  try {
    const num = (k: string) => plainValue(metadata.get(`${arch}.${k}`)!) as number;
    const tensors = hfToGGUFTensors(modelType, st.tensors, { nHead: num('attention.head_count'), nHeadKv: num('attention.head_count_kv'), nExpert: num('expert_count'), permuteQK }, (n) => st.fileOf.get(n) ?? dir);
    return { path: dir, format: 'hf', arch, metadata, tensors, hf: { config: cfg, tokenizerJson, tokenizerConfig }, close: () => st.close() };
  } catch (e) {
    st.close();
    throw e;
  }
}

export interface ExpectedTensor {
  name: string;
  /** row-major */
  shape: number[];
  optional?: boolean;
}

function fmt(shape: readonly number[]): string {
  return `[${shape.join(', ')}]`;
}

/**
 * Take exactly the expected tensors: a missing one is a CheckpointError, a wrong shape a
 * ShapeError, and any tensor in the checkpoint that nobody asked for is a CheckpointError
 * (a checkpoint for another variant of the architecture must not load silently).
 */
export function takeTensors(ckpt: Pick<Checkpoint, 'path' | 'arch' | 'tensors'>, expected: ExpectedTensor[]): Map<string, Tensor> {
  const out = new Map<string, Tensor>();
  for (const e of expected) {
    const t = ckpt.tensors.get(e.name);
    if (!t) {
      if (e.optional) continue;
      throw new CheckpointError(ckpt.path, `tensor ${e.name} ${fmt(e.shape)} is missing; the checkpoint is incomplete or not a ${ckpt.arch} model of this shape`, { tensor: e.name });
    }
    if (t.shape.length !== e.shape.length || t.shape.some((d, i) => d !== e.shape[i])) {
      throw new ShapeError(ckpt.path, `tensor ${e.name} has shape ${fmt(t.shape)} (${typeName(t.type)}) but the ${ckpt.arch} hyper-parameters need ${fmt(e.shape)}`, { tensor: e.name });
    }
    out.set(e.name, t);
  }
  const extra = [...ckpt.tensors.keys()].filter((n) => !out.has(n) && !expected.some((e) => e.name === n));
  if (extra.length) {
    const list = extra.slice(0, 8).join(', ') + (extra.length > 8 ? `, ... (${extra.length} in all)` : '');
    throw new CheckpointError(ckpt.path, `unexpected tensors for ${ckpt.arch}: ${list}; the checkpoint does not match its metadata`, { tensor: extra[0] });
  }
  return out;
}

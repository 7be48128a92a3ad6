/**
 * What every architecture file uses to read a normalised checkpoint: typed metadata getters on the
 * GGUF keys (`<arch>.block_count` …) and a tensor taker that checks names and shapes and, at the end,
 * that no tensor was left unused.
 */
import { CheckpointError, ShapeError } from '../errors.js';
import { dequantize } from '../formats/quants.js';
import { GGMLType, numel, type Tensor } from '../tensor.js';

/** The part of a checkpoint (GGUF file or normalised HF folder) the architectures read. */
export interface ModelSource {
  path: string;
  arch: string;
  /** plain value of a GGUF metadata key, or undefined */
  get(key: string): unknown;
  tensors: Map<string, Tensor>;
}

export class Meta {
  constructor(private readonly src: ModelSource) {}

  /** `<arch>.<key>` as a number; required unless `def` is given. */
  num(key: string, def?: number): number {
    const full = key.startsWith('general.') || key.startsWith('tokenizer.') ? key : `${this.src.arch}.${key}`;
    const v = this.src.get(full);
    if (v === undefined || v === null) {
      if (def !== undefined) return def;
      throw new CheckpointError(this.src.path, `metadata key ${full} is missing; the file was not written for the ${this.src.arch} architecture or is incomplete — re-convert it`, { key: full });
    }
    const n = typeof v === 'bigint' ? Number(v) : typeof v === 'boolean' ? Number(v) : v;
    if (typeof n !== 'number' || !Number.isFinite(n)) {
      throw new CheckpointError(this.src.path, `metadata key ${full} should be a number, got ${JSON.stringify(v)}`, { key: full });
    }
    return n;
  }

  /** `<arch>.<key>` as an integer ≥ min. */
  int(key: string, def?: number, min = 0): number {
    const n = this.num(key, def);
    if (!Number.isInteger(n) || n < min) {
      throw new CheckpointError(this.src.path, `metadata key ${this.src.arch}.${key} = ${n} should be an integer ≥ ${min}`, { key });
    }
    return n;
  }

  bool(key: string, def: boolean): boolean {
    const v = this.src.get(`${this.src.arch}.${key}`);
    return v === undefined ? def : Boolean(v);
  }
}

export class TensorTaker {
  private readonly used = new Set<string>();

  constructor(private readonly src: ModelSource) {}

  /** A required tensor with exactly this row-major shape. */
  take(name: string, shape: number[]): Tensor {
    const t = this.src.tensors.get(name);
    if (!t) {
      throw new CheckpointError(this.src.path, `tensor ${name} ${fmt(shape)} is missing; the checkpoint is incomplete or not a ${this.src.arch} model`, { tensor: name });
    }
    return this.check(t, shape);
  }

  /** An optional tensor; undefined when absent. */
  opt(name: string, shape: number[]): Tensor | undefined {
    const t = this.src.tensors.get(name);
    return t ? this.check(t, shape) : undefined;
  }

  /** A required 1-D (or small) tensor as f32 values (norm weights, biases). */
  vec(name: string, len: number): Float32Array {
    return toF32(this.take(name, [len]));
  }

  optVec(name: string, len: number): Float32Array | undefined {
    const t = this.opt(name, [len]);
    return t ? toF32(t) : undefined;
  }

  /** Mark a tensor as deliberately unused (e.g. rope_freqs for a model we compute RoPE for). */
  ignore(name: string): void {
    if (this.src.tensors.has(name)) this.used.add(name);
  }

  /** Throws if the checkpoint holds tensors no layer asked for. */
  finish(): void {
    const extra = [...this.src.tensors.keys()].filter((n) => !this.used.has(n));
    if (extra.length) {
      throw new CheckpointError(
        this.src.path,
        `${extra.length} unexpected tensor(s) for a ${this.src.arch} model: ${extra.slice(0, 5).join(', ')}${extra.length > 5 ? ', …' : ''} — the metadata and the tensors disagree; re-convert the model`,
        { tensor: extra[0] },
      );
    }
  }

  private check(t: Tensor, shape: number[]): Tensor {
    const same = t.shape.length === shape.length && t.shape.every((d, i) => d === shape[i]);
    if (!same) {
      throw new ShapeError(this.src.path, `tensor ${t.name} has shape ${fmt(t.shape)} but the metadata implies ${fmt(shape)}`, { tensor: t.name });
    }
    this.used.add(t.name);
    return t;
  }
}

function fmt(shape: number[]): string {
  return `[${shape.join(', ')}]`;
}

/** f32 values of a small tensor: a zero-copy view when possible, else converted. */
export function toF32(t: Tensor): Float32Array {
  const n = numel(t.shape);
  if (t.type === GGMLType.F32 && t.data.byteOffset % 4 === 0) return new Float32Array(t.data.buffer, t.data.byteOffset, n);
  return dequantize(t.type, t.data, n);
}

/**
 * Tensor types and the one weight-tensor record shared by formats, backends and models.
 *
 * Shape convention (everywhere in moekit): row-major, outermost dimension first, the LAST
 * dimension is contiguous. This is PyTorch / safetensors order, i.e. the reverse of GGUF's `ne`.
 *   a linear layer weight is [N_out, K_in]; stacked experts are [E, N_out, K_in].
 * Letters used in shape comments: T tokens, D model dim, E experts, K experts per token (or
 * reduction dim where obvious), F expert FFN dim, V vocab, H heads, Hkv KV heads, Dh head dim.
 */

/** ggml type ids, as stored in GGUF tensor infos (ggml.h `enum ggml_type`). */
export enum GGMLType {
  F32 = 0,
  F16 = 1,
  Q4_0 = 2,
  Q4_1 = 3,
  Q5_0 = 6,
  Q5_1 = 7,
  Q8_0 = 8,
  Q8_1 = 9,
  Q2_K = 10,
  Q3_K = 11,
  Q4_K = 12,
  Q5_K = 13,
  Q6_K = 14,
  Q8_K = 15,
  BF16 = 30,
}

export interface TypeTraits {
  name: string;
  /** elements per block */
  blockSize: number;
  /** bytes per block */
  typeSize: number;
}

/** Block geometry from ggml.c `type_traits`. Only the types listed here can be read. */
export const TYPE_TRAITS: Partial<Record<GGMLType, TypeTraits>> = {
  [GGMLType.F32]: { name: 'F32', blockSize: 1, typeSize: 4 },
  [GGMLType.F16]: { name: 'F16', blockSize: 1, typeSize: 2 },
  [GGMLType.BF16]: { name: 'BF16', blockSize: 1, typeSize: 2 },
  [GGMLType.Q4_0]: { name: 'Q4_0', blockSize: 32, typeSize: 2 + 16 },
  [GGMLType.Q8_0]: { name: 'Q8_0', blockSize: 32, typeSize: 2 + 32 },
  [GGMLType.Q4_K]: { name: 'Q4_K', blockSize: 256, typeSize: 2 + 2 + 12 + 128 },
  [GGMLType.Q5_K]: { name: 'Q5_K', blockSize: 256, typeSize: 2 + 2 + 12 + 32 + 128 },
  [GGMLType.Q6_K]: { name: 'Q6_K', blockSize: 256, typeSize: 128 + 64 + 16 + 2 },
  [GGMLType.Q8_K]: { name: 'Q8_K', blockSize: 256, typeSize: 4 + 256 + 32 },
};

export function typeName(t: GGMLType): string {
  return TYPE_TRAITS[t]?.name ?? `ggml type ${t}`;
}

export function isSupportedType(t: number): t is GGMLType {
  return TYPE_TRAITS[t as GGMLType] !== undefined && t !== GGMLType.Q8_K;
}

/** Bytes of one row of `n` elements. Throws if n is not a multiple of the block size. */
export function rowBytes(t: GGMLType, n: number): number {
  const tr = TYPE_TRAITS[t];
  if (!tr) throw new Error(`unsupported type ${t}`);
  if (n % tr.blockSize !== 0) throw new Error(`row of ${n} elements is not a multiple of ${tr.name} block size ${tr.blockSize}`);
  return (n / tr.blockSize) * tr.typeSize;
}

export function numel(shape: readonly number[]): number {
  let n = 1;
  for (const d of shape) n *= d;
  return n;
}

/** Byte size of a whole tensor of `shape` in type `t`. */
export function tensorBytes(t: GGMLType, shape: readonly number[]): number {
  const inner = shape[shape.length - 1] ?? 1;
  return rowBytes(t, inner) * (numel(shape) / inner);
}

/**
 * A weight tensor: raw bytes in its storage type (possibly a zero-copy view into an mmapped file).
 * Model code passes these to the backend and never looks inside `data`.
 */
export interface Tensor {
  name: string;
  type: GGMLType;
  /** row-major, last dim contiguous (see top of file) */
  shape: number[];
  /** exactly tensorBytes(type, shape) bytes */
  data: Uint8Array;
}

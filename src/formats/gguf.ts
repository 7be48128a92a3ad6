/**
 * GGUF v2/v3 reader and writer.
 *
 * Layout (ggml/src/gguf.cpp, docs/gguf.md; little-endian):
 *   u32 magic "GGUF" | u32 version | u64 n_tensors | u64 n_kv
 *   n_kv × { string key | u32 value_type | value }
 *   n_tensors × { string name | u32 n_dims | u64 ne[n_dims] | u32 ggml_type | u64 offset }
 *   padding to `general.alignment` (default 32) | tensor data (each offset aligned, relative to data start)
 * string = u64 length + UTF-8 bytes (no NUL); array = u32 item_type + u64 count + items.
 * Shapes: GGUF `ne` lists the contiguous dimension first; moekit shapes are row-major, so reversed.
 */
import { closeSync, fstatSync, openSync, writeSync } from 'node:fs';
import { atomicWrite } from './atomic.js';
import { CheckpointError, MoekitError, UnsupportedError, UsageError } from '../errors.js';
import { GGMLType, TYPE_TRAITS, isSupportedType, tensorBytes, typeName, type Tensor } from '../tensor.js';
import { mapFile, readFully, type MappedFile } from './mmap.js';

export const GGUF_MAGIC = 0x46554747; // "GGUF" read as little-endian u32
export const GGUF_DEFAULT_ALIGNMENT = 32;
/** GGML_MAX_DIMS */
export const GGUF_MAX_DIMS = 4;
/** GGML_MAX_NAME: names must be shorter than this (gguf.cpp rejects longer ones) */
export const GGUF_MAX_NAME = 64;

/** gguf.h `enum gguf_type` */
export enum GGUFValueType {
  UINT8 = 0,
  INT8 = 1,
  UINT16 = 2,
  INT16 = 3,
  UINT32 = 4,
  INT32 = 5,
  FLOAT32 = 6,
  BOOL = 7,
  STRING = 8,
  ARRAY = 9,
  UINT64 = 10,
  INT64 = 11,
  FLOAT64 = 12,
}

export type GGUFNumberType =
  | GGUFValueType.UINT8 | GGUFValueType.INT8 | GGUFValueType.UINT16 | GGUFValueType.INT16
  | GGUFValueType.UINT32 | GGUFValueType.INT32 | GGUFValueType.FLOAT32 | GGUFValueType.FLOAT64;

export type GGUFScalar = number | bigint | boolean | string;
export interface GGUFArray {
  itemType: GGUFValueType;
  /** numbers for 8..32-bit ints and floats, bigint for 64-bit ints, nested GGUFArray for ARRAY */
  items: Array<GGUFScalar | GGUFArray>;
}
/** A metadata value with its on-disk type, so that files round-trip exactly. */
export type GGUFValue =
  | { type: GGUFNumberType; value: number }
  | { type: GGUFValueType.UINT64 | GGUFValueType.INT64; value: bigint }
  | { type: GGUFValueType.BOOL; value: boolean }
  | { type: GGUFValueType.STRING; value: string }
  | { type: GGUFValueType.ARRAY; value: GGUFArray };

export type GGUFPlain = number | bigint | boolean | string | GGUFPlain[];

// ---- value builders -------------------------------------------------------------------------
export const u8 = (n: number): GGUFValue => ({ type: GGUFValueType.UINT8, value: n });
export const i8 = (n: number): GGUFValue => ({ type: GGUFValueType.INT8, value: n });
export const u16 = (n: number): GGUFValue => ({ type: GGUFValueType.UINT16, value: n });
export const i16 = (n: number): GGUFValue => ({ type: GGUFValueType.INT16, value: n });
export const u32 = (n: number): GGUFValue => ({ type: GGUFValueType.UINT32, value: n });
export const i32 = (n: number): GGUFValue => ({ type: GGUFValueType.INT32, value: n });
/** rounded to single precision, as it will be stored */
export const f32 = (x: number): GGUFValue => ({ type: GGUFValueType.FLOAT32, value: Math.fround(x) });
export const f64 = (x: number): GGUFValue => ({ type: GGUFValueType.FLOAT64, value: x });
export const u64 = (n: bigint | number): GGUFValue => ({ type: GGUFValueType.UINT64, value: BigInt(n) });
export const i64 = (n: bigint | number): GGUFValue => ({ type: GGUFValueType.INT64, value: BigInt(n) });
export const bool = (b: boolean): GGUFValue => ({ type: GGUFValueType.BOOL, value: b });
export const str = (s: string): GGUFValue => ({ type: GGUFValueType.STRING, value: s });
export const arr = (itemType: GGUFValueType, items: GGUFArray['items']): GGUFValue => ({ type: GGUFValueType.ARRAY, value: { itemType, items } });
export const strArr = (xs: readonly string[]): GGUFValue => arr(GGUFValueType.STRING, [...xs]);
export const i32Arr = (xs: ArrayLike<number>): GGUFValue => arr(GGUFValueType.INT32, Array.from(xs));
export const u32Arr = (xs: ArrayLike<number>): GGUFValue => arr(GGUFValueType.UINT32, Array.from(xs));
export const f32Arr = (xs: ArrayLike<number>): GGUFValue => arr(GGUFValueType.FLOAT32, Array.from(xs, Math.fround));
export const boolArr = (xs: readonly boolean[]): GGUFValue => arr(GGUFValueType.BOOL, [...xs]);

/** Plain JS value: 64-bit ints become numbers when they are safe integers, arrays become arrays. */
export function plainValue(v: GGUFValue): GGUFPlain {
  if (v.type === GGUFValueType.ARRAY) return plainArray(v.value);
  if (typeof v.value === 'bigint') return bigToPlain(v.value);
  return v.value;
}
function bigToPlain(b: bigint): number | bigint {
  return b <= BigInt(Number.MAX_SAFE_INTEGER) && b >= BigInt(Number.MIN_SAFE_INTEGER) ? Number(b) : b;
}
function plainArray(a: GGUFArray): GGUFPlain[] {
  if (a.itemType === GGUFValueType.ARRAY) return a.items.map((x) => plainArray(x as GGUFArray));
  if (a.itemType === GGUFValueType.UINT64 || a.itemType === GGUFValueType.INT64) return a.items.map((x) => bigToPlain(x as bigint));
  return a.items as GGUFPlain[];
}

export interface GGUFTensorInfo {
  name: string;
  type: GGMLType;
  /** row-major (reverse of GGUF ne) */
  shape: number[];
  /** offset relative to the data section */
  offset: number;
  /** byte size of the data */
  size: number;
}

export interface GGUFFile {
  path: string;
  version: number;
  metadata: Map<string, GGUFValue>;
  /** canonical tensors; `data` is a lazy zero-copy view, mapped on first access */
  tensors: Map<string, Tensor>;
  tensorInfos: GGUFTensorInfo[];
  alignment: number;
  /** absolute file offset of the data section */
  dataOffset: number;
  fileSize: number;
  /** plain value of `key`, or undefined */
  get(key: string): GGUFPlain | undefined;
  close(): void;
}

// ---- reading --------------------------------------------------------------------------------

const MAX_ARRAY_DEPTH = 8;
const FIXED_SIZE: Partial<Record<GGUFValueType, number>> = {
  [GGUFValueType.UINT8]: 1, [GGUFValueType.INT8]: 1, [GGUFValueType.BOOL]: 1,
  [GGUFValueType.UINT16]: 2, [GGUFValueType.INT16]: 2,
  [GGUFValueType.UINT32]: 4, [GGUFValueType.INT32]: 4, [GGUFValueType.FLOAT32]: 4,
  [GGUFValueType.UINT64]: 8, [GGUFValueType.INT64]: 8, [GGUFValueType.FLOAT64]: 8,
};
/** smallest encoded size of one value of a type (for sanity checks on counts) */
function minValueSize(t: GGUFValueType): number {
  if (t === GGUFValueType.STRING) return 8;
  if (t === GGUFValueType.ARRAY) return 12;
  return FIXED_SIZE[t] ?? 1;
}

/** Sequential reader over the header, refilling a window from the file as needed. */
class HeaderReader {
  pos = 0;
  private buf = new Uint8Array(0);
  private dv = new DataView(this.buf.buffer);
  private winStart = 0;
  private readonly decoder = new TextDecoder('utf-8');
  constructor(private readonly fd: number, readonly path: string, readonly size: number) {}

  /** Make [pos, pos+n) available; error if the file ends first. */
  private need(n: number, what: string): number {
    if (this.pos + n > this.size) {
      throw new CheckpointError(this.path, `${what} at offset ${this.pos} needs ${n} bytes but the file has ${this.size}; the file is truncated or corrupt`, { offset: this.pos });
    }
    const rel = this.pos - this.winStart;
    if (rel >= 0 && rel + n <= this.buf.length) return rel;
    const len = Math.min(Math.max(n, 1 << 20), this.size - this.pos);
    this.buf = new Uint8Array(len);
    readFully(this.fd, this.buf, this.pos, this.path);
    this.dv = new DataView(this.buf.buffer);
    this.winStart = this.pos;
    return 0;
  }
  u8(what = 'value'): number { const r = this.need(1, what); this.pos += 1; return this.buf[r]!; }
  i8(what = 'value'): number { const r = this.need(1, what); this.pos += 1; return this.dv.getInt8(r); }
  u16(what = 'value'): number { const r = this.need(2, what); this.pos += 2; return this.dv.getUint16(r, true); }
  i16(what = 'value'): number { const r = this.need(2, what); this.pos += 2; return this.dv.getInt16(r, true); }
  u32(what = 'value'): number { const r = this.need(4, what); this.pos += 4; return this.dv.getUint32(r, true); }
  i32(what = 'value'): number { const r = this.need(4, what); this.pos += 4; return this.dv.getInt32(r, true); }
  f32(what = 'value'): number { const r = this.need(4, what); this.pos += 4; return this.dv.getFloat32(r, true); }
  f64(what = 'value'): number { const r = this.need(8, what); this.pos += 8; return this.dv.getFloat64(r, true); }
  u64(what = 'value'): bigint { const r = this.need(8, what); this.pos += 8; return this.dv.getBigUint64(r, true); }
  i64(what = 'value'): bigint { const r = this.need(8, what); this.pos += 8; return this.dv.getBigInt64(r, true); }
  /** u64 that must fit in a JS number and be <= max */
  count(what: string, max: number): number {
    const at = this.pos;
    const v = this.u64(what);
    if (v > BigInt(max)) {
      throw new CheckpointError(this.path, `${what} at offset ${at} is ${v}, more than the file can hold (at most ${max}); the header is corrupt`, { offset: at });
    }
    return Number(v);
  }
  string(what: string): string {
    const len = this.count(`length of ${what}`, this.size - this.pos - 8);
    const r = this.need(len, what);
    this.pos += len;
    return this.decoder.decode(this.buf.subarray(r, r + len));
  }
}

function readValue(r: HeaderReader, type: number, key: string, depth: number): GGUFValue {
  const what = `value of ${key}`;
  switch (type) {
    case GGUFValueType.UINT8: return { type, value: r.u8(what) };
    case GGUFValueType.INT8: return { type, value: r.i8(what) };
    case GGUFValueType.UINT16: return { type, value: r.u16(what) };
    case GGUFValueType.INT16: return { type, value: r.i16(what) };
    case GGUFValueType.UINT32: return { type, value: r.u32(what) };
    case GGUFValueType.INT32: return { type, value: r.i32(what) };
    case GGUFValueType.FLOAT32: return { type, value: r.f32(what) };
    case GGUFValueType.FLOAT64: return { type, value: r.f64(what) };
    case GGUFValueType.UINT64: return { type, value: r.u64(what) };
    case GGUFValueType.INT64: return { type, value: r.i64(what) };
    case GGUFValueType.BOOL: {
      const at = r.pos;
      const b = r.u8(what);
      if (b > 1) throw new CheckpointError(r.path, `bool ${key} at offset ${at} has byte value ${b} (expected 0 or 1); the file is corrupt`, { key, offset: at });
      return { type, value: b === 1 };
    }
    case GGUFValueType.STRING: return { type, value: r.string(what) };
    case GGUFValueType.ARRAY: return { type, value: readArray(r, key, depth + 1) };
    default:
      throw new CheckpointError(r.path, `metadata key ${key} has unknown value type ${type} at offset ${r.pos - 4}; the file is corrupt or from a newer GGUF version`, { key, offset: r.pos - 4 });
  }
}

function readArray(r: HeaderReader, key: string, depth: number): GGUFArray {
  if (depth > MAX_ARRAY_DEPTH) throw new CheckpointError(r.path, `metadata key ${key}: arrays nested deeper than ${MAX_ARRAY_DEPTH}; the file is corrupt`, { key });
  const at = r.pos;
  const itemType = r.u32(`array type of ${key}`);
  if (itemType > GGUFValueType.FLOAT64) throw new CheckpointError(r.path, `metadata key ${key}: unknown array item type ${itemType} at offset ${at}; the file is corrupt`, { key, offset: at });
  const n = r.count(`array length of ${key}`, Math.floor((r.size - r.pos - 8) / minValueSize(itemType)));
  const items: GGUFArray['items'] = new Array(n);
  for (let i = 0; i < n; i++) {
    const v = readValue(r, itemType, key, depth);
    items[i] = v.value;
  }
  return { itemType, items };
}

function alignUp(x: number, a: number): number {
  return Math.ceil(x / a) * a;
}

/** Parse and validate a GGUF file. Tensor data is not read until a tensor's `data` is used. */
export function openGGUF(path: string): GGUFFile {
  let fd: number;
  try {
    fd = openSync(path, 'r');
  } catch (e) {
    throw new CheckpointError(path, `cannot open: ${(e as Error).message}`);
  }
  try {
    return parse(fd, path);
  } catch (e) {
    if (e instanceof MoekitError) throw e;
    if (e instanceof RangeError) throw new CheckpointError(path, `corrupt GGUF header: ${e.message}`);
    throw e;
  } finally {
    closeSync(fd);
  }
}

function parse(fd: number, path: string): GGUFFile {
  const size = fstatSync(fd).size;
  const r = new HeaderReader(fd, path, size);
  if (size < 24) throw new CheckpointError(path, `file has only ${size} bytes, too small for a GGUF header (24); it is not a GGUF file or is truncated`);
  const magic = r.u32('magic');
  if (magic !== GGUF_MAGIC) {
    const bytes = [magic & 255, (magic >> 8) & 255, (magic >> 16) & 255, (magic >>> 24) & 255];
    throw new CheckpointError(path, `bad magic ${JSON.stringify(String.fromCharCode(...bytes))} (expected "GGUF"); this is not a GGUF file`, { offset: 0 });
  }
  const version = r.u32('version');
  if (version === 1) throw new UnsupportedError(`${path}: GGUF version 1 (32-bit counts, 2023) is not supported; re-convert the model with a current llama.cpp`);
  if (version !== 2 && version !== 3) {
    const hint = version > 0xffff ? ' (byte-swapped: a big-endian GGUF, which moekit does not read)' : '';
    throw new CheckpointError(path, `unsupported GGUF version ${version}${hint}; moekit reads versions 2 and 3`, { offset: 4 });
  }
  // each tensor info takes at least 8 (name len) + 4 + 8 + 4 + 8 bytes; each kv at least 8 + 4 + 1
  const nTensors = r.count('tensor count', Math.floor((size - 24) / 32));
  const nKv = r.count('metadata key count', Math.floor((size - 24) / 13));

  const metadata = new Map<string, GGUFValue>();
  for (let i = 0; i < nKv; i++) {
    const at = r.pos;
    const key = r.string(`key #${i}`);
    if (metadata.has(key)) throw new CheckpointError(path, `duplicate metadata key ${key} at offset ${at}; the file is corrupt`, { key, offset: at });
    const type = r.u32(`type of ${key}`);
    metadata.set(key, readValue(r, type, key, 0));
  }

  let alignment = GGUF_DEFAULT_ALIGNMENT;
  const al = metadata.get('general.alignment');
  if (al !== undefined) {
    if (al.type !== GGUFValueType.UINT32 || al.value === 0 || (al.value & (al.value - 1)) !== 0) {
      throw new CheckpointError(path, `general.alignment must be a power-of-two u32, got ${JSON.stringify(plainValue(al).toString())} (type ${GGUFValueType[al.type]})`, { key: 'general.alignment' });
    }
    alignment = al.value;
  }

  const infos: GGUFTensorInfo[] = [];
  const names = new Set<string>();
  for (let i = 0; i < nTensors; i++) {
    const at = r.pos;
    const name = r.string(`name of tensor #${i}`);
    if (Buffer.byteLength(name) >= GGUF_MAX_NAME) throw new CheckpointError(path, `tensor #${i} name ${JSON.stringify(name.slice(0, 80))} is ${Buffer.byteLength(name)} bytes, limit is ${GGUF_MAX_NAME - 1}`, { tensor: name, offset: at });
    if (names.has(name)) throw new CheckpointError(path, `duplicate tensor name ${name} at offset ${at}`, { tensor: name, offset: at });
    names.add(name);
    const nDims = r.u32(`n_dims of ${name}`);
    if (nDims < 1 || nDims > GGUF_MAX_DIMS) throw new CheckpointError(path, `tensor ${name} has ${nDims} dimensions (expected 1..${GGUF_MAX_DIMS}); the file is corrupt`, { tensor: name, offset: at });
    const ne: number[] = [];
    let numel = 1;
    for (let d = 0; d < nDims; d++) {
      const v = r.u64(`dim ${d} of ${name}`);
      if (v === 0n || v > BigInt(Number.MAX_SAFE_INTEGER)) throw new CheckpointError(path, `tensor ${name} dimension ${d} is ${v}; the file is corrupt`, { tensor: name, offset: at });
      ne.push(Number(v));
      numel *= Number(v);
    }
    const type = r.u32(`type of ${name}`);
    if (!isSupportedType(type)) {
      const supported = Object.keys(TYPE_TRAITS).map(Number).filter(isSupportedType).map(typeName).join(', ');
      throw new UnsupportedError(`${path}: tensor ${name} has type ${typeName(type as GGMLType)} (${type}), which moekit does not read; supported: ${supported}. Re-quantize the model to one of these.`);
    }
    const bs = TYPE_TRAITS[type]!.blockSize;
    if (ne[0]! % bs !== 0) throw new CheckpointError(path, `tensor ${name}: row length ${ne[0]} is not a multiple of the ${typeName(type)} block size ${bs}`, { tensor: name });
    if (numel > size * bs) throw new CheckpointError(path, `tensor ${name} has ${numel} elements, more than the file could hold; the file is corrupt`, { tensor: name });
    const offAt = r.pos;
    const off = r.u64(`offset of ${name}`);
    if (off > BigInt(size)) throw new CheckpointError(path, `tensor ${name} data offset ${off} is beyond the end of the file (${size} bytes); the file is truncated or corrupt`, { tensor: name, offset: offAt });
    const offset = Number(off);
    if (offset % alignment !== 0) throw new CheckpointError(path, `tensor ${name} data offset ${offset} is not a multiple of the alignment ${alignment}`, { tensor: name, offset: offAt });
    const shape = ne.slice().reverse();
    infos.push({ name, type, shape, offset, size: tensorBytes(type, shape) });
  }

  const dataOffset = alignUp(r.pos, alignment);
  for (const t of infos) {
    const end = dataOffset + t.offset + t.size;
    if (end > size) {
      throw new CheckpointError(path, `tensor ${t.name} ends at byte ${end.toLocaleString('en-US')} but the file has ${size.toLocaleString('en-US')}; the file is truncated, download it again`, { tensor: t.name, offset: end });
    }
  }
  const sorted = infos.slice().sort((a, b) => a.offset - b.offset);
  for (let i = 1; i < sorted.length; i++) {
    const a = sorted[i - 1]!, b = sorted[i]!;
    if (a.offset + a.size > b.offset) throw new CheckpointError(path, `tensors ${a.name} and ${b.name} overlap (bytes ${a.offset}..${a.offset + a.size} and ${b.offset}..); the file is corrupt`, { tensor: b.name });
  }

  const file = mapFile(path);
  const tensors = new Map<string, Tensor>();
  for (const info of infos) tensors.set(info.name, lazyTensor(info, file, dataOffset));
  return {
    path,
    version,
    metadata,
    tensors,
    tensorInfos: infos,
    alignment,
    dataOffset,
    fileSize: size,
    get: (key) => {
      const v = metadata.get(key);
      return v === undefined ? undefined : plainValue(v);
    },
    close: () => file.close(),
  };
}

function lazyTensor(info: GGUFTensorInfo, file: MappedFile, dataOffset: number): Tensor {
  let data: Uint8Array | undefined;
  return {
    name: info.name,
    type: info.type,
    shape: info.shape,
    get data() {
      data ??= file.view(dataOffset + info.offset, info.size);
      return data;
    },
  };
}

// ---- metadata helpers for model code ---------------------------------------------------------

/** A required numeric metadata value, or CheckpointError naming the key. */
export function metaNumber(meta: Map<string, GGUFValue>, key: string, file: string): number;
export function metaNumber(meta: Map<string, GGUFValue>, key: string, file: string, fallback: number): number;
export function metaNumber(meta: Map<string, GGUFValue>, key: string, file: string, fallback?: number): number {
  const v = meta.get(key);
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw new CheckpointError(file, `metadata key ${key} is missing; the model file is incomplete`, { key });
  }
  const p = plainValue(v);
  if (typeof p === 'number') return p;
  if (typeof p === 'boolean') return p ? 1 : 0;
  throw new CheckpointError(file, `metadata key ${key} should be a number, found ${GGUFValueType[v.type]}`, { key });
}

export function metaString(meta: Map<string, GGUFValue>, key: string, file: string, fallback?: string): string {
  const v = meta.get(key);
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw new CheckpointError(file, `metadata key ${key} is missing; the model file is incomplete`, { key });
  }
  if (v.type !== GGUFValueType.STRING) throw new CheckpointError(file, `metadata key ${key} should be a string, found ${GGUFValueType[v.type]}`, { key });
  return v.value;
}

export function metaBool(meta: Map<string, GGUFValue>, key: string, file: string, fallback?: boolean): boolean {
  const v = meta.get(key);
  if (v === undefined) {
    if (fallback !== undefined) return fallback;
    throw new CheckpointError(file, `metadata key ${key} is missing; the model file is incomplete`, { key });
  }
  if (v.type !== GGUFValueType.BOOL) throw new CheckpointError(file, `metadata key ${key} should be a bool, found ${GGUFValueType[v.type]}`, { key });
  return v.value;
}

// ---- writing --------------------------------------------------------------------------------

export interface GGUFWriteTensor {
  name: string;
  type: GGMLType;
  /** row-major */
  shape: number[];
  /** the bytes, or a producer called once, when this tensor is written (keeps RAM low) */
  data: Uint8Array | (() => Uint8Array);
}

export interface GGUFWriteInput {
  metadata: Array<[string, GGUFValue]>;
  tensors: GGUFWriteTensor[];
}

/** Growable little-endian byte builder for the header. */
class ByteWriter {
  buf = new Uint8Array(1 << 16);
  dv = new DataView(this.buf.buffer);
  len = 0;
  private readonly enc = new TextEncoder();
  private room(n: number): number {
    if (this.len + n > this.buf.length) {
      let cap = this.buf.length * 2;
      while (cap < this.len + n) cap *= 2;
      const nb = new Uint8Array(cap);
      nb.set(this.buf.subarray(0, this.len));
      this.buf = nb;
      this.dv = new DataView(nb.buffer);
    }
    const at = this.len;
    this.len += n;
    return at;
  }
  u8(v: number) { const at = this.room(1); this.dv.setUint8(at, v); }
  i8(v: number) { const at = this.room(1); this.dv.setInt8(at, v); }
  u16(v: number) { const at = this.room(2); this.dv.setUint16(at, v, true); }
  i16(v: number) { const at = this.room(2); this.dv.setInt16(at, v, true); }
  u32(v: number) { const at = this.room(4); this.dv.setUint32(at, v, true); }
  i32(v: number) { const at = this.room(4); this.dv.setInt32(at, v, true); }
  f32(v: number) { const at = this.room(4); this.dv.setFloat32(at, v, true); }
  f64(v: number) { const at = this.room(8); this.dv.setFloat64(at, v, true); }
  u64(v: bigint | number) { const at = this.room(8); this.dv.setBigUint64(at, BigInt(v), true); }
  i64(v: bigint | number) { const at = this.room(8); this.dv.setBigInt64(at, BigInt(v), true); }
  string(s: string) {
    const b = this.enc.encode(s);
    this.u64(b.length);
    const at = this.room(b.length);
    this.buf.set(b, at);
  }
  bytes(): Uint8Array { return this.buf.subarray(0, this.len); }
}

function checkInt(key: string, v: unknown, lo: number, hi: number): number {
  if (typeof v !== 'number' || !Number.isInteger(v) || v < lo || v > hi) throw new UsageError(`GGUF metadata ${key}: ${String(v)} is not an integer in [${lo}, ${hi}]`);
  return v;
}

function writeScalar(w: ByteWriter, type: GGUFValueType, v: unknown, key: string): void {
  switch (type) {
    case GGUFValueType.UINT8: return w.u8(checkInt(key, v, 0, 255));
    case GGUFValueType.INT8: return w.i8(checkInt(key, v, -128, 127));
    case GGUFValueType.UINT16: return w.u16(checkInt(key, v, 0, 65535));
    case GGUFValueType.INT16: return w.i16(checkInt(key, v, -32768, 32767));
    case GGUFValueType.UINT32: return w.u32(checkInt(key, v, 0, 2 ** 32 - 1));
    case GGUFValueType.INT32: return w.i32(checkInt(key, v, -(2 ** 31), 2 ** 31 - 1));
    case GGUFValueType.FLOAT32:
    case GGUFValueType.FLOAT64:
      if (typeof v !== 'number') throw new UsageError(`GGUF metadata ${key}: ${String(v)} is not a number`);
      return type === GGUFValueType.FLOAT32 ? w.f32(v) : w.f64(v);
    case GGUFValueType.UINT64:
    case GGUFValueType.INT64: {
      if (typeof v !== 'bigint' && !(typeof v === 'number' && Number.isInteger(v))) throw new UsageError(`GGUF metadata ${key}: ${String(v)} is not an integer`);
      const b = BigInt(v);
      if (type === GGUFValueType.UINT64 ? b < 0n || b >= 1n << 64n : b < -(1n << 63n) || b >= 1n << 63n) throw new UsageError(`GGUF metadata ${key}: ${b} out of range`);
      return type === GGUFValueType.UINT64 ? w.u64(b) : w.i64(b);
    }
    case GGUFValueType.BOOL:
      if (typeof v !== 'boolean') throw new UsageError(`GGUF metadata ${key}: ${String(v)} is not a boolean`);
      return w.u8(v ? 1 : 0);
    case GGUFValueType.STRING:
      if (typeof v !== 'string') throw new UsageError(`GGUF metadata ${key}: ${String(v)} is not a string`);
      return w.string(v);
    case GGUFValueType.ARRAY: {
      const a = v as GGUFArray;
      if (!a || !Array.isArray(a.items)) throw new UsageError(`GGUF metadata ${key}: array value must be { itemType, items }`);
      w.u32(a.itemType);
      w.u64(a.items.length);
      for (const item of a.items) writeScalar(w, a.itemType, item, key);
      return;
    }
    default:
      throw new UsageError(`GGUF metadata ${key}: unknown value type ${String(type)}`);
  }
}

/** Bytes of the whole header (magic .. tensor infos), unpadded. Exposed for tests. */
export function encodeGGUFHeader(input: GGUFWriteInput, alignment: number): { header: Uint8Array; offsets: number[]; sizes: number[] } {
  const w = new ByteWriter();
  w.u32(GGUF_MAGIC);
  w.u32(3);
  w.u64(input.tensors.length);
  w.u64(input.metadata.length);
  const keys = new Set<string>();
  for (const [key, v] of input.metadata) {
    if (keys.has(key)) throw new UsageError(`GGUF metadata key ${key} given twice`);
    keys.add(key);
    w.string(key);
    w.u32(v.type);
    writeScalar(w, v.type, v.value, key);
  }
  const offsets: number[] = [];
  const sizes: number[] = [];
  const names = new Set<string>();
  let off = 0;
  for (const t of input.tensors) {
    if (names.has(t.name)) throw new UsageError(`GGUF tensor ${t.name} given twice`);
    names.add(t.name);
    if (Buffer.byteLength(t.name) >= GGUF_MAX_NAME) throw new UsageError(`GGUF tensor name ${t.name} is longer than ${GGUF_MAX_NAME - 1} bytes`);
    if (t.shape.length < 1 || t.shape.length > GGUF_MAX_DIMS || t.shape.some((d) => !Number.isSafeInteger(d) || d <= 0)) {
      throw new UsageError(`GGUF tensor ${t.name}: shape [${t.shape}] must have 1..${GGUF_MAX_DIMS} positive dimensions`);
    }
    if (!isSupportedType(t.type)) throw new UsageError(`GGUF tensor ${t.name}: unsupported type ${t.type}`);
    let size: number;
    try {
      size = tensorBytes(t.type, t.shape);
    } catch (e) {
      throw new UsageError(`GGUF tensor ${t.name}: ${(e as Error).message}`);
    }
    w.string(t.name);
    w.u32(t.shape.length);
    for (let d = t.shape.length - 1; d >= 0; d--) w.u64(t.shape[d]!);
    w.u32(t.type);
    w.u64(off);
    offsets.push(off);
    sizes.push(size);
    off = alignUp(off + size, alignment);
  }
  return { header: w.bytes(), offsets, sizes };
}

/**
 * Write a GGUF v3 file atomically (`path.tmp-<pid>`, fsync, rename). Tensors whose `data` is a
 * function are produced one at a time while writing, so a huge model needs little RAM.
 * Every tensor is padded to `alignment` (as ggml's gguf writer does), and `general.alignment` is
 * written when it differs from the default 32.
 */
export function writeGGUF(path: string, input: GGUFWriteInput, opts: { alignment?: number } = {}): void {
  const alignment = opts.alignment ?? GGUF_DEFAULT_ALIGNMENT;
  if (!Number.isInteger(alignment) || alignment <= 0 || (alignment & (alignment - 1)) !== 0) throw new UsageError(`GGUF alignment must be a power of two, got ${alignment}`);
  let metadata = input.metadata;
  const al = metadata.find(([k]) => k === 'general.alignment');
  if (al) {
    if (al[1].type !== GGUFValueType.UINT32 || al[1].value !== alignment) throw new UsageError(`general.alignment in metadata (${String(al[1].value)}) disagrees with alignment option ${alignment}`);
  } else if (alignment !== GGUF_DEFAULT_ALIGNMENT) {
    metadata = [...metadata, ['general.alignment', u32(alignment)]];
  }
  const { header, offsets, sizes } = encodeGGUFHeader({ metadata, tensors: input.tensors }, alignment);

  atomicWrite(path, (fd) => {
    let pos = 0;
    const put = (b: Uint8Array) => {
      let done = 0;
      while (done < b.length) done += writeSync(fd, b, done, b.length - done, pos + done);
      pos += b.length;
    };
    const zeros = new Uint8Array(alignment);
    const pad = () => {
      const p = alignUp(pos, alignment) - pos;
      if (p) put(zeros.subarray(0, p));
    };
    put(header);
    pad();
    const dataStart = pos;
    input.tensors.forEach((t, i) => {
      if (pos - dataStart !== offsets[i]) throw new Error(`internal: offset mismatch for ${t.name}`);
      const data = typeof t.data === 'function' ? t.data() : t.data;
      if (!(data instanceof Uint8Array) || data.length !== sizes[i]) {
        throw new UsageError(`GGUF tensor ${t.name}: data has ${(data as Uint8Array | undefined)?.length} bytes, expected ${sizes[i]} for ${typeName(t.type)} [${t.shape}]`);
      }
      put(data);
      pad();
    });
  });
}

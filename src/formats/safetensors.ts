/**
 * safetensors reader/writer (https://github.com/huggingface/safetensors, "Format" in README):
 *   u64 N (little-endian) | N bytes JSON header | data
 *   header: { "__metadata__"?: {string: string}, "<name>": { dtype, shape, data_offsets: [begin, end] } }
 *   offsets are relative to the data start; the tensors tile the data area with no gaps.
 * moekit reads F32, F16 and BF16 (as GGML types F32/F16/BF16, same bytes).
 */
import { existsSync, mkdirSync, readdirSync, readFileSync, statSync, writeSync } from 'node:fs';
import { join } from 'node:path';
import { atomicWrite, writeFileAtomic } from './atomic.js';
import { CheckpointError, MoekitError, UnsupportedError, UsageError } from '../errors.js';
import { GGMLType, numel, typeName, type Tensor } from '../tensor.js';
import { mapFile, type MappedFile } from './mmap.js';

/** the reference implementation refuses headers above 100 MB */
export const MAX_HEADER_BYTES = 100_000_000;

const DTYPES: Record<string, GGMLType> = { F32: GGMLType.F32, F16: GGMLType.F16, BF16: GGMLType.BF16 };
const DTYPE_NAME: Partial<Record<GGMLType, string>> = { [GGMLType.F32]: 'F32', [GGMLType.F16]: 'F16', [GGMLType.BF16]: 'BF16' };
const DTYPE_BYTES: Record<string, number> = {
  F64: 8, F32: 4, F16: 2, BF16: 2, I64: 8, I32: 4, I16: 2, I8: 1, U64: 8, U32: 4, U16: 2, U8: 1, BOOL: 1,
  F8_E4M3: 1, F8_E5M2: 1, F8_E8M0: 1,
};

export interface SafetensorsInfo {
  name: string;
  dtype: string;
  shape: number[];
  /** absolute byte range in the file */
  begin: number;
  end: number;
}

export interface SafetensorsFile {
  path: string;
  metadata: Record<string, string>;
  /** tensors in file order; `data` is a lazy zero-copy view */
  tensors: Map<string, Tensor>;
  infos: SafetensorsInfo[];
  close(): void;
}

function bad(path: string, detail: string, extra: { tensor?: string; offset?: number; key?: string } = {}): never {
  throw new CheckpointError(path, detail, extra);
}

/** Open one .safetensors file and validate its header. */
export function openSafetensors(path: string): SafetensorsFile {
  const file = mapFile(path);
  try {
    return parseSafetensors(path, file);
  } catch (e) {
    file.close();
    if (e instanceof MoekitError) throw e;
    throw new CheckpointError(path, `corrupt safetensors header: ${(e as Error).message}`);
  }
}

function parseSafetensors(path: string, file: MappedFile): SafetensorsFile {
  const size = file.size;
  if (size < 8) bad(path, `file has ${size} bytes, too small for a safetensors header; it is truncated, download it again`);
  const n64 = new DataView(file.view(0, 8).slice().buffer).getBigUint64(0, true);
  if (n64 > BigInt(size - 8)) bad(path, `header length ${n64} is larger than the rest of the file (${size - 8} bytes); the file is truncated or not safetensors`, { offset: 0 });
  if (n64 > BigInt(MAX_HEADER_BYTES)) bad(path, `header length ${n64} exceeds the ${MAX_HEADER_BYTES}-byte limit; the file is corrupt`, { offset: 0 });
  const n = Number(n64);
  if (n < 2) bad(path, `header length ${n} is too small for a JSON object`, { offset: 0 });
  const text = new TextDecoder('utf-8', { fatal: false }).decode(file.view(8, n));
  let header: unknown;
  try {
    header = JSON.parse(text);
  } catch (e) {
    bad(path, `header is not valid JSON (${(e as Error).message}); the file is corrupt or not safetensors`, { offset: 8 });
  }
  if (typeof header !== 'object' || header === null || Array.isArray(header)) bad(path, 'header JSON is not an object', { offset: 8 });
  const dataStart = 8 + n;
  const dataLen = size - dataStart;
  let metadata: Record<string, string> = {};
  const infos: SafetensorsInfo[] = [];
  for (const [name, raw] of Object.entries(header as Record<string, unknown>)) {
    if (name === '__metadata__') {
      if (typeof raw !== 'object' || raw === null || Array.isArray(raw) || Object.values(raw).some((v) => typeof v !== 'string')) {
        bad(path, '__metadata__ must be an object of strings', { key: '__metadata__' });
      }
      metadata = raw as Record<string, string>;
      continue;
    }
    if (typeof raw !== 'object' || raw === null) bad(path, `tensor ${name}: header entry is not an object`, { tensor: name });
    const { dtype, shape, data_offsets } = raw as { dtype?: unknown; shape?: unknown; data_offsets?: unknown };
    if (typeof dtype !== 'string' || !(dtype in DTYPE_BYTES)) bad(path, `tensor ${name}: unknown dtype ${JSON.stringify(dtype)}`, { tensor: name });
    if (!Array.isArray(shape) || shape.length > 8 || !shape.every((d) => Number.isSafeInteger(d) && d >= 0)) bad(path, `tensor ${name}: bad shape ${JSON.stringify(shape)}`, { tensor: name });
    if (!Array.isArray(data_offsets) || data_offsets.length !== 2 || !data_offsets.every((d) => Number.isSafeInteger(d) && d >= 0)) {
      bad(path, `tensor ${name}: bad data_offsets ${JSON.stringify(data_offsets)}`, { tensor: name });
    }
    const [b, e] = data_offsets as [number, number];
    if (b > e) bad(path, `tensor ${name}: data_offsets [${b}, ${e}] are reversed`, { tensor: name });
    if (e > dataLen) {
      bad(path, `tensor ${name} ends at byte ${(dataStart + e).toLocaleString('en-US')} but the file has ${size.toLocaleString('en-US')}; the file is truncated, download it again`, { tensor: name, offset: dataStart + e });
    }
    const want = numel(shape as number[]) * DTYPE_BYTES[dtype]!;
    if (want !== e - b) bad(path, `tensor ${name}: ${dtype} [${(shape as number[]).join(', ')}] needs ${want} bytes but data_offsets span ${e - b}`, { tensor: name });
    infos.push({ name, dtype, shape: shape as number[], begin: dataStart + b, end: dataStart + e });
  }
  // the tensors must tile [0, dataLen) exactly: no gaps, no overlaps (as the reference validates)
  const sorted = infos.slice().sort((a, b) => a.begin - b.begin || a.end - b.end);
  let expect = dataStart;
  for (const t of sorted) {
    if (t.begin !== expect) {
      bad(path, t.begin < expect ? `tensor ${t.name} overlaps the previous tensor (starts at ${t.begin}, previous ends at ${expect})` : `gap before tensor ${t.name} (bytes ${expect}..${t.begin} belong to no tensor); the header is corrupt`, { tensor: t.name, offset: t.begin });
    }
    expect = t.end;
  }
  for (const t of infos) {
    if (!(t.dtype in DTYPES)) {
      throw new UnsupportedError(`${path}: tensor ${t.name} has dtype ${t.dtype}; moekit reads F32, F16 and BF16 safetensors. Convert the checkpoint to one of these (e.g. torch_dtype=bfloat16).`);
    }
  }
  const tensors = new Map<string, Tensor>();
  for (const t of infos) {
    let data: Uint8Array | undefined;
    tensors.set(t.name, {
      name: t.name,
      type: DTYPES[t.dtype]!,
      shape: t.shape,
      get data() {
        data ??= file.view(t.begin, t.end - t.begin);
        return data;
      },
    });
  }
  return { path, metadata, tensors, infos, close: () => file.close() };
}

export interface SafetensorsFolder {
  dir: string;
  /** the shard files, in load order */
  files: string[];
  tensors: Map<string, Tensor>;
  /** shard path of each tensor */
  fileOf: Map<string, string>;
  close(): void;
}

/**
 * Open the safetensors of an HF folder: follows `model.safetensors.index.json` when present,
 * else `model.safetensors`, else every `*.safetensors` (sorted).
 */
export function openSafetensorsFolder(dir: string): SafetensorsFolder {
  const indexPath = join(dir, 'model.safetensors.index.json');
  let files: string[];
  let weightMap: Record<string, string> | null = null;
  if (existsSync(indexPath)) {
    let idx: unknown;
    try {
      idx = JSON.parse(readFileSync(indexPath, 'utf8'));
    } catch (e) {
      throw new CheckpointError(indexPath, `not valid JSON: ${(e as Error).message}`);
    }
    const wm = (idx as { weight_map?: unknown } | null)?.weight_map;
    if (typeof wm !== 'object' || wm === null || Array.isArray(wm) || Object.values(wm).some((v) => typeof v !== 'string')) {
      throw new CheckpointError(indexPath, 'missing or malformed "weight_map" (expected an object of tensor name -> shard file)', { key: 'weight_map' });
    }
    weightMap = wm as Record<string, string>;
    files = [...new Set(Object.values(weightMap))].sort();
    for (const f of files) {
      if (f.includes('/') || f.includes('\\') || f.startsWith('.')) throw new CheckpointError(indexPath, `shard name ${JSON.stringify(f)} is not a plain file name`, { key: 'weight_map' });
      if (!existsSync(join(dir, f))) throw new CheckpointError(indexPath, `shard ${f} is listed in weight_map but missing from the folder; download it`, { key: 'weight_map' });
    }
  } else if (existsSync(join(dir, 'model.safetensors'))) {
    files = ['model.safetensors'];
  } else {
    let names: string[];
    try {
      names = readdirSync(dir);
    } catch (e) {
      throw new CheckpointError(dir, `cannot read folder: ${(e as Error).message}`);
    }
    files = names.filter((f) => f.endsWith('.safetensors')).sort();
    if (files.length === 0) throw new CheckpointError(dir, 'no *.safetensors files found (expected model.safetensors or a sharded model.safetensors.index.json)');
  }
  const opened: SafetensorsFile[] = [];
  const tensors = new Map<string, Tensor>();
  const fileOf = new Map<string, string>();
  try {
    for (const f of files) {
      const p = join(dir, f);
      const st = openSafetensors(p);
      opened.push(st);
      for (const [name, t] of st.tensors) {
        if (tensors.has(name)) throw new CheckpointError(p, `tensor ${name} also appears in ${fileOf.get(name)}`, { tensor: name });
        if (weightMap && weightMap[name] !== f) {
          throw new CheckpointError(p, `tensor ${name} is in ${f} but the index maps it to ${weightMap[name] ?? 'nothing'}`, { tensor: name });
        }
        tensors.set(name, t);
        fileOf.set(name, p);
      }
    }
    if (weightMap) {
      for (const [name, f] of Object.entries(weightMap)) {
        if (!tensors.has(name)) throw new CheckpointError(join(dir, f), `tensor ${name} is listed in model.safetensors.index.json but missing from ${f}; the shard is incomplete, download it again`, { tensor: name });
      }
    }
  } catch (e) {
    for (const o of opened) o.close();
    throw e;
  }
  return { dir, files: files.map((f) => join(dir, f)), tensors, fileOf, close: () => opened.forEach((o) => o.close()) };
}

// ---- writing --------------------------------------------------------------------------------

export interface SafetensorsWriteTensor {
  name: string;
  /** F32, F16 or BF16 */
  type: GGMLType;
  shape: number[];
  data: Uint8Array | (() => Uint8Array);
}

function dtypeOf(t: SafetensorsWriteTensor): string {
  const d = DTYPE_NAME[t.type];
  if (!d) throw new UsageError(`safetensors tensor ${t.name}: type ${typeName(t.type)} cannot be stored; use F32, F16 or BF16`);
  return d;
}

function tensorSize(t: SafetensorsWriteTensor): number {
  return numel(t.shape) * DTYPE_BYTES[dtypeOf(t)]!;
}

/** Write one .safetensors file atomically. Lazy `data` producers are called one at a time. */
export function writeSafetensors(path: string, tensors: SafetensorsWriteTensor[], metadata?: Record<string, string>): void {
  const header: Record<string, unknown> = {};
  if (metadata && Object.keys(metadata).length) header.__metadata__ = metadata;
  let off = 0;
  const sizes: number[] = [];
  for (const t of tensors) {
    if (t.name in header) throw new UsageError(`safetensors tensor ${t.name} given twice`);
    const size = tensorSize(t);
    header[t.name] = { dtype: dtypeOf(t), shape: t.shape, data_offsets: [off, off + size] };
    sizes.push(size);
    off += size;
  }
  let json = JSON.stringify(header);
  // pad the header with spaces so the data starts 8-byte aligned (as the reference writer does)
  const enc = new TextEncoder();
  let hb = enc.encode(json);
  const padded = Math.ceil(hb.length / 8) * 8;
  if (padded !== hb.length) {
    json += ' '.repeat(padded - hb.length);
    hb = enc.encode(json);
  }
  atomicWrite(path, (fd) => {
    let pos = 0;
    const put = (b: Uint8Array) => {
      let done = 0;
      while (done < b.length) done += writeSync(fd, b, done, b.length - done, pos + done);
      pos += b.length;
    };
    const len = new Uint8Array(8);
    new DataView(len.buffer).setBigUint64(0, BigInt(hb.length), true);
    put(len);
    put(hb);
    tensors.forEach((t, i) => {
      const data = typeof t.data === 'function' ? t.data() : t.data;
      if (!(data instanceof Uint8Array) || data.length !== sizes[i]) throw new UsageError(`safetensors tensor ${t.name}: data has ${(data as Uint8Array | undefined)?.length} bytes, expected ${sizes[i]}`);
      put(data);
    });
  });
}

/**
 * Write tensors into `dir` as HF does: one `model.safetensors` when everything fits in
 * `maxShardBytes` (default: no limit), else `model-0000i-of-0000n.safetensors` shards plus
 * `model.safetensors.index.json` ({ metadata: { total_size }, weight_map }).
 * Returns the file names written.
 */
export function writeSafetensorsFolder(dir: string, tensors: SafetensorsWriteTensor[], opts: { maxShardBytes?: number; metadata?: Record<string, string> } = {}): string[] {
  mkdirSync(dir, { recursive: true });
  const max = opts.maxShardBytes ?? Infinity;
  if (!(max > 0)) throw new UsageError(`maxShardBytes must be positive, got ${max}`);
  const shards: SafetensorsWriteTensor[][] = [];
  let cur: SafetensorsWriteTensor[] = [];
  let curBytes = 0;
  let total = 0;
  for (const t of tensors) {
    const s = tensorSize(t);
    total += s;
    if (cur.length && curBytes + s > max) {
      shards.push(cur);
      cur = [];
      curBytes = 0;
    }
    cur.push(t);
    curBytes += s;
  }
  if (cur.length || shards.length === 0) shards.push(cur);
  if (shards.length === 1) {
    writeSafetensors(join(dir, 'model.safetensors'), shards[0]!, opts.metadata ?? { format: 'pt' });
    return ['model.safetensors'];
  }
  const n = shards.length;
  const pad = (i: number) => String(i).padStart(5, '0');
  const names: string[] = [];
  const weightMap: Record<string, string> = {};
  shards.forEach((ts, i) => {
    const name = `model-${pad(i + 1)}-of-${pad(n)}.safetensors`;
    writeSafetensors(join(dir, name), ts, opts.metadata ?? { format: 'pt' });
    for (const t of ts) weightMap[t.name] = name;
    names.push(name);
  });
  const idx = JSON.stringify({ metadata: { total_size: total }, weight_map: weightMap }, null, 2) + '\n';
  const ip = join(dir, 'model.safetensors.index.json');
  writeFileAtomic(ip, idx);
  names.push('model.safetensors.index.json');
  return names;
}

/** true when `dir` holds at least one .safetensors file */
export function hasSafetensors(dir: string): boolean {
  try {
    return statSync(dir).isDirectory() && readdirSync(dir).some((f) => f.endsWith('.safetensors'));
  } catch {
    return false;
  }
}

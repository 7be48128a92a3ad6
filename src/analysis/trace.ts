/**
 * Routing traces: what the router did for every token and MoE layer, in a compact columnar binary file
 * (`.mkt`, documented in docs/trace-format.md) and optionally as JSONL.
 *
 * Letters: L MoE layers recorded, T tokens, K slots per token, E routed experts per layer.
 * Columns are layer-major ([L, T, …]) so that per-layer analytics read one contiguous slice.
 */
import { readFileSync, writeSync } from 'node:fs';
import { MoekitError } from '../errors.js';
import { atomicWrite, writeFileAtomic } from '../formats/atomic.js';

/** A trace file is malformed: wrong magic or version, truncated, or its sizes disagree. */
export class TraceError extends MoekitError {
  constructor(
    readonly file: string,
    detail: string,
    readonly extra: { offset?: number; field?: string } = {},
  ) {
    super(`${file}: ${detail}`);
  }
}

export const TRACE_MAGIC = 'MKTRACE\0';
export const TRACE_VERSION = 1;

export interface TraceModelInfo {
  /** checkpoint path as given to `moekit trace` */
  path: string;
  /** GGUF general.architecture */
  arch: string;
  name?: string;
  /** all decoder layers (dense ones included): super-expert detection keeps layers < round(0.75·nLayer) */
  nLayer: number;
}

export interface Trace {
  model: TraceModelInfo;
  /** decoder layer index of each recorded MoE layer, [L] */
  layers: number[];
  E: number;
  K: number;
  T: number;
  /** lengths of the independent windows (fresh KV cache each) the T tokens were run in; sums to T */
  windows: number[];
  /** [T] token ids */
  tokens: Uint32Array;
  /** [T] decoded text of each token (for the report) */
  pieces: string[];
  /** [L, T, K] selected experts, best first; -1 = unused slot */
  ids: Int16Array;
  /** [L, T, K] gate weights */
  weights: Float32Array;
  /** [L, T] router entropy (nats) of the full score distribution, scores normalised to sum 1 */
  entropy: Float32Array;
  /** [L, E] max |expert output| over all tokens routed to the expert (before gate weighting); optional */
  expertMax?: Float32Array;
}

type ColType = 'u8' | 'i16' | 'u32' | 'f32';
const COL_BYTES: Record<ColType, number> = { u8: 1, i16: 2, u32: 4, f32: 4 };

interface ColumnEntry {
  name: string;
  type: ColType;
  shape: number[];
  /** byte offset from the start of the file (8-aligned) */
  offset: number;
  byteLength: number;
}

interface Header {
  model: TraceModelInfo;
  layers: number[];
  E: number;
  K: number;
  T: number;
  windows: number[];
  columns: ColumnEntry[];
}

const align8 = (n: number): number => (n + 7) & ~7;

/** Serialise a trace to bytes (see docs/trace-format.md). */
export function encodeTrace(tr: Trace): Uint8Array {
  checkShapes(tr, '<memory>');
  const L = tr.layers.length;
  const enc = new TextEncoder();
  const pieceBytes = tr.pieces.map((p) => enc.encode(p));
  const pieceOffsets = new Uint32Array(tr.T + 1);
  for (let t = 0; t < tr.T; t++) pieceOffsets[t + 1] = pieceOffsets[t] + pieceBytes[t].length;
  const blob = new Uint8Array(pieceOffsets[tr.T]);
  for (let t = 0; t < tr.T; t++) blob.set(pieceBytes[t], pieceOffsets[t]);

  const cols: Array<{ name: string; type: ColType; shape: number[]; data: ArrayBufferView }> = [
    { name: 'tokens', type: 'u32', shape: [tr.T], data: tr.tokens },
    { name: 'ids', type: 'i16', shape: [L, tr.T, tr.K], data: tr.ids },
    { name: 'weights', type: 'f32', shape: [L, tr.T, tr.K], data: tr.weights },
    { name: 'entropy', type: 'f32', shape: [L, tr.T], data: tr.entropy },
    { name: 'piece_offsets', type: 'u32', shape: [tr.T + 1], data: pieceOffsets },
    { name: 'piece_bytes', type: 'u8', shape: [blob.length], data: blob },
  ];
  if (tr.expertMax) cols.push({ name: 'expert_max', type: 'f32', shape: [L, tr.E], data: tr.expertMax });

  // The header's column offsets depend on the header length: lay out with a fixed-width guess, then fix.
  const build = (base: number): { json: Uint8Array; entries: ColumnEntry[]; end: number } => {
    let off = base;
    const entries = cols.map((c) => {
      const e: ColumnEntry = { name: c.name, type: c.type, shape: c.shape, offset: off, byteLength: c.data.byteLength };
      off = align8(off + c.data.byteLength);
      return e;
    });
    const h: Header = { model: tr.model, layers: tr.layers, E: tr.E, K: tr.K, T: tr.T, windows: tr.windows, columns: entries };
    return { json: enc.encode(JSON.stringify(h)), entries, end: off };
  };
  let base = 0;
  let built = build(base);
  for (;;) {
    const need = align8(16 + built.json.length);
    if (need === base) break;
    base = need;
    built = build(base);
  }
  const out = new Uint8Array(built.end);
  const dv = new DataView(out.buffer);
  out.set(enc.encode(TRACE_MAGIC), 0);
  dv.setUint32(8, TRACE_VERSION, true);
  dv.setUint32(12, built.json.length, true);
  out.set(built.json, 16);
  for (let i = 0; i < cols.length; i++) {
    const d = cols[i].data;
    out.set(new Uint8Array(d.buffer, d.byteOffset, d.byteLength), built.entries[i].offset);
  }
  return out;
}

/** Parse and validate trace bytes; `file` names the source in errors. */
export function decodeTrace(bytes: Uint8Array, file = '<memory>'): Trace {
  const fail = (detail: string, extra: { offset?: number; field?: string } = {}): never => {
    throw new TraceError(file, detail, extra);
  };
  if (bytes.length < 16) fail(`the file is ${bytes.length} bytes, shorter than the 16-byte trace preamble — it is truncated or not a moekit trace`, { offset: 0 });
  const magic = new TextDecoder().decode(bytes.subarray(0, 8));
  if (magic !== TRACE_MAGIC) {
    fail(`bad magic ${JSON.stringify(magic)} at offset 0 (expected "MKTRACE\\0") — not a moekit trace; record one with \`moekit trace\``, { offset: 0, field: 'magic' });
  }
  const dv = new DataView(bytes.buffer, bytes.byteOffset, bytes.byteLength);
  const version = dv.getUint32(8, true);
  if (version !== TRACE_VERSION) {
    fail(`trace format version ${version} at offset 8; this moekit reads version ${TRACE_VERSION} — re-record the trace with this moekit`, { offset: 8, field: 'version' });
  }
  const hlen = dv.getUint32(12, true);
  if (16 + hlen > bytes.length) fail(`the header claims ${hlen} bytes (offset 12) but the file ends at byte ${bytes.length} — the file is truncated`, { offset: 12, field: 'header_length' });
  let h: Header;
  try {
    h = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes.subarray(16, 16 + hlen))) as Header;
  } catch (e) {
    return fail(`the JSON header at offset 16 does not parse (${(e as Error).message}) — the file is corrupt; re-record it`, { offset: 16, field: 'header' });
  }
  const int = (v: unknown, field: string, min: number): number => {
    if (typeof v !== 'number' || !Number.isSafeInteger(v) || v < min) fail(`header field '${field}' must be an integer ≥ ${min}, got ${JSON.stringify(v)}`, { field });
    return v as number;
  };
  if (typeof h !== 'object' || h === null) fail('the header is not a JSON object', { field: 'header' });
  const E = int(h.E, 'E', 1);
  const K = int(h.K, 'K', 1);
  const T = int(h.T, 'T', 0);
  if (E > 32767) fail(`header field 'E' is ${E}; expert ids are stored as int16, so E must be ≤ 32767`, { field: 'E' });
  if (!Array.isArray(h.layers)) fail("header field 'layers' must be an array of layer indices", { field: 'layers' });
  h.layers.forEach((l, i) => int(l, `layers[${i}]`, 0));
  if (!Array.isArray(h.windows)) fail("header field 'windows' must be an array of window lengths", { field: 'windows' });
  h.windows.forEach((w, i) => int(w, `windows[${i}]`, 1));
  const wsum = h.windows.reduce((a, b) => a + b, 0);
  if (wsum !== T) fail(`the window lengths sum to ${wsum} but T is ${T} — inconsistent sizes`, { field: 'windows' });
  if (typeof h.model !== 'object' || h.model === null || typeof h.model.arch !== 'string') fail("header field 'model' must be an object with 'arch'", { field: 'model' });
  int(h.model.nLayer, 'model.nLayer', 1);
  if (!Array.isArray(h.columns)) fail("header field 'columns' must be an array", { field: 'columns' });
  const L = h.layers.length;

  const expected: Record<string, { type: ColType; shape: number[] | null; required: boolean }> = {
    tokens: { type: 'u32', shape: [T], required: true },
    ids: { type: 'i16', shape: [L, T, K], required: true },
    weights: { type: 'f32', shape: [L, T, K], required: true },
    entropy: { type: 'f32', shape: [L, T], required: true },
    piece_offsets: { type: 'u32', shape: [T + 1], required: true },
    piece_bytes: { type: 'u8', shape: null, required: true },
    expert_max: { type: 'f32', shape: [L, E], required: false },
  };
  const views: Record<string, Uint8Array> = {};
  for (const c of h.columns) {
    const x = expected[c?.name];
    if (!x) fail(`unknown column ${JSON.stringify(c?.name)} in the header`, { field: 'columns' });
    if (c.type !== x.type) fail(`column '${c.name}' has type ${c.type}, expected ${x.type}`, { field: c.name });
    if (!Array.isArray(c.shape) || c.shape.some((d) => !Number.isSafeInteger(d) || d < 0)) fail(`column '${c.name}' has a bad shape ${JSON.stringify(c.shape)}`, { field: c.name });
    if (x.shape && c.shape.join(',') !== x.shape.join(',')) {
      fail(`column '${c.name}' has shape [${c.shape}] but L=${L}, T=${T}, K=${K}, E=${E} imply [${x.shape}] — inconsistent sizes`, { field: c.name });
    }
    const n = c.shape.reduce((a, b) => a * b, 1) * COL_BYTES[x.type];
    if (c.byteLength !== n) fail(`column '${c.name}' claims ${c.byteLength} bytes but its shape [${c.shape}] needs ${n} — inconsistent sizes`, { field: c.name });
    if (!Number.isSafeInteger(c.offset) || c.offset < 16 + hlen || c.offset % 8 !== 0) fail(`column '${c.name}' has a bad offset ${c.offset}`, { field: c.name, offset: c.offset });
    if (c.offset + n > bytes.length) {
      fail(`column '${c.name}' spans bytes ${c.offset}..${c.offset + n} but the file ends at byte ${bytes.length} — the file is truncated`, { field: c.name, offset: c.offset });
    }
    views[c.name] = bytes.slice(c.offset, c.offset + n); // copy: aligned, independent of the input buffer
  }
  for (const [name, x] of Object.entries(expected)) if (x.required && !views[name]) fail(`required column '${name}' is missing`, { field: name });

  const buf = (name: string): ArrayBuffer => views[name].buffer as ArrayBuffer;
  const ids = new Int16Array(buf('ids'));
  for (let i = 0; i < ids.length; i++) {
    if (ids[i] < -1 || ids[i] >= E) fail(`column 'ids' holds expert ${ids[i]} at element ${i}, outside [-1, ${E})`, { field: 'ids' });
  }
  const pieceOffsets = new Uint32Array(buf('piece_offsets'));
  const blob = views.piece_bytes;
  if (pieceOffsets[0] !== 0 || pieceOffsets[T] !== blob.length) fail(`column 'piece_offsets' does not span 'piece_bytes' (${blob.length} bytes)`, { field: 'piece_offsets' });
  const dec = new TextDecoder();
  const pieces: string[] = [];
  for (let t = 0; t < T; t++) {
    if (pieceOffsets[t + 1] < pieceOffsets[t]) fail(`column 'piece_offsets' decreases at token ${t}`, { field: 'piece_offsets' });
    pieces.push(dec.decode(blob.subarray(pieceOffsets[t], pieceOffsets[t + 1])));
  }
  return {
    model: h.model,
    layers: h.layers,
    E,
    K,
    T,
    windows: h.windows,
    tokens: new Uint32Array(buf('tokens')),
    pieces,
    ids,
    weights: new Float32Array(buf('weights')),
    entropy: new Float32Array(buf('entropy')),
    expertMax: views.expert_max ? new Float32Array(buf('expert_max')) : undefined,
  };
}

export function writeTrace(path: string, tr: Trace): void {
  writeFileAtomic(path, encodeTrace(tr));
}

export function readTrace(path: string): Trace {
  let bytes: Uint8Array;
  try {
    bytes = new Uint8Array(readFileSync(path));
  } catch (e) {
    throw new TraceError(path, `cannot read it (${(e as Error).message}); record a trace with \`moekit trace <model> --data file.txt -o ${path}\``);
  }
  return decodeTrace(bytes, path);
}

/** JSONL: a header line, then one line per token with every layer's experts, weights and entropy. */
export function writeTraceJsonl(path: string, tr: Trace): void {
  const L = tr.layers.length;
  const { K, T } = tr;
  atomicWrite(path, (fd) => {
    const lines: string[] = [];
    const flush = (): void => {
      if (lines.length) writeAll(fd, lines.join(''));
      lines.length = 0;
    };
    lines.push(JSON.stringify({ header: { model: tr.model, layers: tr.layers, E: tr.E, K, T, windows: tr.windows } }) + '\n');
    if (tr.expertMax) {
      const em = Array.from({ length: L }, (_, l) => Array.from(tr.expertMax!.subarray(l * tr.E, (l + 1) * tr.E)));
      lines.push(JSON.stringify({ expert_max: em }) + '\n');
    }
    for (let t = 0; t < T; t++) {
      const layers = [];
      for (let l = 0; l < L; l++) {
        const o = (l * T + t) * K;
        layers.push({ ids: Array.from(tr.ids.subarray(o, o + K)), w: Array.from(tr.weights.subarray(o, o + K)), H: tr.entropy[l * T + t] });
      }
      lines.push(JSON.stringify({ t, token: tr.tokens[t], piece: tr.pieces[t], layers }) + '\n');
      if (lines.length >= 256) flush();
    }
    flush();
  });
}

function writeAll(fd: number, s: string): void {
  const b = Buffer.from(s, 'utf8');
  let done = 0;
  while (done < b.length) done += writeSync(fd, b, done, b.length - done);
}

function checkShapes(tr: Trace, file: string): void {
  const L = tr.layers.length;
  const bad = (what: string): never => {
    throw new TraceError(file, `inconsistent trace: ${what}`);
  };
  if (tr.tokens.length !== tr.T) bad(`tokens has ${tr.tokens.length} entries, T = ${tr.T}`);
  if (tr.pieces.length !== tr.T) bad(`pieces has ${tr.pieces.length} entries, T = ${tr.T}`);
  if (tr.ids.length !== L * tr.T * tr.K) bad(`ids has ${tr.ids.length} entries, L·T·K = ${L * tr.T * tr.K}`);
  if (tr.weights.length !== L * tr.T * tr.K) bad(`weights has ${tr.weights.length} entries, L·T·K = ${L * tr.T * tr.K}`);
  if (tr.entropy.length !== L * tr.T) bad(`entropy has ${tr.entropy.length} entries, L·T = ${L * tr.T}`);
  if (tr.expertMax && tr.expertMax.length !== L * tr.E) bad(`expertMax has ${tr.expertMax.length} entries, L·E = ${L * tr.E}`);
  if (tr.windows.reduce((a, b) => a + b, 0) !== tr.T) bad(`windows sum to ${tr.windows.reduce((a, b) => a + b, 0)}, T = ${tr.T}`);
}

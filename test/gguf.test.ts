import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, rmSync, statSync, truncateSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CheckpointError, UnsupportedError, UsageError } from '../src/errors.js';
import { GGMLType, tensorBytes } from '../src/tensor.js';
import {
  GGUFValueType, arr, bool, f32, f32Arr, f64, i16, i32, i32Arr, i64, i8, openGGUF, plainValue, str, strArr, u16, u32, u64, u8,
  writeGGUF, type GGUFValue, type GGUFWriteTensor,
} from '../src/formats/gguf.js';
import { mapFile } from '../src/formats/mmap.js';

const repoRoot = resolve(fileURLToPath(import.meta.url), '../..');
const cacheDir = join(repoRoot, '.cache', 'test-gguf');
mkdirSync(cacheDir, { recursive: true });

/** deterministic bytes */
function bytes(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    b[i] = s >>> 24;
  }
  return b;
}

const allTypes: Array<[string, GGUFValue]> = [
  ['general.architecture', str('llama')],
  ['t.u8', u8(255)], ['t.i8', i8(-128)], ['t.u16', u16(65535)], ['t.i16', i16(-32768)],
  ['t.u32', u32(4294967295)], ['t.i32', i32(-2147483648)], ['t.f32', f32(0.15625)], ['t.f64', f64(Math.PI)],
  ['t.u64', u64(2n ** 64n - 1n)], ['t.i64', i64(-(2n ** 63n))], ['t.small64', u64(7)],
  ['t.bool', bool(true)], ['t.str', str('héllo ☃ \u0000 end')], ['t.empty', str('')],
  ['t.strs', strArr(['a', '', 'ünï'])], ['t.i32s', i32Arr([1, -2, 3])], ['t.f32s', f32Arr([0.5, -1.25])],
  ['t.emptyarr', arr(GGUFValueType.UINT8, [])],
  ['t.nested', arr(GGUFValueType.ARRAY, [{ itemType: GGUFValueType.INT64, items: [1n, -2n] }, { itemType: GGUFValueType.STRING, items: ['x'] }])],
];

const tensors: GGUFWriteTensor[] = [
  { name: 'a.f32', type: GGMLType.F32, shape: [3, 5], data: bytes(60, 1) },
  { name: 'b.f16', type: GGMLType.F16, shape: [7], data: bytes(14, 2) },
  { name: 'c.q8_0', type: GGMLType.Q8_0, shape: [2, 2, 64], data: () => bytes(tensorBytes(GGMLType.Q8_0, [2, 2, 64]), 3) },
  { name: 'd.q4_k', type: GGMLType.Q4_K, shape: [3, 256], data: () => bytes(tensorBytes(GGMLType.Q4_K, [3, 256]), 4) },
  { name: 'e.bf16', type: GGMLType.BF16, shape: [1, 1, 1, 3], data: bytes(6, 5) },
];

function dataOf(t: GGUFWriteTensor): Uint8Array {
  return typeof t.data === 'function' ? t.data() : t.data;
}

test('gguf: round trip of every metadata type and several tensor types', () => {
  for (const alignment of [32, 64, 1]) {
    const p = join(cacheDir, `rt-${alignment}.gguf`);
    writeGGUF(p, { metadata: allTypes, tensors }, { alignment });
    const g = openGGUF(p);
    try {
      assert.equal(g.version, 3);
      assert.equal(g.alignment, alignment);
      assert.equal(g.dataOffset % alignment, 0);
      const expected = new Map(allTypes);
      if (alignment !== 32) expected.set('general.alignment', u32(alignment));
      // f32 values round to single precision
      assert.deepEqual(g.metadata, expected);
      assert.equal(g.get('t.small64'), 7);
      assert.equal(g.get('t.u64'), 2n ** 64n - 1n);
      assert.deepEqual(g.get('t.nested'), [[1, -2], ['x']]);
      assert.deepEqual(g.tensorInfos.map((t) => t.name), tensors.map((t) => t.name));
      for (const t of tensors) {
        const r = g.tensors.get(t.name)!;
        assert.equal(r.type, t.type);
        assert.deepEqual(r.shape, t.shape);
        assert.deepEqual(r.data, dataOf(t), t.name);
      }
      for (const info of g.tensorInfos) assert.equal(info.offset % alignment, 0, `${info.name} aligned`);
      // data section padded to alignment after every tensor (ggml writer behaviour)
      const last = g.tensorInfos.at(-1)!;
      assert.equal(g.fileSize, g.dataOffset + Math.ceil((last.offset + last.size) / alignment) * alignment);
    } finally {
      g.close();
    }
  }
});

test('gguf: header bytes are exactly the documented layout', () => {
  const p = join(cacheDir, 'layout.gguf');
  writeGGUF(p, { metadata: [['k', u32(7)]], tensors: [{ name: 'w', type: GGMLType.F32, shape: [2, 3], data: bytes(24, 9) }] });
  const b = readFileSync(p);
  const dv = new DataView(b.buffer, b.byteOffset, b.byteLength);
  let o = 0;
  assert.equal(b.subarray(0, 4).toString('latin1'), 'GGUF'); o += 4;
  assert.equal(dv.getUint32(o, true), 3); o += 4;
  assert.equal(dv.getBigUint64(o, true), 1n); o += 8; // tensors
  assert.equal(dv.getBigUint64(o, true), 1n); o += 8; // kv
  assert.equal(dv.getBigUint64(o, true), 1n); o += 8;
  assert.equal(b.subarray(o, o + 1).toString(), 'k'); o += 1;
  assert.equal(dv.getUint32(o, true), GGUFValueType.UINT32); o += 4;
  assert.equal(dv.getUint32(o, true), 7); o += 4;
  assert.equal(dv.getBigUint64(o, true), 1n); o += 8;
  assert.equal(b.subarray(o, o + 1).toString(), 'w'); o += 1;
  assert.equal(dv.getUint32(o, true), 2); o += 4; // n_dims
  assert.equal(dv.getBigUint64(o, true), 3n); o += 8; // ne[0] = innermost = 3
  assert.equal(dv.getBigUint64(o, true), 2n); o += 8;
  assert.equal(dv.getUint32(o, true), GGMLType.F32); o += 4;
  assert.equal(dv.getBigUint64(o, true), 0n); o += 8;
  const dataStart = Math.ceil(o / 32) * 32;
  assert.deepEqual(new Uint8Array(b.subarray(dataStart, dataStart + 24)), bytes(24, 9));
  assert.equal(b.length, dataStart + 32);
});

test('gguf: fallback reader (no mmap) gives the same bytes', () => {
  const p = join(cacheDir, 'rt-32.gguf');
  const m = mapFile(p, { native: false });
  const n = mapFile(p);
  try {
    assert.equal(m.zeroCopy, false);
    assert.deepEqual(m.view(100, 50), n.view(100, 50));
    assert.throws(() => m.view(m.size - 1, 2), CheckpointError);
  } finally {
    m.close();
    n.close();
  }
});

test('gguf: bad input gives typed errors naming the file', () => {
  const good = join(cacheDir, 'rt-32.gguf');
  const src = readFileSync(good);
  const bad = join(cacheDir, 'bad.gguf');

  writeFileSync(bad, Buffer.concat([Buffer.from('GGUX'), src.subarray(4)]));
  assert.throws(() => openGGUF(bad), (e: unknown) => e instanceof CheckpointError && /bad magic.*not a GGUF file/.test(e.message) && e.message.startsWith(bad));

  const v = Buffer.from(src); v.writeUInt32LE(1, 4); writeFileSync(bad, v);
  assert.throws(() => openGGUF(bad), (e: unknown) => e instanceof UnsupportedError && /version 1/.test(e.message));
  v.writeUInt32LE(99, 4); writeFileSync(bad, v);
  assert.throws(() => openGGUF(bad), (e: unknown) => e instanceof CheckpointError && /version 99/.test(e.message));

  // truncated: the last tensor runs past the end
  writeFileSync(bad, src);
  const g = openGGUF(good);
  const last = g.tensorInfos.at(-1)!;
  const end = g.dataOffset + last.offset + last.size;
  g.close();
  truncateSync(bad, end - 1);
  assert.throws(() => openGGUF(bad), (e: unknown) => e instanceof CheckpointError && e.message.includes(`tensor ${last.name} ends at byte ${end.toLocaleString('en-US')}`) && /truncated, download it again/.test(e.message) && e.extra.tensor === last.name);
  truncateSync(bad, 10);
  assert.throws(() => openGGUF(bad), CheckpointError);

  // huge tensor count
  const h = Buffer.from(src); h.writeBigUInt64LE(2n ** 62n, 8); writeFileSync(bad, h);
  assert.throws(() => openGGUF(bad), (e: unknown) => e instanceof CheckpointError && /tensor count/.test(e.message));
  // huge string length in the first key
  const s = Buffer.from(src); s.writeBigUInt64LE(2n ** 40n, 24); writeFileSync(bad, s);
  assert.throws(() => openGGUF(bad), (e: unknown) => e instanceof CheckpointError && /length of key #0/.test(e.message));
  assert.throws(() => openGGUF(join(cacheDir, 'does-not-exist.gguf')), CheckpointError);
});

test('gguf: unsupported tensor type lists the supported ones', () => {
  const p = join(cacheDir, 'iq.gguf');
  writeGGUF(p, { metadata: [], tensors: [{ name: 'w', type: GGMLType.F32, shape: [4], data: bytes(16, 1) }] });
  const b = readFileSync(p);
  // the type field sits right before the u64 offset at the end of the tensor info
  const typeAt = 24 + 8 + 1 + 4 + 8;
  assert.equal(b.readUInt32LE(typeAt), GGMLType.F32);
  b.writeUInt32LE(16 /* IQ2_XXS */, typeAt);
  writeFileSync(p, b);
  assert.throws(() => openGGUF(p), (e: unknown) => e instanceof UnsupportedError && /supported: F32, F16, .*Q8_0, Q4_K, Q5_K, Q6_K, BF16/.test(e.message));
});

test('gguf: writer validates its input and is atomic', () => {
  const p = join(cacheDir, 'w.gguf');
  rmSync(p, { force: true });
  assert.throws(() => writeGGUF(p, { metadata: [], tensors: [{ name: 'w', type: GGMLType.F32, shape: [4], data: bytes(15, 1) }] }), UsageError);
  assert.throws(() => statSync(p));
  assert.throws(() => writeGGUF(p, { metadata: [], tensors: [{ name: 'w', type: GGMLType.Q8_0, shape: [2, 31], data: bytes(10, 1) }] }), UsageError);
  assert.throws(() => writeGGUF(p, { metadata: [['x', u8(256)]], tensors: [] }), UsageError);
  assert.throws(() => writeGGUF(p, { metadata: [['x', u8(1)], ['x', u8(1)]], tensors: [] }), UsageError);
  assert.throws(() => writeGGUF(p, { metadata: [], tensors: [] }, { alignment: 3 }), UsageError);
  assert.throws(() => statSync(p));
});

// ---- llama.cpp loads what we write ----------------------------------------------------------

/** A tiny random llama-arch MoE with a 259-token SentencePiece byte vocabulary. */
export function tinyLlamaGGUF(path: string): void {
  const V = 259, D = 64, F = 96, E = 4, H = 4, Hkv = 2, Dh = D / H;
  const tokens = ['<unk>', '<s>', '</s>', ...Array.from({ length: 256 }, (_, i) => `<0x${i.toString(16).toUpperCase().padStart(2, '0')}>`)];
  const ttypes = [2, 3, 3, ...new Array(256).fill(6)];
  const rnd = (n: number, seed: number, scale = 0.1) => {
    const f = new Float32Array(n);
    let s = seed;
    for (let i = 0; i < n; i++) {
      s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
      f[i] = ((s / 2 ** 32) * 2 - 1) * scale;
    }
    return new Uint8Array(f.buffer);
  };
  const ones = (n: number) => new Uint8Array(new Float32Array(n).fill(1).buffer);
  const A = 'llama';
  writeGGUF(path, {
    metadata: [
      ['general.architecture', str(A)], ['general.name', str('moekit tiny test')], ['general.file_type', u32(0)],
      [`${A}.context_length`, u32(128)], [`${A}.embedding_length`, u32(D)], [`${A}.block_count`, u32(1)],
      [`${A}.feed_forward_length`, u32(F)], [`${A}.attention.head_count`, u32(H)], [`${A}.attention.head_count_kv`, u32(Hkv)],
      [`${A}.rope.freq_base`, f32(10000)], [`${A}.attention.layer_norm_rms_epsilon`, f32(1e-5)],
      [`${A}.expert_count`, u32(E)], [`${A}.expert_used_count`, u32(2)], [`${A}.vocab_size`, u32(V)], [`${A}.rope.dimension_count`, u32(Dh)],
      ['tokenizer.ggml.model', str('llama')], ['tokenizer.ggml.tokens', strArr(tokens)],
      ['tokenizer.ggml.scores', f32Arr(new Array(V).fill(0))], ['tokenizer.ggml.token_type', i32Arr(ttypes)],
      ['tokenizer.ggml.bos_token_id', u32(1)], ['tokenizer.ggml.eos_token_id', u32(2)], ['tokenizer.ggml.unknown_token_id', u32(0)],
    ],
    tensors: [
      { name: 'token_embd.weight', type: GGMLType.F32, shape: [V, D], data: rnd(V * D, 1, 1) },
      { name: 'output_norm.weight', type: GGMLType.F32, shape: [D], data: ones(D) },
      { name: 'output.weight', type: GGMLType.F32, shape: [V, D], data: rnd(V * D, 2) },
      { name: 'blk.0.attn_norm.weight', type: GGMLType.F32, shape: [D], data: ones(D) },
      { name: 'blk.0.attn_q.weight', type: GGMLType.F32, shape: [D, D], data: rnd(D * D, 3) },
      { name: 'blk.0.attn_k.weight', type: GGMLType.F32, shape: [Hkv * Dh, D], data: rnd(Hkv * Dh * D, 4) },
      { name: 'blk.0.attn_v.weight', type: GGMLType.F32, shape: [Hkv * Dh, D], data: rnd(Hkv * Dh * D, 5) },
      { name: 'blk.0.attn_output.weight', type: GGMLType.F32, shape: [D, D], data: rnd(D * D, 6) },
      { name: 'blk.0.ffn_norm.weight', type: GGMLType.F32, shape: [D], data: ones(D) },
      { name: 'blk.0.ffn_gate_inp.weight', type: GGMLType.F32, shape: [E, D], data: rnd(E * D, 7) },
      { name: 'blk.0.ffn_gate_exps.weight', type: GGMLType.F32, shape: [E, F, D], data: () => rnd(E * F * D, 8) },
      { name: 'blk.0.ffn_up_exps.weight', type: GGMLType.F32, shape: [E, F, D], data: () => rnd(E * F * D, 9) },
      { name: 'blk.0.ffn_down_exps.weight', type: GGMLType.F32, shape: [E, D, F], data: () => rnd(E * D * F, 10) },
    ],
  });
}

test('gguf: llama.cpp (node-llama-cpp) loads a file we wrote and reads the same metadata', async (t) => {
  let nlc: typeof import('node-llama-cpp');
  try {
    nlc = await import('node-llama-cpp');
  } catch {
    t.skip('node-llama-cpp not installed');
    return;
  }
  const p = join(cacheDir, 'tiny-llama.gguf');
  tinyLlamaGGUF(p);
  // metadata as node-llama-cpp's own GGUF parser reads it
  const info = await nlc.readGgufFileInfo(p);
  const g = openGGUF(p);
  try {
    const md = info.metadata as unknown as Record<string, Record<string, unknown>>;
    assert.equal(md.general!.architecture, 'llama');
    assert.equal((md.llama as Record<string, unknown>).expert_count, plainValue(g.metadata.get('llama.expert_count')!));
    assert.equal(info.tensorInfo?.length, g.tensorInfos.length);
    for (const ti of info.tensorInfo ?? []) {
      const mine = g.tensorInfos.find((x) => x.name === ti.name)!;
      assert.deepEqual(ti.dimensions.map(Number).reverse(), mine.shape, ti.name);
      assert.equal(Number(ti.offset), mine.offset, ti.name);
    }
  } finally {
    g.close();
  }
  let llama;
  try {
    llama = await nlc.getLlama({ gpu: false, build: 'never', logLevel: nlc.LlamaLogLevel.error });
  } catch (e) {
    t.skip(`llama.cpp prebuilt binary unavailable: ${(e as Error).message}`);
    return;
  }
  const model = await llama.loadModel({ modelPath: p });
  try {
    assert.equal(model.trainContextSize, 128);
    // byte tokens are <0xNN> = 3 + NN; SentencePiece prefixes a space (U+2581 as 3 byte tokens)
    assert.deepEqual(model.tokenize('hi').slice(-2), [3 + 0x68, 3 + 0x69]);
    const ctx = await model.createContext({ contextSize: 32, threads: 1 });
    const seq = ctx.getSequence();
    const [bos, h] = [1, 3 + 0x68] as unknown as import('node-llama-cpp').Token[];
    const res = await seq.controlledEvaluate([[bos!, {}], [h!, { generateNext: { probabilities: true } }]]);
    const probs = res[1]?.next?.probabilities;
    assert.ok(probs && probs.size > 0, 'llama.cpp evaluated the model');
    await ctx.dispose();
  } finally {
    await model.dispose();
    await llama.dispose();
  }
});

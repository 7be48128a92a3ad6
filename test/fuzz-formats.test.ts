/**
 * Seeded fuzzing of the GGUF and safetensors readers: mutate header and metadata bytes of valid
 * small files and check that the only errors are moekit's typed errors (no RangeError, no hang,
 * no crash), and that whatever opens has tensor views inside the file.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { MoekitError } from '../src/errors.js';
import { GGMLType, tensorBytes } from '../src/tensor.js';
import { GGUFValueType, arr, bool, f32, f32Arr, i32Arr, openGGUF, str, strArr, u32, u64, writeGGUF } from '../src/formats/gguf.js';
import { openSafetensors, writeSafetensors } from '../src/formats/safetensors.js';
import { makeRng } from '../src/engine/sampler.js';

const repoRoot = resolve(fileURLToPath(import.meta.url), '../..');
const dir = join(repoRoot, '.cache', 'test-fuzz');
mkdirSync(dir, { recursive: true });

const prng = makeRng; // mulberry32 (src/engine/sampler.ts)

function validGGUF(path: string): number {
  writeGGUF(path, {
    metadata: [
      ['general.architecture', str('llama')], ['llama.block_count', u32(1)], ['llama.rope.freq_base', f32(10000)],
      ['x.flag', bool(true)], ['x.big', u64(123456789n)],
      ['tokenizer.ggml.tokens', strArr(['<unk>', 'a', 'bc', 'déf'])], ['tokenizer.ggml.scores', f32Arr([0, -1, -2, -3])],
      ['tokenizer.ggml.token_type', i32Arr([2, 1, 1, 1])],
      ['x.nested', arr(GGUFValueType.ARRAY, [{ itemType: GGUFValueType.UINT8, items: [1, 2] }])],
    ],
    tensors: [
      { name: 'token_embd.weight', type: GGMLType.F32, shape: [4, 8], data: new Uint8Array(128).fill(1) },
      { name: 'blk.0.q', type: GGMLType.Q8_0, shape: [2, 32], data: new Uint8Array(tensorBytes(GGMLType.Q8_0, [2, 32])).fill(2) },
      { name: 'out', type: GGMLType.F16, shape: [3], data: new Uint8Array(6).fill(3) },
    ],
  });
  const g = openGGUF(path);
  const d = g.dataOffset;
  g.close();
  return d;
}

function validSafetensors(path: string): number {
  writeSafetensors(path, [
    { name: 'a', type: GGMLType.F32, shape: [2, 3], data: new Uint8Array(24).fill(1) },
    { name: 'b', type: GGMLType.BF16, shape: [4], data: new Uint8Array(8).fill(2) },
    { name: 'c', type: GGMLType.F16, shape: [1, 1, 2], data: new Uint8Array(4).fill(3) },
  ], { format: 'pt' });
  return 8 + Number(readFileSync(path).readBigUInt64LE(0));
}

const HUGE = [0xffffffffffffffffn, 0x7fffffffffffffffn, 0x100000000n, 0xffffffffn, 0x80000000n, 1n << 53n, 0n, 1n, 13n];

/** One random mutation of `src` within [0, headerEnd) (or a truncation). */
function mutate(src: Buffer, headerEnd: number, rnd: () => number): Buffer {
  const b = Buffer.from(src);
  const at = () => Math.floor(rnd() * headerEnd);
  const k = Math.floor(rnd() * 7);
  switch (k) {
    case 0: { // flip a few bytes
      const n = 1 + Math.floor(rnd() * 4);
      for (let i = 0; i < n; i++) b[at()] ^= 1 << Math.floor(rnd() * 8);
      return b;
    }
    case 1: { // random byte values
      const n = 1 + Math.floor(rnd() * 8);
      for (let i = 0; i < n; i++) b[at()] = Math.floor(rnd() * 256);
      return b;
    }
    case 2: { // a huge/odd u64 somewhere (lengths, counts, offsets, dims)
      const o = Math.min(at(), b.length - 8);
      b.writeBigUInt64LE(HUGE[Math.floor(rnd() * HUGE.length)]!, Math.max(0, o));
      return b;
    }
    case 3: { // a bad u32 (types, n_dims, version)
      const o = Math.max(0, Math.min(at(), b.length - 4));
      b.writeUInt32LE([13, 9, 0xffffffff, 5, 0, 31, 40, 2][Math.floor(rnd() * 8)]!, o);
      return b;
    }
    case 4: // truncate anywhere
      return b.subarray(0, Math.floor(rnd() * b.length));
    case 5: { // delete a slice of the header
      const o = at();
      return Buffer.concat([b.subarray(0, o), b.subarray(Math.min(b.length, o + 1 + Math.floor(rnd() * 16)))]);
    }
    default: { // insert junk into the header
      const o = at();
      const junk = Buffer.from(Array.from({ length: 1 + Math.floor(rnd() * 16) }, () => Math.floor(rnd() * 256)));
      return Buffer.concat([b.subarray(0, o), junk, b.subarray(o)]);
    }
  }
}

function expectTyped(fn: () => void, what: string): 'ok' | 'error' {
  const t0 = performance.now();
  try {
    fn();
    return 'ok';
  } catch (e) {
    if (!(e instanceof MoekitError)) assert.fail(`${what}: untyped ${(e as Error)?.constructor?.name}: ${(e as Error)?.message}`);
    return 'error';
  } finally {
    const ms = performance.now() - t0;
    assert.ok(ms < 2000, `${what}: took ${ms.toFixed(0)} ms`);
  }
}

test('fuzz: mutated GGUF headers only raise typed errors (1,200 cases)', () => {
  const good = join(dir, 'good.gguf');
  const headerEnd = validGGUF(good);
  const src = readFileSync(good);
  const p = join(dir, 'case.gguf');
  const rnd = prng(0x5eed);
  const counts = { ok: 0, error: 0 };
  for (let i = 0; i < 1200; i++) {
    const m = mutate(src, headerEnd, rnd);
    writeFileSync(p, m);
    counts[expectTyped(() => {
      const g = openGGUF(p);
      try {
        for (const t of g.tensors.values()) assert.equal(t.data.length, tensorBytes(t.type, t.shape)); // views stay inside the file
      } finally {
        g.close();
      }
    }, `case ${i}`)]++;
  }
  assert.ok(counts.error > 600, `most mutations are caught: ${JSON.stringify(counts)}`);
});

test('fuzz: mutated safetensors headers only raise typed errors (1,200 cases)', () => {
  const good = join(dir, 'good.safetensors');
  const headerEnd = validSafetensors(good);
  const src = readFileSync(good);
  const p = join(dir, 'case.safetensors');
  const rnd = prng(0xbeef);
  const counts = { ok: 0, error: 0 };
  const header = JSON.parse(src.subarray(8, headerEnd).toString());
  for (let i = 0; i < 1200; i++) {
    let m: Buffer;
    if (i % 3 === 0) {
      // structured: replace one field of one tensor entry with a hostile value
      const h = structuredClone(header);
      const name = ['a', 'b', 'c'][Math.floor(rnd() * 3)]!;
      const field = ['dtype', 'shape', 'data_offsets'][Math.floor(rnd() * 3)]!;
      const vals = [null, -1, 1e300, 'F64', 'I8', [1, 2, 3], [2 ** 53, 2 ** 53 + 8], [0, 2 ** 60], [[1]], {}, '', [1e308]];
      h[name][field] = vals[Math.floor(rnd() * vals.length)];
      const json = Buffer.from(JSON.stringify(h));
      const len = Buffer.alloc(8);
      len.writeBigUInt64LE(BigInt(json.length));
      m = Buffer.concat([len, json, src.subarray(headerEnd)]);
    } else {
      m = mutate(src, headerEnd, rnd);
    }
    writeFileSync(p, m);
    counts[expectTyped(() => {
      const f = openSafetensors(p);
      try {
        for (const t of f.tensors.values()) t.data;
      } finally {
        f.close();
      }
    }, `case ${i}`)]++;
  }
  assert.ok(counts.error > 600, `most mutations are caught: ${JSON.stringify(counts)}`);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdirSync, readFileSync, readdirSync, rmSync, truncateSync, writeFileSync } from 'node:fs';
import { join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { CheckpointError, UnsupportedError } from '../src/errors.js';
import { GGMLType } from '../src/tensor.js';
import { openSafetensors, openSafetensorsFolder, writeSafetensors, writeSafetensorsFolder, type SafetensorsWriteTensor } from '../src/formats/safetensors.js';

const repoRoot = resolve(fileURLToPath(import.meta.url), '../..');
const dir = join(repoRoot, '.cache', 'test-safetensors');
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });

function bytes(n: number, seed: number): Uint8Array {
  const b = new Uint8Array(n);
  let s = seed >>> 0;
  for (let i = 0; i < n; i++) {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    b[i] = s >>> 24;
  }
  return b;
}

const tensors: SafetensorsWriteTensor[] = [
  { name: 'a', type: GGMLType.F32, shape: [3, 4], data: bytes(48, 1) },
  { name: 'b.bf16', type: GGMLType.BF16, shape: [5], data: () => bytes(10, 2) },
  { name: 'c.f16', type: GGMLType.F16, shape: [2, 3, 2], data: bytes(24, 3) },
  { name: 'scalar', type: GGMLType.F32, shape: [], data: bytes(4, 4) },
];
const dataOf = (t: SafetensorsWriteTensor) => (typeof t.data === 'function' ? t.data() : t.data);

test('safetensors: single-file round trip with metadata', () => {
  const p = join(dir, 'one.safetensors');
  writeSafetensors(p, tensors, { format: 'pt', note: 'x' });
  const hdrLen = Number(readFileSync(p).readBigUInt64LE(0));
  assert.equal((8 + hdrLen) % 8, 0, 'data starts 8-byte aligned');
  const f = openSafetensors(p);
  try {
    assert.deepEqual(f.metadata, { format: 'pt', note: 'x' });
    assert.deepEqual([...f.tensors.keys()], tensors.map((t) => t.name));
    for (const t of tensors) {
      const r = f.tensors.get(t.name)!;
      assert.equal(r.type, t.type);
      assert.deepEqual(r.shape, t.shape);
      assert.deepEqual(r.data, dataOf(t));
    }
  } finally {
    f.close();
  }
});

test('safetensors: sharded folder round trip through the index', () => {
  const d = join(dir, 'sharded');
  const written = writeSafetensorsFolder(d, tensors, { maxShardBytes: 30 });
  assert.ok(written.includes('model.safetensors.index.json'));
  assert.ok(written.length >= 4, `several shards: ${written}`);
  const idx = JSON.parse(readFileSync(join(d, 'model.safetensors.index.json'), 'utf8'));
  assert.equal(idx.metadata.total_size, 48 + 10 + 24 + 4);
  const f = openSafetensorsFolder(d);
  try {
    for (const t of tensors) assert.deepEqual(f.tensors.get(t.name)!.data, dataOf(t));
    assert.equal(f.fileOf.get('a'), join(d, idx.weight_map.a));
  } finally {
    f.close();
  }
  // a missing shard is named
  rmSync(join(d, idx.weight_map['c.f16']));
  assert.throws(() => openSafetensorsFolder(d), (e: unknown) => e instanceof CheckpointError && e.message.includes(idx.weight_map['c.f16']) && /missing/.test(e.message));
  // single file when everything fits; plain *.safetensors without index also loads
  const d2 = join(dir, 'single');
  assert.deepEqual(writeSafetensorsFolder(d2, tensors), ['model.safetensors']);
  const d3 = join(dir, 'loose');
  mkdirSync(d3, { recursive: true });
  writeSafetensors(join(d3, 'x-1.safetensors'), tensors.slice(0, 2));
  writeSafetensors(join(d3, 'x-2.safetensors'), tensors.slice(2));
  const f3 = openSafetensorsFolder(d3);
  assert.equal(f3.tensors.size, tensors.length);
  f3.close();
  assert.deepEqual(readdirSync(d3).filter((n) => n.includes('.tmp-')), []);
});

function withHeader(header: unknown, data: Uint8Array, rawLen?: bigint): Buffer {
  const h = Buffer.from(typeof header === 'string' ? header : JSON.stringify(header));
  const len = Buffer.alloc(8);
  len.writeBigUInt64LE(rawLen ?? BigInt(h.length));
  return Buffer.concat([len, h, data]);
}

test('safetensors: corrupt headers give typed errors naming the file', () => {
  const p = join(dir, 'bad.safetensors');
  const cases: Array<[Buffer, RegExp, Function]> = [
    [Buffer.alloc(4), /too small/, CheckpointError],
    [withHeader({}, new Uint8Array(0), 1n << 40n), /header length .* larger than the rest/, CheckpointError],
    [withHeader('{"a": ', new Uint8Array(0)), /not valid JSON/, CheckpointError],
    [withHeader('[1,2]', new Uint8Array(0)), /not an object/, CheckpointError],
    [withHeader({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] } }, new Uint8Array(4)), /tensor a ends at byte .* truncated/, CheckpointError],
    [withHeader({ a: { dtype: 'F32', shape: [3], data_offsets: [0, 8] } }, new Uint8Array(8)), /needs 12 bytes/, CheckpointError],
    [withHeader({ a: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, new Uint8Array(8)), /gap before tensor a/, CheckpointError],
    [withHeader({ a: { dtype: 'F32', shape: [2], data_offsets: [0, 8] }, b: { dtype: 'F32', shape: [1], data_offsets: [4, 8] } }, new Uint8Array(8)), /overlaps/, CheckpointError],
    [withHeader({ a: { dtype: 'Q9', shape: [1], data_offsets: [0, 1] } }, new Uint8Array(1)), /unknown dtype/, CheckpointError],
    [withHeader({ a: { dtype: 'I64', shape: [1], data_offsets: [0, 8] } }, new Uint8Array(8)), /dtype I64.*F32, F16 and BF16/, UnsupportedError],
    [withHeader({ a: { dtype: 'F32', shape: [-1], data_offsets: [0, 0] } }, new Uint8Array(0)), /bad shape/, CheckpointError],
  ];
  for (const [buf, re, cls] of cases) {
    writeFileSync(p, buf);
    assert.throws(() => openSafetensors(p), (e: unknown) => e instanceof cls && re.test((e as Error).message) && (e as Error).message.includes(p), re.source);
  }
  const good = join(dir, 'one.safetensors');
  writeFileSync(p, readFileSync(good));
  truncateSync(p, readFileSync(good).length - 3);
  assert.throws(() => openSafetensors(p), /truncated/);
});

import { test } from 'node:test';
import assert from 'node:assert/strict';
import { mkdtempSync, writeFileSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { nativeAvailable, loadAddon } from '../src/backend/native.js';

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as () => void;

async function collect(): Promise<void> {
  for (let i = 0; i < 10; i++) {
    gc();
    await new Promise((r) => setTimeout(r, 5));
  }
}

function mappedCount(path: string): number {
  return readFileSync('/proc/self/maps', 'utf8').split('\n').filter((l) => l.endsWith(path)).length;
}

const skip = nativeAvailable() ? false : 'native addon not built (npm run build:native)';

test('mmap: views read the file contents, bounds are checked', { skip }, () => {
  const dir = mkdtempSync(join(tmpdir(), 'moekit-mmap-'));
  try {
    const path = join(dir, 'data.bin');
    const bytes = new Uint8Array(10000);
    for (let i = 0; i < bytes.length; i++) bytes[i] = (i * 31 + 7) & 255;
    writeFileSync(path, bytes);
    const a = loadAddon();
    const h = a.mmapOpen(path);
    assert.equal(h.size, bytes.length);
    const whole = new Uint8Array(a.mmapView(h, 0, bytes.length));
    assert.deepEqual(whole, bytes);
    const part = new Uint8Array(a.mmapView(h, 4097, 123));
    assert.deepEqual(part, bytes.subarray(4097, 4097 + 123));
    assert.equal(a.mmapView(h, bytes.length, 0).byteLength, 0);
    assert.throws(() => a.mmapView(h, 0, bytes.length + 1), RangeError);
    assert.throws(() => a.mmapView(h, bytes.length - 1, 2), RangeError);
    assert.throws(() => a.mmapView(h, -1, 2), RangeError);
    assert.throws(() => a.mmapView(h, 1.5, 2), RangeError);
    assert.throws(() => a.mmapView(h, 2 ** 60, 1), RangeError);
    assert.throws(() => a.mmapView({} as { size: number }, 0, 1), /not an mmapOpen handle/);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('mmap: open errors carry the errno text; empty files work', { skip }, () => {
  const a = loadAddon();
  assert.throws(() => a.mmapOpen('/nonexistent/moekit/file.gguf'), /No such file or directory/);
  assert.throws(() => a.mmapOpen(tmpdir()), /not a regular file/);
  const dir = mkdtempSync(join(tmpdir(), 'moekit-mmap-'));
  try {
    const path = join(dir, 'empty.bin');
    writeFileSync(path, new Uint8Array(0));
    const h = a.mmapOpen(path);
    assert.equal(h.size, 0);
    assert.equal(a.mmapView(h, 0, 0).byteLength, 0);
    assert.throws(() => a.mmapView(h, 0, 1), RangeError);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

test('mmap: views outlive the handle; the mapping goes away after GC of all', { skip }, async () => {
  const dir = mkdtempSync(join(tmpdir(), 'moekit-mmap-'));
  try {
    const path = join(dir, 'gc.bin');
    const bytes = new Uint8Array(1 << 16).map((_, i) => (i * 13) & 255);
    writeFileSync(path, bytes);
    const a = loadAddon();
    let view: Uint8Array | null = (() => {
      const h = a.mmapOpen(path);
      return new Uint8Array(a.mmapView(h, 100, 5000));
    })();
    await collect(); // the handle is unreachable now; the view keeps the mapping alive
    assert.equal(mappedCount(path), 1);
    let sum = 0;
    for (let i = 0; i < view.length; i++) sum += view[i]! - bytes[100 + i]!;
    assert.equal(sum, 0);
    view = null;
    await collect();
    assert.equal(mappedCount(path), 0, 'mapping should be unmapped once handle and views are collected');

    // churn: many handles and views, collected in random order, must not crash or leak
    const churn = (): void => {
      for (let round = 0; round < 50; round++) {
        const h = a.mmapOpen(path);
        const vs = Array.from({ length: 8 }, (_, i) => new Uint8Array(a.mmapView(h, i * 100, 100)));
        assert.equal(vs[3]![5], bytes[305]);
      }
    };
    churn();
    await collect();
    assert.equal(mappedCount(path), 0);
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
});

/**
 * Read-only access to a model file, one view per tensor.
 *
 * With the native addon (`mmapOpen` / `mmapView`, native/src/mmap_file.c) views are zero-copy
 * windows into a shared read-only mapping: opening a file larger than RAM is cheap and only the
 * pages a kernel touches are read. Without it we fall back to `fs.readSync` into a fresh Buffer
 * per view (correct, but it copies).
 * Node 20 typed arrays must stay below 4 GiB, so callers view one tensor at a time, never the file.
 */
import { closeSync, fstatSync, openSync, readSync } from 'node:fs';
import { loadAddon, type MmapHandle } from '../backend/native.js';
import { CheckpointError, UnsupportedError } from '../errors.js';

export interface MappedFile {
  readonly path: string;
  readonly size: number;
  /** true when views are zero-copy windows into an mmap */
  readonly zeroCopy: boolean;
  /** `length` bytes at `offset`; throws CheckpointError when out of the file. */
  view(offset: number, length: number): Uint8Array;
  /** Drop our reference. Views already handed out stay valid. Idempotent. */
  close(): void;
}

/** Largest single view: typed arrays in Node 20 are limited to < 4 GiB. */
export const MAX_VIEW_BYTES = 2 ** 32 - 1;

interface MmapAddon {
  mmapOpen(path: string): MmapHandle;
  mmapView(handle: MmapHandle, offset: number, length: number): ArrayBuffer;
}

function nativeMmap(): MmapAddon | null {
  try {
    const a = loadAddon() as Partial<MmapAddon>;
    return typeof a.mmapOpen === 'function' && typeof a.mmapView === 'function' ? (a as MmapAddon) : null;
  } catch {
    return null;
  }
}

function checkRange(path: string, size: number, offset: number, length: number): void {
  if (!Number.isSafeInteger(offset) || !Number.isSafeInteger(length) || offset < 0 || length < 0 || offset + length > size) {
    throw new CheckpointError(path, `read of ${length} bytes at offset ${offset} is outside the file (${size} bytes)`, { offset });
  }
  if (length > MAX_VIEW_BYTES) {
    throw new UnsupportedError(`${path}: a single tensor of ${length} bytes at offset ${offset} exceeds the 4 GiB view limit of Node typed arrays`);
  }
}

/** Open `path` for reading. Uses the native mmap when available, else buffered reads. */
export function mapFile(path: string, opts: { native?: boolean } = {}): MappedFile {
  const addon = opts.native === false ? null : nativeMmap();
  if (addon) {
    let handle: MmapHandle | null;
    try {
      handle = addon.mmapOpen(path);
    } catch (e) {
      throw new CheckpointError(path, `cannot open: ${(e as Error).message}`);
    }
    const size = handle.size;
    return {
      path,
      size,
      zeroCopy: true,
      view(offset, length) {
        checkRange(path, size, offset, length);
        if (!handle) throw new CheckpointError(path, 'file was closed');
        return new Uint8Array(addon.mmapView(handle, offset, length));
      },
      close() {
        handle = null; // the mapping is released once the handle and all views are collected
      },
    };
  }
  let fd: number | null;
  let size: number;
  try {
    fd = openSync(path, 'r');
    const st = fstatSync(fd);
    if (!st.isFile()) {
      closeSync(fd);
      throw new Error('not a regular file');
    }
    size = st.size;
  } catch (e) {
    throw new CheckpointError(path, `cannot open: ${(e as Error).message}`);
  }
  return {
    path,
    size,
    zeroCopy: false,
    view(offset, length) {
      checkRange(path, size, offset, length);
      if (fd === null) throw new CheckpointError(path, 'file was closed');
      const out = Buffer.allocUnsafe(length);
      readFully(fd, out, offset, path);
      return new Uint8Array(out.buffer, out.byteOffset, out.byteLength);
    },
    close() {
      if (fd !== null) closeSync(fd);
      fd = null;
    },
  };
}

/** readSync until `buf` is full (a single call reads at most ~2 GiB). */
export function readFully(fd: number, buf: Uint8Array, position: number, path: string): void {
  let done = 0;
  while (done < buf.length) {
    const n = readSync(fd, buf, done, Math.min(buf.length - done, 1 << 30), position + done);
    if (n === 0) throw new CheckpointError(path, `unexpected end of file at offset ${position + done}; the file is truncated`, { offset: position + done });
    done += n;
  }
}

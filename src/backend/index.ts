/**
 * Backend selection: the native addon when it is built, else the TypeScript reference (slow),
 * with a one-time warning.
 *
 * Exports: createBackend({ kind?, threads? }), physicalCores().
 */
import { readFileSync } from 'node:fs';
import { availableParallelism } from 'node:os';
import type { Backend } from './backend.js';
import { NativeBackend, nativeAvailable } from './native.js';
import { ReferenceBackend } from './reference.js';

export type { Backend } from './backend.js';

export interface CreateBackendOptions {
  /** default: 'native' when the addon loads, else 'reference' */
  kind?: 'native' | 'reference';
  /** default: physicalCores() */
  threads?: number;
}

let cores: number | undefined;

/** Physical cores usable by this process (SMT siblings counted once), at least 1. */
export function physicalCores(): number {
  if (cores !== undefined) return cores;
  const logical = availableParallelism();
  let physical = logical;
  try {
    // unique (physical id, core id) pairs; absent on some platforms/VMs -> keep `logical`
    const pairs = new Set<string>();
    let phys = '0';
    for (const line of readFileSync('/proc/cpuinfo', 'utf8').split('\n')) {
      const [k, v] = line.split(':').map((s) => s.trim());
      if (k === 'physical id') phys = v ?? '0';
      else if (k === 'core id') pairs.add(`${phys}/${v}`);
    }
    if (pairs.size > 0) physical = pairs.size;
  } catch {
    // not Linux: fall through
  }
  cores = Math.max(1, Math.min(physical, logical));
  return cores;
}

let warned = false;

/** `MOEKIT_BACKEND=reference|native` overrides the default choice (handy to compare the two on a whole model). */
export function createBackend({ kind, threads = physicalCores() }: CreateBackendOptions = {}): Backend {
  const env = process.env.MOEKIT_BACKEND;
  if (!kind && (env === 'reference' || env === 'native')) kind = env;
  if (kind === 'reference') return new ReferenceBackend();
  if (kind === 'native' || nativeAvailable()) return new NativeBackend({ threads });
  if (!warned) {
    warned = true;
    process.emitWarning('moekit: native addon not built (npm run build:native); using the slow TypeScript reference backend');
  }
  return new ReferenceBackend();
}

/** Flag parsers shared by the CLI commands: each rejects nonsense with a UsageError naming the flag. */
import { UsageError } from '../errors.js';

export function intFlag(flag: string, min: number, max = Number.MAX_SAFE_INTEGER) {
  return (v: string): number => {
    const n = Number(v);
    if (!/^-?\d+$/.test(v.trim()) || !Number.isSafeInteger(n) || n < min || n > max) {
      throw new UsageError(`${flag} expects an integer in ${min}..${max === Number.MAX_SAFE_INTEGER ? '∞' : max}, got '${v}'`);
    }
    return n;
  };
}

export function floatFlag(flag: string, min: number, max: number, opts: { minExclusive?: boolean } = {}) {
  return (v: string): number => {
    const n = Number(v);
    const okMin = opts.minExclusive ? n > min : n >= min;
    if (v.trim() === '' || !Number.isFinite(n) || !okMin || n > max) {
      throw new UsageError(`${flag} expects a number in ${opts.minExclusive ? '(' : '['}${min}, ${max}], got '${v}'`);
    }
    return n;
  };
}

export function collect(v: string, prev: string[] = []): string[] {
  return [...prev, v];
}

/** `1,2,4` → [1, 2, 4] */
export function intListFlag(flag: string, min: number, max: number) {
  const one = intFlag(flag, min, max);
  return (v: string): number[] => v.split(',').map((s) => one(s));
}

export function formatBytes(n: number): string {
  const u = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];
  let i = 0;
  while (n >= 1024 && i < u.length - 1) { n /= 1024; i++; }
  return `${n.toFixed(i === 0 ? 0 : 2)} ${u[i]}`;
}

export function formatCount(n: number): string {
  if (n >= 1e9) return `${(n / 1e9).toFixed(2)} B`;
  if (n >= 1e6) return `${(n / 1e6).toFixed(2)} M`;
  if (n >= 1e3) return `${(n / 1e3).toFixed(1)} K`;
  return String(n);
}

/** Peak resident set size of this process, in bytes. */
export function peakRss(): number {
  return process.resourceUsage().maxRSS * 1024;
}

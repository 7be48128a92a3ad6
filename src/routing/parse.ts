/**
 * Text forms of routing controls, shared by the CLI flags and `moekit eval --settings`:
 *   experts    `4` (every layer) or `0-7:8,8-15:4` (per layer; other layers keep the model's K)
 *   topP       `p[,minK[,maxK]]`          e.g. `0.5` or `0.5,1,4`
 *   threshold  `t[,kMin]`                 e.g. `0.3` or `0.3,2`
 *   mask/force `layer:expert,...`         e.g. `3:12,3:40`
 *   skip       a thresholds file written by `moekit calibrate` (JSON `{ "thresholds": [...] }`)
 * A setting is `key=value` pairs joined by `&`: `experts=2&threshold=0.3`.
 */
import { readFileSync } from 'node:fs';
import { UsageError } from '../errors.js';
import type { RoutingControls } from './controls.js';

const INT = /^\d+$/;

function int(flag: string, s: string, what: string): number {
  const t = s.trim();
  if (!INT.test(t)) throw new UsageError(`${flag}: '${s}' is not a ${what} (a non-negative integer)`);
  return Number(t);
}

function num(flag: string, s: string, what: string): number {
  const n = Number(s.trim());
  if (s.trim() === '' || !Number.isFinite(n)) throw new UsageError(`${flag}: '${s}' is not a number (${what})`);
  return n;
}

/** `4` → 4; `0-7:8,8-15:4` → { 0: 8, …, 7: 8, 8: 4, …, 15: 4 } */
export function parseExperts(v: string, flag = '--experts'): number | Record<number, number> {
  const hint = `use a count (\`${flag} 4\`) or layer ranges with counts (\`${flag} 0-7:8,8-15:4\`)`;
  if (!v.includes(':')) {
    const k = int(flag, v, 'count of experts');
    if (k < 1) throw new UsageError(`${flag}: the count of experts must be ≥ 1, got ${v}; ${hint}`);
    return k;
  }
  const out: Record<number, number> = {};
  for (const item of v.split(',')) {
    const m = /^\s*(\d+)(?:\s*-\s*(\d+))?\s*:\s*(\d+)\s*$/.exec(item);
    if (!m) throw new UsageError(`${flag}: cannot read '${item}'; ${hint}`);
    const a = Number(m[1]);
    const b = m[2] === undefined ? a : Number(m[2]);
    const k = Number(m[3]);
    if (b < a) throw new UsageError(`${flag}: layer range ${a}-${b} is backwards; write it as ${b}-${a}`);
    if (k < 1) throw new UsageError(`${flag}: layers ${a}-${b} get ${k} experts; the count must be ≥ 1`);
    for (let l = a; l <= b; l++) {
      if (out[l] !== undefined) throw new UsageError(`${flag}: layer ${l} is given twice`);
      out[l] = k;
    }
  }
  return out;
}

/** `3:12,3:40` → [[3, 12], [3, 40]] */
export function parsePairs(v: string, flag: string): Array<[number, number]> {
  return v.split(',').map((item) => {
    const m = /^\s*(\d+)\s*:\s*(\d+)\s*$/.exec(item);
    if (!m) throw new UsageError(`${flag}: cannot read '${item}'; give layer:expert pairs, e.g. \`${flag} 3:12,3:40\``);
    return [Number(m[1]), Number(m[2])] as [number, number];
  });
}

/** `p[,minK[,maxK]]` */
export function parseTopP(v: string, flag = '--route-top-p'): NonNullable<RoutingControls['topP']> {
  const parts = v.split(',');
  if (parts.length > 3) throw new UsageError(`${flag}: expects p[,minK[,maxK]], e.g. 0.5 or 0.5,1,4; got '${v}'`);
  const p = num(flag, parts[0], 'the cumulative probability p');
  if (!(p > 0 && p <= 1)) throw new UsageError(`${flag}: p must be in (0, 1], got ${p}`);
  const out: NonNullable<RoutingControls['topP']> = { p };
  if (parts[1] !== undefined) out.minK = int(flag, parts[1], 'minK');
  if (parts[2] !== undefined) out.maxK = int(flag, parts[2], 'maxK');
  if (out.minK !== undefined && out.minK < 1) throw new UsageError(`${flag}: minK must be ≥ 1, got ${out.minK}`);
  if (out.maxK !== undefined && out.maxK < (out.minK ?? 1)) throw new UsageError(`${flag}: maxK (${out.maxK}) must be ≥ minK (${out.minK ?? 1})`);
  return out;
}

/** `t[,kMin]` */
export function parseThreshold(v: string, flag = '--route-threshold'): NonNullable<RoutingControls['threshold']> {
  const parts = v.split(',');
  if (parts.length > 2) throw new UsageError(`${flag}: expects t[,kMin], e.g. 0.3 or 0.3,2; got '${v}'`);
  const t = num(flag, parts[0], 'the relative threshold t');
  if (!(t >= 0 && t <= 1)) throw new UsageError(`${flag}: t must be in [0, 1], got ${t}`);
  const out: NonNullable<RoutingControls['threshold']> = { t };
  if (parts[1] !== undefined) {
    out.kMin = int(flag, parts[1], 'kMin');
    if (out.kMin < 1) throw new UsageError(`${flag}: kMin must be ≥ 1, got ${out.kMin}`);
  }
  return out;
}

/** A thresholds file from `moekit calibrate`. */
export function readSkipFile(path: string, flag = '--skip'): NonNullable<RoutingControls['skip']> {
  let json: unknown;
  try {
    json = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new UsageError(`${flag}: cannot read thresholds from ${path} (${(e as Error).message}); write one with \`moekit calibrate <model> --data text.txt --skip-share 0.2 -o ${path}\``);
  }
  const t = (json as { thresholds?: unknown })?.thresholds;
  if (!Array.isArray(t) || !t.every((x) => typeof x === 'number' && Number.isFinite(x) && x >= 0)) {
    throw new UsageError(`${flag}: ${path} has no "thresholds" array of numbers ≥ 0 (one per layer)`);
  }
  return { thresholds: t as number[] };
}

const KEYS: Record<string, keyof RoutingControls> = {
  experts: 'experts', k: 'experts',
  topp: 'topP', 'top-p': 'topP',
  threshold: 'threshold', ser: 'threshold',
  mask: 'mask', 'mask-experts': 'mask',
  force: 'force', 'force-experts': 'force',
  skip: 'skip',
};

/** `experts=2&threshold=0.3` → controls; `default` or `` → {} */
export function parseSetting(s: string): RoutingControls {
  const c: RoutingControls = {};
  const text = s.trim();
  if (text === '' || text === 'default') return c;
  for (const part of text.split('&')) {
    const eq = part.indexOf('=');
    const key = KEYS[part.slice(0, eq).trim().toLowerCase()];
    if (eq < 0 || !key) {
      throw new UsageError(`routing setting '${part}': expected key=value with key one of experts, topP, threshold, mask, force, skip (joined by &), e.g. "experts=2&threshold=0.3"`);
    }
    if (c[key] !== undefined) throw new UsageError(`routing setting '${s}': ${key} is given twice`);
    const v = part.slice(eq + 1);
    const flag = `setting ${key}`;
    if (key === 'experts') c.experts = parseExperts(v, flag);
    else if (key === 'topP') c.topP = parseTopP(v, flag);
    else if (key === 'threshold') c.threshold = parseThreshold(v, flag);
    else if (key === 'mask') c.mask = parsePairs(v, flag);
    else if (key === 'force') c.force = parsePairs(v, flag);
    else c.skip = readSkipFile(v.trim(), flag);
  }
  return c;
}

/** `a;b;c` → settings (empty entries dropped) */
export function parseSettings(v: string): Array<{ label: string; controls: RoutingControls }> {
  return v.split(';').map((s) => s.trim()).filter((s) => s.length > 0).map((label) => ({ label, controls: parseSetting(label) }));
}

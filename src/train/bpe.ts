/**
 * Byte-level BPE trained on a corpus (GPT-2 scheme: the GPT-2 pre-tokenizer regex, bytes mapped to
 * printable characters, merges learnt by pair frequency), written as an HF `tokenizer.json` that
 * @huggingface/tokenizers loads and that converts to GGUF `tokenizer.ggml.*` keys (pre = gpt-2) for
 * llama.cpp. Ids 0..255 are the bytes, then one id per merge, then `<|endoftext|>` (the document separator).
 */
import { UsageError } from '../errors.js';
import { bytesToByteLevel } from '../tokenizer/bytes.js';
import { preTokenizerFor, splitWithRegexes, toJsRegex } from '../tokenizer/pretokenize.js';

export const EOT = '<|endoftext|>';

export interface BpeVocab {
  /** token strings in byte-level form; index = id; the last is EOT */
  tokens: string[];
  /** "left right" in priority order */
  merges: string[];
}

const GPT2_REGEXES = preTokenizerFor('gpt-2', 'bpe').regexes.map(toJsRegex);

/** Pre-tokens of `text` in byte-level form (`Ġthe`). */
export function pretokenize(text: string): string[] {
  const enc = new TextEncoder();
  return splitWithRegexes(text, GPT2_REGEXES).map((p) => bytesToByteLevel(enc.encode(p)));
}

/** Learn merges until the vocabulary (256 bytes + merges + EOT) has `vocabSize` entries. Deterministic: ties go to the lexicographically smaller pair. */
export function trainBpe(docs: string[], vocabSize: number): BpeVocab {
  if (!Number.isInteger(vocabSize) || vocabSize < 258) throw new UsageError(`tokenizer.vocabSize must be an integer ≥ 258, got ${vocabSize}`);
  const counts = new Map<string, number>();
  for (const d of docs) for (const w of pretokenize(d)) counts.set(w, (counts.get(w) ?? 0) + 1);
  const words: string[][] = [];
  const freq: number[] = [];
  for (const [w, c] of counts) { words.push([...w]); freq.push(c); }
  const tokens: string[] = [];
  for (let b = 0; b < 256; b++) tokens.push(bytesToByteLevel(Uint8Array.of(b)));
  const pairs = new Map<string, number>();
  const where = new Map<string, Set<number>>();
  const SEP = '\u0000';
  const addWord = (wi: number, sign: number) => {
    const w = words[wi];
    for (let i = 0; i + 1 < w.length; i++) {
      const k = w[i] + SEP + w[i + 1];
      pairs.set(k, (pairs.get(k) ?? 0) + sign * freq[wi]);
      if (sign > 0) { let s = where.get(k); if (!s) where.set(k, (s = new Set())); s.add(wi); }
    }
  };
  for (let wi = 0; wi < words.length; wi++) addWord(wi, 1);
  const merges: string[] = [];
  while (tokens.length < vocabSize - 1) {
    let best = '';
    let bc = 0;
    for (const [k, c] of pairs) if (c > bc || (c === bc && c > 0 && k < best)) { best = k; bc = c; }
    if (bc < 1) break; // nothing left to merge: a smaller vocabulary
    const [a, b] = best.split(SEP);
    const ab = a + b;
    merges.push(`${a} ${b}`);
    tokens.push(ab);
    for (const wi of [...(where.get(best) ?? [])]) {
      const w = words[wi];
      addWord(wi, -1);
      const out: string[] = [];
      for (let i = 0; i < w.length; i++) {
        if (i + 1 < w.length && w[i] === a && w[i + 1] === b) { out.push(ab); i++; } else out.push(w[i]);
      }
      words[wi] = out;
      addWord(wi, 1);
    }
    pairs.delete(best);
    where.delete(best);
  }
  tokens.push(EOT);
  return { tokens, merges };
}

/** A fast encoder with the same result as the HF/llama.cpp BPE (lowest-rank merge first), for tokenizing corpora. */
export class BpeEncoder {
  private readonly rank = new Map<string, number>();
  private readonly id = new Map<string, number>();
  private readonly cache = new Map<string, number[]>();
  readonly eot: number;

  constructor(v: BpeVocab) {
    v.merges.forEach((m, i) => this.rank.set(m, i));
    v.tokens.forEach((t, i) => this.id.set(t, i));
    this.eot = v.tokens.length - 1;
  }

  encodeWord(w: string): number[] {
    const hit = this.cache.get(w);
    if (hit) return hit;
    let parts = [...w];
    for (;;) {
      let bi = -1;
      let br = Infinity;
      for (let i = 0; i + 1 < parts.length; i++) {
        const r = this.rank.get(parts[i] + ' ' + parts[i + 1]);
        if (r !== undefined && r < br) { br = r; bi = i; }
      }
      if (bi < 0) break;
      parts = [...parts.slice(0, bi), parts[bi] + parts[bi + 1], ...parts.slice(bi + 2)];
    }
    const ids = parts.map((p) => this.id.get(p)!);
    if (this.cache.size < 200_000) this.cache.set(w, ids);
    return ids;
  }

  encode(text: string): number[] {
    const out: number[] = [];
    for (const w of pretokenize(text)) for (const id of this.encodeWord(w)) out.push(id);
    return out;
  }
}

/** HF tokenizer.json (GPT-2 style: ByteLevel pre-tokenizer and decoder, BPE model). */
export function bpeTokenizerJson(v: BpeVocab): Record<string, unknown> {
  const vocab: Record<string, number> = {};
  v.tokens.forEach((t, i) => (vocab[t] = i));
  const byteLevel = { add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0', truncation: null, padding: null,
    added_tokens: [{ id: v.tokens.length - 1, content: EOT, single_word: false, lstrip: false, rstrip: false, normalized: false, special: true }],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', ...byteLevel },
    post_processor: { type: 'ByteLevel', ...byteLevel, trim_offsets: false },
    decoder: { type: 'ByteLevel', ...byteLevel },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: '', end_of_word_suffix: '',
      fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges: v.merges,
    },
  };
}

export function bpeTokenizerConfig(): Record<string, unknown> {
  return { add_bos_token: false, add_prefix_space: false, bos_token: EOT, eos_token: EOT, unk_token: EOT, tokenizer_class: 'GPT2Tokenizer' };
}

/** The vocabulary back from a tokenizer.json written by bpeTokenizerJson. */
export function bpeFromTokenizerJson(tj: Record<string, unknown>): BpeVocab {
  const model = tj.model as { vocab: Record<string, number>; merges: string[] };
  const tokens: string[] = [];
  for (const [t, i] of Object.entries(model.vocab)) tokens[i] = t;
  return { tokens, merges: model.merges.map((m) => (Array.isArray(m) ? m.join(' ') : m)) };
}

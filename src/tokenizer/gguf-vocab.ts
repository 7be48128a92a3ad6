/**
 * HF tokenizer.json <-> GGUF `tokenizer.ggml.*` metadata, for byte-level BPE vocabularies
 * (what convert_hf_to_gguf.py `_set_vocab_gpt2` writes, and back).
 */
import { TokenizerError, UnsupportedError } from '../errors.js';
import { bool, i32Arr, str, strArr, u32, type GGUFValue } from '../formats/gguf.js';
import { TokenType } from './llama-vocab.js';
import { chatTemplateOf } from './hf.js';

type Json = Record<string, unknown>;

/** HF pre-tokenizer Split regexes -> llama.cpp pre-type names (as convert_hf_to_gguf.py would pick). */
const HF_SPLIT_REGEX: Record<string, string> = {
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": 'llama-bpe',
  "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": 'qwen2',
  "[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]*[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]+(?i:'s|'t|'re|'ve|'m|'ll|'d)?|[^\\r\\n\\p{L}\\p{N}]?[\\p{Lu}\\p{Lt}\\p{Lm}\\p{Lo}\\p{M}]+[\\p{Ll}\\p{Lm}\\p{Lo}\\p{M}]*(?i:'s|'t|'re|'ve|'m|'ll|'d)?|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+": 'gpt-4o',
};
const PRE_TO_HF_REGEX: Record<string, string> = Object.fromEntries(Object.entries(HF_SPLIT_REGEX).map(([re, pre]) => [pre, re]));
PRE_TO_HF_REGEX.llama3 = PRE_TO_HF_REGEX['llama-bpe'];

/** Which llama.cpp `tokenizer.ggml.pre` a tokenizer.json pre_tokenizer corresponds to. */
export function detectPre(preTokenizer: unknown): string {
  const p = preTokenizer as Json | null;
  if (p?.type === 'ByteLevel' && p.use_regex !== false) return 'gpt-2';
  if (p?.type === 'Sequence' && Array.isArray(p.pretokenizers)) {
    const steps = p.pretokenizers as Json[];
    const splits = steps.filter((s) => s.type === 'Split');
    const bl = steps.find((s) => s.type === 'ByteLevel');
    if (splits.length === 0 && bl && bl.use_regex !== false && steps.length === 1) return 'gpt-2';
    if (splits.length === 1 && bl && bl.use_regex === false) {
      const re = (splits[0].pattern as Json | undefined)?.Regex;
      if (typeof re === 'string' && HF_SPLIT_REGEX[re]) return HF_SPLIT_REGEX[re];
    }
  }
  throw new UnsupportedError(
    `tokenizer.json: pre_tokenizer ${JSON.stringify(preTokenizer).slice(0, 300)} is not recognised; ` +
      `supported: ByteLevel (gpt-2) or Split with the llama3 / qwen2 / gpt-4o regex + ByteLevel. Add it to src/tokenizer/gguf-vocab.ts`,
  );
}

function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return undefined;
}

/** GGUF metadata for a byte-level BPE tokenizer.json. */
export function tokenizerJsonToGGUFMetadata(tokenizerJson: object, tokenizerConfig: object = {}): Array<[string, GGUFValue]> {
  const tj = tokenizerJson as Json;
  const cfg = tokenizerConfig as Json;
  const model = tj.model as Json | undefined;
  if (model?.type !== 'BPE') {
    throw new UnsupportedError(`tokenizer.json: model.type '${String(model?.type)}' cannot be written as GGUF yet; only byte-level BPE is supported`);
  }
  const vocab = model.vocab as Record<string, number>;
  const added = (tj.added_tokens as Array<{ id: number; content: string; special: boolean }>) ?? [];
  let n = 0;
  for (const id of Object.values(vocab)) n = Math.max(n, id + 1);
  for (const a of added) n = Math.max(n, a.id + 1);
  const tokens: Array<string | undefined> = new Array(n);
  const types = new Array<number>(n).fill(TokenType.Normal);
  for (const [t, id] of Object.entries(vocab)) tokens[id] = t;
  for (const a of added) {
    tokens[a.id] = a.content;
    types[a.id] = a.special ? TokenType.Control : TokenType.UserDefined;
  }
  for (let i = 0; i < n; i++) {
    if (tokens[i] === undefined) {
      tokens[i] = `[PAD${i}]`;
      types[i] = TokenType.Unused;
    }
  }
  const merges = ((model.merges as unknown[]) ?? []).map((m) => (Array.isArray(m) ? m.join(' ') : String(m)));
  const idOf = (v: unknown) => {
    const s = tokenContent(v);
    if (s === undefined) return undefined;
    const id = tokens.indexOf(s);
    return id >= 0 ? id : undefined;
  };
  const md: Array<[string, GGUFValue]> = [
    ['tokenizer.ggml.model', str('gpt2')],
    ['tokenizer.ggml.pre', str(detectPre(tj.pre_tokenizer))],
    ['tokenizer.ggml.tokens', strArr(tokens as string[])],
    ['tokenizer.ggml.token_type', i32Arr(types)],
    ['tokenizer.ggml.merges', strArr(merges)],
  ];
  for (const [name, v] of [['bos', cfg.bos_token], ['eos', cfg.eos_token], ['unknown', cfg.unk_token], ['padding', cfg.pad_token]] as const) {
    const id = idOf(v);
    if (id !== undefined) md.push([`tokenizer.ggml.${name === 'unknown' ? 'unknown' : name === 'padding' ? 'padding' : name}_token_id`, u32(id)]);
  }
  if (typeof cfg.add_bos_token === 'boolean') md.push(['tokenizer.ggml.add_bos_token', bool(cfg.add_bos_token)]);
  if (typeof cfg.add_eos_token === 'boolean') md.push(['tokenizer.ggml.add_eos_token', bool(cfg.add_eos_token)]);
  const tmpl = chatTemplateOf(cfg);
  if (tmpl !== undefined) md.push(['tokenizer.chat_template', str(tmpl)]);
  return md;
}

/** tokenizer.json + tokenizer_config.json objects for a GGUF `gpt2` vocabulary. */
export function ggufMetadataToTokenizerJson(get: (key: string) => unknown): { tokenizerJson: Json; tokenizerConfig: Json } {
  const model = get('tokenizer.ggml.model');
  if (model !== 'gpt2') {
    throw new UnsupportedError(`tokenizer.ggml.model = '${String(model)}' cannot be converted to tokenizer.json yet; only gpt2 (byte-level BPE) is supported`);
  }
  const tokens = get('tokenizer.ggml.tokens') as string[] | undefined;
  const merges = get('tokenizer.ggml.merges') as string[] | undefined;
  if (!Array.isArray(tokens) || !Array.isArray(merges)) throw new TokenizerError('tokenizer.ggml.tokens / tokenizer.ggml.merges missing: the GGUF has no complete gpt2 vocabulary');
  const types = (get('tokenizer.ggml.token_type') as number[] | undefined) ?? [];
  const pre = (get('tokenizer.ggml.pre') as string | undefined) ?? 'gpt-2';
  const vocab: Record<string, number> = {};
  const added: Json[] = [];
  tokens.forEach((t, i) => {
    const ty = types[i] ?? TokenType.Normal;
    if (ty === TokenType.Control || ty === TokenType.UserDefined) {
      added.push({ id: i, content: t, single_word: false, lstrip: false, rstrip: false, normalized: ty !== TokenType.Control, special: ty === TokenType.Control });
    }
    vocab[t] = i;
  });
  const regex = PRE_TO_HF_REGEX[pre];
  const byteLevel = (useRegex: boolean) => ({ type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: useRegex });
  let preTokenizer: Json;
  if (regex) {
    preTokenizer = { type: 'Sequence', pretokenizers: [{ type: 'Split', pattern: { Regex: regex }, behavior: 'Isolated', invert: false }, byteLevel(false)] };
  } else if (['gpt-2', 'olmo', 'mpt', 'phi-2', 'default'].includes(pre)) {
    preTokenizer = byteLevel(true);
  } else {
    throw new UnsupportedError(`tokenizer.ggml.pre = '${pre}' has no tokenizer.json equivalent here; supported: gpt-2, olmo, llama-bpe, qwen2, gpt-4o`);
  }
  const tokenizerJson: Json = {
    version: '1.0',
    truncation: null,
    padding: null,
    added_tokens: added,
    normalizer: null,
    pre_tokenizer: preTokenizer,
    post_processor: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: false, use_regex: true },
    decoder: { type: 'ByteLevel', add_prefix_space: true, trim_offsets: true, use_regex: true },
    model: {
      type: 'BPE', dropout: null, unk_token: null, continuing_subword_prefix: null, end_of_word_suffix: null,
      fuse_unk: false, byte_fallback: false, ignore_merges: false, vocab, merges,
    },
  };
  const tokenizerConfig: Json = { tokenizer_class: 'PreTrainedTokenizerFast' };
  const name = (k: string) => {
    const id = get(`tokenizer.ggml.${k}_token_id`);
    return typeof id === 'number' || typeof id === 'bigint' ? tokens[Number(id)] : undefined;
  };
  for (const [k, hf] of [['bos', 'bos_token'], ['eos', 'eos_token'], ['unknown', 'unk_token'], ['padding', 'pad_token']]) {
    const t = name(k);
    if (t !== undefined) tokenizerConfig[hf] = t;
  }
  for (const k of ['add_bos_token', 'add_eos_token']) {
    const v = get(`tokenizer.ggml.${k}`);
    if (typeof v === 'boolean') tokenizerConfig[k] = v;
  }
  const tmpl = get('tokenizer.chat_template');
  if (typeof tmpl === 'string') tokenizerConfig.chat_template = tmpl;
  return { tokenizerJson, tokenizerConfig };
}

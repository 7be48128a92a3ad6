/**
 * Pre-tokenizers for GGUF byte-level BPE vocabularies, selected by `tokenizer.ggml.pre`, as in
 * llama.cpp `llm_tokenizer_bpe` (src/llama-vocab.cpp) and `unicode_regex_split` (src/unicode.cpp).
 *
 * Each pre-type is a list of regexes applied one after another: every regex splits each piece left by
 * the previous one into its matches and the gaps between them. The patterns are llama.cpp's own
 * (already rewritten there for std::regex). They are turned into JS regexes with llama.cpp's
 * character semantics:
 *  - `\s` is llama.cpp's whitespace set (Unicode White_Space: includes U+0085, excludes U+FEFF,
 *    unlike JS `\s`);
 *  - `\p{Lu}`, `\p{Ll}`, `\p{Lt}`, `\p{Lm}`, `\p{Lo}` all mean `\p{L}`: llama.cpp collapses each
 *    codepoint to one category byte before matching, so these sub-categories cannot be told apart.
 * llama.cpp's hand-written splitters (gpt2, llama3, qwen2) implement the same regexes.
 */
import { UnsupportedError } from '../errors.js';

/** llama.cpp `unicode_set_whitespace`, as the body of a character class. */
const WS = '\\t-\\r \\x85\\xa0\\u1680\\u2000-\\u200a\\u2028\\u2029\\u202f\\u205f\\u3000';

const GPT2 = "'s|'t|'re|'ve|'m|'ll|'d| ?\\p{L}+| ?\\p{N}+| ?[^\\s\\p{L}\\p{N}]+|\\s+(?!\\S)";
const CONTRACTIONS = "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])";
const LLAMA3 = CONTRACTIONS + '|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+';
const QWEN2 = CONTRACTIONS + '|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+';

export interface PreTokenizer {
  /** canonical pre-type name */
  name: string;
  regexes: string[];
  /** llama.cpp `clean_spaces` (detokenizer cleanup of " ," " ." " 's" ...) */
  cleanSpaces: boolean;
  /** llama.cpp `ignore_merges`: a pre-token that is itself a token is emitted whole */
  ignoreMerges: boolean;
  /** the pre-type's default for `add_bos` (before `tokenizer.ggml.add_bos_token`) */
  addBos: boolean;
}

const PRE: Record<string, Omit<PreTokenizer, 'name'>> = {
  default: {
    regexes: ['[\\p{P}\\$\\+<=>\\^~\\|]+', GPT2, '\\p{N}+', '[0-9][0-9][0-9]'],
    cleanSpaces: true, ignoreMerges: false, addBos: false,
  },
  'gpt-2': { regexes: [GPT2], cleanSpaces: true, ignoreMerges: false, addBos: false },
  llama3: { regexes: [LLAMA3], cleanSpaces: true, ignoreMerges: true, addBos: true },
  dbrx: { regexes: [LLAMA3], cleanSpaces: true, ignoreMerges: false, addBos: false },
  'deepseek-llm': {
    regexes: [
      '[\r\n]',
      '\\s?[A-Za-z\u{b5}\u{c0}-\u{d6}\u{d8}-\u{f6}\u{f8}-\u{1ba}\u{1bc}-\u{1bf}\u{1c4}-\u{293}\u{295}-\u{2af}\u{370}-\u{373}\u{376}\u{377}\u{37b}-\u{37d}\u{37f}\u{386}\u{388}-\u{38a}\u{38c}\u{38e}-\u{3a1}\u{3a3}-\u{3f5}\u{3f7}-\u{481}\u{48a}-\u{52f}\u{531}-\u{556}\u{10a0}-\u{10c5}\u{13a0}-\u{13f5}\u{13f8}-\u{13fd}\u{1c90}-\u{1cba}\u{1cbd}-\u{1cbf}\u{1d00}-\u{1d2b}\u{1d6b}-\u{1d77}\u{1d79}-\u{1d9a}\u{1e00}-\u{1f15}\u{1f18}-\u{1f1d}\u{1f20}-\u{1f45}\u{1f48}-\u{1f4d}\u{1f50}-\u{1f57}\u{1f59}\u{1f5b}\u{1f5d}\u{1f5f}-\u{1f7d}\u{1f80}-\u{1fb4}\u{1fb6}-\u{1fbc}\u{1fbe}\u{1fc2}-\u{1fc4}\u{1fc6}-\u{1fcc}\u{1fd0}-\u{1fd3}\u{1fd6}-\u{1fdb}\u{1fe0}-\u{1fec}\u{1ff2}-\u{1ff4}\u{1ff6}-\u{1ffc}\u{2102}\u{2107}\u{210a}-\u{2113}\u{2115}\u{2119}-\u{211d}\u{2124}\u{2126}\u{2128}\u{212a}-\u{212d}\u{212f}-\u{2134}\u{2139}\u{213c}-\u{213f}\u{2145}-\u{2149}\u{214e}\u{2183}\u{2184}\u{2c00}-\u{2c7b}\u{2c7e}-\u{2ce4}\u{2ceb}-\u{2cee}\u{2cf2}\u{2cf3}\u{a640}-\u{a66d}\u{a680}-\u{a69b}\u{a722}-\u{a76f}\u{a771}-\u{a787}\u{a78b}-\u{a78e}\u{ab70}-\u{abbf}\u{fb00}-\u{fb06}\u{fb13}-\u{fb17}\u{ff21}-\u{ff3a}\u{ff41}-\u{ff5a}\u{10400}-\u{1044f}\u{104b0}-\u{104d3}\u{104d8}-\u{104fb}\u{10c80}-\u{10cb2}\u{10cc0}-\u{10cf2}\u{118a0}-\u{118df}\u{1e900}-\u{1e943}]+',
      '\\s?[!-/:-~\u{ff01}-\u{ff0f}\u{ff1a}-\u{ff5e}\u{2018}-\u{201f}\u{3000}-\u{3002}]+',
      '\\s+$',
      '[\u{4e00}-\u{9fa5}\u{800}-\u{4e00}\u{ac00}-\u{d7ff}]+',
      '\\p{N}+',
    ],
    cleanSpaces: false, ignoreMerges: false, addBos: false,
  },
  'deepseek-coder': {
    regexes: ['[\r\n]', '\\s?\\p{L}+', '\\s?\\p{P}+', '[\u{4e00}-\u{9fa5}\u{800}-\u{4e00}\u{ac00}-\u{d7ff}]+', '\\p{N}'],
    cleanSpaces: false, ignoreMerges: false, addBos: false,
  },
  'deepseek-v3': {
    regexes: [
      '\\p{N}{1,3}',
      '[\u{4e00}-\u{9fa5}\u{3040}-\u{309f}\u{30a0}-\u{30ff}]+',
      "[!\"#$%&'()*+,\\-./:;<=>?@\\[\\\\\\]^_`{|}~][A-Za-z]+|[^\r\n\\p{L}\\p{P}\\p{S}]?[\\p{L}\\p{M}]+| ?[\\p{P}\\p{S}]+[\r\n]*|\\s*[\r\n]+|\\s+(?!\\S)|\\s+",
    ],
    cleanSpaces: false, ignoreMerges: false, addBos: false,
  },
  falcon: {
    regexes: ['[\\p{P}\\$\\+<=>\\^~\\|`]+', GPT2, '[0-9][0-9][0-9]'],
    cleanSpaces: true, ignoreMerges: false, addBos: false,
  },
  starcoder: { regexes: ['\\p{N}', GPT2], cleanSpaces: true, ignoreMerges: false, addBos: false },
  qwen2: { regexes: [QWEN2], cleanSpaces: false, ignoreMerges: false, addBos: false },
  stablelm2: { regexes: [QWEN2], cleanSpaces: true, ignoreMerges: false, addBos: false },
  chatglm4: { regexes: [LLAMA3], cleanSpaces: true, ignoreMerges: false, addBos: false },
  'gpt-4o': {
    regexes: [
      "[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+" + "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?" +
        "|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*" + "(?:'[sS]|'[tT]|'[rR][eE]|'[vV][eE]|'[mM]|'[lL][lL]|'[dD])?" +
        '|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+',
    ],
    cleanSpaces: false, ignoreMerges: false, addBos: false,
  },
  tekken: {
    regexes: [
      '[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))*((?=[\\p{L}])([^A-Z]))+|[^\\r\\n\\p{L}\\p{N}]?((?=[\\p{L}])([^a-z]))+((?=[\\p{L}])([^A-Z]))*|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n/]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+',
    ],
    cleanSpaces: false, ignoreMerges: true, addBos: true,
  },
};

/** `tokenizer.ggml.pre` names -> canonical entry above (llama.cpp `llama_vocab::impl::load`). */
const ALIASES: Record<string, string> = {
  default: 'default',
  'gpt-2': 'gpt-2', 'phi-2': 'gpt-2', 'jina-es': 'gpt-2', 'jina-de': 'gpt-2', gigachat: 'gpt-2', mpt: 'gpt-2',
  olmo: 'gpt-2', jais: 'gpt-2', exaone4: 'gpt-2', mellum: 'gpt-2', 'modern-bert': 'gpt-2',
  llama3: 'llama3', 'llama-v3': 'llama3', 'llama-bpe': 'llama3', 'falcon3': 'llama3', pixtral: 'llama3',
  dbrx: 'dbrx', 'smaug-bpe': 'dbrx',
  'deepseek-llm': 'deepseek-llm', 'deepseek-coder': 'deepseek-coder', 'deepseek-v3': 'deepseek-v3',
  falcon: 'falcon',
  starcoder: 'starcoder', refact: 'starcoder', smollm: 'starcoder', codeshell: 'starcoder', exaone: 'starcoder',
  'minerva-7b': 'starcoder',
  qwen2: 'qwen2', 'deepseek-r1-qwen': 'qwen2', megrez: 'qwen2',
  stablelm2: 'stablelm2',
  'chatglm-bpe': 'chatglm4', glm4: 'chatglm4',
  'gpt-4o': 'gpt-4o', llama4: 'gpt-4o',
  tekken: 'tekken',
};
/** pre-types whose clean_spaces differs from their regex family's (llama.cpp sets it per name) */
const CLEAN_SPACES_OFF = new Set(['command-r', 'smollm']);
ALIASES['command-r'] = 'starcoder';

export const SUPPORTED_PRE_TYPES = Object.keys(ALIASES).sort();

/** The pre-tokenizer for a `tokenizer.ggml.pre` value (missing -> 'default', as llama.cpp does). */
export function preTokenizerFor(pre: string | undefined, file: string): PreTokenizer {
  const name = pre === undefined || pre === '' ? 'default' : pre;
  const canon = ALIASES[name];
  if (!canon) {
    throw new UnsupportedError(
      `${file}: tokenizer.ggml.pre = '${name}' is not a supported pre-tokenizer; supported: ${SUPPORTED_PRE_TYPES.join(', ')}. ` +
        'Add its regexes (from llama.cpp src/llama-vocab.cpp) to src/tokenizer/pretokenize.ts.',
    );
  }
  const p = PRE[canon];
  return { name, ...p, cleanSpaces: p.cleanSpaces && !CLEAN_SPACES_OFF.has(name) };
}

/** Translate one llama.cpp pattern into a global unicode JS RegExp with llama.cpp's classes. */
export function toJsRegex(pattern: string): RegExp {
  let out = '';
  let inClass = false;
  const chars = Array.from(pattern);
  for (let i = 0; i < chars.length; i++) {
    const c = chars[i];
    if (c === '\\') {
      const n = chars[i + 1];
      if (n === 's') out += inClass ? WS : `[${WS}]`;
      else if (n === 'S') {
        if (inClass) throw new Error(`pattern ${pattern}: \\S inside a class is not supported`);
        out += `[^${WS}]`;
      } else if (n === 'p' && chars[i + 2] === '{') {
        const close = chars.indexOf('}', i + 3);
        let cat = chars.slice(i + 3, close).join('');
        if (/^L[ultmo]$/.test(cat)) cat = 'L';
        out += `\\p{${cat}}`;
        i = close;
        continue;
      } else out += c + n;
      i++;
      continue;
    }
    if (c === '[' && !inClass) inClass = true;
    else if (c === ']' && inClass) inClass = false;
    out += c;
  }
  return new RegExp(out, 'gu');
}

/** Split `text` into pre-tokens with the given regexes, applied in order (matches and gaps both kept). */
export function splitWithRegexes(text: string, regexes: readonly RegExp[]): string[] {
  let pieces = [text];
  for (const re of regexes) {
    const next: string[] = [];
    for (const piece of pieces) {
      let last = 0;
      re.lastIndex = 0;
      for (const m of piece.matchAll(re)) {
        if (m[0].length === 0) continue;
        const at = m.index!;
        if (at > last) next.push(piece.slice(last, at));
        next.push(m[0]);
        last = at + m[0].length;
      }
      if (last < piece.length) next.push(piece.slice(last));
    }
    pieces = next;
  }
  return pieces;
}

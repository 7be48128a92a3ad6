/**
 * Vocabularies embedded in GGUF (`tokenizer.ggml.*`), tokenized exactly as llama.cpp does
 * (src/llama-vocab.cpp of the llama.cpp that node-llama-cpp bundles):
 *  - `gpt2`: byte-level BPE. Special tokens are split out first (`tokenizer_st_partition`), then
 *    each piece is pre-tokenized by the regexes of `tokenizer.ggml.pre`, byte-encoded, and merged by
 *    merge rank (lowest first, leftmost on ties).
 *  - `llama`: SentencePiece. Spaces become `▁`, a space is prefixed after BOS/special tokens
 *    (`add_space_prefix`), adjacent symbols merge by highest token score (leftmost on ties), and
 *    symbols that are not tokens fall back to `<0xXX>` byte tokens.
 * Decoding follows `llama_detokenize` (`token_to_piece`, then `clean_spaces` for BPE vocabularies).
 */
import { TokenizerError, UnsupportedError } from '../errors.js';
import { byteLevelToBytes, bytesToByteLevel, unicodeToByte } from './bytes.js';
import { Heap } from './heap.js';
import type { DecodeOptions, EncodeOptions, Tokenizer } from './index.js';
import { preTokenizerFor, splitWithRegexes, toJsRegex, type PreTokenizer } from './pretokenize.js';
import { makeStreamDecoder } from './stream.js';

/** llama.cpp `llama_token_type` values stored in `tokenizer.ggml.token_type`. */
export enum TokenType {
  Undefined = 0,
  Normal = 1,
  Unknown = 2,
  Control = 3,
  UserDefined = 4,
  Unused = 5,
  Byte = 6,
}

/** Texts that llama.cpp marks as end-of-generation (and control) whatever the metadata says. */
const EOG_TEXTS = new Set([
  '<|eot_id|>', '<|im_end|>', '<|end|>', '<|return|>', '<|call|>', '<|flush|>', '<|calls|>', '<end_of_turn>',
  '<|endoftext|>', '</s>', '<|eom_id|>', '<EOT>', '_<EOT>', '[EOT]', '[EOS]', '<|end_of_text|>',
  '<end_of_utterance>', '<eos>', '<turn|>', '<|tool_response>', '<｜end▁of▁sentence｜>', '[e~[',
]);
/** Texts llama.cpp takes as the EOT token when `tokenizer.ggml.eot_token_id` is absent. */
const EOT_TEXTS = new Set([
  '<|eot_id|>', '<|im_end|>', '<|end|>', '<end_of_turn>', '<|endoftext|>', '<|end_of_text|>', '<EOT>', '_<EOT>',
  '[EOT]', '<｜end▁of▁sentence｜>', '<end_of_utterance>',
]);

const utf8 = new TextEncoder();
const utf8dec = new TextDecoder('utf-8', { ignoreBOM: true });

type Fragment = string | number; // raw text, or a token id already decided

export function tokenizerFromGGUF(get: (key: string) => unknown, file: string): Tokenizer {
  return new GGUFVocab(get, file);
}

function asNumber(v: unknown): number | undefined {
  if (typeof v === 'number') return v;
  if (typeof v === 'bigint') return Number(v);
  return undefined;
}

class GGUFVocab implements Tokenizer {
  readonly vocabSize: number;
  readonly bos?: number;
  readonly eos?: number;
  readonly eog = new Set<number>();
  readonly addBos: boolean;
  readonly addEos: boolean;
  readonly chatTemplate?: string;
  readonly model: 'gpt2' | 'llama';

  private readonly tokens: string[];
  private readonly types: TokenType[];
  private readonly scores: Float32Array;
  private readonly toId = new Map<string, number>();
  /** BPE: "left\0right" -> rank (the first occurrence wins, as std::map::emplace) */
  private readonly ranks = new Map<string, number>();
  private readonly pre?: PreTokenizer;
  private readonly preRegexes: RegExp[] = [];
  /** control / user-defined / unknown tokens, longest text first (`cache_special_tokens`) */
  private readonly specials: number[];
  private readonly addSpacePrefix: boolean;
  private readonly cleanSpaces: boolean;
  private readonly wordCache = new Map<string, number[]>();
  private readonly pieceCache: Array<Uint8Array | undefined> = [];

  constructor(get: (key: string) => unknown, private readonly file: string) {
    const key = (k: string) => get(`tokenizer.ggml.${k}`);
    const model = key('model');
    if (model !== 'gpt2' && model !== 'llama') {
      throw new UnsupportedError(
        `${file}: tokenizer.ggml.model = '${String(model)}' is not supported; supported: gpt2 (byte-level BPE), llama (SentencePiece)`,
      );
    }
    this.model = model;
    const tokens = key('tokens');
    if (!Array.isArray(tokens) || tokens.some((t) => typeof t !== 'string')) {
      throw new TokenizerError(`${file}: tokenizer.ggml.tokens is missing or not an array of strings; the file has no usable vocabulary`);
    }
    const n = tokens.length;
    this.vocabSize = n;
    this.tokens = tokens.map((t: string, i) => (t === '' ? `[EMPTY_${i}]` : t));
    this.tokens.forEach((t, i) => this.toId.set(t, i));

    const types = key('token_type');
    if (types !== undefined && (!Array.isArray(types) || types.length < n)) {
      throw new TokenizerError(`${file}: tokenizer.ggml.token_type must be an int32 array with one entry per token (${n})`);
    }
    this.types = Array.from({ length: n }, (_, i) => (types ? Number((types as unknown[])[i]) : TokenType.Normal));
    const scores = key('scores');
    if (scores !== undefined && (!Array.isArray(scores) || scores.length < n)) {
      throw new TokenizerError(`${file}: tokenizer.ggml.scores must be a float32 array with one entry per token (${n})`);
    }
    this.scores = Float32Array.from({ length: n }, (_, i) => (scores ? Number((scores as unknown[])[i]) : 0));

    // defaults from llama.cpp llama_vocab::impl::load
    let bos: number | undefined, eos: number | undefined, eot: number | undefined, eom: number | undefined;
    let addBos: boolean, addEos = false;
    if (model === 'gpt2') {
      const merges = key('merges');
      if (!Array.isArray(merges)) throw new TokenizerError(`${file}: tokenizer.ggml.merges is missing; a gpt2 (BPE) vocabulary needs its merges`);
      merges.forEach((m: unknown, i) => {
        if (typeof m !== 'string') throw new TokenizerError(`${file}: tokenizer.ggml.merges[${i}] is not a string`);
        const sp = m.indexOf(' ', 1);
        const k = sp < 0 ? '\0' : `${m.slice(0, sp)}\0${m.slice(sp + 1)}`;
        if (!this.ranks.has(k)) this.ranks.set(k, i);
      });
      const preName = key('pre');
      this.pre = preTokenizerFor(typeof preName === 'string' ? preName : undefined, file);
      this.preRegexes = this.pre.regexes.map(toJsRegex);
      bos = 11;
      eos = 11;
      addBos = this.pre.addBos;
      this.addSpacePrefix = false;
      this.cleanSpaces = this.pre.cleanSpaces;
    } else {
      bos = 1;
      eos = 2;
      addBos = true;
      this.addSpacePrefix = true;
      this.cleanSpaces = false;
    }
    const asp = key('add_space_prefix');
    if (typeof asp === 'boolean') this.addSpacePrefix = asp;

    const special = (name: string, dflt: number | undefined): number | undefined => {
      let id = dflt !== undefined && dflt >= n ? undefined : dflt;
      const v = asNumber(key(`${name}_token_id`));
      if (v !== undefined && v >= 0 && v < n) id = v;
      return id;
    };
    bos = special('bos', bos);
    eos = special('eos', eos);
    eot = special('eot', undefined);
    eom = special('eom', undefined);
    const fim = ['fim_pad', 'fim_rep', 'fim_sep'].map((f) => special(f, undefined));
    const ab = key('add_bos_token');
    if (typeof ab === 'boolean') addBos = ab;
    const ae = key('add_eos_token');
    if (typeof ae === 'boolean') addEos = ae;
    this.bos = bos;
    this.eos = eos;
    this.addBos = addBos;
    this.addEos = addEos;

    // auto-detected EOT / EOG tokens by text; llama.cpp forces them to control type
    for (let i = 0; i < n; i++) {
      const t = this.tokens[i];
      if (eot === undefined && EOT_TEXTS.has(t)) eot = i;
      if (eom === undefined && t === '<|eom_id|>') eom = i;
      if (EOG_TEXTS.has(t)) {
        this.eog.add(i);
        if (this.types[i] !== TokenType.Control) this.types[i] = TokenType.Control;
      }
      if (t === '<|channel|>' || t === '<|message|>' || t === '<|start|>' || t === '<|constrain|>') this.types[i] = TokenType.UserDefined;
    }
    for (const id of [...fim, eos, eot, eom]) if (id !== undefined) this.eog.add(id);
    const byText = (s: string) => [...this.eog].find((id) => this.tokens[id] === s);
    const end = byText('<|end|>');
    if (end !== undefined && ((byText('<|return|>') !== undefined && byText('<|call|>') !== undefined) ||
        (byText('<|calls|>') !== undefined && byText('<|flush|>') !== undefined))) {
      this.eog.delete(end);
      this.types[end] = TokenType.UserDefined;
    }

    this.specials = [];
    for (let i = 0; i < n; i++) {
      const ty = this.types[i];
      if (ty === TokenType.Control || ty === TokenType.UserDefined || ty === TokenType.Unknown) this.specials.push(i);
    }
    this.specials.sort((a, b) => utf8.encode(this.tokens[b]).length - utf8.encode(this.tokens[a]).length || a - b);

    const tmpl = get('tokenizer.chat_template');
    if (typeof tmpl === 'string') this.chatTemplate = tmpl;
  }

  tokenText(id: number): string {
    this.checkId(id);
    return this.tokens[id];
  }

  tokenId(text: string): number | undefined {
    return this.toId.get(text);
  }

  private checkId(id: number): void {
    if (!Number.isInteger(id) || id < 0 || id >= this.vocabSize) {
      throw new TokenizerError(`${this.file}: token id ${id} is outside the vocabulary (0..${this.vocabSize - 1})`);
    }
  }

  // ---- encoding -------------------------------------------------------------------------------

  encode(text: string, opts: EncodeOptions = {}): number[] {
    const addSpecial = opts.addSpecial ?? true;
    const fragments = text === '' ? [] : this.partition(text, opts.parseSpecial ?? false);
    const out: number[] = [];
    if (addSpecial && this.addBos) {
      if (this.bos === undefined) throw new TokenizerError(`${this.file}: add_bos_token is set but the vocabulary has no BOS token`);
      out.push(this.bos);
    }
    let prevSpecial = true;
    for (const f of fragments) {
      if (typeof f === 'number') {
        out.push(f);
        prevSpecial = true;
        continue;
      }
      if (this.model === 'llama') {
        this.spm((this.addSpacePrefix && prevSpecial ? ' ' : '') + f, out);
      } else {
        for (const word of splitWithRegexes(f, this.preRegexes)) this.bpeWord(bytesToByteLevel(utf8.encode(word)), out);
      }
      prevSpecial = false;
    }
    if (addSpecial && this.addEos) {
      if (this.eos === undefined) throw new TokenizerError(`${this.file}: add_eos_token is set but the vocabulary has no EOS token`);
      out.push(this.eos);
    }
    return out;
  }

  /** Split out special tokens written in the text (llama.cpp `tokenizer_st_partition`). */
  private partition(text: string, parseSpecial: boolean): Fragment[] {
    let frags: Fragment[] = [text];
    for (const id of this.specials) {
      const ty = this.types[id];
      if (!parseSpecial && (ty === TokenType.Control || ty === TokenType.Unknown)) continue;
      const tok = this.tokens[id];
      if (!frags.some((f) => typeof f === 'string' && f.includes(tok))) continue;
      const next: Fragment[] = [];
      for (const f of frags) {
        if (typeof f !== 'string') {
          next.push(f);
          continue;
        }
        let from = 0;
        for (let at = f.indexOf(tok); at >= 0; at = f.indexOf(tok, from)) {
          if (at > from) next.push(f.slice(from, at));
          next.push(id);
          from = at + tok.length;
        }
        if (from < f.length) next.push(f.slice(from));
      }
      frags = next;
    }
    return frags;
  }

  /** Byte-level BPE of one pre-token (llama.cpp `llm_tokenizer_bpe_session::tokenize`). */
  private bpeWord(word: string, out: number[]): void {
    const cached = this.wordCache.get(word);
    if (cached) {
      for (const id of cached) out.push(id);
      return;
    }
    const ids: number[] = [];
    const whole = this.pre!.ignoreMerges ? this.toId.get(word) : undefined;
    if (whole !== undefined) ids.push(whole);
    else {
      for (const piece of this.bpeMerge(word)) {
        const id = this.toId.get(piece);
        if (id !== undefined) ids.push(id);
        else {
          // llama.cpp looks up each byte of the piece's UTF-8 text; only ASCII bytes can be tokens
          for (const ch of piece) {
            const b = ch.charCodeAt(0) < 0x80 ? this.toId.get(ch) : undefined;
            if (b !== undefined) ids.push(b);
          }
        }
      }
    }
    if (this.wordCache.size > 100_000) this.wordCache.clear();
    this.wordCache.set(word, ids);
    for (const id of ids) out.push(id);
  }

  /** Merge adjacent symbols by lowest rank, leftmost first; returns the final symbols. */
  private bpeMerge(word: string): string[] {
    const sym = Array.from(word);
    if (sym.length <= 1) return sym;
    mergePairs(sym, (a, b) => this.ranks.get(`${a}\0${b}`));
    return sym.filter((s) => s !== '');
  }

  /** SentencePiece (llama.cpp `llm_tokenizer_spm_session`) on one text fragment. */
  private spm(text: string, out: number[]): void {
    const sym = Array.from(text.replaceAll(' ', '▁'));
    const m = sym.length;
    // highest score first = lowest negated score
    const next = mergePairs(sym, (a, b) => {
      const id = this.toId.get(a + b);
      return id === undefined ? undefined : -this.scores[id];
    });
    for (let i = m > 0 ? 0 : -1; i !== -1; i = next[i]) {
      const id = this.toId.get(sym[i]);
      if (id !== undefined) {
        out.push(id);
        continue;
      }
      for (const b of utf8.encode(sym[i])) out.push(this.byteToken(b));
    }
  }

  /** SentencePiece byte fallback: `<0xXX>`, else the byte as a one-character token. */
  private byteToken(b: number): number {
    const hex = `<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`;
    const id = this.toId.get(hex) ?? (b < 0x80 ? this.toId.get(String.fromCharCode(b)) : undefined);
    if (id === undefined) {
      throw new TokenizerError(`${this.file}: text needs byte 0x${b.toString(16)} but the vocabulary has no ${hex} byte-fallback token`);
    }
    return id;
  }

  // ---- decoding -------------------------------------------------------------------------------

  /** Bytes of one token, llama.cpp `token_to_piece` (lstrip 0). */
  tokenBytes(id: number, special = false): Uint8Array {
    this.checkId(id);
    const ty = this.types[id];
    if (ty === TokenType.Control || ty === TokenType.Unknown) return special ? utf8.encode(this.tokens[id]) : new Uint8Array(0);
    let p = this.pieceCache[id];
    if (p) return p;
    const text = this.tokens[id];
    if (ty === TokenType.UserDefined) p = utf8.encode(text);
    else if (ty === TokenType.Normal) p = this.model === 'llama' ? utf8.encode(text.replaceAll('▁', ' ')) : this.byteDecode(text);
    else if (ty === TokenType.Byte) p = Uint8Array.of(parseInt(text.slice(3, 5), 16));
    else p = new Uint8Array(0); // unused / undefined types render as nothing
    this.pieceCache[id] = p;
    return p;
  }

  /** llama.cpp `llama_decode_text`: byte-level characters back to bytes. */
  private byteDecode(text: string): Uint8Array {
    for (const ch of text) {
      if (unicodeToByte(ch) === undefined) {
        // llama.cpp writes "[UNK_BYTE_0x..<text>]" for characters outside the byte table
        const parts: number[] = [];
        for (const c of text) {
          const b = unicodeToByte(c);
          if (b !== undefined) parts.push(b);
          else {
            const hex = Array.from(utf8.encode(c), (x) => x.toString(16).padStart(2, '0')).join('');
            parts.push(...utf8.encode(`[UNK_BYTE_0x${hex}${text}]`));
          }
        }
        return Uint8Array.from(parts);
      }
    }
    return byteLevelToBytes(text);
  }

  /** llama.cpp `llama_detokenize(remove_special = false, unparse_special = opts.special)`. */
  decode(ids: number[], opts: DecodeOptions = {}): string {
    const chunks: Uint8Array[] = [];
    let removeSpace = this.addSpacePrefix;
    let total = 0;
    for (const id of ids) {
      let p = this.tokenBytes(id, opts.special ?? false);
      if (removeSpace && p.length > 0 && p[0] === 0x20) p = p.subarray(1);
      removeSpace = false;
      chunks.push(p);
      total += p.length;
    }
    let bytes: Uint8Array<ArrayBufferLike> = new Uint8Array(total);
    let o = 0;
    for (const c of chunks) {
      bytes.set(c, o);
      o += c.length;
    }
    if (this.cleanSpaces) bytes = cleanSpaces(bytes);
    return utf8dec.decode(bytes);
  }

  streamDecoder() {
    return makeStreamDecoder((id) => this.tokenBytes(id));
  }
}

/** llama.cpp's detokenizer cleanup for BPE vocabularies (three passes over the bytes). */
function cleanSpaces(t: Uint8Array): Uint8Array<ArrayBufferLike> {
  const SP = 0x20, Q = 0x27;
  const c = (s: string) => s.charCodeAt(0);
  let text = Uint8Array.from(t);
  // pass 1: " ?", " !", " .", " ," lose the space
  let n = text.length;
  let total = n ? 1 : 0;
  for (let i = 1; i < n; i++) {
    const x = text[i];
    if (text[i - 1] === SP && (x === c('?') || x === c('!') || x === c('.') || x === c(','))) total--;
    text[total++] = x;
  }
  // pass 2: " ' " becomes "'"
  n = total;
  total = n ? 1 : 0;
  for (let i = 1; i < n; i++) {
    const x = text[i];
    if (x === Q && i + 1 < n && text[i - 1] === SP && text[i + 1] === SP) {
      total--;
      text[++i] = 0;
    }
    text[total++] = x;
  }
  // pass 3: " 's", " 'm", " 're", " 've" lose the space
  n = total;
  total = n ? 1 : 0;
  for (let i = 1; i < n; i++) {
    const x = text[i];
    if (text[i - 1] === SP && x === Q && i + 1 < n) {
      const x1 = text[i + 1];
      if (x1 === c('s') || x1 === c('m')) total--;
      else if (x1 !== c('t') && x1 !== c('d') && i + 2 < n) {
        const x2 = text[i + 2];
        if ((x1 === c('r') && x2 === c('e')) || (x1 === c('v') && x2 === c('e'))) total--;
      }
    }
    text[total++] = x;
  }
  return text.subarray(0, total);
}

/**
 * The greedy pair merge shared by BPE (llama.cpp `llm_tokenizer_bpe_session`) and SentencePiece
 * (`llm_tokenizer_spm_session`): repeatedly merge the adjacent pair with the lowest cost (leftmost on
 * ties) until no pair has a cost. Merged-away symbols become ''. Returns the `next` links of the
 * surviving symbols (index 0 is always a survivor when `sym` is not empty).
 */
function mergePairs(sym: string[], cost: (a: string, b: string) => number | undefined): Int32Array {
  const m = sym.length;
  const next = Int32Array.from({ length: m }, (_, i) => (i + 1 < m ? i + 1 : -1));
  const prev = Int32Array.from({ length: m }, (_, i) => i - 1);
  type Bigram = { cost: number; left: number; right: number; text: string };
  const heap = new Heap<Bigram>((a, b) => a.cost < b.cost || (a.cost === b.cost && a.left < b.left));
  const add = (l: number, r: number) => {
    if (l < 0 || r < 0) return;
    const c = cost(sym[l], sym[r]);
    if (c !== undefined) heap.push({ cost: c, left: l, right: r, text: sym[l] + sym[r] });
  };
  for (let i = 1; i < m; i++) add(i - 1, i);
  for (let bg = heap.pop(); bg; bg = heap.pop()) {
    const { left, right } = bg;
    if (sym[left] === '' || sym[right] === '' || sym[left] + sym[right] !== bg.text) continue;
    sym[left] = bg.text;
    sym[right] = '';
    next[left] = next[right];
    if (next[right] >= 0) prev[next[right]] = left;
    add(prev[left], left);
    add(left, next[left]);
  }
  return next;
}

/** HF `tokenizer.json` (+ `tokenizer_config.json`) through @huggingface/tokenizers. */
import { Tokenizer as HFTokenizer } from '@huggingface/tokenizers';
import { TokenizerError } from '../errors.js';
import { byteLevelToBytes } from './bytes.js';
import type { DecodeOptions, EncodeOptions, Tokenizer } from './index.js';
import { makeStreamDecoder } from './stream.js';

type Json = Record<string, unknown>;

/** Texts that end generation (as llama.cpp's EOG list, the common ones). */
const EOG_TEXTS = ['<|eot_id|>', '<|im_end|>', '<|end|>', '<end_of_turn>', '<|endoftext|>', '<|end_of_text|>', '<|eom_id|>', '<｜end▁of▁sentence｜>'];

/** A tokenizer_config special-token entry: a string or `{ content }`. */
function tokenContent(v: unknown): string | undefined {
  if (typeof v === 'string') return v;
  if (v && typeof v === 'object' && typeof (v as Json).content === 'string') return (v as Json).content as string;
  return undefined;
}

/** The chat template in a tokenizer_config: a string, or a list of named templates ('default' first). */
export function chatTemplateOf(config: Json): string | undefined {
  const t = config.chat_template;
  if (typeof t === 'string') return t;
  if (Array.isArray(t)) {
    const named = t as Array<{ name?: string; template?: string }>;
    return (named.find((x) => x.name === 'default') ?? named[0])?.template;
  }
  return undefined;
}

export function tokenizerFromHF(tokenizerJson: object, tokenizerConfig: object = {}): Tokenizer {
  const tj = tokenizerJson as Json;
  const cfg = tokenizerConfig as Json;
  const model = tj.model as Json | undefined;
  if (!model || typeof model !== 'object' || !model.vocab) {
    throw new TokenizerError('tokenizer.json: no model.vocab; this is not a tokenizer.json from Hugging Face tokenizers');
  }
  const tok = new HFTokenizer(tj, cfg);
  const added = new Map<number, { content: string; special: boolean }>();
  for (const a of (tj.added_tokens as Array<{ id: number; content: string; special: boolean }>) ?? []) added.set(a.id, a);

  let vocabSize = 0;
  for (const id of tok.get_vocab(true).values()) vocabSize = Math.max(vocabSize, id + 1);

  const idOf = (v: unknown) => {
    const s = tokenContent(v);
    return s === undefined ? undefined : tok.token_to_id(s);
  };
  const bos = idOf(cfg.bos_token);
  const eos = idOf(cfg.eos_token);
  const eog = new Set<number>();
  if (eos !== undefined) eog.add(eos);
  for (const t of EOG_TEXTS) {
    const id = tok.token_to_id(t);
    if (id !== undefined && added.get(id)?.special) eog.add(id);
  }
  const withSpecial = tok.encode('', { add_special_tokens: true }).ids;
  const addBos = bos !== undefined && withSpecial[0] === bos;

  const decoder = JSON.stringify(tj.decoder ?? {});
  const byteLevel = decoder.includes('"ByteLevel"');
  const byteFallback = model.byte_fallback === true || decoder.includes('"ByteFallback"');
  const utf8 = new TextEncoder();
  const pieces: Array<Uint8Array | undefined> = [];

  const tokenBytes = (id: number, special = false): Uint8Array => {
    const a = added.get(id);
    if (a) return a.special && !special ? new Uint8Array(0) : utf8.encode(a.content);
    let p = pieces[id];
    if (p) return p;
    const text = tok.id_to_token(id);
    if (text === undefined) throw new TokenizerError(`tokenizer.json: token id ${id} is not in the vocabulary`);
    const m = /^<0x([0-9A-Fa-f]{2})>$/.exec(text);
    if (byteFallback && m) p = Uint8Array.of(parseInt(m[1], 16));
    else if (byteLevel) p = byteLevelToBytes(text);
    else p = utf8.encode(text.replaceAll('▁', ' '));
    pieces[id] = p;
    return p;
  };

  return {
    vocabSize,
    bos,
    eos,
    eog,
    addBos,
    chatTemplate: chatTemplateOf(cfg),
    encode(text: string, opts: EncodeOptions = {}): number[] {
      // @huggingface/tokenizers always matches added tokens in text (parseSpecial is implied)
      return tok.encode(text, { add_special_tokens: opts.addSpecial ?? true }).ids;
    },
    decode(ids: number[], opts: DecodeOptions = {}): string {
      return tok.decode(ids, { skip_special_tokens: !(opts.special ?? false), clean_up_tokenization_spaces: false });
    },
    tokenBytes,
    tokenText(id: number): string {
      const t = tok.id_to_token(id);
      if (t === undefined) throw new TokenizerError(`tokenizer.json: token id ${id} is not in the vocabulary`);
      return t;
    },
    tokenId: (text: string) => tok.token_to_id(text),
    streamDecoder() {
      return makeStreamDecoder((id) => tokenBytes(id));
    },
  };
}

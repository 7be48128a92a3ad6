/**
 * Tokenizers: the vocabularies embedded in GGUF files (byte-level BPE `gpt2` and SentencePiece
 * `llama`, tokenizing exactly as llama.cpp), and HF `tokenizer.json` through @huggingface/tokenizers.
 */
export interface EncodeOptions {
  /** add BOS/EOS as the vocabulary asks (`tokenizer.ggml.add_bos_token`, ...); default true */
  addSpecial?: boolean;
  /** match control tokens written in the text (`<|im_start|>`) as single tokens; default false.
   *  User-defined tokens are always matched, as in llama.cpp. */
  parseSpecial?: boolean;
}

export interface DecodeOptions {
  /** render control tokens as their text; default false (they decode to nothing, as llama.cpp) */
  special?: boolean;
}

export interface Tokenizer {
  vocabSize: number;
  bos?: number;
  eos?: number;
  /** end-of-generation tokens (EOS, EOT, `<|im_end|>`, ...) */
  eog: Set<number>;
  /** whether encode(..., { addSpecial: true }) starts with BOS */
  addBos: boolean;
  encode(text: string, opts?: EncodeOptions): number[];
  /** text of a whole sequence (llama.cpp `llama_detokenize` for GGUF vocabularies) */
  decode(ids: number[], opts?: DecodeOptions): string;
  /** raw bytes of one token (control tokens: empty unless special) */
  tokenBytes(id: number, special?: boolean): Uint8Array;
  /** incremental decoding for generation; never emits broken UTF-8 */
  streamDecoder(): { push(id: number): string; flush(): string };
  /** text of a token as stored in the vocabulary (`Ġthe`, `▁the`, `<|im_end|>`) */
  tokenText(id: number): string;
  /** id of a token given its vocabulary text */
  tokenId(text: string): number | undefined;
  /** jinja chat template (GGUF `tokenizer.chat_template` / tokenizer_config `chat_template`) */
  chatTemplate?: string;
}

export { tokenizerFromGGUF } from './llama-vocab.js';
export { tokenizerFromHF } from './hf.js';
export { applyChatTemplate } from './chat.js';
export type { ChatMessage } from './chat.js';
export { tokenizerJsonToGGUFMetadata, ggufMetadataToTokenizerJson } from './gguf-vocab.js';
export { SUPPORTED_PRE_TYPES } from './pretokenize.js';

/**
 * GGUF vocabularies tokenize and detokenize exactly as llama.cpp (node-llama-cpp, vocab-only load)
 * on a few thousand lines of Moby-Dick plus edge cases, for byte-level BPE (GPT-2's real vocabulary,
 * cut and full, under several `tokenizer.ggml.pre` types) and for a SentencePiece vocabulary.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { bool, f32, f32Arr, i32Arr, str, strArr, u32, type GGUFValue } from '../src/formats/gguf.js';
import { tokenizerFromGGUF } from '../src/tokenizer/index.js';
import { gpt2Vocab } from '../src/testing/vocab.js';
import { getter, loadVocabOnly, mobyDickLines, TRICKY, writeVocabGGUF } from './tokenizer-helpers.js';

const LINES = [...TRICKY, ...mobyDickLines(3000)];

function llamaArch(): Array<[string, GGUFValue]> {
  return [
    ['general.architecture', str('llama')],
    ['llama.context_length', u32(2048)],
    ['llama.embedding_length', u32(64)],
    ['llama.block_count', u32(1)],
    ['llama.feed_forward_length', u32(128)],
    ['llama.attention.head_count', u32(4)],
    ['llama.attention.layer_norm_rms_epsilon', f32(1e-5)],
  ];
}

function bpeMetadata(n: number, pre: string, extra: Array<[string, GGUFValue]> = []): Array<[string, GGUFValue]> {
  const v = gpt2Vocab(n);
  return [
    ...llamaArch(),
    ['tokenizer.ggml.model', str('gpt2')],
    ['tokenizer.ggml.pre', str(pre)],
    ['tokenizer.ggml.tokens', strArr(v.tokens)],
    ['tokenizer.ggml.token_type', i32Arr(v.tokenTypes)],
    ['tokenizer.ggml.merges', strArr(v.merges)],
    ['tokenizer.ggml.bos_token_id', u32(v.eosId)],
    ['tokenizer.ggml.eos_token_id', u32(v.eosId)],
    ...extra,
  ];
}

async function compareWithLlama(name: string, md: Array<[string, GGUFValue]>, lines: string[]) {
  const file = writeVocabGGUF(name, md);
  const ours = tokenizerFromGGUF(getter(md), file);
  const model = await loadVocabOnly(file);
  try {
    let encMismatch = 0, decMismatch = 0, checked = 0;
    const firstBad: string[] = [];
    for (const line of lines) {
      for (const parseSpecial of [false, true]) {
        if (parseSpecial && !line.includes('<')) continue;
        const want = Array.from(model.tokenize(line, parseSpecial));
        const got = ours.encode(line, { addSpecial: false, parseSpecial });
        checked++;
        if (JSON.stringify(got) !== JSON.stringify(want)) {
          encMismatch++;
          if (firstBad.length < 3) firstBad.push(`encode ${JSON.stringify(line).slice(0, 80)} (special=${parseSpecial}): ours ${got.slice(0, 12)} llama ${want.slice(0, 12)}`);
        }
        const wantText = model.detokenize(want as never);
        const gotText = ours.decode(want);
        if (gotText !== wantText) {
          decMismatch++;
          if (firstBad.length < 3) firstBad.push(`decode ${JSON.stringify(line).slice(0, 80)}: ours ${JSON.stringify(gotText).slice(0, 80)} llama ${JSON.stringify(wantText).slice(0, 80)}`);
        }
      }
    }
    assert.ok(checked >= lines.length, 'every line was checked');
    assert.equal(encMismatch + decMismatch, 0, `${name}: ${encMismatch} encode and ${decMismatch} decode mismatches of ${checked}\n${firstBad.join('\n')}`);
  } finally {
    await model.dispose();
  }
}

test('gpt2Vocab(4096) vocab-only GGUF: encode/decode equal llama.cpp on real text (pre = gpt-2)', async () => {
  await compareWithLlama('gpt2-4096.gguf', bpeMetadata(4096, 'gpt-2'), LINES);
});

test('full GPT-2 vocabulary (50257): encode/decode equal llama.cpp on real text', async () => {
  await compareWithLlama('gpt2-full.gguf', bpeMetadata(50257, 'gpt-2'), LINES);
});

for (const pre of ['default', 'llama-bpe', 'qwen2', 'deepseek-llm', 'deepseek-coder', 'olmo', 'gpt-4o', 'deepseek-v3', 'starcoder', 'falcon']) {
  test(`pre-tokenizer '${pre}' on the GPT-2 vocabulary equals llama.cpp`, async () => {
    await compareWithLlama(`gpt2-4096-${pre}.gguf`, bpeMetadata(4096, pre), LINES.slice(0, 1200));
  });
}

test('add_bos / add_eos and special-token parsing follow the metadata', () => {
  const md = bpeMetadata(4096, 'gpt-2', [['tokenizer.ggml.add_bos_token', bool(true)], ['tokenizer.ggml.add_eos_token', bool(true)]]);
  const tok = tokenizerFromGGUF(getter(md), 'mem.gguf');
  const eot = 4095;
  assert.equal(tok.bos, eot);
  assert.ok(tok.eog.has(eot));
  const plain = tok.encode('hi<|endoftext|>', { addSpecial: false });
  assert.ok(!plain.includes(eot), 'control tokens are not parsed by default');
  const parsed = tok.encode('hi<|endoftext|>', { addSpecial: true, parseSpecial: true });
  assert.deepEqual(parsed.slice(-2), [eot, eot]);
  assert.equal(parsed[0], eot);
});

test('unknown tokenizer.ggml.pre is an UnsupportedError naming it', () => {
  const md = bpeMetadata(300, 'no-such-pre');
  assert.throws(() => tokenizerFromGGUF(getter(md), 'x.gguf'), (e: Error) => e.name === 'UnsupportedError' && /no-such-pre/.test(e.message) && /qwen2/.test(e.message));
});

/** A small SentencePiece vocabulary: specials, 256 byte tokens, printable ASCII, then pieces from GPT-2's merges with ▁ for spaces. */
function spmMetadata(): Array<[string, GGUFValue]> {
  const tokens = ['<unk>', '<s>', '</s>'];
  const types = [2, 3, 3];
  const scores = [0, 0, 0];
  for (let b = 0; b < 256; b++) {
    tokens.push(`<0x${b.toString(16).toUpperCase().padStart(2, '0')}>`);
    types.push(6);
    scores.push(0);
  }
  const seen = new Set(tokens);
  const addPiece = (t: string, score: number) => {
    if (seen.has(t)) return;
    seen.add(t);
    tokens.push(t);
    types.push(1);
    scores.push(score);
  };
  for (let c = 0x21; c < 0x7f; c++) addPiece(String.fromCharCode(c), -1e4 - c);
  addPiece('▁', -1e4);
  const v = gpt2Vocab(6000);
  const dec = new TextDecoder('utf-8', { fatal: true });
  const bytesOf = (s: string) => Uint8Array.from(Array.from(s, (ch) => {
    const cp = ch.codePointAt(0)!;
    return cp >= 256 ? [...Array(256).keys()].filter((b) => !((b >= 0x21 && b <= 0x7e) || (b >= 0xa1 && b <= 0xac) || (b >= 0xae && b <= 0xff)))[cp - 256] : cp;
  }));
  v.tokens.slice(256, 5999).forEach((t, r) => {
    try {
      addPiece(dec.decode(bytesOf(t)).replaceAll(' ', '▁'), -r);
    } catch { /* not valid UTF-8 on its own */ }
  });
  tokens.push('<|im_start|>');
  types.push(3);
  scores.push(0);
  tokens.push('[USER]');
  types.push(4);
  scores.push(0);
  return [
    ...llamaArch(),
    ['tokenizer.ggml.model', str('llama')],
    ['tokenizer.ggml.tokens', strArr(tokens)],
    ['tokenizer.ggml.scores', f32Arr(scores)],
    ['tokenizer.ggml.token_type', i32Arr(types)],
    ['tokenizer.ggml.bos_token_id', u32(1)],
    ['tokenizer.ggml.eos_token_id', u32(2)],
    ['tokenizer.ggml.unknown_token_id', u32(0)],
  ];
}

test('SentencePiece (llama) vocab-only GGUF: encode/decode equal llama.cpp on real text', async () => {
  const extra = ['<|im_start|>user [USER] hi', 'a[USER]b', '  two  spaces ', '🦙 byte fallback é ñ 日本'];
  await compareWithLlama('spm.gguf', spmMetadata(), [...extra, ...LINES.slice(0, 2000)]);
});

test('SentencePiece add_space_prefix = false is honoured', async () => {
  const md = [...spmMetadata(), ['tokenizer.ggml.add_space_prefix', bool(false)] as [string, GGUFValue]];
  await compareWithLlama('spm-noprefix.gguf', md, LINES.slice(0, 300));
});

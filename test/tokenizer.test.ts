/** Tokenizer units: llama.cpp's own GPT-2 test vectors, streaming decode, HF tokenizer.json, GGUF <-> tokenizer.json, chat templates. */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { existsSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { applyChatTemplate, ggufMetadataToTokenizerJson, tokenizerFromGGUF, tokenizerFromHF, tokenizerJsonToGGUFMetadata } from '../src/tokenizer/index.js';
import { completeUtf8Prefix } from '../src/tokenizer/stream.js';
import { gpt2GGUFMetadata, gpt2TokenizerConfig, gpt2TokenizerJson, gpt2Vocab } from '../src/testing/vocab.js';
import { getter, mobyDickLines, sharedDir, TRICKY } from './tokenizer-helpers.js';

const gpt2Metadata = (n: number) => gpt2GGUFMetadata(n);

test('gpt2Vocab: real GPT-2 ids and merges', () => {
  const v = gpt2Vocab(50257);
  assert.equal(v.tokens.length, 50257);
  assert.equal(v.merges.length, 50000);
  assert.equal(v.tokens[262], 'Ġthe'); // GPT-2 encoder.json
  assert.equal(v.merges[0], 'Ġ t');
  assert.equal(v.tokens[50256], '<|endoftext|>');
  assert.equal(v.tokenTypes[50256], 3);
  const small = gpt2Vocab(300);
  assert.deepEqual(small.tokens.slice(0, 299), v.tokens.slice(0, 299));
  assert.equal(small.eosId, 299);
});

test("llama.cpp's GPT-2 tokenizer test vectors (../shared/vocab)", (t) => {
  const inp = path.join(sharedDir, 'vocab', 'ggml-vocab-gpt-2.gguf.inp');
  if (!existsSync(inp)) {
    t.skip(`${inp} not found: ../shared is not checked out next to the repo`);
    return;
  }
  const inputs = readFileSync(inp, 'utf8').split('\n__ggml_vocab_test__\n');
  if (inputs.at(-1) === '') inputs.pop();
  const outputs = readFileSync(inp.replace(/\.inp$/, '.out'), 'utf8').split('\n');
  const tok = tokenizerFromGGUF(getter(gpt2Metadata(50257)), 'gpt2-full');
  assert.ok(inputs.length > 10);
  inputs.forEach((text, i) => {
    const want = outputs[i].trim() === '' ? [] : outputs[i].trim().split(/\s+/).map(Number);
    assert.deepEqual(tok.encode(text, { addSpecial: false }), want, `input #${i} ${JSON.stringify(text)}`);
  });
});

test('streaming decode never emits broken UTF-8 (emoji, CJK split across byte tokens)', () => {
  const tok = tokenizerFromGGUF(getter(gpt2Metadata(4096)), 'gpt2-4096');
  for (const text of ['🦙 llama 🐳 whale 👨‍👩‍👧', '日本語のテキスト、中文，한국어', 'mixed é ü ß ½ — “quotes”', ...TRICKY]) {
    const ids = tok.encode(text, { addSpecial: false });
    const dec = tok.streamDecoder();
    let out = '';
    let splitSeen = false;
    for (const id of ids) {
      const piece = dec.push(id);
      if (piece === '' && tok.tokenBytes(id).length > 0) splitSeen = true;
      assert.ok(!piece.includes('\uFFFD') || text.includes('\uFFFD'), `broken UTF-8 in ${JSON.stringify(piece)}`);
      out += piece;
    }
    out += dec.flush();
    assert.equal(out, new TextDecoder('utf-8', { ignoreBOM: true }).decode(new TextEncoder().encode(text)));
    if (/[^\u0000-\u00ff]/.test(text) && text.startsWith('🦙')) assert.ok(splitSeen, 'an emoji was split across byte tokens');
  }
  assert.equal(completeUtf8Prefix(Uint8Array.of(0x61, 0xf0, 0x9f)), 1);
  assert.equal(completeUtf8Prefix(Uint8Array.of(0x61, 0xf0, 0x9f, 0xa6, 0x99)), 5);
  assert.equal(completeUtf8Prefix(Uint8Array.of(0xe6, 0x97)), 0);
});

const LINES = [...TRICKY, ...mobyDickLines(600)];

test('HF tokenizer.json (via @huggingface/tokenizers) equals the GGUF tokenizer on real text', () => {
  const hf = tokenizerFromHF(gpt2TokenizerJson(4096), gpt2TokenizerConfig());
  const gg = tokenizerFromGGUF(getter(gpt2Metadata(4096)), 'gpt2-4096');
  assert.equal(hf.vocabSize, 4096);
  assert.equal(hf.eos, 4095);
  assert.ok(hf.eog.has(4095));
  assert.equal(hf.addBos, false);
  for (const line of LINES) {
    if (line.includes('<|endoftext|>') || /[\u0085\ufeff]/.test(line)) continue; // HF always parses added tokens; JS \s differs
    const ids = gg.encode(line, { addSpecial: false });
    assert.deepEqual(hf.encode(line, { addSpecial: false }), ids, JSON.stringify(line));
    const s = hf.streamDecoder();
    assert.equal(ids.map((id) => s.push(id)).join('') + s.flush(), new TextDecoder('utf-8', { ignoreBOM: true }).decode(new TextEncoder().encode(line)));
  }
});

test('tokenizer.json -> GGUF metadata -> tokenizer.json round trip', () => {
  const tj = gpt2TokenizerJson(4096);
  const cfg = { ...gpt2TokenizerConfig(), chat_template: '{{ messages[0].content }}' };
  const md = tokenizerJsonToGGUFMetadata(tj, cfg);
  const keys = new Map(md.map(([k, v]) => [k, v]));
  assert.equal(keys.get('tokenizer.ggml.pre')?.value, 'gpt-2');
  assert.equal(keys.get('tokenizer.ggml.eos_token_id')?.value, 4095);
  const gg = tokenizerFromGGUF(getter(md), 'converted');
  assert.equal(gg.chatTemplate, '{{ messages[0].content }}');
  const ref = tokenizerFromGGUF(getter(gpt2Metadata(4096)), 'ref');
  const back = ggufMetadataToTokenizerJson(getter(md));
  const hf = tokenizerFromHF(back.tokenizerJson, back.tokenizerConfig);
  assert.equal(back.tokenizerConfig.eos_token, '<|endoftext|>');
  for (const line of LINES.slice(0, 200)) {
    if (/[\u0085\ufeff]/.test(line)) continue;
    const want = ref.encode(line, { addSpecial: false });
    assert.deepEqual(gg.encode(line, { addSpecial: false }), want);
    if (!line.includes('<|endoftext|>')) assert.deepEqual(hf.encode(line, { addSpecial: false }), want);
  }
  // a llama3-style Split regex is detected as llama-bpe
  const l3 = structuredClone(tj) as Record<string, unknown>;
  l3.pre_tokenizer = {
    type: 'Sequence',
    pretokenizers: [
      { type: 'Split', pattern: { Regex: "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+" }, behavior: 'Isolated', invert: false },
      { type: 'ByteLevel', add_prefix_space: false, trim_offsets: true, use_regex: false },
    ],
  };
  assert.equal(new Map(tokenizerJsonToGGUFMetadata(l3)).get('tokenizer.ggml.pre')?.value, 'llama-bpe');
  l3.pre_tokenizer = { type: 'Whitespace' };
  assert.throws(() => tokenizerJsonToGGUFMetadata(l3), /pre_tokenizer/);
});

test('ChatML chat template via @huggingface/jinja', () => {
  const chatml =
    "{% for message in messages %}{{ '<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n' }}{% endfor %}" +
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  const msgs = [{ role: 'system', content: 'Be brief.' }, { role: 'user', content: 'Hi!' }];
  assert.equal(
    applyChatTemplate(chatml, msgs, { addGenerationPrompt: true }),
    '<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nHi!<|im_end|>\n<|im_start|>assistant\n',
  );
  assert.equal(applyChatTemplate(chatml, msgs.slice(1), {}), '<|im_start|>user\nHi!<|im_end|>\n');
  assert.equal(applyChatTemplate('{{ bos_token }}{{ messages[0].content }}{{ eos_token }}', msgs, { bosToken: '<s>', eosToken: '</s>' }), '<s>Be brief.</s>');
  assert.throws(() => applyChatTemplate('{% for %}', msgs, {}), (e: Error) => e.name === 'UsageError');
});

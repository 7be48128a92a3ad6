/**
 * `moekit calibrate <model> --data text.txt --skip-share 0.2 -o thresholds.json`: per-layer gate-weight
 * thresholds for dynamic expert skipping (`--skip thresholds.json` on run/eval/bench).
 */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { loadModel } from '../engine/model.js';
import { UsageError } from '../errors.js';
import { writeFileAtomic } from '../formats/atomic.js';
import { calibrateSkip } from '../routing/calibrate.js';
import { floatFlag, intFlag } from './args.js';

interface CalibrateFlags {
  data: string;
  skipShare: number;
  output: string;
  ctx: number;
  maxTokens?: number;
  threads?: number;
}

export function registerCalibrate(program: Command): void {
  program
    .command('calibrate')
    .description('pick per-layer thresholds for dynamic expert skipping on a text, for a target share of skipped experts')
    .argument('<model>', '.gguf file or Hugging Face folder')
    .requiredOption('--data <file>', 'calibration text file')
    .requiredOption('-o, --output <file>', 'thresholds JSON to write')
    .option('--skip-share <s>', 'target share of routed experts to skip', floatFlag('--skip-share', 0, 1), 0.2)
    .option('--ctx <n>', 'tokens per forward pass', intFlag('--ctx', 2, 1 << 20), 512)
    .option('--max-tokens <n>', 'use at most the first n tokens of the text', intFlag('--max-tokens', 2))
    .option('-t, --threads <n>', 'compute threads (default: physical cores)', intFlag('--threads', 1, 256))
    .action(async (path: string, f: CalibrateFlags) => {
      let text: string;
      try {
        text = readFileSync(f.data, 'utf8');
      } catch (e) {
        throw new UsageError(`--data: cannot read ${f.data} (${(e as Error).message})`);
      }
      const model = await loadModel(path, { threads: f.threads, ctx: f.ctx });
      try {
        if (model.hparams.nExpert === 0) throw new UsageError(`${path} is a dense model: there are no experts to skip`);
        let ids = model.tokenize(text, { addSpecial: true });
        if (f.maxTokens !== undefined) ids = ids.slice(0, f.maxTokens);
        const c = await calibrateSkip(model, ids, { share: f.skipShare, ctx: f.ctx });
        writeFileAtomic(f.output, JSON.stringify({ model: path, data: f.data, ...c }, null, 2) + '\n');
        process.stderr.write(
          `calibrate: ${c.tokens} tokens; target skip share ${f.skipShare}, measured ${c.measuredShare.toFixed(3)} ` +
            `(${(model.hparams.nExpertUsed * (1 - c.measuredShare)).toFixed(2)} of ${model.hparams.nExpertUsed} experts/token) -> ${f.output}\n`,
        );
      } finally {
        await model.close();
      }
    });
}

/** `moekit train --config configs/<name>.json [--out runs/<name>] [--resume] [--steps N]`: train a MoE LM on CPU. */
import { basename } from 'node:path';
import type { Command } from 'commander';
import { readTrainConfig, train } from '../train/trainer.js';
import { intFlag } from './args.js';

interface TrainFlags {
  config: string;
  out?: string;
  resume?: boolean;
  stopAt?: number;
  export: boolean;
  threads?: number;
  upcycleFrom?: string;
}

export function registerTrain(program: Command): void {
  program
    .command('train')
    .description('train a Mixture-of-Experts language model from a text corpus (CPU), with checkpoints, --resume and GGUF export')
    .requiredOption('--config <file>', 'training config (JSON; see configs/)')
    .option('--out <dir>', 'run folder (default runs/<config name>)')
    .option('--resume', 'continue from <out>/last exactly where it stopped')
    .option('--stop-at <n>', 'stop after this step (the schedule still spans train.steps)', intFlag('--stop-at', 1, 1 << 30))
    .option('-t, --threads <n>', 'native matmul threads (default: physical cores; 0 = plain TypeScript)', intFlag('--threads', 0, 1024))
    .option('--upcycle-from <dir>', 'start the MoE from a trained dense checkpoint folder (runs/<dense>/best): experts = copies of its FFN (Sparse Upcycling); same as init.upcycleFrom')
    .option('--no-export', 'do not write <out>/model.gguf at the end')
    .action(async (f: TrainFlags) => {
      const cfg = readTrainConfig(f.config);
      const out = f.out ?? `runs/${basename(f.config).replace(/\.json$/, '')}`;
      const r = await train(cfg, { out, resume: f.resume, stopAt: f.stopAt, exportGguf: f.export, threads: f.threads, upcycleFrom: f.upcycleFrom });
      process.stderr.write(
        `done: ${r.steps} steps, ${r.tokensSeen} tokens in ${r.seconds.toFixed(0)} s; final loss ${r.finalLoss.toFixed(4)}` +
          (r.valLoss !== null ? `, val ppl ${Math.exp(r.valLoss).toFixed(2)}` : '') + (r.gguf ? `; model: ${r.gguf}` : '') + '\n',
      );
    });
}

/** `moekit trace <model> --data file.txt -o trace.mkt`: record routing for every token and MoE layer. */
import { readFileSync } from 'node:fs';
import type { Command } from 'commander';
import { recordTrace } from '../analysis/record.js';
import { writeTrace, writeTraceJsonl } from '../analysis/trace.js';
import { loadModel } from '../engine/model.js';
import { UsageError } from '../errors.js';
import { intFlag } from './args.js';

interface TraceFlags {
  data: string;
  output: string;
  maxTokens?: number;
  window: number;
  jsonl?: boolean;
  superExperts?: boolean;
  threads?: number;
}

export function registerTrace(program: Command): void {
  program
    .command('trace')
    .description('record the routing (experts, gate weights, router entropy) of every token and MoE layer over a text file')
    .argument('<model>', '.gguf file or Hugging Face folder')
    .requiredOption('--data <file>', 'UTF-8 text to run through the model')
    .requiredOption('-o, --output <file>', 'trace file to write (.mkt)')
    .option('-n, --max-tokens <n>', 'trace at most this many tokens', intFlag('--max-tokens', 1, 100_000_000))
    .option('--window <n>', 'tokens per independent window (fresh KV cache)', intFlag('--window', 1, 1_000_000), 512)
    .option('--jsonl', 'also write <output>.jsonl')
    .option('--super-experts', 'also record max |expert output| per expert (slower: runs the routed experts twice)')
    .option('-t, --threads <n>', 'compute threads (default: physical cores)', intFlag('--threads', 1, 256))
    .action(async (path: string, o: TraceFlags) => {
      let text: string;
      try {
        text = readFileSync(o.data, 'utf8');
      } catch (e) {
        throw new UsageError(`--data ${o.data}: cannot read it (${(e as Error).message})`);
      }
      const model = await loadModel(path, { threads: o.threads });
      try {
        const t0 = performance.now();
        const tr = await recordTrace(model, text, {
          maxTokens: o.maxTokens,
          window: o.window,
          superExperts: o.superExperts,
          onProgress: (done, total) => process.stderr.write(`\rtraced ${done}/${total} tokens`),
        });
        process.stderr.write('\n');
        writeTrace(o.output, tr);
        if (o.jsonl) writeTraceJsonl(`${o.output}.jsonl`, tr);
        const s = (performance.now() - t0) / 1000;
        process.stderr.write(
          `wrote ${o.output}${o.jsonl ? ` and ${o.output}.jsonl` : ''}: ${tr.T} tokens × ${tr.layers.length} MoE layers, ` +
            `E=${tr.E}, K=${tr.K}${tr.expertMax ? ', with expert output maxima' : ''} (${s.toFixed(1)} s)\n`,
        );
      } finally {
        await model.close();
      }
    });
}

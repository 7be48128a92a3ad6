/** `moekit convert`: HF folder → GGUF (with a chosen tensor type), or GGUF → HF folder (dequantized). */
import { statSync } from 'node:fs';
import type { Command } from 'commander';
import { convertGGUFToHF, convertHFToGGUF } from '../convert.js';
import { UsageError } from '../errors.js';

const TYPES = ['f32', 'f16', 'bf16', 'q8_0', 'q4_k'] as const;
type OutType = (typeof TYPES)[number];

export function registerConvert(program: Command): void {
  program
    .command('convert')
    .description('convert a Hugging Face folder to GGUF, or a GGUF file back to a Hugging Face folder')
    .argument('<input>', 'HF folder (config.json + *.safetensors + tokenizer.json) or .gguf file')
    .requiredOption('-o, --output <path>', 'output .gguf file (from HF) or folder (from GGUF)')
    .option('--type <type>', `tensor type when writing GGUF: ${TYPES.join(', ')}`, 'f16')
    .action(async (input: string, o: { output: string; type: string }) => {
      let isDir: boolean;
      try {
        isDir = statSync(input).isDirectory();
      } catch {
        throw new UsageError(`${input}: no such file or folder`);
      }
      const t0 = performance.now();
      if (isDir) {
        if (!TYPES.includes(o.type as OutType)) throw new UsageError(`--type must be one of ${TYPES.join(', ')}, got '${o.type}'`);
        await convertHFToGGUF(input, o.output, { type: o.type as OutType });
      } else {
        await convertGGUFToHF(input, o.output);
      }
      process.stderr.write(`wrote ${o.output} in ${((performance.now() - t0) / 1000).toFixed(1)} s\n`);
    });
}

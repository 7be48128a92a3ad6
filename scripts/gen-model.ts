/**
 * Write a random-weight test model (GGUF and/or HF folder) with a real GPT-2 vocabulary.
 *
 *   node --import tsx scripts/gen-model.ts --arch olmoe --preset olmoe-1b-7b --type q4_k_m -o .cache/olmoe.gguf [--hf dir]
 *   node --import tsx scripts/gen-model.ts --arch qwen2moe --layers 3 --dim 128 -o .cache/q2.gguf
 */
import { Command, InvalidArgumentError } from 'commander';
import { ARCHS, OUT_TYPES, PRESETS, generateModel, makeSpec, type ArchName, type ModelSpec, type OutType } from '../src/testing/generate-model.js';

const int = (v: string) => {
  const n = Number(v);
  if (!Number.isInteger(n) || n <= 0) throw new InvalidArgumentError(`expected a positive integer, got ${v}`);
  return n;
};

const program = new Command('gen-model')
  .description('Generate a random-weight MoE test model')
  .option('--arch <arch>', `architecture: ${ARCHS.join(', ')}`)
  .option('--preset <name>', `reference shape: ${Object.keys(PRESETS).join(', ')}`)
  .option('--type <type>', `GGUF tensor type: ${OUT_TYPES.join(', ')}`, 'f32')
  .option('-o, --out <file>', 'GGUF file to write')
  .option('--hf <dir>', 'also write an HF folder (config.json, safetensors, tokenizer.json)')
  .option('--seed <n>', 'PRNG seed', int)
  .option('--layers <n>', 'layers', int)
  .option('--dim <n>', 'model dim D', int)
  .option('--experts <n>', 'routed experts E', int)
  .option('--top-k <n>', 'experts per token K', int)
  .option('--ffn <n>', 'expert FFN dim F', int)
  .option('--vocab <n>', 'vocabulary size (257..50257)', int)
  .option('--random-blocks', 'fill quantized tensors with random blocks (fast; default for > 500M params)')
  .action(async (o: Record<string, unknown>) => {
    if (!o.out && !o.hf) program.error('give -o <file.gguf> and/or --hf <dir>');
    if (!OUT_TYPES.includes(o.type as OutType)) program.error(`--type must be one of ${OUT_TYPES.join(', ')}`);
    let spec: ModelSpec;
    if (o.preset) {
      const p = PRESETS[o.preset as string];
      if (!p) program.error(`unknown preset ${String(o.preset)}; known: ${Object.keys(PRESETS).join(', ')}`);
      if (o.arch && o.arch !== p.arch) program.error(`preset ${String(o.preset)} is ${p.arch}, not ${String(o.arch)}`);
      spec = { ...p };
    } else {
      if (!ARCHS.includes(o.arch as ArchName)) program.error(`--arch must be one of ${ARCHS.join(', ')}`);
      spec = makeSpec(o.arch as ArchName);
    }
    const over: Partial<ModelSpec> = {};
    if (o.seed !== undefined) over.seed = o.seed as number;
    if (o.layers !== undefined) over.nLayer = o.layers as number;
    if (o.dim !== undefined) over.D = o.dim as number;
    if (o.experts !== undefined) over.E = o.experts as number;
    if (o.topK !== undefined) over.K = o.topK as number;
    if (o.ffn !== undefined) over.F = o.ffn as number;
    if (o.vocab !== undefined) over.vocab = o.vocab as number;
    spec = { ...spec, ...over };
    const t0 = Date.now();
    const r = await generateModel(spec, { gguf: o.out as string | undefined, hfDir: o.hf as string | undefined, type: o.type as OutType, randomBlocks: o.randomBlocks as boolean | undefined });
    const types = [...new Set(Object.values(r.tensorTypes))].join(', ');
    process.stdout.write(`${spec.arch}: ${(r.params / 1e6).toFixed(1)}M params, ${types}; wrote ${[r.gguf, r.hfDir].filter(Boolean).join(' and ')} in ${((Date.now() - t0) / 1000).toFixed(1)} s\n`);
  });

await program.parseAsync();

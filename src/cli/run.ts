/** `moekit run [model] -p "…"`: stream generated text; `--chat` for an interactive chat loop. */
import { createInterface } from 'node:readline/promises';
import type { Command } from 'commander';
import { defaultModelPath } from '../engine/default-model.js';
import { loadModel, type GenerateOptions, type Model } from '../engine/model.js';
import { UsageError } from '../errors.js';
import { applyChatTemplate } from '../tokenizer/chat.js';
import { collect, floatFlag, intFlag, peakRss, formatBytes } from './args.js';
import { addRoutingOptions, routingFromFlags, type RoutingFlags, type RoutingSession } from './routing-flags.js';

interface RunFlags extends RoutingFlags {
  prompt?: string;
  maxTokens: number;
  temp: number;
  topK: number;
  topP: number;
  minP: number;
  repeatPenalty: number;
  seed?: number;
  threads?: number;
  ctx?: number;
  stop: string[];
  chat?: boolean;
  system?: string;
}

export function registerRun(program: Command): void {
  const cmd = program
    .command('run')
    .description('generate text (streams to stdout); without a model, runs the embedded default model')
    .argument('[model]', '.gguf file or Hugging Face folder')
    .option('-p, --prompt <text>', 'prompt text')
    .option('-n, --max-tokens <n>', 'maximum new tokens', intFlag('--max-tokens', 0, 1_000_000), 128)
    .option('--temp <t>', 'temperature; 0 = greedy', floatFlag('--temp', 0, 100), 0.8)
    .option('--top-k <k>', 'top-k sampling; 0 = off', intFlag('--top-k', 0, 1_000_000), 40)
    .option('--top-p <p>', 'nucleus sampling; 1 = off', floatFlag('--top-p', 0, 1, { minExclusive: true }), 0.95)
    .option('--min-p <p>', 'min-p sampling; 0 = off', floatFlag('--min-p', 0, 0.999999), 0.05)
    .option('--repeat-penalty <r>', 'repetition penalty; 1 = off', floatFlag('--repeat-penalty', 0, 100, { minExclusive: true }), 1)
    .option('--seed <n>', 'sampling seed', intFlag('--seed', 0, 2 ** 32 - 1))
    .option('-t, --threads <n>', 'compute threads (default: physical cores)', intFlag('--threads', 1, 256))
    .option('-c, --ctx <n>', 'context length', intFlag('--ctx', 1, 1 << 20))
    .option('--stop <text>', 'stop string (repeatable)', collect, [])
    .option('--chat', "interactive chat using the model's own chat template")
    .option('--system <text>', 'system message for --chat');
  addRoutingOptions(cmd, { scmoe: true }).action(async (path: string | undefined, f: RunFlags) => {
      let modelPath = path;
      if (!modelPath) {
        const d = await defaultModelPath();
        modelPath = d.path;
        process.stderr.write(`moekit: no model given; using the embedded default model ${d.path}\n  (${d.label})\n`);
      }
      const model = await loadModel(modelPath, { threads: f.threads, ctx: f.ctx });
      try {
        const routing = routingFromFlags(f, model);
        const gen: GenerateOptions = {
          hooks: routing.hooks,
          maxTokens: f.maxTokens,
          temperature: f.temp,
          topK: f.topK,
          topP: f.topP,
          minP: f.minP,
          repeatPenalty: f.repeatPenalty,
          seed: f.seed,
          stop: f.stop,
        };
        if (f.chat) await chatLoop(model, routing, gen, f.system);
        else {
          const prompt = f.prompt ?? 'Once upon a time';
          for await (const piece of routing.generate(prompt, gen)) process.stdout.write(piece);
          process.stdout.write('\n');
          printSummary(model);
          process.stderr.write(routing.report());
        }
      } finally {
        await model.close();
      }
    });
}

function printSummary(model: Model): void {
  const s = model.lastStats;
  if (!s) return;
  const rate = (n: number, ms: number) => (ms > 0 ? ((n * 1000) / ms).toFixed(2) : '–');
  process.stderr.write(
    `prompt ${s.promptTokens} tok, ${rate(s.promptTokens, s.promptMs)} tok/s | ` +
      `decode ${s.genTokens} tok, ${rate(s.genTokens, s.genMs)} tok/s | ` +
      `peak RSS ${formatBytes(peakRss())} | stop: ${s.stopReason}\n`,
  );
}

async function chatLoop(model: Model, routing: RoutingSession, gen: GenerateOptions, system?: string): Promise<void> {
  const template = model.chatTemplate;
  if (!template) {
    throw new UsageError(`${model.info.path} has no chat template (tokenizer.chat_template / tokenizer_config.json); use -p for plain completion`);
  }
  const messages: { role: string; content: string }[] = system ? [{ role: 'system', content: system }] : [];
  const seq = model.newSequence();
  const rl = createInterface({ input: process.stdin, terminal: false });
  process.stderr.write('chat: type a message, empty line or Ctrl-D to quit\n> ');
  try {
    // iterate lines (not rl.question) so piped input is never dropped between turns
    for await (const line of rl) {
      if (!line.trim()) break;
      messages.push({ role: 'user', content: line });
      const prompt = applyChatTemplate(template, messages, {
        addGenerationPrompt: true,
        bosToken: model.tokenizer.bos !== undefined ? model.tokenizer.tokenText(model.tokenizer.bos) : '',
        eosToken: model.tokenizer.eos !== undefined ? model.tokenizer.tokenText(model.tokenizer.eos) : '',
      });
      let reply = '';
      for await (const piece of routing.generate(prompt, { ...gen, sequence: seq, addSpecial: false, parseSpecial: true })) {
        reply += piece;
        process.stdout.write(piece);
      }
      process.stdout.write('\n');
      printSummary(model);
      messages.push({ role: 'assistant', content: reply });
      process.stderr.write('> ');
    }
  } finally {
    rl.close();
  }
}

/**
 * moekit vs llama.cpp (node-llama-cpp, CPU) on the same GGUF, same threads, same prompt tokens.
 *
 *   npm run bench:vs-llama -- <model.gguf> [-t 2] [-p 128] [-n 64] [-r 3] [--sequential] [--json]
 *
 * --sequential loads and runs one engine after the other, for models whose two working sets do not
 * fit in memory together (the qwen3-30b-a3b shape in 23 GiB); its ratios are not same-moment pairs.
 * Each engine runs in its own child process (so peak RSS is its own), both stay loaded, and the parent
 * asks them for one repetition at a time in alternating order (ABBA), so drift on a shared machine hits
 * both alike. A repetition = fresh sequence, the prompt as one batch, then n greedy single-token steps
 * (end-of-generation does not stop it). Each child warms up once (whole prompt + 4 steps, which pages
 * in nearly every expert) before timing.
 * Prints medians (min–max) for both and the ratio moekit ÷ llama.cpp.
 */
import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { intFlag } from '../src/cli/args.js';
import { benchRep, spread, type RepTimes, type Spread } from '../src/cli/bench.js';
import { loadModel } from '../src/engine/model.js';

type Engine = 'moekit' | 'llama.cpp';

interface Opts {
  threads: number;
  prompt: number;
  gen: number;
  reps: number;
  /** run the engines one after the other instead of both loaded and alternating */
  sequential?: boolean;
}

type ToChild = { cmd: 'rep' } | { cmd: 'done' };
type FromChild =
  | { kind: 'ready'; loadS: number; info: string }
  | { kind: 'rep'; t: RepTimes }
  | { kind: 'done'; peakRss: number }
  | { kind: 'error'; message: string };

// ---- children ---------------------------------------------------------------------------------

interface Runner {
  info: string;
  rep(): Promise<{ t: RepTimes }>;
}

async function moekitRunner(path: string, o: Opts, prompt: number[]): Promise<Runner> {
  const model = await loadModel(path, { threads: o.threads, ctx: o.prompt + o.gen + 1 });
  benchRep(model, prompt, 4);
  return {
    info: `moekit native (${model.backend.name}, ${o.threads} threads)`,
    rep: async () => ({ t: benchRep(model, prompt, o.gen) }),
  };
}

async function llamaRunner(path: string, o: Opts, prompt: number[]): Promise<Runner> {
  const { getLlama, LlamaLogLevel } = await import('node-llama-cpp');
  let cpuVariant = '?';
  const llama = await getLlama({
    gpu: false,
    build: 'never',
    maxThreads: o.threads,
    logLevel: LlamaLogLevel.info,
    logger: (level, message) => {
      const m = /libggml-cpu-([\w-]+)\.so/.exec(message);
      if (m) cpuVariant = m[1]!;
      if (process.env.MOEKIT_LLAMA_LOG) process.stderr.write(`[llama.cpp] ${message}\n`);
      if (level === LlamaLogLevel.error || level === LlamaLogLevel.fatal) process.stderr.write(`[llama.cpp] ${message}\n`);
    },
  });
  const model = await llama.loadModel({ modelPath: path, gpuLayers: 0 });
  const context = await model.createContext({
    contextSize: o.prompt + o.gen + 1,
    batchSize: Math.max(o.prompt, 32),
    threads: { ideal: o.threads, min: o.threads },
    flashAttention: 'auto',
    sequences: 1,
  });
  const seq = context.getSequence();
  const greedy = { generateNext: { token: true, options: { temperature: 0 } } } as const;
  type Input = Parameters<typeof seq.controlledEvaluate>[0];
  async function run(ids: number[], n: number): Promise<{ t: RepTimes }> {
    await seq.clearHistory();
    const input = ids.map((t, i) => (i === ids.length - 1 ? [t, greedy] : t)) as unknown as Input;
    const t0 = performance.now();
    let res = await seq.controlledEvaluate(input);
    const t1 = performance.now();
    for (let i = 0; i < n; i++) {
      const tok = res[res.length - 1]?.next.token;
      if (tok === undefined || tok === null) throw new Error('llama.cpp returned no token');
      res = await seq.controlledEvaluate([[tok, greedy]] as unknown as Input);
    }
    const t2 = performance.now();
    return { t: { promptS: (t1 - t0) / 1000, decodeS: (t2 - t1) / 1000 } };
  }
  await run(prompt, 4);
  return { info: `llama.cpp ${llama.llamaCppRelease.release} (node-llama-cpp, ggml-cpu ${cpuVariant}, ${o.threads} threads)`, rep: () => run(prompt, o.gen) };
}

async function child(engine: Engine, path: string, o: Opts, prompt: number[]): Promise<void> {
  const send = (m: FromChild) => process.send!(m);
  try {
    const t0 = performance.now();
    const r = engine === 'moekit' ? await moekitRunner(path, o, prompt) : await llamaRunner(path, o, prompt);
    send({ kind: 'ready', loadS: (performance.now() - t0) / 1000, info: r.info });
    process.on('message', async (m: ToChild) => {
      try {
        if (m.cmd === 'rep') send({ kind: 'rep', ...(await r.rep()) });
        else {
          send({ kind: 'done', peakRss: process.resourceUsage().maxRSS * 1024 });
          process.disconnect();
          process.exit(0);
        }
      } catch (e) {
        send({ kind: 'error', message: (e as Error).stack ?? String(e) });
      }
    });
  } catch (e) {
    send({ kind: 'error', message: (e as Error).stack ?? String(e) });
  }
}

// ---- parent -----------------------------------------------------------------------------------

class ChildEngine {
  private readonly proc: ChildProcess;
  private waiting: ((m: FromChild) => void)[] = [];
  /** messages that came before anyone waited for them (kept in order, not dropped) */
  private inbox: FromChild[] = [];
  constructor(readonly engine: Engine, path: string, o: Opts, prompt: number[]) {
    this.proc = fork(fileURLToPath(import.meta.url), ['--child', engine, path, JSON.stringify(o), JSON.stringify(prompt)], {
      execArgv: ['--import', 'tsx'],
      stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
    });
    this.proc.on('message', (m: FromChild) => {
      const w = this.waiting.shift();
      if (w) w(m);
      else this.inbox.push(m);
    });
    this.proc.on('exit', (code) => {
      if (code) for (const w of this.waiting.splice(0)) w({ kind: 'error', message: `${engine} child exited with code ${code}` });
    });
  }
  next<K extends FromChild['kind']>(kind: K, msg?: ToChild): Promise<Extract<FromChild, { kind: K }>> {
    return new Promise((resolve, reject) => {
      const take = (m: FromChild) => (m.kind === kind ? resolve(m as Extract<FromChild, { kind: K }>) : reject(new Error(`${this.engine}: ${m.kind === 'error' ? m.message : `unexpected ${m.kind}`}`)));
      const early = this.inbox.shift();
      if (early) take(early);
      else this.waiting.push(take);
      if (msg) this.proc.send(msg);
    });
  }
}

/** Per-round ratios moekit ÷ llama.cpp (the two runs of a round are adjacent in time): robust to drift. */
interface PairRatios {
  prompt: Spread;
  decode: Spread;
}

interface EngineResult {
  info: string;
  loadS: number;
  prompt: Spread;
  decode: Spread;
  peakRss: number;
}

async function compare(path: string, o: Opts): Promise<{ moekit: EngineResult; llama: EngineResult; pairs: PairRatios }> {
  // prompt tokens from moekit's tokenizer of the file; llama.cpp gets the same ids
  const { promptTokens } = await import('../src/cli/bench.js');
  const m = await loadModel(path, { threads: 1 });
  const prompt = promptTokens(m, o.prompt);
  await m.close();

  const names: Engine[] = ['moekit', 'llama.cpp'];
  const ready: Extract<FromChild, { kind: 'ready' }>[] = [];
  const done: Extract<FromChild, { kind: 'done' }>[] = [];
  const times: RepTimes[][] = [[], []];
  const rep = async (e: ChildEngine, i: number, r: number) => {
    const res = await e.next('rep', { cmd: 'rep' });
    times[i]!.push(res.t);
    process.stderr.write(`rep ${r + 1}/${o.reps} ${e.engine}: prompt ${(o.prompt / res.t.promptS).toFixed(2)} tok/s, decode ${(o.gen / res.t.decodeS).toFixed(2)} tok/s\n`);
  };
  if (o.sequential) {
    // one engine at a time (models too big for both working sets at once): load, all reps, exit
    for (const [i, name] of names.entries()) {
      const e = new ChildEngine(name, path, o, prompt);
      ready[i] = await e.next('ready');
      for (let r = 0; r < o.reps; r++) await rep(e, i, r);
      done[i] = await e.next('done', { cmd: 'done' });
    }
  } else {
    const engines: ChildEngine[] = [];
    for (const n of names) {
      // one at a time: loads do not overlap (the next child starts once this one is ready)
      const e = new ChildEngine(n, path, o, prompt);
      ready.push(await e.next('ready'));
      engines.push(e);
    }
    for (let r = 0; r < o.reps; r++) for (const i of r % 2 === 0 ? [0, 1] : [1, 0]) await rep(engines[i]!, i, r);
    for (const e of engines) done.push(await e.next('done', { cmd: 'done' }));
  }
  const result = (i: number): EngineResult => ({
    info: ready[i]!.info,
    loadS: ready[i]!.loadS,
    prompt: spread(times[i]!.map((t) => o.prompt / t.promptS)),
    decode: spread(times[i]!.map((t) => o.gen / t.decodeS)),
    peakRss: done[i]!.peakRss,
  });
  const pairs: PairRatios = {
    prompt: spread(times[0]!.map((t, r) => times[1]![r]!.promptS / t.promptS)),
    decode: spread(times[0]!.map((t, r) => times[1]![r]!.decodeS / t.decodeS)),
  };
  return { moekit: result(0), llama: result(1), pairs };
}

function format(path: string, o: Opts, r: { moekit: EngineResult; llama: EngineResult; pairs: PairRatios }): string {
  const f = (s: Spread) => `${s.median.toFixed(2)} (${s.min.toFixed(2)}–${s.max.toFixed(2)})`;
  const gib = (b: number) => `${(b / 2 ** 30).toFixed(2)} GiB`;
  const { moekit: a, llama: b } = r;
  return [
    `model ${path}; ${o.threads} threads, prompt ${o.prompt} tokens, decode ${o.gen} tokens, ${o.reps} ${o.sequential ? 'reps per engine, engines one after the other (per-round ratios pair rep r of each: not adjacent in time)' : 'alternating reps'}`,
    `  moekit:    ${a.info}`,
    `  llama.cpp: ${b.info}`,
    `figure            | moekit                 | llama.cpp              | moekit ÷ llama.cpp (of medians) | per-round ratio med (min–max)`,
    `prompt tok/s      | ${f(a.prompt).padEnd(22)} | ${f(b.prompt).padEnd(22)} | ${(a.prompt.median / b.prompt.median).toFixed(2).padEnd(31)} | ${f(r.pairs.prompt)}`,
    `decode tok/s      | ${f(a.decode).padEnd(22)} | ${f(b.decode).padEnd(22)} | ${(a.decode.median / b.decode.median).toFixed(2).padEnd(31)} | ${f(r.pairs.decode)}`,
    `peak RSS          | ${gib(a.peakRss).padEnd(22)} | ${gib(b.peakRss).padEnd(22)} | ${(a.peakRss / b.peakRss).toFixed(2)}`,
  ].join('\n');
}

const argv = process.argv.slice(2);
if (argv[0] === '--child') {
  await child(argv[1] as Engine, argv[2]!, JSON.parse(argv[3]!) as Opts, JSON.parse(argv[4]!) as number[]);
} else {
  const program = new Command('bench:vs-llama')
    .description('moekit vs llama.cpp (node-llama-cpp) on the same GGUF, alternating runs')
    .argument('<model>', '.gguf file')
    .option('-t, --threads <n>', 'threads', intFlag('--threads', 1, 256), 2)
    .option('-p, --prompt <n>', 'prompt tokens', intFlag('--prompt', 1, 4096), 128)
    .option('-n, --gen <n>', 'decoded tokens', intFlag('--gen', 1, 4096), 64)
    .option('-r, --reps <n>', 'alternating repetitions', intFlag('--reps', 1, 100), 3)
    .option('--sequential', 'one engine at a time (when both working sets do not fit in memory together)')
    .option('--json', 'print JSON')
    .action(async (path: string, f: Opts & { json?: boolean }) => {
      const o: Opts = { threads: f.threads, prompt: f.prompt, gen: f.gen, reps: f.reps, sequential: f.sequential };
      const r = await compare(path, o);
      const ratios = {
        prompt: r.moekit.prompt.median / r.llama.prompt.median,
        decode: r.moekit.decode.median / r.llama.decode.median,
        peakRss: r.moekit.peakRss / r.llama.peakRss,
      };
      process.stdout.write(f.json ? `${JSON.stringify({ model: path, ...o, ...r, ratios }, null, 2)}\n` : `${format(path, o, r)}\n`);
    });
  await program.parseAsync(process.argv);
}

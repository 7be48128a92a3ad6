/**
 * `moekit bench <model> [-p 128] [-n 64] [-t 1,2] [-r 3] [--json]`: prompt and decode speed, peak RSS
 * and the decode roofline (memory bandwidth ÷ weight bytes read per generated token).
 *
 * Each repetition uses a fresh sequence: the prompt (real English text, tokenized) is evaluated as one
 * batch, then `n` tokens are decoded greedily one at a time (end-of-generation tokens do not stop it).
 * Each thread count runs in its own child process (its own peak RSS). Exports `benchRep`, `promptTokens`,
 * `decodeBytesPerToken` etc. for bench/vs-llama.ts.
 */
import { fork } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import type { Command } from 'commander';
import { loadAddon, residentData } from '../backend/native.js';
import { loadModel, argmax, type Model } from '../engine/model.js';
import type { DecoderSpec } from '../nn/decoder.js';
import type { ForwardHooks } from '../nn/moe.js';
import { routingHooks, type RoutingControls } from '../routing/controls.js';
import { ActiveExperts, combineHooks } from '../routing/stats.js';
import type { Tensor } from '../tensor.js';
import { formatBytes, intFlag, intListFlag, peakRss } from './args.js';
import { addRoutingOptions, controlsFromFlags, type RoutingFlags } from './routing-flags.js';

interface BenchFlags extends RoutingFlags {
  prompt: number;
  gen: number;
  threads?: number[];
  reps: number;
  json?: boolean;
}

/** median, min, max */
export interface Spread {
  median: number;
  min: number;
  max: number;
}

export interface BenchResult {
  threads: number;
  promptTokens: number;
  genTokens: number;
  /** tokens per second */
  prompt: Spread;
  decode: Spread;
  /** peak resident set size of the process after this setting, bytes */
  peakRss: number;
  /** mean routed experts per token and MoE layer during decode (the model's K unless steered) */
  activeExperts: number;
  roofline: {
    /** measured read bandwidth with this many threads, bytes/s (median of the probes) */
    bandwidth: number;
    /** weight bytes read per generated token (K active experts + dense tensors + one embedding row) */
    bytesPerToken: number;
    /** bandwidth ÷ bytesPerToken, tokens per second */
    tokPerSec: number;
    /** median over windows of PROBE_EVERY decode steps of decode tok/s ÷ (the mean of the probes around the window ÷ bytesPerToken) */
    fraction: number;
  };
}

export function spread(xs: number[]): Spread {
  const s = [...xs].sort((a, b) => a - b);
  const m = s.length >> 1;
  return { median: s.length % 2 ? s[m]! : (s[m - 1]! + s[m]!) / 2, min: s[0]!, max: s[s.length - 1]! };
}

// Public-domain English text (Moby Dick, chapter 1, opening); repeated as needed to make the prompt.
const TEXT =
  'Call me Ishmael. Some years ago—never mind how long precisely—having little or no money in my purse, and ' +
  'nothing particular to interest me on shore, I thought I would sail about a little and see the watery part of ' +
  'the world. It is a way I have of driving off the spleen and regulating the circulation. Whenever I find ' +
  'myself growing grim about the mouth; whenever it is a damp, drizzly November in my soul; whenever I find ' +
  'myself involuntarily pausing before coffin warehouses, and bringing up the rear of every funeral I meet; and ' +
  'especially whenever my hypos get such an upper hand of me, that it requires a strong moral principle to ' +
  'prevent me from deliberately stepping into the street, and methodically knocking people’s hats off—then, I ' +
  'account it high time to get to sea as soon as I can. This is my substitute for pistol and ball. ';

/** `n` prompt token ids of real text (BOS etc. first when the model adds it). */
export function promptTokens(model: Model, n: number): number[] {
  let text = TEXT;
  let ids = model.tokenize(text, { addSpecial: true });
  while (ids.length < n) {
    text += TEXT;
    ids = model.tokenize(text, { addSpecial: true });
  }
  return ids.slice(0, n);
}

function isTensor(v: unknown): v is Tensor {
  return typeof v === 'object' && v !== null && 'type' in v && 'shape' in v && (v as Tensor).data instanceof Uint8Array;
}

/**
 * Weight bytes one decode step reads: every dense tensor of every layer (attention, router, shared/dense
 * FFN, norms), K/E of each routed-expert tensor, one row of the token embedding and the whole output matrix.
 */
export function decodeBytesPerToken(spec: DecoderSpec, activeExperts?: number): number {
  let bytes = spec.outputNorm.byteLength + spec.output.data.byteLength;
  bytes += spec.tokEmbd.data.byteLength / spec.tokEmbd.shape[0]!;
  const walk = (v: unknown, scale: number, seen: Set<unknown>): void => {
    if (v === null || typeof v !== 'object' || seen.has(v)) return;
    seen.add(v);
    if (isTensor(v)) bytes += v.data.byteLength * scale;
    else if (v instanceof Float32Array) bytes += v.byteLength;
    else if (ArrayBuffer.isView(v)) return;
    else for (const x of Object.values(v)) walk(x, scale, seen);
  };
  for (const L of spec.layers) {
    const seen = new Set<unknown>();
    walk(L.attnNorm, 1, seen);
    walk(L.attn, 1, seen);
    walk(L.ffnNorm, 1, seen);
    if (L.ffn.kind === 'dense') walk(L.ffn.w, 1, seen);
    else {
      const { router, gateExps, upExps, downExps, ...rest } = L.ffn.w;
      const E = gateExps.shape[0]!;
      const kOfE = Math.min(activeExperts ?? L.ffn.o.K, E) / E;
      for (const t of [gateExps, upExps, downExps]) walk(t, kOfE, seen);
      walk(router, 1, seen);
      walk(rest, 1, seen);
    }
  }
  return bytes;
}

/** Decode steps between two bandwidth probes in `moekit bench`. */
const PROBE_EVERY = 8;

/**
 * Read bandwidth in bytes/s with `threads` threads: one pass over `bufs` (weights of the model, already
 * resident after the warm-up, so the probe adds nothing to RSS).
 */
export function probeBandwidth(threads: number, bufs: Uint8Array[]): number {
  const addon = loadAddon();
  if (addon.getThreads() < threads) addon.setThreads(threads);
  const bytes = bufs.reduce((n, b) => n + b.byteLength, 0);
  const t0 = process.hrtime.bigint();
  for (const b of bufs) addon.readProbe(b, threads);
  return bytes / (Number(process.hrtime.bigint() - t0) / 1e9);
}

/**
 * The weights every decode step reads (attention projections, dense and shared-expert FFNs, routers, the output
 * matrix), largest first, up to `max` bytes (beyond the caches; 2 vCPUs may sit on two 32 MiB L3s). Only these:
 * a probe over whole expert tensors also reads the rarely routed experts, whose pages the host of a VM may
 * have moved away (measured here: probes of 4-6 GB/s while decode itself read 20 GB/s).
 */
function probeBuffers(spec: DecoderSpec, max = 256 << 20): Uint8Array[] {
  const all: Tensor[] = [spec.output];
  for (const L of spec.layers) {
    all.push(L.attn.q, L.attn.k, L.attn.v, L.attn.o);
    const f = L.ffn.kind === 'dense' ? L.ffn.w : L.ffn.w.shared;
    if (f) all.push(f.gate, f.up, f.down);
    if (L.ffn.kind === 'moe') all.push(L.ffn.w.router);
  }
  // the bytes decode reads: the repacked copy of a tensor that has one (its file pages were dropped)
  const bufs = [...new Set(all.map(residentData))].sort((a, b) => b.byteLength - a.byteLength);
  const out: Uint8Array[] = [];
  let n = 0;
  for (const b of bufs) {
    if (n >= max) break;
    out.push(b);
    n += b.byteLength;
  }
  return out;
}

export interface RepTimes {
  /** seconds for the whole prompt (one batch, incl. the logits of its last token) */
  promptS: number;
  /** seconds for `n` greedy decode steps (without the probes) */
  decodeS: number;
  /** with `probe`: decode tok/s ÷ the mean of the probes before and after, per window of `probe.every` steps */
  windows?: number[];
}

/**
 * One repetition on a fresh sequence: prompt as one batch, then `n` greedy single-token steps. With `probe`,
 * the bandwidth probe also runs before the first step and after every `probe.every` steps (its time is not
 * counted), so each window of steps has a bandwidth measured around it.
 */
export function benchRep(model: Model, prompt: number[], n: number, hooks?: ForwardHooks, probe?: { every: number; run: () => number }): RepTimes {
  const seq = model.newSequence(prompt.length + n + 1);
  const t0 = performance.now();
  let logits = model.step([{ seq, tokens: prompt }], hooks);
  const t1 = performance.now();
  const windows: number[] = [];
  let decodeMs = 0;
  let bw = probe?.run() ?? 0;
  const buf = new Float32Array(logits.length); // as Model.generateTokens: one logits buffer for the decode steps
  for (let i = 0; i < n; ) {
    const steps = Math.min(probe?.every ?? n, n - i);
    const w0 = performance.now();
    for (let j = 0; j < steps; j++) logits = model.step([{ seq, tokens: [argmax(logits)] }], hooks, buf);
    const ms = performance.now() - w0;
    decodeMs += ms;
    i += steps;
    if (probe) {
      const after = probe.run();
      windows.push(steps / (ms / 1000) / ((bw + after) / 2));
      bw = after;
    }
  }
  return { promptS: (t1 - t0) / 1000, decodeS: decodeMs / 1000, windows: probe ? windows : undefined };
}

/**
 * One setting, in this process: load `path` with `threads`, warm up, then `reps` repetitions, with a
 * bandwidth probe over the model's resident weights every PROBE_EVERY decode steps (so the roofline sees the
 * same machine conditions as the run; peak RSS is unaffected). The fraction of the roofline is the median over
 * those windows of decode tok/s × bytes per token ÷ the mean of the probes around the window.
 */
export async function benchSetting(path: string, o: BenchSettingOptions): Promise<BenchResult> {
  const model = await loadModel(path, { threads: o.threads, ctx: o.prompt + o.gen + 1 });
  try {
    const prompt = promptTokens(model, o.prompt);
    // routing controls (issue 3) steer every forward; the counter measures their effect on decode
    const active = new ActiveExperts();
    const steer = routingHooks(o.routing ?? {}, model.hparams);
    const hooks = combineHooks(steer, { onRouting: (l, r, T) => { if (T === 1) active.observe(l, r, T); } });
    benchRep(model, prompt, 4, hooks); // warm-up: a whole prompt touches (nearly) every expert, so weights are paged in
    const bufs = probeBuffers(model.decoder.spec);
    const pr: number[] = [];
    const dr: number[] = [];
    // the probe runs every PROBE_EVERY decode steps (one read of ≥ 256 MiB of the weights decode reads every step: ~5 ms), so each window of steps
    // (~0.2-0.5 s) has a bandwidth measured around it: the host's memory load drifts within seconds, and a
    // roofline from probes taken apart from the decode measures the drift
    const bw: number[] = [];
    const fr: number[] = [];
    const probe = { every: PROBE_EVERY, run: () => { const b = probeBandwidth(o.threads, bufs); bw.push(b); return b; } };
    for (let r = 0; r < o.reps; r++) {
      const t = benchRep(model, prompt, o.gen, hooks, probe);
      pr.push(prompt.length / t.promptS);
      dr.push(o.gen / t.decodeS);
      fr.push(...t.windows!);
    }
    const decode = spread(dr);
    const bandwidth = spread(bw).median;
    const activeExperts = model.hparams.nExpert > 0 ? active.mean() : 0;
    const bytesPerToken = decodeBytesPerToken(model.decoder.spec, model.hparams.nExpert > 0 ? activeExperts : undefined);
    const tokPerSec = bandwidth / bytesPerToken;
    const fraction = spread(fr).median * bytesPerToken;
    return {
      threads: o.threads,
      promptTokens: prompt.length,
      genTokens: o.gen,
      prompt: spread(pr),
      decode,
      peakRss: peakRss(),
      activeExperts,
      roofline: { bandwidth, bytesPerToken, tokPerSec, fraction },
    };
  } finally {
    await model.close();
  }
}

const CHILD_FLAG = '--moekit-bench-child';

/** Each setting in its own child process, so each peak RSS is that setting's own. */
interface BenchSettingOptions {
  threads: number;
  prompt: number;
  gen: number;
  reps: number;
  routing?: RoutingControls;
}

export async function runBench(path: string, o: Omit<BenchSettingOptions, 'threads'> & { threads: number[] }): Promise<BenchResult[]> {
  const out: BenchResult[] = [];
  for (const threads of o.threads) {
    const setting: BenchSettingOptions = { threads, prompt: o.prompt, gen: o.gen, reps: o.reps, routing: o.routing };
    out.push(
      await new Promise<BenchResult>((resolve, reject) => {
        const child = fork(fileURLToPath(import.meta.url), [CHILD_FLAG, path, JSON.stringify(setting)], {
          execArgv: ['--import', 'tsx'],
          stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
        });
        let result: BenchResult | undefined;
        child.on('message', (m: { result?: BenchResult; error?: string }) => {
          if (m.error) reject(new Error(m.error));
          else result = m.result;
        });
        child.on('exit', (code) => (result ? resolve(result) : reject(new Error(`bench child for ${threads} threads exited with code ${code}`))));
      }),
    );
  }
  return out;
}

export function formatBench(path: string, results: BenchResult[]): string {
  const f = (s: Spread) => `${s.median.toFixed(2)} (${s.min.toFixed(2)}–${s.max.toFixed(2)})`;
  const lines = [`model ${path}`, 'threads | prompt tok/s med (min–max) | decode tok/s med (min–max) | active experts | peak RSS | bandwidth | bytes/token | roofline tok/s | of roofline'];
  for (const r of results) {
    lines.push(
      `${String(r.threads).padStart(7)} | pp${r.promptTokens} ${f(r.prompt)} | tg${r.genTokens} ${f(r.decode)} | ${r.activeExperts.toFixed(2)} | ${formatBytes(r.peakRss)} | ` +
        `${(r.roofline.bandwidth / 1e9).toFixed(1)} GB/s | ${formatBytes(r.roofline.bytesPerToken)} | ${r.roofline.tokPerSec.toFixed(2)} | ${(r.roofline.fraction * 100).toFixed(0)}%`,
    );
  }
  return lines.join('\n');
}

export function registerBench(program: Command): void {
  const cmd = program
    .command('bench')
    .description('prompt and decode speed, peak RSS and decode roofline (memory bandwidth ÷ bytes per token)')
    .argument('<model>', '.gguf file or Hugging Face folder')
    .option('-p, --prompt <n>', 'prompt tokens', intFlag('--prompt', 1, 1 << 16), 128)
    .option('-n, --gen <n>', 'decoded tokens', intFlag('--gen', 1, 1 << 16), 64)
    .option('-t, --threads <list>', 'thread counts, comma-separated (default: physical cores)', intListFlag('--threads', 1, 256))
    .option('-r, --reps <n>', 'repetitions per setting', intFlag('--reps', 1, 1000), 3)
    .option('--json', 'print JSON');
  addRoutingOptions(cmd)
    .action(async (path: string, f: BenchFlags) => {
      const { physicalCores } = await import('../backend/index.js');
      const routing = controlsFromFlags(f);
      const results = await runBench(path, { threads: f.threads ?? [physicalCores()], prompt: f.prompt, gen: f.gen, reps: f.reps, routing });
      process.stdout.write(f.json ? `${JSON.stringify({ model: path, results }, null, 2)}\n` : `${formatBench(path, results)}\n`);
    });
}

if (process.argv[2] === CHILD_FLAG && process.send) {
  const send = process.send.bind(process);
  benchSetting(process.argv[3]!, JSON.parse(process.argv[4]!) as BenchSettingOptions)
    .then((result) => send({ result }, () => process.exit(0)))
    .catch((e: Error) => send({ error: e.message }, () => process.exit(1)));
}

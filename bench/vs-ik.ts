/**
 * moekit vs ik_llama.cpp (the fastest known CPU fork of llama.cpp; issue 5's stretch goal) on the same GGUF,
 * same threads. Not a dependency: build its llama-bench beside the project with bench/build-ik.sh.
 *
 *   npm run bench:vs-ik -- <model.gguf> --ik <path/to/llama-bench> [-t 2] [-p 128] [-n 64] [-r 3] [--rounds 3]
 *                          [--ik-args "-rtr 1 -fmoe 1"]
 *
 * A round runs `moekit bench --json` and ik's `llama-bench -o json` once each (the order alternates between
 * rounds, ABBA), each in a fresh process with `-r` repetitions. Both time the prompt as one batch of -p tokens
 * and then -n single-token decode steps after it: ik with `-gp p,n` ("tg n @ pp p"), so both decode with the
 * same context. ik's prompt ids are random, moekit's real text; a random-weight model routes alike for both.
 * Prints each round's medians, the medians over rounds, the ratio moekit ÷ ik and both peak RSS
 * (ik's from /usr/bin/time, where present).
 */
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { intFlag } from '../src/cli/args.js';
import { spread } from '../src/cli/bench.js';

interface Round {
  prompt: number;
  decode: number;
  rss?: number;
}

const moekitBin = fileURLToPath(new URL('../bin/moekit.js', import.meta.url));

function run(cmd: string, args: string[]): { stdout: string; stderr: string } {
  const r = spawnSync(cmd, args, { encoding: 'utf8', maxBuffer: 64 << 20 });
  if (r.status !== 0) throw new Error(`${cmd} ${args.join(' ')} exited with ${r.status}:\n${r.stderr.slice(-2000)}`);
  return r;
}

const median = (xs: number[]) => spread(xs).median;

function moekitRound(model: string, t: number, p: number, n: number, reps: number): Round {
  const out = JSON.parse(run(process.execPath, [moekitBin, 'bench', model, '-t', String(t), '-p', String(p), '-n', String(n), '-r', String(reps), '--json']).stdout);
  const r = out.results[0];
  return { prompt: r.prompt.median, decode: r.decode.median, rss: r.peakRss };
}

function ikRound(ik: string, extra: string[], model: string, t: number, p: number, n: number, reps: number): Round {
  const args = ['-m', model, '-t', String(t), '-p', String(p), '-n', '0', '-gp', `${p},${n}`, '-r', String(reps), '-o', 'json', ...extra];
  const r = existsSync('/usr/bin/time') ? run('/usr/bin/time', ['-f', 'maxrss_kb %M', ik, ...args]) : run(ik, args);
  const tests = JSON.parse(r.stdout) as { n_prompt: number; n_gen: number; samples_ts: number[] }[];
  const pp = tests.find((x) => x.n_gen === 0 && x.n_prompt === p), tg = tests.find((x) => x.n_gen === n);
  if (!pp || !tg) throw new Error(`llama-bench printed no pp${p} and tg${n}@pp${p} results: ${r.stdout.slice(0, 500)}`);
  const kb = /maxrss_kb (\d+)/.exec(r.stderr);
  return { prompt: median(pp.samples_ts), decode: median(tg.samples_ts), rss: kb ? Number(kb[1]) * 1024 : undefined };
}

const fmt = (x: number) => x.toFixed(2);
const gib = (b?: number) => (b === undefined ? '?' : `${(b / 2 ** 30).toFixed(2)} GiB`);
/** the largest peak RSS of the rounds that have one */
const maxRss = (rs: Round[]) => {
  const known = rs.flatMap((r) => (r.rss === undefined ? [] : [r.rss]));
  return known.length ? Math.max(...known) : undefined;
};

new Command('vs-ik')
  .argument('<model>', 'GGUF file')
  .requiredOption('--ik <path>', "ik_llama.cpp's llama-bench (bench/build-ik.sh builds it)")
  .option('-t, --threads <n>', 'threads', intFlag('--threads', 1, 256), 2)
  .option('-p, --prompt <n>', 'prompt tokens', intFlag('--prompt', 1, 4096), 128)
  .option('-n, --gen <n>', 'decoded tokens', intFlag('--gen', 1, 4096), 64)
  .option('-r, --reps <n>', 'repetitions per process', intFlag('--reps', 1, 100), 3)
  .option('--rounds <n>', 'alternating rounds', intFlag('--rounds', 1, 100), 3)
  .option('--ik-args <args>', "extra llama-bench flags (run-time repacking, fused MoE up/gate)", '-rtr 1 -fmoe 1')
  .action((model: string, o: { ik: string; threads: number; prompt: number; gen: number; reps: number; rounds: number; ikArgs: string }) => {
    if (!existsSync(model)) throw new Error(`${model}: no such file`);
    if (!existsSync(o.ik)) throw new Error(`${o.ik}: no such file; build it with bench/build-ik.sh <ik_llama.cpp source dir>`);
    const extra = o.ikArgs.split(/\s+/).filter(Boolean);
    const m: Round[] = [], k: Round[] = [];
    for (let i = 0; i < o.rounds; i++) {
      const order = i % 2 === 0 ? ['moekit', 'ik'] : ['ik', 'moekit'];
      for (const e of order) {
        const t0 = new Date().toISOString().slice(11, 19);
        const r = e === 'moekit' ? moekitRound(model, o.threads, o.prompt, o.gen, o.reps) : ikRound(o.ik, extra, model, o.threads, o.prompt, o.gen, o.reps);
        (e === 'moekit' ? m : k).push(r);
        process.stdout.write(`round ${i + 1} ${t0} ${e.padEnd(6)} pp${o.prompt} ${fmt(r.prompt)} tok/s, tg${o.gen}@pp${o.prompt} ${fmt(r.decode)} tok/s, peak RSS ${gib(r.rss)}\n`);
      }
    }
    const row = (name: string, f: (r: Round) => number) => {
      const a = m.map(f), b = k.map(f), ratios = a.map((x, i) => x / b[i]!);
      const s = spread(ratios);
      return `| ${name} | ${fmt(median(a))} | ${fmt(median(b))} | ${fmt(median(a) / median(b))} | ${fmt(s.median)} (${fmt(s.min)}–${fmt(s.max)}) |`;
    };
    process.stdout.write(
      `\n${model}, ${o.threads} threads, ik_llama.cpp flags: ${extra.join(' ') || '(none)'}\n` +
        `| figure | moekit med | ik_llama.cpp med | ratio of medians | per-round ratio med (min–max) |\n|---|---|---|---|---|\n` +
        `${row(`prompt tok/s (pp${o.prompt})`, (r) => r.prompt)}\n${row(`decode tok/s (tg${o.gen}@pp${o.prompt})`, (r) => r.decode)}\n` +
        `| peak RSS | ${gib(maxRss(m))} | ${gib(maxRss(k))} | | |\n`,
    );
  })
  .parseAsync()
  .catch((e: Error) => {
    process.stderr.write(`vs-ik: ${e.message}\n`);
    process.exit(1);
  });

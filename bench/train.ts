/**
 * Training throughput: moekit's trainer vs PyTorch CPU on the same model, batch and threads.
 *
 *   npm run bench:train -- [--configs configs/tiny.json,configs/default.json] [-t 2] [-r 3] [--seconds 3] [--json]
 *
 * For each config: the model section (vocab = tokenizer.vocabSize), batch train.batchSize × seqLen,
 * AdamW + global-norm clipping as configured, on seeded random tokens (no corpus, no tokenizer).
 * moekit runs in this process through the trainer's own pieces (MoeLM, AdamW, trainStep and
 * `trainKernels`, the switch train() uses), so it measures whatever kernels the trainer runs.
 * PyTorch (scripts/torch_train_bench.py, float32, torch.set_num_threads(threads)) builds the same
 * architecture. Each repetition runs one warm-up step then as many steps as fit in --seconds (at
 * least 2); repetitions alternate moekit / PyTorch (ABBA order), so load on a shared machine hits both.
 * Prints training tokens/s, median (min–max), and the ratio moekit ÷ PyTorch.
 *
 * Which BLAS PyTorch gets matters: Debian's python3-torch is built with BLAS_INFO=generic and links
 * libblas.so.3, which is the netlib reference BLAS unless an optimised one is installed (measured
 * ~2.6 GFLOP/s for a 1024×128×4096 GEMM on one thread vs ~10 with OpenBLAS). `--torch-blas <dir>`
 * runs PyTorch with another libblas.so.3 without touching the system, e.g. OpenBLAS unpacked from
 * its Debian package:
 *   apt-get download libopenblas0-pthread && dpkg -x libopenblas0-pthread_*.deb .cache/openblas
 *   npm run bench:train -- --torch-blas .cache/openblas/usr/lib/x86_64-linux-gnu/openblas-pthread
 */
import { execFileSync } from 'node:child_process';
import { existsSync, realpathSync } from 'node:fs';
import { basename, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { Command } from 'commander';
import { physicalCores } from '../src/backend/index.js';
import { intFlag, floatFlag } from '../src/cli/args.js';
import { Rng } from '../src/testing/generate-model.js';
import { MoeLM, type ModelConfig } from '../src/train/model.js';
import { AdamW } from '../src/train/optim.js';
import { trainStep } from '../src/train/step.js';
import { readTrainConfig, trainKernels, type TrainConfig } from '../src/train/trainer.js';

const root = resolve(fileURLToPath(import.meta.url), '../..');

interface Opts {
  configs: string;
  threads: number;
  reps: number;
  seconds: number;
  python: string;
  torchBlas?: string;
  json?: boolean;
}

interface Rep {
  tokS: number;
  steps: number;
  seconds: number;
}

function setup(cfg: TrainConfig): { model: ModelConfig; B: number; S: number } {
  const model = { ...cfg.model, vocab: cfg.tokenizer.vocabSize } as ModelConfig;
  return { model, B: cfg.train.batchSize, S: cfg.model.seqLen };
}

/** A moekit runner: one model and optimizer, kept across repetitions (like one long run). */
function moekitRunner(cfg: TrainConfig, threads: number): { rep(seconds: number): Rep; close(): void; info: string; kernels: string } {
  const { model: mc, B, S } = setup(cfg);
  const model = new MoeLM(mc);
  model.init(cfg.train.seed);
  const opt = new AdamW(model.layout, model.nParams, { ...cfg.optim, steps: 1_000_000 });
  const kernels = trainKernels(threads);
  const rng = new Rng(1);
  const V = model.config.vocab;
  let it = 0;
  const step = () => {
    const inputs = new Int32Array(B * S);
    const targets = new Int32Array(B * S);
    for (let i = 0; i < B * S; i++) { inputs[i] = Math.floor(rng.uniform() * V); targets[i] = Math.floor(rng.uniform() * V); }
    trainStep(model, opt, inputs, targets, B, it++);
  };
  return {
    info: `${(model.nParams / 1e6).toFixed(2)}M params, ${model.config.nExpert} experts top-${model.config.router.K}, B ${B} × S ${S}`,
    kernels: kernels.label,
    rep(seconds) {
      step(); // warm-up
      const t0 = performance.now();
      let n = 0;
      while (n < 2 || performance.now() - t0 < seconds * 1000) { step(); n++; }
      const s = (performance.now() - t0) / 1000;
      return { tokS: (n * B * S) / s, steps: n, seconds: s };
    },
    close: kernels.release,
  };
}

function torchRep(cfg: TrainConfig, threads: number, seconds: number, python: string, blas?: string): Rep {
  const { model, B } = setup(cfg);
  const arg = JSON.stringify({ model, B, threads, seconds, minSteps: 2, warmup: 1, optim: cfg.optim });
  const env: NodeJS.ProcessEnv = { ...process.env, OMP_NUM_THREADS: String(threads), OPENBLAS_NUM_THREADS: String(threads) };
  if (blas) env.LD_LIBRARY_PATH = blas + (process.env.LD_LIBRARY_PATH ? `:${process.env.LD_LIBRARY_PATH}` : '');
  const out = execFileSync(python, [resolve(root, 'scripts/torch_train_bench.py'), arg], { encoding: 'utf8', env, stdio: ['ignore', 'pipe', 'inherit'] });
  const r = JSON.parse(out.trim().split('\n').pop()!) as Rep;
  return r;
}

/** Where the system libblas.so.3 points (Debian alternatives), to label the PyTorch numbers. */
function systemBlas(): string {
  try {
    const p = realpathSync('/lib/x86_64-linux-gnu/libblas.so.3');
    return /openblas/.test(p) ? `OpenBLAS, ${p}` : /blis/.test(p) ? `BLIS, ${p}` : /mkl/.test(p) ? `MKL, ${p}` : `reference BLAS, ${p}`;
  } catch {
    return 'unknown';
  }
}

const median = (xs: number[]) => { const s = [...xs].sort((a, b) => a - b); const m = s.length >> 1; return s.length % 2 ? s[m] : (s[m - 1] + s[m]) / 2; };
const fmt = (xs: number[]) => `${median(xs).toFixed(0)} (${Math.min(...xs).toFixed(0)}–${Math.max(...xs).toFixed(0)})`;

async function main(): Promise<void> {
  const o = new Command()
    .option('--configs <list>', 'comma-separated training configs', 'configs/tiny.json,configs/default.json')
    .option('-t, --threads <n>', 'threads for both (default: physical cores)', intFlag('--threads', 1, 1024), physicalCores())
    .option('-r, --reps <n>', 'repetitions per engine', intFlag('--reps', 1, 100), 3)
    .option('--seconds <s>', 'timed seconds per repetition', floatFlag('--seconds', 0.1, 3600), 3)
    .option('--python <path>', 'python with torch', '/usr/bin/python3')
    .option('--torch-blas <dir>', 'folder with the libblas.so.3 PyTorch should load (e.g. unpacked OpenBLAS; default: the system one)')
    .option('--json', 'print JSON')
    .parse(process.argv)
    .opts<Opts>();
  if (o.torchBlas && !existsSync(join(o.torchBlas, 'libblas.so.3'))) throw new Error(`--torch-blas ${o.torchBlas}: no libblas.so.3 there`);
  const blas = o.torchBlas ? `BLAS from ${o.torchBlas}` : `system BLAS (${systemBlas()})`;
  const results = [];
  for (const path of o.configs.split(',')) {
    const cfg = readTrainConfig(path);
    const m = moekitRunner(cfg, o.threads);
    const ours: Rep[] = [];
    const theirs: Rep[] = [];
    try {
      for (let r = 0; r < o.reps; r++) {
        // ABBA: moekit first on even repetitions, PyTorch first on odd ones
        const order = r % 2 === 0 ? ['moekit', 'torch'] : ['torch', 'moekit'];
        for (const e of order) {
          if (e === 'moekit') ours.push(m.rep(o.seconds));
          else theirs.push(torchRep(cfg, o.threads, o.seconds, o.python, o.torchBlas));
        }
        if (!o.json) process.stderr.write(`  ${basename(path)} rep ${r + 1}: moekit ${ours[r].tokS.toFixed(0)} tok/s (${ours[r].steps} steps), PyTorch ${theirs[r].tokS.toFixed(0)} tok/s (${theirs[r].steps} steps)\n`);
      }
    } finally {
      m.close();
    }
    const mk = ours.map((x) => x.tokS);
    const pt = theirs.map((x) => x.tokS);
    results.push({ config: path, model: m.info, kernels: m.kernels, threads: o.threads, moekitTokS: median(mk), torchTokS: median(pt), ratio: median(mk) / median(pt), moekit: ours, torch: theirs, line: `${basename(path).padEnd(14)} ${m.info.padEnd(44)} moekit ${fmt(mk).padEnd(20)} PyTorch ${fmt(pt).padEnd(20)} ratio ${(median(mk) / median(pt)).toFixed(2)}×` });
  }
  if (o.json) console.log(JSON.stringify(results.map(({ line: _, ...r }) => ({ ...r, torchBlas: blas })), null, 1));
  else {
    console.log(`training tokens/s, ${o.threads} threads, median (min–max) of ${o.reps} alternating repetitions of ≥ ${o.seconds} s`);
    console.log(`moekit: ${results[0]?.kernels}; PyTorch: ${blas}`);
    for (const r of results) console.log(r.line);
  }
}

main().catch((e) => {
  process.stderr.write(`bench:train: ${(e as Error).message}\n`);
  process.exit(1);
});

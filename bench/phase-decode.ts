/**
 * Where a decode step's time goes: wraps the model's backend calls with timers and prints ms per token for
 * each kind of call (MoE FFN split by down-projection type, the output matrix apart from the other matmuls),
 * their median and p90, the TypeScript remainder (and the gap before each kind of call), page faults and context
 * switches; and per MoE layer the median call time next to how many of its experts the previous token also used
 * (on a host that serves rarely read pages more slowly, layers whose experts repeat run faster).
 *   node --import tsx bench/phase-decode.ts <model.gguf> [-t 2] [-p 16] [-n 128]
 */
import { argmax, loadModel } from '../src/engine/model.js';
import { benchRep, promptTokens } from '../src/cli/bench.js';
import type { Backend } from '../src/backend/backend.js';
import { typeName } from '../src/tensor.js';
import { existsSync, readFileSync } from 'node:fs';

const argv = process.argv.slice(2);
const flag = (f: string, d: number): number => (argv.includes(f) ? Number(argv[argv.indexOf(f) + 1]) : d);
const threads = flag('-t', 2), P = flag('-p', 16), n = flag('-n', 128);
const model = await loadModel(argv[0]!, { threads, ctx: P + n + 8 });
const prompt = promptTokens(model, P);
benchRep(model, prompt, 4); // warm-up: first-use repacks and prefaults

const be = model.decoder.be as unknown as Record<string, (a: never) => unknown>;
const V = model.decoder.V;
const samples = new Map<string, number[]>();
/** TypeScript time before each kind of call: since the previous backend call returned */
const gaps = new Map<string, number[]>();
let lastEnd = -1;
/** per moeFfn call in order: its time and expert ids */
const moeCalls: { ms: number; ids: number[] }[] = [];
for (const m of ['matmul', 'matmuls', 'moeFfn', 'attention', 'getRows', 'qkPrep', 'addNorm'] as const satisfies readonly (keyof Backend)[]) {
  const f = be[m]!.bind(be);
  be[m] = ((a: { w?: { shape: number[] }; down?: { type: number }; outs?: unknown[] }) => {
    const t0 = performance.now();
    const r = f(a as never);
    const t1 = performance.now();
    const key =
      m === 'matmul' && a.w?.shape[0] === V ? 'matmul (output)' : m === 'moeFfn' ? `moeFfn (down ${typeName(a.down!.type)})` : m === 'matmuls' ? `matmuls (${a.outs!.length})` : m;
    (samples.get(key) ?? samples.set(key, []).get(key)!).push(t1 - t0);
    if (m === 'moeFfn') moeCalls.push({ ms: t1 - t0, ids: [...(a as unknown as { ids: Int32Array }).ids] });
    if (lastEnd >= 0) (gaps.get(key) ?? gaps.set(key, []).get(key)!).push(t0 - lastEnd);
    lastEnd = t1;
    return r;
  }) as never;
}

const seq = model.newSequence(prompt.length + n + 1);
let logits = model.step([{ seq, tokens: prompt }]);
const buf = new Float32Array(logits.length);
samples.clear();
gaps.clear();
moeCalls.length = 0;
const ru0 = process.resourceUsage();
const t0 = performance.now();
let stepTail = 0;
for (let i = 0; i < n; i++) {
  lastEnd = -1;
  logits = model.step([{ seq, tokens: [argmax(logits)] }], undefined, buf);
  stepTail += performance.now() - lastEnd;
}
const total = (performance.now() - t0) / n;
const ru1 = process.resourceUsage();

console.log(`${argv[0]}: ${threads} threads, ${n} decode steps after a ${P}-token prompt: ${(1000 / total).toFixed(2)} tok/s`);
let inBackend = 0;
for (const [k, xs] of [...samples].sort((a, b) => b[1].reduce((s, x) => s + x, 0) - a[1].reduce((s, x) => s + x, 0))) {
  const sum = xs.reduce((s, x) => s + x, 0) / n;
  inBackend += sum;
  const q = [...xs].sort((a, b) => a - b);
  console.log(`${k.padEnd(22)} ${sum.toFixed(3)} ms/token (${((100 * sum) / total).toFixed(1)}%)  per call median ${q[q.length >> 1]!.toFixed(3)} p90 ${q[Math.floor(q.length * 0.9)]!.toFixed(3)} ms, ${xs.length} calls`);
}
console.log(`TypeScript between calls ${(total - inBackend).toFixed(3)} ms/token (${((100 * (total - inBackend)) / total).toFixed(1)}%); step ${total.toFixed(3)} ms`);
console.log(`  of which before each kind of call (ms/token): ${[...gaps].map(([k, xs]) => `${k} ${(xs.reduce((s, x) => s + x, 0) / n).toFixed(3)}`).join(', ')}; after the last call ${(stepTail / n).toFixed(3)}`);
for (const [k, xs] of gaps) { const q = [...xs].sort((a, b) => a - b); console.log(`  gap before ${k}: median ${(q[q.length >> 1]! * 1e3).toFixed(1)} us, p90 ${(q[Math.floor(q.length * 0.9)]! * 1e3).toFixed(1)} us, max ${(q[q.length - 1]! * 1e3).toFixed(0)} us`); }
const nL = moeCalls.length / n;
if (nL >= 1 && Number.isInteger(nL)) {
  const layers = Array.from({ length: nL }, (_, l) => moeCalls.filter((_, i) => i % nL === l));
  const reuse = layers.map((cs) => {
    let hit = 0, all = 0;
    for (let s = 1; s < cs.length; s++) for (const e of cs[s]!.ids) { all++; if (cs[s - 1]!.ids.includes(e)) hit++; }
    return all ? hit / all : 0;
  });
  const med = (xs: number[]): number => [...xs].sort((a, b) => a - b)[xs.length >> 1]!;
  console.log('moeFfn per layer: median ms / share of its experts the previous token also used');
  console.log('  ' + layers.map((cs, l) => `${l}: ${med(cs.map((c) => c.ms)).toFixed(2)}/${(100 * reuse[l]!).toFixed(0)}%`).join('  '));
}
// Linux: how much of the process's memory sits in transparent huge pages (weight copies ask for them)
if (existsSync('/proc/self/smaps_rollup')) {
  const kb = (k: string): number => Number(/^(\S+):\s+(\d+) kB/m.exec(readFileSync('/proc/self/smaps_rollup', 'utf8').split('\n').find((l) => l.startsWith(k + ':')) ?? '')?.[2] ?? 0);
  console.log(`RSS ${(kb('Rss') / 2 ** 20).toFixed(2)} GiB, of it in huge pages ${(kb('AnonHugePages') / 2 ** 20).toFixed(2)} GiB`);
}
console.log(`page faults minor ${ru1.minorPageFault - ru0.minorPageFault} major ${ru1.majorPageFault - ru0.majorPageFault}; context switches voluntary ${ru1.voluntaryContextSwitches - ru0.voluntaryContextSwitches} involuntary ${ru1.involuntaryContextSwitches - ru0.involuntaryContextSwitches}`);
await model.close();

/**
 * Where a decode step's time goes: wraps the model's backend calls with timers and prints ms per token for
 * each kind of call (MoE FFN split by down-projection type, the output matrix apart from the other matmuls),
 * their median and p90, the TypeScript remainder, page faults and context switches.
 *   node --import tsx bench/phase-decode.ts <model.gguf> [-t 2] [-p 16] [-n 128]
 */
import { argmax, loadModel } from '../src/engine/model.js';
import { benchRep, promptTokens } from '../src/cli/bench.js';
import type { Backend } from '../src/backend/backend.js';
import { typeName } from '../src/tensor.js';

const argv = process.argv.slice(2);
const flag = (f: string, d: number): number => (argv.includes(f) ? Number(argv[argv.indexOf(f) + 1]) : d);
const threads = flag('-t', 2), P = flag('-p', 16), n = flag('-n', 128);
const model = await loadModel(argv[0]!, { threads, ctx: P + n + 8 });
const prompt = promptTokens(model, P);
benchRep(model, prompt, 4); // warm-up: first-use repacks and prefaults

const be = model.decoder.be as unknown as Record<string, (a: never) => unknown>;
const V = model.decoder.V;
const samples = new Map<string, number[]>();
for (const m of ['matmul', 'matmuls', 'moeFfn', 'attention', 'getRows'] as const satisfies readonly (keyof Backend)[]) {
  const f = be[m]!.bind(be);
  be[m] = ((a: { w?: { shape: number[] }; down?: { type: number } }) => {
    const t0 = performance.now();
    const r = f(a as never);
    const dt = performance.now() - t0;
    const key = m === 'matmul' && a.w?.shape[0] === V ? 'matmul (output)' : m === 'moeFfn' ? `moeFfn (down ${typeName(a.down!.type)})` : m;
    (samples.get(key) ?? samples.set(key, []).get(key)!).push(dt);
    return r;
  }) as never;
}

const seq = model.newSequence(prompt.length + n + 1);
let logits = model.step([{ seq, tokens: prompt }]);
samples.clear();
const ru0 = process.resourceUsage();
const t0 = performance.now();
for (let i = 0; i < n; i++) logits = model.step([{ seq, tokens: [argmax(logits)] }]);
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
console.log(`page faults minor ${ru1.minorPageFault - ru0.minorPageFault} major ${ru1.majorPageFault - ru0.majorPageFault}; context switches voluntary ${ru1.voluntaryContextSwitches - ru0.voluntaryContextSwitches} involuntary ${ru1.involuntaryContextSwitches - ru0.involuntaryContextSwitches}`);
await model.close();

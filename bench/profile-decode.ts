/**
 * A steady decode loop for profilers (perf): load, warm up with one full prompt, then decode.
 *   perf record -o /tmp/perf.data -- node --import tsx bench/profile-decode.ts <model.gguf> [-t 2] [-p 128] [-n 64]
 */
import { benchRep, promptTokens } from '../src/cli/bench.js';
import { loadModel } from '../src/engine/model.js';

const argv = process.argv.slice(2);
const flag = (f: string, d: number): number => (argv.includes(f) ? Number(argv[argv.indexOf(f) + 1]) : d);
const path = argv[0]!;
const threads = flag('-t', 2), P = flag('-p', 128), n = flag('-n', 64);
const model = await loadModel(path, { threads, ctx: P + n + 1 });
const prompt = promptTokens(model, P);
benchRep(model, prompt, 4);
const t = benchRep(model, prompt, n);
process.stdout.write(`prompt ${(P / t.promptS).toFixed(2)} tok/s, decode ${(n / t.decodeS).toFixed(2)} tok/s\n`);
await model.close();

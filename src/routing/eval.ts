/**
 * Quality of routing settings: perplexity over sliding windows, and against a reference the numbers
 * llama.cpp's perplexity tool reports in `--kl-divergence` mode (tools/perplexity/perplexity.cpp):
 * mean KL(reference ‖ setting), top-1 agreement ("Same top p"), Δppl = ppl(setting) − ppl(reference).
 *
 * Windows: the text's tokens x[0..N) are cut into windows of `ctx` tokens starting every `stride` tokens
 * (only whole windows). Each window scores its last `stride` predictions, so every scored token is scored
 * once and sees at least ctx − stride tokens of context; the first ctx − stride tokens are context only.
 * With stride = ctx/2 this is llama.cpp's rule of scoring only the second half of each window. As in
 * llama.cpp, the first token of each window is replaced by BOS when the model adds one.
 */
import type { Model } from '../engine/model.js';
import { UsageError } from '../errors.js';
import type { ForwardHooks } from '../nn/moe.js';
import { checkControls, hasControls, makePolicy, type RoutingControls } from './controls.js';
import { ActiveExperts } from './stats.js';

export interface EvalOptions {
  /** window length in tokens (default 512) */
  ctx?: number;
  /** tokens between window starts = tokens scored per window (default ctx/2) */
  stride?: number;
  /** evaluate at most this many windows (default all) */
  maxWindows?: number;
}

/** One configuration to evaluate: routing controls on `model`, or another model. */
export interface EvalSetting {
  label: string;
  controls?: RoutingControls;
  /** evaluate this model instead (same vocabulary) */
  model?: Model;
}

export interface EvalRow {
  label: string;
  /** exp(mean NLL) over scored tokens */
  ppl: number;
  /** mean negative log-likelihood (nats) */
  nll: number;
  /** mean routed experts per token, averaged over MoE layers */
  activeExperts: number;
  /** mean routed experts per token for each MoE layer */
  activePerLayer: Record<number, number>;
  /** tokens processed per second (forward passes over whole windows) */
  tokPerSec: number;
  /** against the reference (absent on the reference row) */
  vsRef?: { kl: number; top1: number; dppl: number };
}

export interface EvalResult {
  tokens: number;
  windows: number;
  scored: number;
  ctx: number;
  stride: number;
  /** rows[0] is the reference */
  rows: EvalRow[];
}

export function windowPlan(N: number, ctx: number, stride: number): number[] {
  if (!Number.isInteger(ctx) || ctx < 2) throw new UsageError(`--ctx must be an integer ≥ 2, got ${ctx}`);
  if (!Number.isInteger(stride) || stride < 1 || stride > ctx - 1) throw new UsageError(`--stride must be an integer in 1..${ctx - 1} (below --ctx ${ctx}), got ${stride}`);
  if (N < ctx) throw new UsageError(`the text has ${N} tokens, fewer than one window (--ctx ${ctx}); give a longer --data file or a smaller --ctx`);
  const starts: number[] = [];
  for (let s = 0; s + ctx <= N; s += stride) starts.push(s);
  return starts;
}

/** log-softmax of row `r` of logits [*, V], in float64 */
export function logSoftmax(logits: Float32Array, r: number, V: number): Float64Array {
  const out = new Float64Array(V);
  let max = -Infinity;
  for (let i = 0; i < V; i++) if (logits[r * V + i] > max) max = logits[r * V + i];
  let sum = 0;
  for (let i = 0; i < V; i++) sum += Math.exp(logits[r * V + i] - max);
  const lse = max + Math.log(sum);
  for (let i = 0; i < V; i++) out[i] = logits[r * V + i] - lse;
  return out;
}

/**
 * Evaluate `settings` on token ids; the first setting is the reference (pass `{ label: 'default' }` for the
 * model's own routing). Runs window by window so only the reference's scored rows are kept.
 */
export async function evaluate(model: Model, ids: number[], settings: EvalSetting[], opts: EvalOptions = {}): Promise<EvalResult> {
  if (settings.length === 0) throw new UsageError('evaluate: give at least one setting (the first is the reference)');
  const ctx = opts.ctx ?? 512;
  const stride = opts.stride ?? Math.floor(ctx / 2);
  let starts = windowPlan(ids.length, ctx, stride);
  if (opts.maxWindows !== undefined) starts = starts.slice(0, Math.max(1, opts.maxWindows));
  const V = model.decoder.V;
  const shape = { nLayer: model.hparams.nLayer, E: model.hparams.nExpert, K: model.hparams.nExpertUsed };
  const runs = settings.map((s) => {
    const m = s.model ?? model;
    if (m.decoder.V !== V) throw new UsageError(`${s.label}: its vocabulary has ${m.decoder.V} tokens, the model's has ${V}; a reference model must share the tokenizer`);
    if (s.controls && hasControls(s.controls)) checkControls(s.controls, s.model ? { nLayer: m.hparams.nLayer, E: m.hparams.nExpert, K: m.hparams.nExpertUsed } : shape);
    const active = new ActiveExperts();
    const hooks: ForwardHooks = { onRouting: active.observe, routePolicy: s.controls && hasControls(s.controls) ? makePolicy(s.controls) : undefined };
    return { s, m, hooks, active, ms: 0, nll: 0, kl: 0, top1: 0 };
  });
  const bos = model.tokenize('', { addSpecial: true });
  const first = ctx - 1 - stride; // local index of the first scored prediction
  // warm up (page in mmapped weights) so the first setting's speed is not penalised
  for (const m of new Set(runs.map((r) => r.m))) await m.forward(ids.slice(0, Math.min(ctx, 64)));
  let scored = 0;
  for (const s0 of starts) {
    const win = ids.slice(s0, s0 + ctx);
    if (bos.length === 1) win[0] = bos[0];
    let ref: Float64Array[] = [];
    for (const [k, run] of runs.entries()) {
      const t0 = performance.now();
      const logits = await run.m.forward(win, { hooks: run.hooks });
      run.ms += performance.now() - t0;
      const rows: Float64Array[] = [];
      for (let i = first; i < ctx - 1; i++) {
        const lp = logSoftmax(logits, i, V);
        run.nll -= lp[win[i + 1]];
        if (k === 0) { rows.push(lp); continue; }
        const rp = ref[i - first];
        let kl = 0;
        let am = 0;
        let rm = 0;
        for (let v = 0; v < V; v++) {
          if (rp[v] > -Infinity) kl += Math.exp(rp[v]) * (rp[v] - lp[v]);
          if (lp[v] > lp[am]) am = v;
          if (rp[v] > rp[rm]) rm = v;
        }
        run.kl += kl;
        if (am === rm) run.top1++;
      }
      if (k === 0) ref = rows;
    }
    scored += stride;
  }
  const refNll = runs[0].nll / scored;
  const rows: EvalRow[] = runs.map((r, k) => {
    const nll = r.nll / scored;
    const row: EvalRow = {
      label: r.s.label,
      ppl: Math.exp(nll),
      nll,
      activeExperts: r.active.mean(),
      activePerLayer: Object.fromEntries(r.active.perLayer()),
      tokPerSec: (starts.length * ctx * 1000) / r.ms,
    };
    if (k > 0) row.vsRef = { kl: r.kl / scored, top1: r.top1 / scored, dppl: Math.exp(nll) - Math.exp(refNll) };
    return row;
  });
  return { tokens: ids.length, windows: starts.length, scored, ctx, stride, rows };
}

/**
 * Routing flags shared by `run`, `bench` and `eval`: one function adds them, one turns parsed flags into
 * hooks (with an active-experts counter) and a generator (plain or SCMoE).
 */
import type { Command } from 'commander';
import type { GenerateOptions, Model } from '../engine/model.js';
import type { ForwardHooks } from '../nn/moe.js';
import { hasControls, routingHooks, type RoutingControls } from '../routing/controls.js';
import { parseExperts, parsePairs, parseThreshold, parseTopP, readSkipFile } from '../routing/parse.js';
import { checkScmoe, scmoeGenerate } from '../routing/scmoe.js';
import { ActiveExperts } from '../routing/stats.js';
import { floatFlag, intFlag } from './args.js';

export interface RoutingFlags {
  experts?: number | Record<number, number>;
  routeTopP?: NonNullable<RoutingControls['topP']>;
  routeThreshold?: NonNullable<RoutingControls['threshold']>;
  maskExperts?: Array<[number, number]>;
  forceExperts?: Array<[number, number]>;
  skip?: NonNullable<RoutingControls['skip']>;
  scmoe?: boolean;
  scmoeAlpha?: number;
  scmoeBeta?: number;
  scmoeRank?: number;
}

const appendPairs = (flag: string) => (v: string, prev: Array<[number, number]> = []) => [...prev, ...parsePairs(v, flag)];

/** Add the routing-control flags to a command. `scmoe`: also the self-contrast decoding flags (generation only). */
export function addRoutingOptions(cmd: Command, opts: { scmoe?: boolean } = {}): Command {
  cmd
    .option('--experts <k>', 'routed experts per token: a count, or per layer ranges like 0-7:8,8-15:4', (v) => parseExperts(v))
    .option('--route-top-p <p[,minK[,maxK]]>', 'top-p dynamic routing: experts until their cumulative probability reaches p', (v) => parseTopP(v))
    .option('--route-threshold <t[,kMin]>', 'threshold routing (SER): keep experts with p ≥ t·p_max, at least kMin', (v) => parseThreshold(v))
    .option('--mask-experts <l:e,...>', 'never route to these layer:expert pairs (repeatable)', appendPairs('--mask-experts'))
    .option('--force-experts <l:e,...>', 'always route to these layer:expert pairs (repeatable)', appendPairs('--force-experts'))
    .option('--skip <thresholds.json>', 'skip experts below per-layer gate-weight thresholds (from `moekit calibrate`)', (v) => readSkipFile(v));
  if (opts.scmoe) {
    cmd
      .option('--scmoe', 'self-contrast decoding (SCMoE): contrast the model with its rank-r expert alone')
      .option('--scmoe-alpha <a>', 'SCMoE plausibility α', floatFlag('--scmoe-alpha', 0, 1, { minExclusive: true }), 0.1)
      .option('--scmoe-beta <b>', 'SCMoE contrast strength β', floatFlag('--scmoe-beta', 0, 100), 0.5)
      .option('--scmoe-rank <r>', 'SCMoE weak expert rank (0-based)', intFlag('--scmoe-rank', 0, 1 << 16), 2);
  }
  return cmd;
}

export function controlsFromFlags(f: RoutingFlags): RoutingControls {
  const c: RoutingControls = {};
  if (f.experts !== undefined) c.experts = f.experts;
  if (f.routeTopP) c.topP = f.routeTopP;
  if (f.routeThreshold) c.threshold = f.routeThreshold;
  if (f.maskExperts?.length) c.mask = f.maskExperts;
  if (f.forceExperts?.length) c.force = f.forceExperts;
  if (f.skip) c.skip = f.skip;
  return c;
}

export interface RoutingSession {
  controls: RoutingControls;
  /** steering policy (if any) and the active-experts counter */
  hooks: ForwardHooks;
  active: ActiveExperts;
  /** generate text with these flags (SCMoE when --scmoe; it ignores gen.sequence and re-reads the prompt) */
  generate(prompt: string, gen: GenerateOptions): AsyncGenerator<string, unknown>;
  /** one stderr line: mean active experts per token, overall and per layer ('' when no routing flag is set) */
  report(): string;
}

/** Turn parsed flags into hooks for `model`; bad combinations are UsageErrors naming the flag. */
export function routingFromFlags(f: RoutingFlags, model: Model): RoutingSession {
  const controls = controlsFromFlags(f);
  const active = new ActiveExperts();
  const hooks = routingHooks(controls, model.hparams, { onRouting: active.observe });
  const steered = hasControls(controls) || !!f.scmoe;
  if (f.scmoe) checkScmoe({ alpha: f.scmoeAlpha, beta: f.scmoeBeta, rank: f.scmoeRank }, model.hparams.nExpert);
  return {
    controls,
    hooks,
    active,
    generate(prompt, gen) {
      if (!f.scmoe) return model.generate(prompt, { ...gen, hooks });
      // SCMoE keeps two KV caches of its own, so a chat turn (gen.sequence) is re-read from the start
      return scmoeGenerate(model, prompt, { ...gen, hooks, alpha: f.scmoeAlpha, beta: f.scmoeBeta, rank: f.scmoeRank });
    },
    report() {
      if (!steered) return '';
      const per = [...active.perLayer()].map(([l, a]) => `${l}:${a.toFixed(2)}`).join(' ');
      const what = f.scmoe ? ' (SCMoE: strong and weak passes together)' : '';
      return `routing: ${active.mean().toFixed(2)} active experts/token (model default ${model.hparams.nExpertUsed})${what} | per layer ${per}\n`;
    },
  };
}

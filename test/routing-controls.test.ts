// Inference-time routing controls: hand-built router logits with known answers, neutral controls give
// bit-identical logits on generated models, flag parsing and bad input → UsageError.
import assert from 'node:assert/strict';
import { existsSync, mkdirSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { main } from '../src/cli/main.js';
import { loadModel, type Model } from '../src/engine/model.js';
import { UsageError } from '../src/errors.js';
import { route, type RouterOptions } from '../src/nn/moe.js';
import { makePolicy, rankPolicy, type RoutingControls } from '../src/routing/controls.js';
import { parseExperts, parsePairs, parseSetting, parseSettings, parseThreshold, parseTopP } from '../src/routing/parse.js';
import { ActiveExperts } from '../src/routing/stats.js';
import { generateModel, makeSpec, type ArchName } from '../src/testing/generate-model.js';

const CACHE = join(import.meta.dirname, '..', '.cache', 'routing-tests');
const SOFT: RouterOptions = { scoring: 'softmax', normalize: false, scale: 1 };
const NORM: RouterOptions = { scoring: 'softmax', normalize: true, scale: 1 };

// softmax(ln p) = p: experts 0..3 get probabilities 0.1, 0.3, 0.2, 0.4; rank order 3, 1, 2, 0
const P = [0.1, 0.3, 0.2, 0.4];
const one = () => new Float32Array(P.map(Math.log));

function run(c: RoutingControls, o: RouterOptions = SOFT, layer = 0, K = 2, logits = one(), T = 1) {
  const r = makePolicy(c)(layer, logits, T, logits.length / T, K, o);
  const ids: number[][] = [];
  const w: number[][] = [];
  for (let t = 0; t < T; t++) {
    ids.push([...r.ids.subarray(t * r.K, (t + 1) * r.K)]);
    w.push([...r.weights.subarray(t * r.K, (t + 1) * r.K)]);
  }
  return { K: r.K, ids: T === 1 ? ids[0] : ids, w: T === 1 ? w[0] : w, all: w };
}

function near(a: number[] | number[][], b: number[], eps = 1e-6) {
  const x = a.flat();
  assert.equal(x.length, b.length, `${x} vs ${b}`);
  x.forEach((v, i) => assert.ok(Math.abs(v - b[i]) < eps, `${x} vs ${b}`));
}

describe('routing policies on hand-built router logits', () => {
  test('top-k override, global and per layer; weights follow the model\'s normalisation', () => {
    let r = run({ experts: 3 });
    assert.deepEqual(r.ids, [3, 1, 2]);
    near(r.w, [0.4, 0.3, 0.2]);
    r = run({ experts: 3 }, NORM);
    near(r.w, [0.4 / 0.9, 0.3 / 0.9, 0.2 / 0.9]);
    // per layer: layer 1 gets 1 expert (renormalised to 1), layer 0 keeps the model's K = 2
    assert.deepEqual(run({ experts: { 1: 1 } }, NORM, 0).ids, [3, 1]);
    r = run({ experts: { 1: 1 } }, NORM, 1);
    assert.deepEqual(r.ids, [3]);
    near(r.w, [1]);
    near(run({ experts: 2 }, { ...NORM, scale: 2.5 }).w, [2.5 * 4 / 7, 2.5 * 3 / 7]);
  });

  test('top-p keeps experts up to and including the one crossing p, within [minK, maxK]', () => {
    assert.deepEqual(run({ topP: { p: 0.35 } }).ids, [3]);
    assert.deepEqual(run({ topP: { p: 0.5 } }).ids, [3, 1]);
    assert.deepEqual(run({ topP: { p: 0.75 } }).ids, [3, 1, 2]);
    assert.deepEqual(run({ topP: { p: 1 } }).ids, [3, 1, 2, 0]);
    assert.deepEqual(run({ topP: { p: 0.35, minK: 3 } }).ids, [3, 1, 2]);
    assert.deepEqual(run({ topP: { p: 0.75, maxK: 1 } }).ids, [3]);
    near(run({ topP: { p: 0.5 } }).w, [0.4, 0.3]); // not renormalised (OLMoE-style router)
    near(run({ topP: { p: 0.5 } }, NORM).w, [4 / 7, 3 / 7]);
  });

  test('top-p on sigmoid scores uses their share of the sum', () => {
    // sigmoids of logits 2, 0, -2: 0.881, 0.5, 0.119 (sum 1.5); 0.881 / 1.5 = 0.587
    const logits = new Float32Array([0, 2, -2]);
    const o: RouterOptions = { scoring: 'sigmoid', normalize: false, scale: 1 };
    assert.deepEqual(run({ topP: { p: 0.55 } }, o, 0, 1, logits).ids, [1]);
    assert.deepEqual(run({ topP: { p: 0.6 } }, o, 0, 1, logits).ids, [1, 0]);
  });

  test('threshold routing (SER): keep p_i ≥ t·p_max, at least kMin', () => {
    // top-3 = 0.4, 0.3, 0.2; t = 0.6 → cut 0.24
    assert.deepEqual(run({ experts: 3, threshold: { t: 0.6 } }).ids, [3, 1]);
    assert.deepEqual(run({ experts: 3, threshold: { t: 0.6, kMin: 3 } }).ids, [3, 1, 2]);
    assert.deepEqual(run({ experts: 3, threshold: { t: 0.9 } }).ids, [3]);
    near(run({ experts: 3, threshold: { t: 0.6 } }, NORM).w, [4 / 7, 3 / 7]);
  });

  test('masking and forcing', () => {
    let r = run({ mask: [[0, 3]] });
    assert.deepEqual(r.ids, [1, 2]);
    near(r.w, [0.3, 0.2]);
    assert.deepEqual(run({ mask: [[1, 3]] }, SOFT, 0).ids, [3, 1], 'a mask on another layer does nothing here');
    r = run({ force: [[0, 0]] }, NORM);
    assert.deepEqual(r.ids, [3, 1, 0]);
    near(r.w, [0.5, 0.375, 0.125]);
    assert.deepEqual(run({ force: [[0, 1]] }).ids, [3, 1], 'forcing a selected expert adds nothing');
  });

  test('skipping drops gate weights below the layer threshold, never the top-1', () => {
    assert.deepEqual(run({ experts: 3, skip: { thresholds: [0.25] } }).ids, [3, 1]);
    // renormalising router: weights 4/9, 3/9, 2/9 → τ = 0.3 drops the last, then renormalised over the rest
    const r = run({ experts: 3, skip: { thresholds: [0.3] } }, NORM);
    assert.deepEqual(r.ids, [3, 1]);
    near(r.w, [4 / 7, 3 / 7]);
    assert.deepEqual(run({ skip: { thresholds: [0.9] } }).ids, [3]);
  });

  test('tokens with fewer experts are padded with -1 and weight 0', () => {
    // token 0 as above; token 1: probabilities 0.7, 0.1, 0.1, 0.1 → top-p 0.5 keeps 1 expert vs 2
    const logits = new Float32Array([...P, 0.7, 0.1, 0.1, 0.1].map(Math.log));
    const r = run({ topP: { p: 0.5 } }, SOFT, 0, 2, logits, 2);
    assert.equal(r.K, 2);
    assert.deepEqual(r.ids, [[3, 1], [0, -1]]);
    near(r.all, [0.4, 0.3, 0.7, 0]);
  });

  test('SCMoE weak routing keeps only the rank-r expert', () => {
    let r = rankPolicy(2)(0, one(), 1, 4, 2, NORM);
    assert.deepEqual([...r.ids], [2]);
    near([...r.weights], [1]);
    r = rankPolicy(0)(0, one(), 1, 4, 2, SOFT);
    assert.deepEqual([...r.ids], [3]);
    near([...r.weights], [0.4]);
  });

  test('neutral controls reproduce route() exactly (softmax/sigmoid, bias, normalise, scale)', () => {
    const T = 7;
    const E = 16;
    const logits = new Float32Array(T * E).map((_, i) => Math.sin(i * 12.9898) * 3);
    const bias = new Float32Array(E).map((_, i) => Math.cos(i) * 0.1);
    for (const o of [SOFT, { ...NORM, scale: 1.7 }, { scoring: 'sigmoid', normalize: true, scale: 2.5, selectionBias: bias } as RouterOptions]) {
      for (const K of [1, 4]) {
        const want = route(logits, T, E, K, o);
        const got = makePolicy({ experts: K, threshold: { t: 0 }, mask: [], force: [], skip: { thresholds: [0, 0] } })(1, logits, T, E, K, o);
        assert.equal(got.K, K);
        assert.deepEqual(got.ids, want.ids);
        assert.deepEqual(got.weights, want.weights);
        assert.deepEqual(got.scores, want.scores);
      }
    }
  });
});

describe('parsing routing flags and settings', () => {
  test('experts: a count or per-layer ranges', () => {
    assert.equal(parseExperts('4'), 4);
    const m = parseExperts('0-2:8,3:4, 5-6:1') as Record<number, number>;
    assert.deepEqual(m, { 0: 8, 1: 8, 2: 8, 3: 4, 5: 1, 6: 1 });
  });

  test('pairs, top-p, threshold, settings', () => {
    assert.deepEqual(parsePairs('3:12,3:40', '--mask-experts'), [[3, 12], [3, 40]]);
    assert.deepEqual(parseTopP('0.5,1,4'), { p: 0.5, minK: 1, maxK: 4 });
    assert.deepEqual(parseThreshold('0.3,2'), { t: 0.3, kMin: 2 });
    assert.deepEqual(parseSetting('experts=2&threshold=0.3'), { experts: 2, threshold: { t: 0.3 } });
    assert.deepEqual(parseSetting('default'), {});
    assert.deepEqual(parseSettings('experts=1;topP=0.5;;threshold=0.3').map((s) => s.controls), [{ experts: 1 }, { topP: { p: 0.5 } }, { threshold: { t: 0.3 } }]);
  });

  test('bad values are UsageErrors naming the flag', () => {
    const bad: Array<[() => unknown, RegExp]> = [
      [() => parseExperts('x'), /--experts/],
      [() => parseExperts('0'), /--experts.*≥ 1/],
      [() => parseExperts('0-3:2,3:1'), /layer 3 is given twice/],
      [() => parseExperts('5-2:2'), /backwards/],
      [() => parseExperts('0-3:'), /--experts/],
      [() => parsePairs('3-12', '--mask-experts'), /--mask-experts/],
      [() => parseTopP('1.5'), /p must be in/],
      [() => parseTopP('0.5,3,2'), /maxK/],
      [() => parseThreshold('0.3,0'), /kMin/],
      [() => parseThreshold('abc'), /not a number/],
      [() => parseSetting('foo=1'), /key one of/],
      [() => parseSetting('experts=1&experts=2'), /twice/],
      [() => makePolicy({ experts: 2, topP: { p: 0.5 } }), /cannot be combined with topP/],
      [() => makePolicy({ mask: [[0, 1]], force: [[0, 1]] }), /both masked and forced/],
      [() => makePolicy({ skip: { thresholds: [-1] } }), /skip\.thresholds\[0\]/],
    ];
    for (const [f, re] of bad) assert.throws(f, (e: unknown) => e instanceof UsageError && re.test(e.message), String(f));
  });
});

async function fixture(arch: ArchName): Promise<string> {
  mkdirSync(CACHE, { recursive: true });
  const path = join(CACHE, `${arch}-f32.gguf`);
  if (!existsSync(path)) await generateModel(makeSpec(arch, { seed: 5 }), { gguf: path, type: 'f32' });
  return path;
}

describe('controls on generated models', () => {
  const models: Partial<Record<ArchName, Model>> = {};
  before(async () => {
    for (const a of ['olmoe', 'qwen3moe', 'deepseek'] as const) models[a] = await loadModel(await fixture(a), { threads: 2 });
  });
  after(async () => {
    for (const m of Object.values(models)) await m.close();
  });

  test('neutral controls give bit-identical logits; real ones change them', async () => {
    for (const [arch, m] of Object.entries(models)) {
      const ids = m.tokenize('Call me Ishmael. Some years ago, never mind how long', { addSpecial: true });
      const K = m.hparams.nExpertUsed;
      const neutral: RoutingControls = {
        experts: K, threshold: { t: 0, kMin: 1 }, mask: [], force: [], skip: { thresholds: new Array(m.hparams.nLayer).fill(0) },
      };
      const base = await m.forward(ids);
      const same = await m.forward(ids, { hooks: { routePolicy: makePolicy(neutral) } });
      assert.deepEqual(same, base, `${arch}: neutral controls changed the logits`);
      const perLayer = await m.forward(ids, { hooks: { routePolicy: makePolicy({ experts: { 0: K, 1: K, 2: K } }) } });
      assert.deepEqual(perLayer, base, `${arch}: per-layer K = model K changed the logits`);
      const fewer = await m.forward(ids, { hooks: { routePolicy: makePolicy({ experts: 1 }) } });
      assert.notDeepEqual(fewer, base, `${arch}: experts = 1 did not change the logits`);
    }
  });

  test('generate({ routing }) steers and the active-experts counter measures it', async () => {
    const m = models.olmoe!;
    const count = async (routing?: RoutingControls) => {
      const a = new ActiveExperts();
      for await (const _ of m.generate('Call me Ishmael.', { routing, hooks: { onRouting: a.observe }, maxTokens: 4, temperature: 0 })) void _;
      return a;
    };
    assert.equal((await count()).mean(), 2);
    assert.equal((await count({ experts: 1 })).mean(), 1);
    const per = (await count({ experts: { 1: 4 } })).perLayer();
    assert.deepEqual([...per], [[0, 2], [1, 4]]);
    const all = Array.from({ length: 8 }, (_, e) => [0, e] as [number, number]);
    assert.deepEqual([...(await count({ force: all })).perLayer()], [[0, 8], [1, 2]]);
    const topP = (await count({ topP: { p: 0.99 } })).mean();
    assert.ok(topP > 2 && topP <= 8, `top-p 0.99 used ${topP} experts`);
    await assert.rejects(async () => { for await (const _ of m.generate('x', { routing: { mask: [[0, 99]] }, maxTokens: 1 })) void _; }, (e: unknown) => e instanceof UsageError && /mask/.test(e.message));
    await assert.rejects(async () => { for await (const _ of m.generate('x', { routing: { experts: { 7: 2 } }, maxTokens: 1 })) void _; }, (e: unknown) => e instanceof UsageError && /layer 7/.test(e.message));
  });

  test('CLI: routing flags on run; bad flags exit 2 with a message', async () => {
    const path = await fixture('olmoe');
    const err: string[] = [];
    const write = process.stderr.write.bind(process.stderr);
    process.stderr.write = ((s: string | Uint8Array) => { if (typeof s === 'string') err.push(s); return true; }) as typeof process.stderr.write;
    try {
      assert.equal(await main(['node', 'moekit', 'run', path, '-p', 'Hi', '-n', '3', '--temp', '0', '-t', '2', '--experts', '0:1,1:3', '--mask-experts', '0:1']), 0);
      assert.match(err.join(''), /routing: 2\.00 active experts\/token .* per layer 0:1\.00 1:3\.00/);
      err.length = 0;
      assert.equal(await main(['node', 'moekit', 'run', path, '-p', 'Hi', '-n', '3', '--temp', '0', '-t', '2', '--scmoe']), 0);
      assert.match(err.join(''), /SCMoE/);
      const bad: Array<[string[], RegExp]> = [
        [['--experts', '0-1:x'], /--experts/],
        [['--mask-experts', '3'], /--mask-experts/],
        [['--route-top-p', '2'], /--route-top-p/],
        [['--mask-experts', '0:99'], /routing\.mask: expert 99/],
        [['--scmoe', '--scmoe-rank', '8'], /scmoe rank/],
      ];
      for (const [flags, re] of bad) {
        err.length = 0;
        assert.equal(await main(['node', 'moekit', 'run', path, '-p', 'Hi', '-n', '1', '-t', '2', ...flags]), 2, flags.join(' '));
        assert.match(err.join(''), re, flags.join(' '));
      }
    } finally {
      process.stderr.write = write;
    }
    const thr = join(CACHE, 'bad-thresholds.json');
    writeFileSync(thr, '{"thresholds": [0.1]}');
    assert.equal(await main(['node', 'moekit', 'run', path, '-p', 'Hi', '-n', '1', '-t', '2', '--skip', thr]), 2);
  });
});

/** `moekit inspect trace.mkt [--json]`: load, entropy, co-activation, locality, cache hit rates, super experts. */
import type { Command } from 'commander';
import { analyzeTrace, type InspectResult } from '../analysis/analyze.js';
import { readTrace } from '../analysis/trace.js';

const f = (v: number | null, d = 3): string => (v === null || Number.isNaN(v) ? '—' : v.toFixed(d));

export function formatInspect(r: InspectResult): string {
  const { K, E } = r;
  const lines = [
    `trace of ${r.model.path} (${r.model.arch}): ${r.T} tokens in ${r.windows} windows, ${r.layers.length} MoE layers, E=${E}, K=${K}`,
    '',
    `layer  CV     max/mean  entropy(norm)  ${r.segLengths.map((m) => `SRP@${m}`.padEnd(8)).join('')}LRU@2K  LFU@2K  Belady@2K`,
  ];
  const c2 = Math.min(2 * K, E) - 1;
  for (const l of r.layers) {
    lines.push(
      `${String(l.layer).padEnd(7)}${f(l.cv).padEnd(7)}${f(l.maxOverMean, 2).padEnd(10)}${`${f(l.entropy, 2)} (${f(l.entropyNorm, 2)})`.padEnd(15)}` +
        `${l.srp.map((v) => f(v).padEnd(8)).join('')}${f(l.cache.lru[c2]).padEnd(8)}${f(l.cache.lfu[c2]).padEnd(8)}${f(l.cache.belady[c2])}`,
    );
  }
  lines.push(`model  SRP ${r.segLengths.map((m, i) => `@${m} ${f(r.modelSrp[i])}`).join(', ')}`);
  lines.push('', 'mean hit rate by cache size (experts per layer):');
  lines.push(`  C       ${Array.from({ length: E }, (_, i) => i + 1).filter((c) => c % K === 0 || c === E).map((c) => String(c).padEnd(7)).join('')}`);
  for (const [name, curve] of [['LRU', r.meanCache.lru], ['LFU', r.meanCache.lfu], ['Belady', r.meanCache.belady], ...r.segLengths.map((m, i) => [`SCH@${m}`, r.meanCache.sch[i]] as const)] as const) {
    lines.push(`  ${name.padEnd(8)}${curve.filter((_, i) => (i + 1) % K === 0 || i + 1 === E).map((v) => f(v).padEnd(7)).join('')}`);
  }
  if (r.transitions.length) {
    lines.push('', 'layer → next layer: precision of predicting the next layer\'s experts (vs. most-loaded baseline)');
    for (const t of r.transitions) lines.push(`  ${t.from} → ${t.to}: ${f(t.precision)} (baseline ${f(t.baseline)})`);
  }
  lines.push('');
  if (r.superExperts) {
    const s = r.superExperts;
    lines.push(`super experts (layers < ${s.layerLimit}, P99.5 = ${f(s.p995, 2)}, max/10 = ${s.maxOver10}): ` +
      (s.experts.length ? s.experts.map((e) => `L${e.layer}.E${e.expert} (${f(e.outputMax, 1)})`).join(', ') : 'none'));
  } else {
    lines.push('super experts: not recorded (trace again with --super-experts)');
  }
  lines.push('', `offloading: ${r.offloading.verdict} — ${r.offloading.summary}`);
  return lines.join('\n');
}

export function registerInspect(program: Command): void {
  program
    .command('inspect')
    .description('routing statistics of a trace: load, entropy, co-activation, SRP/SCH, cache hit rates, super experts')
    .argument('<trace>', 'trace file written by `moekit trace`')
    .option('--json', 'print every statistic as JSON')
    .action((path: string, o: { json?: boolean }) => {
      const r = analyzeTrace(readTrace(path));
      process.stdout.write((o.json ? JSON.stringify(r) : formatInspect(r)) + '\n');
    });
}

/** `moekit report trace.mkt -o report.html`: one self-contained HTML page of the trace's analytics. */
import type { Command } from 'commander';
import { analyzeTrace } from '../analysis/analyze.js';
import { renderReport } from '../analysis/report.js';
import { readTrace } from '../analysis/trace.js';
import { writeFileAtomic } from '../formats/atomic.js';

export function registerReport(program: Command): void {
  program
    .command('report')
    .description('write a self-contained HTML report (heatmaps, co-activation, cache curves, super experts, offloading advice)')
    .argument('<trace>', 'trace file written by `moekit trace`')
    .requiredOption('-o, --output <file>', 'HTML file to write')
    .action((path: string, o: { output: string }) => {
      const tr = readTrace(path);
      writeFileAtomic(o.output, renderReport(tr, analyzeTrace(tr)));
      process.stderr.write(`wrote ${o.output}\n`);
    });
}

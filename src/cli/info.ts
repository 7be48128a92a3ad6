/** `moekit info <model>`: what the model is and what it needs. */
import type { Command } from 'commander';
import { loadModel } from '../engine/model.js';
import type { ModelInfo } from '../engine/info.js';
import { formatBytes, formatCount } from './args.js';

export function formatInfo(i: ModelInfo): string {
  const h = i.hparams;
  const lines = [
    `model         ${i.path} (${i.format}${i.name ? `, "${i.name}"` : ''})`,
    `architecture  ${i.arch}`,
    `parameters    ${formatCount(i.params.total)} total, ${formatCount(i.params.active)} active per token`,
    `layers        ${h.nLayer}, model dim ${h.D}, vocab ${h.vocab}`,
    `attention     ${h.nHead} heads, ${h.nHeadKv} KV heads, head dim ${h.headDim}, RoPE θ ${h.ropeTheta}`,
    `context       ${h.ctxTrain} (training)`,
  ];
  if (h.nExpert > 0) {
    const moeLayers = h.nLayer - h.denseLayers.length;
    lines.push(
      `experts       ${h.nExpert} routed, ${h.nExpertUsed} per token, ${h.nExpertShared} shared` +
        `${h.sharedFF ? ` (shared FFN ${h.sharedFF})` : ''}, expert FFN ${h.expertFF}`,
      `MoE layers    ${moeLayers} of ${h.nLayer}` + (h.denseLayers.length ? `; dense layers: ${h.denseLayers.join(', ')} (FFN ${h.denseFF})` : ''),
      `router        ${h.router}`,
    );
  } else {
    lines.push(`experts       none (dense model)`);
  }
  lines.push('tensor types');
  for (const [g, types] of Object.entries(i.tensorTypes)) {
    lines.push(`  ${g.padEnd(16)}${Object.entries(types).map(([t, n]) => `${t} ×${n}`).join(', ')}`);
  }
  lines.push(
    `memory        weights ${formatBytes(i.memory.weights)} + KV cache ${formatBytes(i.memory.kvCache)} at ctx ${i.memory.ctx}` +
      ` = ${formatBytes(i.memory.weights + i.memory.kvCache)}`,
  );
  return lines.join('\n');
}

export function registerInfo(program: Command): void {
  program
    .command('info')
    .description('print architecture, parameter counts, MoE layout, tensor types and memory needs')
    .argument('<model>', '.gguf file or Hugging Face folder')
    .option('--json', 'print as JSON')
    .action(async (path: string, o: { json?: boolean }) => {
      const model = await loadModel(path, { threads: 1 });
      try {
        process.stdout.write((o.json ? JSON.stringify(model.info, null, 2) : formatInfo(model.info)) + '\n');
      } finally {
        await model.close();
      }
    });
}

/**
 * The embedded default model that `npm start` / `moekit run` (no model argument) runs.
 * A trained model shipped in the repo (models/default.gguf) wins; until one exists, a small
 * random-weight OLMoE-shaped model is generated once into .cache/ and clearly labelled as such.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { dirname, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { generateModel, makeSpec } from '../testing/generate-model.js';

const repoRoot = resolve(dirname(fileURLToPath(import.meta.url)), '../..');

export async function defaultModelPath(): Promise<{ path: string; label: string }> {
  const shipped = resolve(repoRoot, 'models/default.gguf');
  if (existsSync(shipped)) return { path: shipped, label: 'trained moekit default model, see models/MODEL_CARD.md' };
  const path = resolve(repoRoot, '.cache/default-random-olmoe.gguf');
  if (!existsSync(path)) {
    mkdirSync(dirname(path), { recursive: true });
    await generateModel(makeSpec('olmoe', { seed: 42 }), { gguf: path, type: 'f32' });
  }
  return {
    path,
    label: 'RANDOM WEIGHTS: a generated OLMoE-shaped test model with a real GPT-2 vocabulary; its text is gibberish until the trained default model ships',
  };
}

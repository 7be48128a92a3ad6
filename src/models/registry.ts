/** Every supported architecture, by GGUF `general.architecture`, and the HF `model_type`s mapping onto them. */
import { UnsupportedError } from '../errors.js';
import { deepseek } from './deepseek.js';
import { granitemoe } from './granitemoe.js';
import { llama } from './llama.js';
import { olmoe } from './olmoe.js';
import { qwen2moe } from './qwen2moe.js';
import { qwen3moe } from './qwen3moe.js';
import type { Architecture } from './types.js';

export const ARCHITECTURES: readonly Architecture[] = [llama, qwen2moe, qwen3moe, olmoe, granitemoe, deepseek];

export function getArchitecture(name: string, file: string): Architecture {
  const a = ARCHITECTURES.find((x) => x.name === name);
  if (!a) {
    throw new UnsupportedError(
      `${file}: architecture '${name}' is not supported; supported: ${ARCHITECTURES.map((x) => x.name).join(', ')}`,
    );
  }
  return a;
}

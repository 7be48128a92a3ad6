/**
 * moekit — a TypeScript engine for Mixture-of-Experts language models.
 *
 *   import { loadModel } from 'moekit';
 *   const model = await loadModel('model.gguf', { threads: 2 });
 *   for await (const piece of model.generate('Once upon a time', { maxTokens: 32 })) process.stdout.write(piece);
 *   await model.close();
 */
export { loadModel, Model, Sequence, type LoadOptions, type GenerateOptions, type GenerationStats } from './engine/model.js';
export type { ModelInfo } from './engine/info.js';
export type { SamplingOptions } from './engine/sampler.js';
export { route } from './nn/moe.js';
export type { Routing, RouterOptions, RoutingObserver, RoutePolicy, ForwardHooks } from './nn/moe.js';
export type { Backend } from './backend/backend.js';
export { ARCHITECTURES } from './models/registry.js';
export * from './errors.js';

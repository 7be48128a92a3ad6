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
export {
  makePolicy, rankPolicy, routingHooks, checkControls, parseSetting, ActiveExperts, combineHooks,
  contrastLogits, scmoeGenerate, scmoeGenerateTokens, evaluate, calibrateSkip,
  type RoutingControls, type ScmoeOptions, type EvalOptions, type EvalResult, type EvalRow, type EvalSetting, type SkipCalibration,
} from './routing/index.js';
export * from './errors.js';
export { recordTrace, routerEntropy, type RecordOptions } from './analysis/record.js';
export { TraceError, encodeTrace, decodeTrace, readTrace, writeTrace, writeTraceJsonl, type Trace, type TraceModelInfo } from './analysis/trace.js';
export { analyzeTrace, SEG_LENGTHS, type InspectResult, type LayerResult, type Offloading, type AnalyzeOptions } from './analysis/analyze.js';
export { cacheHitCurve, schCurve, srpSegmentStats, srpFromStats, type CachePolicy, type RouteSeq, type SrpResult } from './analysis/locality.js';
export { loadStats, coactivation, transition, superExperts, type LoadStats, type SuperExpertResult } from './analysis/metrics.js';
export { renderReport } from './analysis/report.js';
export { train, readTrainConfig, evaluate as evaluateTrained, type TrainConfig, type TrainOptions, type TrainResult } from './train/trainer.js';
export { MoeLM, paramLayout, type ModelConfig as TrainModelConfig, type StepStats } from './train/model.js';
export { router_forward, router_backward, router_bias_update, type RouterConfig as TrainRouterConfig, type RouteResult } from './train/router.js';
export { AdamW, learningRate, clipGradNorm, type OptimConfig } from './train/optim.js';
export { trainStep, type StepResult } from './train/step.js';
export { trainBpe, BpeEncoder, bpeTokenizerJson, bpeTokenizerConfig, type BpeVocab } from './train/bpe.js';
export { saveCheckpoint, loadCheckpoint, exportGGUF, exportArch, type TrainState } from './train/checkpoint.js';

/** Inference-time routing: controls (top-k/top-p/threshold/mask/force/skip), SCMoE, quality metrics. */
export { checkControls, hasControls, makePolicy, rankPolicy, routingHooks, type ModelShape, type RoutingControls } from './controls.js';
export { parseExperts, parsePairs, parseSetting, parseSettings, parseThreshold, parseTopP, readSkipFile } from './parse.js';
export { ActiveExperts, combineHooks } from './stats.js';
export { contrastLogits, scmoeGenerate, scmoeGenerateTokens, type ScmoeOptions } from './scmoe.js';
export { evaluate, type EvalOptions, type EvalResult, type EvalRow, type EvalSetting } from './eval.js';
export { calibrateSkip, type SkipCalibration } from './calibrate.js';

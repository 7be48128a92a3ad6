/** What an architecture file provides, and the summary of hyper-parameters every model reports. */
import type { DecoderSpec } from '../nn/decoder.js';
import type { ModelSource } from './common.js';

export interface HParams {
  arch: string;
  nLayer: number;
  /** model dim */
  D: number;
  nHead: number;
  nHeadKv: number;
  headDim: number;
  vocab: number;
  ctxTrain: number;
  ropeTheta: number;
  rmsEps: number;
  /** routed experts (0 for a dense model) */
  nExpert: number;
  /** experts per token */
  nExpertUsed: number;
  /** always-on shared experts (as the model card counts them) */
  nExpertShared: number;
  /** expert FFN width */
  expertFF: number;
  /** total width of the shared-expert FFN (0 if none) */
  sharedFF: number;
  /** dense-FFN width of dense layers (0 if none) */
  denseFF: number;
  /** indices of layers with a dense FFN */
  denseLayers: number[];
  /** human-readable router description */
  router: string;
}

export interface Architecture {
  /** GGUF `general.architecture` */
  name: string;
  /** HF `config.json` `model_type`s that map onto this file */
  hfModelTypes: string[];
  build(src: ModelSource): { spec: DecoderSpec; hparams: HParams };
}

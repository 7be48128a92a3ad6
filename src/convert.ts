/**
 * `moekit convert`: HF folder -> GGUF (f32 | f16 | bf16 | q8_0 | q4_k) and GGUF -> HF folder.
 *
 * Type policy (as llama.cpp's convert_hf_to_gguf.py / llama-quantize):
 *  - 1-D tensors (norms, biases, the shared-expert gate), `*_norm.weight` and the router
 *    `ffn_gate_inp` stay F32;
 *  - q4_k: `output.weight` / `token_embd.weight` get Q6_K (as Q4_K_M does), the rest Q4_K;
 *  - rows that do not fill whole blocks fall back: Q4_K/Q6_K -> Q8_0 -> F16.
 * Tensors are converted and written one at a time, so RAM stays near the largest tensor.
 */
import { existsSync, mkdirSync } from 'node:fs';
import { basename } from 'node:path';
import { CheckpointError, UsageError } from './errors.js';
import { GGMLType, TYPE_TRAITS, numel, type Tensor } from './tensor.js';
import { openCheckpoint, type Checkpoint } from './formats/checkpoint.js';
import { plainValue, str, u32, writeGGUF, type GGUFValue } from './formats/gguf.js';
import { ggufToHFConfig, HF_FAMILIES, modelTypeForArch } from './formats/hf-config.js';
import { ggufToHFTensors } from './formats/names.js';
import { dequantize, quantize } from './formats/quants.js';
import { writeSafetensorsFolder } from './formats/safetensors.js';
import { writeFileAtomic } from './formats/atomic.js';
import { ggufMetadataToTokenizerJson, tokenizerJsonToGGUFMetadata } from './tokenizer/gguf-vocab.js';

export type ConvertType = 'f32' | 'f16' | 'bf16' | 'q8_0' | 'q4_k';
export const CONVERT_TYPES: readonly ConvertType[] = ['f32', 'f16', 'bf16', 'q8_0', 'q4_k'];

/** llama.h `enum llama_ftype` for general.file_type */
const FILE_TYPE: Record<ConvertType, number> = { f32: 0, f16: 1, q8_0: 7, q4_k: 15 /* Q4_K_M */, bf16: 32 };

function fits(t: GGMLType, rowLen: number): boolean {
  return rowLen % TYPE_TRAITS[t]!.blockSize === 0;
}

/** The GGUF type a tensor gets under `want` (see the policy at the top of the file). */
export function targetType(name: string, shape: readonly number[], want: ConvertType): GGMLType {
  if (shape.length === 1 || name.endsWith('_norm.weight') || name.includes('.ffn_gate_inp.')) return GGMLType.F32;
  const row = shape[shape.length - 1]!;
  const chain = (ts: GGMLType[]) => ts.find((t) => fits(t, row)) ?? GGMLType.F16;
  switch (want) {
    case 'f32': return GGMLType.F32;
    case 'f16': return GGMLType.F16;
    case 'bf16': return GGMLType.BF16;
    case 'q8_0': return chain([GGMLType.Q8_0]);
    case 'q4_k':
      if (name === 'output.weight' || name === 'token_embd.weight') return chain([GGMLType.Q6_K, GGMLType.Q8_0]);
      return chain([GGMLType.Q4_K, GGMLType.Q8_0]);
  }
}

function toF32(t: Tensor): Float32Array {
  return dequantize(t.type, t.data, numel(t.shape));
}

function convertData(t: Tensor, to: GGMLType): Uint8Array {
  if (t.type === to) return t.data;
  return quantize(to, toF32(t));
}

/** HF folder -> GGUF file. llama.cpp loads the result (given a tokenizer.json it can map). */
export async function convertHFToGGUF(hfDir: string, outPath: string, opts: { type?: ConvertType; name?: string } = {}): Promise<void> {
  const want = opts.type ?? 'f16';
  if (!CONVERT_TYPES.includes(want)) throw new UsageError(`--type ${String(want)} is not one of ${CONVERT_TYPES.join(', ')}`);
  const ckpt = openCheckpoint(hfDir);
  try {
    if (ckpt.format !== 'hf') throw new UsageError(`${hfDir} is a GGUF file; convertHFToGGUF needs a Hugging Face folder`);
    const metadata: Array<[string, GGUFValue]> = [];
    const arch = ckpt.metadata.get('general.architecture')!;
    metadata.push(['general.architecture', arch]);
    metadata.push(['general.name', str(opts.name ?? basename(hfDir.replace(/\/+$/, '')))]);
    metadata.push(['general.file_type', u32(FILE_TYPE[want])]);
    for (const [k, v] of ckpt.metadata) if (k !== 'general.architecture') metadata.push([k, v]);
    if (ckpt.hf?.tokenizerJson === undefined) {
      throw new UsageError(`${hfDir}: tokenizer.json is missing; llama.cpp needs the vocabulary in the GGUF — add the model's tokenizer.json`);
    }
    metadata.push(...tokenizerJsonToGGUFMetadata(ckpt.hf.tokenizerJson as object, (ckpt.hf.tokenizerConfig ?? {}) as object));
    const tensors = [...ckpt.tensors.values()].map((t) => {
      const type = targetType(t.name, t.shape, want);
      return { name: t.name, type, shape: t.shape, data: () => convertData(t, type) };
    });
    writeGGUF(outPath, { metadata, tensors });
  } finally {
    ckpt.close();
  }
}

/**
 * GGUF file -> HF folder: safetensors (quantized tensors dequantized to F32; F16/BF16/F32 kept),
 * config.json, tokenizer.json (when the tokenizer bridge can rebuild it).
 */
export async function convertGGUFToHF(ggufPath: string, outDir: string, opts: { maxShardBytes?: number } = {}): Promise<void> {
  const ckpt: Checkpoint = openCheckpoint(ggufPath);
  try {
    if (ckpt.format !== 'gguf') throw new UsageError(`${ggufPath} is a folder; convertGGUFToHF needs a .gguf file`);
    const mt = modelTypeForArch(ckpt.arch, ggufPath);
    const meta = ckpt.metadata;
    const num = (k: string, fb?: number): number => {
      const v = meta.get(`${ckpt.arch}.${k}`);
      if (v === undefined) {
        if (fb !== undefined) return fb;
        throw new CheckpointError(ggufPath, `metadata key ${ckpt.arch}.${k} is missing`, { key: `${ckpt.arch}.${k}` });
      }
      return plainValue(v) as number;
    };
    const nHead = num('attention.head_count');
    // dominant storage type of the matrices decides torch_dtype
    const mats = [...ckpt.tensors.values()].filter((t) => t.shape.length >= 2);
    const all = (ty: GGMLType) => mats.length > 0 && mats.every((t) => t.type === ty);
    const outType = all(GGMLType.BF16) ? GGMLType.BF16 : all(GGMLType.F16) ? GGMLType.F16 : GGMLType.F32;
    const torchDtype = { [GGMLType.BF16]: 'bfloat16', [GGMLType.F16]: 'float16' }[outType as number] ?? 'float32';
    const plain = new Map<string, Tensor>();
    for (const t of ckpt.tensors.values()) {
      const keep = t.type === GGMLType.F32 || t.type === outType;
      let data: Uint8Array | undefined;
      plain.set(t.name, {
        name: t.name,
        type: keep ? t.type : GGMLType.F32,
        shape: t.shape,
        get data() {
          data ??= keep ? t.data : quantize(GGMLType.F32, toF32(t));
          return data;
        },
      });
    }
    const hfTensors = ggufToHFTensors(mt, plain, { nHead, nHeadKv: num('attention.head_count_kv', nHead), nExpert: num('expert_count'), permuteQK: HF_FAMILIES[mt]!.permuteQK }, ggufPath);
    const config = ggufToHFConfig(meta, { file: ggufPath, tiedEmbeddings: !ckpt.tensors.has('output.weight'), torchDtype });
    if (!existsSync(outDir)) mkdirSync(outDir, { recursive: true });
    writeSafetensorsFolder(outDir, hfTensors, { maxShardBytes: opts.maxShardBytes });
    writeFileAtomic(`${outDir}/config.json`, JSON.stringify(config, null, 2) + '\n');
    if (meta.has('tokenizer.ggml.model')) {
      const { tokenizerJson, tokenizerConfig } = ggufMetadataToTokenizerJson((k) => {
        const v = meta.get(k);
        return v === undefined ? undefined : plainValue(v);
      });
      writeFileAtomic(`${outDir}/tokenizer.json`, JSON.stringify(tokenizerJson) + '\n');
      writeFileAtomic(`${outDir}/tokenizer_config.json`, JSON.stringify(tokenizerConfig, null, 2) + '\n');
    }
  } finally {
    ckpt.close();
  }
}


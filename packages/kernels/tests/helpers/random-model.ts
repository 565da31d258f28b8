import type { LlamaConfig, Tensor, WeightMap } from "@kiln/model";
import { mulberry32 } from "@kiln/test-support";

export function randomArray(len: number, rand: () => number, scale = 1, center = 0): Float32Array {
  const out = new Float32Array(len);
  for (let i = 0; i < len; i++) out[i] = center + (rand() * 2 - 1) * scale;
  return out;
}

/** A tiny Llama config; override what a test exercises. */
export function tinyConfig(overrides: Partial<LlamaConfig> = {}): LlamaConfig {
  return {
    architecture: "LlamaForCausalLM",
    hiddenSize: 32,
    intermediateSize: 48,
    numLayers: 2,
    numHeads: 4,
    numKvHeads: 2,
    headDim: 8,
    vocabSize: 64,
    maxPositionEmbeddings: 128,
    rmsNormEps: 1e-5,
    ropeTheta: 10000,
    ropeScaling: null,
    tieWordEmbeddings: true,
    attentionBias: false,
    bosTokenId: 1,
    eosTokenIds: [2],
    torchDtype: "float32",
    ...overrides,
  };
}

/** Random weights with HF names for `cfg`, scaled so activations stay O(1). */
export function randomWeights(cfg: LlamaConfig, seed: number): WeightMap {
  const rand = mulberry32(seed);
  const map = new Map<string, Tensor>();
  const add = (name: string, shape: number[], scale: number, center = 0) => {
    const len = shape.reduce((a, b) => a * b, 1);
    map.set(name, { name, shape, data: randomArray(len, rand, scale, center) });
  };
  const dim = cfg.hiddenSize;
  const qDim = cfg.numHeads * cfg.headDim;
  const kvDim = cfg.numKvHeads * cfg.headDim;
  const ffn = cfg.intermediateSize;
  add("model.embed_tokens.weight", [cfg.vocabSize, dim], 1);
  for (let l = 0; l < cfg.numLayers; l++) {
    const p = `model.layers.${l}`;
    add(`${p}.input_layernorm.weight`, [dim], 0.2, 1);
    add(`${p}.self_attn.q_proj.weight`, [qDim, dim], 1 / Math.sqrt(dim));
    add(`${p}.self_attn.k_proj.weight`, [kvDim, dim], 1 / Math.sqrt(dim));
    add(`${p}.self_attn.v_proj.weight`, [kvDim, dim], 1 / Math.sqrt(dim));
    if (cfg.attentionBias) {
      add(`${p}.self_attn.q_proj.bias`, [qDim], 0.5);
      add(`${p}.self_attn.k_proj.bias`, [kvDim], 0.5);
      add(`${p}.self_attn.v_proj.bias`, [kvDim], 0.5);
    }
    add(`${p}.self_attn.o_proj.weight`, [dim, qDim], 1 / Math.sqrt(qDim));
    add(`${p}.post_attention_layernorm.weight`, [dim], 0.2, 1);
    add(`${p}.mlp.gate_proj.weight`, [ffn, dim], 1 / Math.sqrt(dim));
    add(`${p}.mlp.up_proj.weight`, [ffn, dim], 1 / Math.sqrt(dim));
    add(`${p}.mlp.down_proj.weight`, [dim, ffn], 1 / Math.sqrt(ffn));
  }
  add("model.norm.weight", [dim], 0.2, 1);
  if (!cfg.tieWordEmbeddings) add("lm_head.weight", [cfg.vocabSize, dim], 1 / Math.sqrt(dim));
  return map;
}

/** max |actual − expected| / max |expected|: one relative error for a whole tensor. */
export function maxRelativeError(actual: ArrayLike<number>, expected: ArrayLike<number>): number {
  let maxDiff = 0;
  let maxRef = 0;
  for (let i = 0; i < expected.length; i++) {
    maxDiff = Math.max(maxDiff, Math.abs(actual[i]! - expected[i]!));
    maxRef = Math.max(maxRef, Math.abs(expected[i]!));
  }
  return maxDiff / Math.max(maxRef, 1e-30);
}

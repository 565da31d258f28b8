import type { LlamaConfig, Tensor, VocabSlice, WeightMap } from "@kiln/model";
import type { Gemm, PackedWeights } from "./gemm";

/**
 * The weights of one decoder layer as the CPU forward pass reads them. q/k/v are fused into
 * one matrix and gate/up into another so each is one gemm over the whole batch.
 */
export interface LayerWeights {
  /** [hiddenSize] */
  readonly inputNorm: Float32Array;
  /** [qDim + 2 × kvDim, hiddenSize]: rows of q_proj, then k_proj, then v_proj. */
  readonly qkv: Float32Array;
  /** [qDim + 2 × kvDim], or null without attention bias. */
  readonly qkvBias: Float32Array | null;
  /** [hiddenSize, qDim] */
  readonly o: Float32Array;
  /** [hiddenSize] */
  readonly postAttentionNorm: Float32Array;
  /** [2 × intermediateSize, hiddenSize]: rows of gate_proj, then up_proj. */
  readonly gateUp: Float32Array;
  /** [hiddenSize, intermediateSize] */
  readonly down: Float32Array;
}

export interface LlamaWeights {
  /** [vocabSize, hiddenSize] */
  readonly embedTokens: Float32Array;
  readonly layers: readonly LayerWeights[];
  /** [hiddenSize] */
  readonly finalNorm: Float32Array;
  /**
   * [vocabSize, hiddenSize], or a tensor-parallel rank's vocabulary rows of it; a view of
   * `embedTokens` when embeddings are tied.
   */
  readonly lmHead: Float32Array;
}

function tensorData(weights: WeightMap, name: string, shape: readonly number[]): Float32Array {
  const tensor: Tensor | undefined = weights.get(name);
  if (tensor === undefined) throw new Error(`missing weight ${name}`);
  const isSameShape =
    tensor.shape.length === shape.length && tensor.shape.every((d, i) => d === shape[i]);
  if (!isSameShape) {
    throw new Error(
      `weight ${name} has shape [${tensor.shape.join(", ")}], expected [${shape.join(", ")}]`,
    );
  }
  return tensor.data;
}

function concatRows(parts: readonly Float32Array[]): Float32Array {
  let len = 0;
  for (const part of parts) len += part.length;
  const out = new Float32Array(len);
  let off = 0;
  for (const part of parts) {
    out.set(part, off);
    off += part.length;
  }
  return out;
}

/**
 * Checks shapes and packs HF-named tensors into the CPU layout. The fused matrices are new
 * arrays; the others alias the map's arrays, so the caller must not mutate the map's tensors
 * afterwards. Throws an Error naming the first missing or misshapen tensor.
 */
export function packLlamaWeights(
  config: LlamaConfig,
  weights: WeightMap,
  lmHeadRows: VocabSlice = { start: 0, count: config.vocabSize },
): LlamaWeights {
  const hidden = config.hiddenSize;
  const qDim = config.numHeads * config.headDim;
  const kvDim = config.numKvHeads * config.headDim;
  const ffnLen = config.intermediateSize;
  const get = (name: string, shape: readonly number[]) => tensorData(weights, name, shape);
  const layers: LayerWeights[] = [];
  for (let l = 0; l < config.numLayers; l++) {
    const p = `model.layers.${l}`;
    const attn = `${p}.self_attn`;
    layers.push({
      inputNorm: get(`${p}.input_layernorm.weight`, [hidden]),
      qkv: concatRows([
        get(`${attn}.q_proj.weight`, [qDim, hidden]),
        get(`${attn}.k_proj.weight`, [kvDim, hidden]),
        get(`${attn}.v_proj.weight`, [kvDim, hidden]),
      ]),
      qkvBias: config.attentionBias
        ? concatRows([
            get(`${attn}.q_proj.bias`, [qDim]),
            get(`${attn}.k_proj.bias`, [kvDim]),
            get(`${attn}.v_proj.bias`, [kvDim]),
          ])
        : null,
      o: get(`${attn}.o_proj.weight`, [hidden, qDim]),
      postAttentionNorm: get(`${p}.post_attention_layernorm.weight`, [hidden]),
      gateUp: concatRows([
        get(`${p}.mlp.gate_proj.weight`, [ffnLen, hidden]),
        get(`${p}.mlp.up_proj.weight`, [ffnLen, hidden]),
      ]),
      down: get(`${p}.mlp.down_proj.weight`, [hidden, ffnLen]),
    });
  }
  const embedTokens = get("model.embed_tokens.weight", [config.vocabSize, hidden]);
  // A tensor-parallel rank holds its vocabulary rows of lm_head (all of them otherwise).
  const { start, count } = lmHeadRows;
  const lmHead = config.tieWordEmbeddings
    ? embedTokens.subarray(start * hidden, (start + count) * hidden)
    : get("lm_head.weight", [count, hidden]);
  return { embedTokens, layers, finalNorm: get("model.norm.weight", [hidden]), lmHead };
}

/** LayerWeights with every projection packed for the gemm that runs them. */
export interface PackedLayerWeights {
  /** [hiddenSize] */
  readonly inputNorm: Float32Array;
  /** [qDim + 2 × kvDim, hiddenSize] packed */
  readonly qkv: PackedWeights;
  /** [qDim + 2 × kvDim], or null without attention bias. */
  readonly qkvBias: Float32Array | null;
  /** [hiddenSize, qDim] packed */
  readonly o: PackedWeights;
  /** [hiddenSize] */
  readonly postAttentionNorm: Float32Array;
  /** [2 × intermediateSize, hiddenSize] packed */
  readonly gateUp: PackedWeights;
  /** [hiddenSize, intermediateSize] packed */
  readonly down: PackedWeights;
}

export interface PackedLlamaWeights {
  /** [vocabSize, hiddenSize] plain: embedding looks rows up. */
  readonly embedTokens: Float32Array;
  readonly layers: readonly PackedLayerWeights[];
  /** [hiddenSize] */
  readonly finalNorm: Float32Array;
  /** [vocabSize, hiddenSize] packed (a copy of embedTokens when tied and the gemm copies). */
  readonly lmHead: PackedWeights;
}

/**
 * Packs every projection of `weights` with `gemm.packWeights`. The native gemm copies, so the
 * plain matrices may be dropped afterwards; the TypeScript gemm aliases them.
 */
export function packProjections(weights: LlamaWeights, gemm: Gemm): PackedLlamaWeights {
  const pack = (w: Float32Array, n: number, k: number) => gemm.packWeights(w, n, k);
  const layers = weights.layers.map((l) => {
    const k = l.inputNorm.length;
    return {
      inputNorm: l.inputNorm,
      qkv: pack(l.qkv, l.qkv.length / k, k),
      qkvBias: l.qkvBias,
      o: pack(l.o, k, l.o.length / k),
      postAttentionNorm: l.postAttentionNorm,
      gateUp: pack(l.gateUp, l.gateUp.length / k, k),
      down: pack(l.down, k, l.down.length / k),
    };
  });
  const hidden = weights.finalNorm.length;
  return {
    embedTokens: weights.embedTokens,
    layers,
    finalNorm: weights.finalNorm,
    lmHead: pack(weights.lmHead, weights.lmHead.length / hidden, hidden),
  };
}

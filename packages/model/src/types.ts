import type { QuantizationConfig } from "./quantized";
/**
 * Public types of @kiln/model. Other packages (kernels, worker, gateway) code against these;
 * change them only together with their users.
 */

/** Rope scaling variants Kiln implements. Anything else is rejected by `parseConfig`. */
export type RopeScaling =
  | {
      readonly type: "llama3";
      readonly factor: number;
      readonly lowFreqFactor: number;
      readonly highFreqFactor: number;
      readonly originalMaxPositionEmbeddings: number;
    }
  | { readonly type: "linear"; readonly factor: number };

export type Architecture = "LlamaForCausalLM" | "MistralForCausalLM" | "Qwen2ForCausalLM";

/** config.json of a Llama-family checkpoint, normalised to camelCase with defaults applied. */
export interface LlamaConfig {
  readonly architecture: Architecture;
  readonly hiddenSize: number;
  readonly intermediateSize: number;
  readonly numLayers: number;
  readonly numHeads: number;
  readonly numKvHeads: number;
  /** Per-head dimension; `hidden_size / num_attention_heads` when config.json omits it. */
  readonly headDim: number;
  readonly vocabSize: number;
  readonly maxPositionEmbeddings: number;
  readonly rmsNormEps: number;
  readonly ropeTheta: number;
  readonly ropeScaling: RopeScaling | null;
  readonly tieWordEmbeddings: boolean;
  /** q/k/v projections carry a bias (Qwen2, or `attention_bias: true`). */
  readonly attentionBias: boolean;
  readonly bosTokenId: number | null;
  /** Every id that ends generation (config.json allows a number or a list). */
  readonly eosTokenIds: readonly number[];
  /** The checkpoint's declared dtype (`torch_dtype`), e.g. "float32", "bfloat16". */
  readonly torchDtype: string;
  /** A GPTQ or AWQ checkpoint's `quantization_config` (quantized.ts); absent or null: none. */
  readonly quantization?: QuantizationConfig | null;
}

/** A tensor converted to the compute dtype (f32). Row-major; `data.length` = product of shape. */
export interface Tensor {
  readonly name: string;
  readonly shape: readonly number[];
  readonly data: Float32Array;
}

/** Weight names follow Hugging Face: `model.layers.{i}.self_attn.q_proj.weight` and so on. */
export type WeightMap = ReadonlyMap<string, Tensor>;

import { readFile } from "node:fs/promises";
import { join } from "node:path";
import { z } from "zod";
import { hasErrnoCode, ModelError } from "./errors";
import { parseQuantizationConfig } from "./quantized";
import type { Architecture, LlamaConfig, RopeScaling } from "./types";

const ARCHITECTURES: readonly Architecture[] = [
  "LlamaForCausalLM",
  "MistralForCausalLM",
  "Qwen2ForCausalLM",
];

/** Configs without `architectures` still name their family in `model_type`. */
const MODEL_TYPE_TO_ARCHITECTURE: Readonly<Record<string, Architecture>> = {
  llama: "LlamaForCausalLM",
  mistral: "MistralForCausalLM",
  qwen2: "Qwen2ForCausalLM",
};

const positiveInt = z.number().int().positive();
const tokenId = z.number().int().nonnegative();

// Unknown keys are ignored on purpose: HF configs carry many fields that do not change the
// forward pass Kiln runs (hidden_act is always silu for these families, mlp_bias is false...).
const configSchema = z.looseObject({
  architectures: z.array(z.string()).nullish(),
  model_type: z.string().nullish(),
  hidden_size: positiveInt,
  intermediate_size: positiveInt,
  num_hidden_layers: positiveInt,
  num_attention_heads: positiveInt,
  num_key_value_heads: positiveInt.nullish(),
  head_dim: positiveInt.nullish(),
  vocab_size: positiveInt,
  max_position_embeddings: positiveInt,
  rms_norm_eps: z.number().positive(),
  rope_theta: z.number().positive().nullish(),
  rope_scaling: z.record(z.string(), z.unknown()).nullish(),
  tie_word_embeddings: z.boolean().nullish(),
  attention_bias: z.boolean().nullish(),
  bos_token_id: tokenId.nullish(),
  eos_token_id: z.union([tokenId, z.array(tokenId)]).nullish(),
  torch_dtype: z.string().nullish(),
  // transformers >= 4.56 writes `dtype` instead of `torch_dtype`.
  dtype: z.string().nullish(),
  quantization_config: z.unknown().nullish(),
});

type RawConfig = z.infer<typeof configSchema>;

const llama3ScalingSchema = z.looseObject({
  factor: z.number().positive(),
  low_freq_factor: z.number().positive(),
  high_freq_factor: z.number().positive(),
  original_max_position_embeddings: positiveInt,
});

const linearScalingSchema = z.looseObject({ factor: z.number().positive() });

/** "hidden_size: expected number, received string" for the first few zod issues. */
function describeIssues(error: z.ZodError, prefix: string): string {
  return error.issues
    .slice(0, 3)
    .map((issue) => {
      const path = [prefix, ...issue.path.map(String)].filter((p) => p !== "").join(".");
      return `${path || "(root)"}: ${issue.message}`;
    })
    .join("; ");
}

function invalid(message: string): ModelError {
  return new ModelError("INVALID_CONFIG", `config.json: ${message}`);
}

function resolveArchitecture(raw: RawConfig): Architecture {
  const declared = raw.architectures ?? [];
  if (declared.length > 0) {
    const known = declared.find((a): a is Architecture =>
      (ARCHITECTURES as readonly string[]).includes(a),
    );
    if (known === undefined) {
      throw invalid(
        `unsupported architecture ${declared.join(", ")} (field architectures); ` +
          `supported: ${ARCHITECTURES.join(", ")}`,
      );
    }
    return known;
  }
  const fromType = raw.model_type ? MODEL_TYPE_TO_ARCHITECTURE[raw.model_type] : undefined;
  if (fromType === undefined) {
    throw invalid(
      `cannot tell the architecture: field architectures is missing and model_type ` +
        `${JSON.stringify(raw.model_type ?? null)} is not one of ${Object.keys(MODEL_TYPE_TO_ARCHITECTURE).join(", ")}`,
    );
  }
  return fromType;
}

function parseRopeScaling(raw: Record<string, unknown> | null | undefined): RopeScaling | null {
  if (raw === null || raw === undefined) return null;
  // HF switched from `type` to `rope_type`; old checkpoints still carry `type`.
  const ropeType = raw["rope_type"] ?? raw["type"];
  if (ropeType === "default") return null; // HF's explicit "no scaling"
  if (ropeType === "llama3") {
    const parsed = llama3ScalingSchema.safeParse(raw);
    if (!parsed.success) throw invalid(describeIssues(parsed.error, "rope_scaling"));
    return {
      type: "llama3",
      factor: parsed.data.factor,
      lowFreqFactor: parsed.data.low_freq_factor,
      highFreqFactor: parsed.data.high_freq_factor,
      originalMaxPositionEmbeddings: parsed.data.original_max_position_embeddings,
    };
  }
  if (ropeType === "linear") {
    const parsed = linearScalingSchema.safeParse(raw);
    if (!parsed.success) throw invalid(describeIssues(parsed.error, "rope_scaling"));
    return { type: "linear", factor: parsed.data.factor };
  }
  throw invalid(
    `unsupported rope_scaling type ${JSON.stringify(ropeType ?? null)} (field rope_scaling.rope_type); ` +
      `supported: llama3, linear`,
  );
}

function normaliseEos(eos: number | number[] | null | undefined): number[] {
  if (eos === null || eos === undefined) return [];
  return typeof eos === "number" ? [eos] : [...eos];
}

/**
 * Validates a parsed config.json and normalises it to `LlamaConfig` (camelCase, defaults
 * applied). Throws `ModelError("INVALID_CONFIG")` naming the offending field. Pure.
 */
export function parseConfig(json: unknown): LlamaConfig {
  const parsed = configSchema.safeParse(json);
  if (!parsed.success) throw invalid(describeIssues(parsed.error, ""));
  const raw = parsed.data;
  const architecture = resolveArchitecture(raw);
  const numHeads = raw.num_attention_heads;
  const numKvHeads = raw.num_key_value_heads ?? numHeads;
  if (numHeads % numKvHeads !== 0) {
    throw invalid(
      `num_attention_heads (${numHeads}) must be a multiple of num_key_value_heads (${numKvHeads})`,
    );
  }
  let headDim = raw.head_dim;
  if (headDim === null || headDim === undefined) {
    if (raw.hidden_size % numHeads !== 0) {
      throw invalid(
        `hidden_size (${raw.hidden_size}) is not divisible by num_attention_heads (${numHeads}) and head_dim is missing`,
      );
    }
    headDim = raw.hidden_size / numHeads;
  }
  return {
    architecture,
    hiddenSize: raw.hidden_size,
    intermediateSize: raw.intermediate_size,
    numLayers: raw.num_hidden_layers,
    numHeads,
    numKvHeads,
    headDim,
    vocabSize: raw.vocab_size,
    maxPositionEmbeddings: raw.max_position_embeddings,
    rmsNormEps: raw.rms_norm_eps,
    ropeTheta: raw.rope_theta ?? 10000,
    ropeScaling: parseRopeScaling(raw.rope_scaling),
    tieWordEmbeddings: raw.tie_word_embeddings ?? false,
    // Qwen2 always has q/k/v bias and its config.json does not say so.
    attentionBias: architecture === "Qwen2ForCausalLM" || (raw.attention_bias ?? false),
    bosTokenId: raw.bos_token_id ?? null,
    eosTokenIds: normaliseEos(raw.eos_token_id),
    torchDtype: raw.torch_dtype ?? raw.dtype ?? "float32",
    quantization: parseQuantizationConfig(raw.quantization_config),
  };
}

/**
 * Reads `<dir>/config.json`. Throws `ModelError("NOT_FOUND")` when the file is missing and
 * `ModelError("INVALID_CONFIG")` when it is not valid JSON or fails `parseConfig`.
 */
export async function loadConfig(dir: string): Promise<LlamaConfig> {
  return parseConfig(await readJsonFile(join(dir, "config.json"), "INVALID_CONFIG"));
}

/** Reads and parses a JSON file; ENOENT → NOT_FOUND, bad JSON → `badCode`. */
export async function readJsonFile(
  path: string,
  badCode: "INVALID_CONFIG" | "INVALID_CHECKPOINT" | "INVALID_ADAPTER",
): Promise<unknown> {
  let text: string;
  try {
    text = await readFile(path, "utf8");
  } catch (err) {
    if (hasErrnoCode(err, "ENOENT")) {
      throw new ModelError("NOT_FOUND", `${path} does not exist`, { cause: err });
    }
    throw err;
  }
  try {
    return JSON.parse(text);
  } catch (err) {
    throw new ModelError(badCode, `${path} is not valid JSON: ${(err as Error).message}`, {
      cause: err,
    });
  }
}

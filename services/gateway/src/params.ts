import { randomInt } from "node:crypto";
import { type GrammarSpec, KilnError, type SamplingParams } from "@kiln/proto";
import type { ModelInfo } from "./model-info";

/** Legacy completions default to 16 new tokens (OpenAI and vLLM); chat to the rest of the context. */
export const COMPLETIONS_DEFAULT_MAX_TOKENS = 16;

/** The request fields both endpoints share, after schema validation (wire names). */
export interface SamplingRequest {
  readonly max_tokens?: number | null;
  readonly temperature?: number | null;
  readonly top_p?: number | null;
  readonly top_k?: number | null;
  readonly min_p?: number | null;
  readonly n?: number | null;
  readonly stop?: string | string[] | null;
  readonly stop_token_ids?: number[] | null;
  readonly seed?: number | null;
  readonly presence_penalty?: number | null;
  readonly frequency_penalty?: number | null;
  readonly repetition_penalty?: number | null;
  readonly logit_bias?: Record<string, number> | null;
  readonly ignore_eos?: boolean | null;
  readonly min_tokens?: number | null;
  /** Kiln's extra field: false opts out of speculative decoding. */
  readonly speculative?: boolean | null;
}

/** One prompt's generation, in internal (camelCase) terms. */
export interface GenerationPlan {
  readonly promptIds: readonly number[];
  /** Number of choices sampled from this prompt. */
  readonly n: number;
  readonly maxTokens: number;
  readonly minTokens: number;
  readonly stops: readonly string[];
  readonly stopTokenIds: readonly number[];
  readonly ignoreEos: boolean;
  /** Alternatives per token to report, or null when the client asked for no logprobs. */
  readonly numTopLogprobs: number | null;
  readonly sampling: SamplingParams;
  /** The LoRA adapter the request names; null or absent: the base model. */
  readonly adapter?: { readonly name: string; readonly path: string } | null;
  /** False: the request opted out of speculative decoding (`"speculative": false`). */
  readonly isSpeculative?: boolean;
  /** Structured output (ADR 0016): what every choice must match; null or absent: free text. */
  readonly grammar?: GrammarSpec | null;
}

export interface PlanOptions {
  /** The parameter that carried the prompt, for error messages ("messages" or "prompt"). */
  readonly promptParam: string;
  /** max_tokens when the request has none: a number, or null for "the rest of the context". */
  readonly defaultMaxTokens: number | null;
  /** `max_completion_tokens` (chat) wins over `max_tokens`. */
  readonly maxTokens: number | null;
  readonly numTopLogprobs: number | null;
}

/** Maps validated fields to a plan. Throws KilnError("INVALID_REQUEST") naming the parameter. */
export function buildPlan(
  req: SamplingRequest,
  promptIds: readonly number[],
  model: ModelInfo,
  opts: PlanOptions,
): GenerationPlan {
  checkTokenIds(promptIds, model.vocabSize, opts.promptParam);
  const maxTokens = resolveMaxTokens(promptIds.length, model.contextLen, opts);
  const minTokens = req.min_tokens ?? 0;
  if (minTokens > maxTokens) {
    throw new KilnError(
      "INVALID_REQUEST",
      `'min_tokens' (${minTokens}) must not exceed max_tokens (${maxTokens}).`,
      "min_tokens",
    );
  }
  const stopTokenIds = req.stop_token_ids ?? [];
  checkTokenIds(stopTokenIds, model.vocabSize, "stop_token_ids");
  return {
    promptIds,
    n: req.n ?? 1,
    maxTokens,
    minTokens,
    stops: typeof req.stop === "string" ? [req.stop] : (req.stop ?? []),
    stopTokenIds,
    ignoreEos: req.ignore_eos ?? false,
    numTopLogprobs: opts.numTopLogprobs,
    sampling: buildSampling(req, model, opts.numTopLogprobs ?? 0),
    isSpeculative: req.speculative ?? true,
  };
}

function resolveMaxTokens(promptLen: number, contextLen: number, opts: PlanOptions): number {
  if (promptLen >= contextLen) {
    throw new KilnError(
      "INVALID_REQUEST",
      `This model's maximum context length is ${contextLen} tokens. However, your prompt has ` +
        `${promptLen} tokens. Please reduce the length of the prompt.`,
      opts.promptParam,
    );
  }
  const roomLen = contextLen - promptLen;
  if (opts.maxTokens === null) return Math.min(opts.defaultMaxTokens ?? roomLen, roomLen);
  if (opts.maxTokens > roomLen) {
    throw new KilnError(
      "INVALID_REQUEST",
      `This model's maximum context length is ${contextLen} tokens. However, you requested ` +
        `${promptLen + opts.maxTokens} tokens (${promptLen} in the prompt, ${opts.maxTokens} in ` +
        "the completion). Please reduce the length of the prompt or completion.",
      "max_tokens",
    );
  }
  return opts.maxTokens;
}

function buildSampling(req: SamplingRequest, model: ModelInfo, numTopLogprobs: number) {
  const d = model.defaults;
  const isGreedyDefault = d.doSample === false;
  return {
    temperature: req.temperature ?? (isGreedyDefault ? 0 : (d.temperature ?? 1)),
    topK: Math.max(0, req.top_k ?? d.topK ?? 0),
    topP: req.top_p ?? d.topP ?? 1,
    minP: req.min_p ?? 0,
    repetitionPenalty: req.repetition_penalty ?? d.repetitionPenalty ?? 1,
    presencePenalty: req.presence_penalty ?? 0,
    frequencyPenalty: req.frequency_penalty ?? 0,
    logitBias: parseLogitBias(req.logit_bias ?? null, model.vocabSize),
    seed: toSeed(req.seed),
    numTopLogprobs,
  };
}

/** Any integer seed maps to a uint32 (its low 32 bits); no seed draws a random one. */
export function toSeed(seed: number | null | undefined): number {
  if (seed === null || seed === undefined) return randomInt(2 ** 32);
  return Number(BigInt.asUintN(32, BigInt(seed)));
}

function parseLogitBias(bias: Record<string, number> | null, vocabSize: number) {
  const out: { [id: number]: number } = {};
  if (!bias) return out;
  for (const [key, value] of Object.entries(bias)) {
    const id = /^\d+$/.test(key) ? Number(key) : Number.NaN;
    if (!(id < vocabSize)) {
      throw new KilnError(
        "INVALID_REQUEST",
        `Invalid key in 'logit_bias': '${key}' is not a token id below ${vocabSize}.`,
        "logit_bias",
      );
    }
    out[id] = value;
  }
  return out;
}

function checkTokenIds(ids: readonly number[], vocabSize: number, param: string): void {
  const bad = ids.find((id) => id >= vocabSize);
  if (bad !== undefined) {
    throw new KilnError(
      "INVALID_REQUEST",
      `Invalid value for '${param}': token id ${bad} is out of range (vocabulary size ${vocabSize}).`,
      param,
    );
  }
}

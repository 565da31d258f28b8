import type { LlamaModel, Token } from "node-llama-cpp";

/**
 * The slice of OpenAI's completion and chat bodies the baseline understands, validated by
 * hand (the baseline has no schema library) and mapped once into `GenerationRequest`.
 * Unknown fields are ignored, as OpenAI does for most extensions.
 */

export interface GenerationRequest {
  readonly kind: "completion" | "chat";
  readonly model: string;
  readonly promptIds: readonly Token[];
  readonly maxTokens: number;
  /** Keep generating past end-of-generation tokens (vLLM's `ignore_eos`). */
  readonly ignoreEos: boolean;
  /** 0 is greedy. */
  readonly temperature: number;
  readonly topP: number;
  readonly topK: number;
  readonly seed: number | undefined;
  readonly stream: boolean;
  readonly includeUsage: boolean;
}

/** A client error: answered 400 with an OpenAI error body naming `param`. */
export class BadRequest extends Error {
  constructor(
    message: string,
    readonly param: string | null = null,
  ) {
    super(message);
  }
}

const DEFAULT_MAX_TOKENS = 16;

function num(body: Record<string, unknown>, key: string, fallback: number, isInt = false): number {
  const v = body[key];
  if (v === undefined || v === null) return fallback;
  if (typeof v !== "number" || !Number.isFinite(v) || (isInt && !Number.isInteger(v))) {
    throw new BadRequest(`'${key}' must be a ${isInt ? "integer" : "number"}`, key);
  }
  return v;
}

function isTokenIds(v: unknown): v is number[] {
  return Array.isArray(v) && v.length > 0 && v.every((t) => Number.isInteger(t) && t >= 0);
}

/** Token-id prompts pass through unchanged; text is tokenized with BOS, as llama.cpp does. */
function completionPrompt(model: LlamaModel, prompt: unknown): Token[] {
  if (typeof prompt === "string") return withBos(model, model.tokenize(prompt, false));
  if (isTokenIds(prompt)) return prompt as Token[];
  if (Array.isArray(prompt) && prompt.length === 1) return completionPrompt(model, prompt[0]);
  throw new BadRequest("'prompt' must be a string or one array of token ids", "prompt");
}

function withBos(model: LlamaModel, ids: Token[]): Token[] {
  return model.tokens.bos === null ? ids : [model.tokens.bos, ...ids];
}

/**
 * Chat messages rendered as "role: content" lines. The benchmark models have no chat
 * template worth matching; this exists so the k6 chat scripts can also target the baseline.
 */
function chatPrompt(model: LlamaModel, messages: unknown): Token[] {
  if (!Array.isArray(messages) || messages.length === 0) {
    throw new BadRequest("'messages' must be a non-empty array", "messages");
  }
  const lines = messages.map((m: unknown, i) => {
    const { role, content } = (m ?? {}) as { role?: unknown; content?: unknown };
    if (typeof role !== "string" || typeof content !== "string") {
      throw new BadRequest("each message needs a string role and content", `messages[${i}]`);
    }
    return `${role}: ${content}`;
  });
  return withBos(model, model.tokenize(`${lines.join("\n")}\nassistant:`, false));
}

/** Validates a parsed JSON body for `kind`; throws BadRequest naming the first bad field. */
export function parseGenerationRequest(
  model: LlamaModel,
  kind: GenerationRequest["kind"],
  raw: unknown,
): GenerationRequest {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new BadRequest("the body must be a JSON object");
  }
  const body = raw as Record<string, unknown>;
  const maxKey =
    kind === "chat" && body.max_completion_tokens != null ? "max_completion_tokens" : "max_tokens";
  const maxTokens = num(body, maxKey, DEFAULT_MAX_TOKENS, true);
  if (maxTokens < 1) throw new BadRequest(`'${maxKey}' must be at least 1`, maxKey);
  const n = num(body, "n", 1, true);
  if (n !== 1) throw new BadRequest("the baseline serves n = 1 only", "n");
  const streamOptions = body.stream_options as { include_usage?: unknown } | null | undefined;
  const seed = body.seed == null ? undefined : num(body, "seed", 0, true);
  return {
    kind,
    model: typeof body.model === "string" ? body.model : "",
    promptIds:
      kind === "chat" ? chatPrompt(model, body.messages) : completionPrompt(model, body.prompt),
    maxTokens,
    ignoreEos: body.ignore_eos === true,
    temperature: num(body, "temperature", 1),
    topP: num(body, "top_p", 1),
    topK: num(body, "top_k", 0, true),
    seed,
    stream: body.stream === true,
    includeUsage: streamOptions?.include_usage === true,
  };
}

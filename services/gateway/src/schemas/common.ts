import { KilnError } from "@kiln/proto";
import { type ZodError, type ZodType, z } from "zod";

/** Most logprob alternatives per token (OpenAI's limit for chat; vLLM's default cap). */
export const MAX_TOP_LOGPROBS = 20;
/** OpenAI's limit on parallel samples. */
export const MAX_N = 128;
export const MAX_STOP_STRINGS = 4;

const nullish = <T extends ZodType>(t: T) => t.nullish();

/** Sampling and limit fields shared by /v1/chat/completions and /v1/completions. */
export const samplingFields = {
  model: z.string({ error: "`model` is required and must be a string" }),
  max_tokens: nullish(z.number().int().min(1)),
  temperature: nullish(z.number().min(0).max(2)),
  top_p: nullish(z.number().min(0).max(1)),
  top_k: nullish(z.number().int().min(-1)),
  min_p: nullish(z.number().min(0).max(1)),
  n: nullish(z.number().int().min(1).max(MAX_N)),
  stop: nullish(
    z.union([z.string().min(1), z.array(z.string().min(1)).max(MAX_STOP_STRINGS)], {
      error: `\`stop\` must be a non-empty string or an array of at most ${MAX_STOP_STRINGS} non-empty strings`,
    }),
  ),
  stop_token_ids: nullish(z.array(z.number().int().min(0))),
  seed: nullish(z.number().int().min(Number.MIN_SAFE_INTEGER).max(Number.MAX_SAFE_INTEGER)),
  presence_penalty: nullish(z.number().min(-2).max(2)),
  frequency_penalty: nullish(z.number().min(-2).max(2)),
  repetition_penalty: nullish(z.number().gt(0).max(10)),
  logit_bias: nullish(z.record(z.string(), z.number().min(-100).max(100))),
  stream: nullish(z.boolean()),
  stream_options: nullish(
    z.strictObject({
      include_usage: nullish(z.boolean()),
      continuous_usage_stats: nullish(z.boolean()),
    }),
  ),
  user: nullish(z.string()),
  ignore_eos: nullish(z.boolean()),
  min_tokens: nullish(z.number().int().min(0)),
  /** vLLM's prefix-cache salt; combined with the tenant's (see tenancy). */
  cache_salt: nullish(z.string().min(1).max(256)),
  /** Kiln's extra field: false opts this request out of speculative decoding (ADR 0017). */
  speculative: nullish(z.boolean()),
} as const;

/** `messages[0].content` style, as OpenAI names nested parameters. */
export function paramPath(path: readonly PropertyKey[]): string {
  let out = "";
  for (const key of path) {
    if (typeof key === "number") out += `[${key}]`;
    else out += out === "" ? String(key) : `.${String(key)}`;
  }
  return out;
}

/** The first problem zod found, as a 400 naming the parameter. */
export function invalidRequest(error: ZodError): KilnError {
  const issue = error.issues[0];
  if (!issue) return new KilnError("INVALID_REQUEST", "Invalid request body.");
  if (issue.code === "unrecognized_keys") {
    const param = paramPath([...issue.path, issue.keys[0] ?? ""]);
    return new KilnError(
      "INVALID_REQUEST",
      `Unrecognized request argument supplied: ${param}`,
      param,
    );
  }
  const param = paramPath(issue.path);
  if (param === "")
    return new KilnError("INVALID_REQUEST", `Invalid request body: ${issue.message}`);
  return new KilnError("INVALID_REQUEST", `Invalid value for '${param}': ${issue.message}`, param);
}

/** Parses `body` with `schema` or throws the first problem as a KilnError. */
export function parseBody<T>(schema: ZodType<T>, body: unknown): T {
  if (body === null || typeof body !== "object" || Array.isArray(body)) {
    throw new KilnError("INVALID_REQUEST", "The request body must be a JSON object.");
  }
  const parsed = schema.safeParse(body);
  if (!parsed.success) throw invalidRequest(parsed.error);
  return parsed.data;
}

/** A parameter Kiln knows but does not implement, with the values it accepts as "off". */
export interface UnsupportedRule {
  readonly param: string;
  isOff(value: unknown): boolean;
  readonly hint?: string;
}

const isNullish = (v: unknown) => v === null || v === undefined;
export const offWhenNull = (param: string, hint?: string): UnsupportedRule => ({
  param,
  isOff: isNullish,
  ...(hint ? { hint } : {}),
});

/** Throws a 400 naming the first parameter that asks for something Kiln does not support. */
export function rejectUnsupported(
  body: Record<string, unknown>,
  rules: readonly UnsupportedRule[],
) {
  for (const rule of rules) {
    if (!rule.isOff(body[rule.param])) {
      const hint = rule.hint ? ` ${rule.hint}` : "";
      throw new KilnError(
        "INVALID_REQUEST",
        `'${rule.param}' is not supported by Kiln yet.${hint}`,
        rule.param,
      );
    }
  }
}

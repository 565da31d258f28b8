import { join } from "node:path";
import { z } from "zod";
import { readJsonFile } from "./config";
import { ModelError } from "./errors";

/**
 * Sampling defaults a checkpoint ships in generation_config.json. Every field is optional:
 * absent means "the server's own default". Requests override these field by field.
 */
export interface GenerationDefaults {
  readonly temperature?: number;
  readonly topP?: number;
  readonly topK?: number;
  readonly repetitionPenalty?: number;
  readonly maxNewTokens?: number;
  readonly doSample?: boolean;
  readonly bosTokenId?: number;
  /** generation_config.json allows a number or a list; always a list here. */
  readonly eosTokenIds?: readonly number[];
}

const tokenId = z.number().int().nonnegative();

// Unknown keys (pad_token_id, transformers_version, max_length...) are ignored on purpose.
const schema = z.looseObject({
  temperature: z.number().nonnegative().nullish(),
  top_p: z.number().min(0).max(1).nullish(),
  top_k: z.number().int().nonnegative().nullish(),
  repetition_penalty: z.number().positive().nullish(),
  max_new_tokens: z.number().int().positive().nullish(),
  do_sample: z.boolean().nullish(),
  bos_token_id: tokenId.nullish(),
  eos_token_id: z.union([tokenId, z.array(tokenId)]).nullish(),
});

/** Copies `value` into `out[key]` unless it is null or undefined. */
function setIfPresent<K extends keyof GenerationDefaults>(
  out: { -readonly [P in keyof GenerationDefaults]?: GenerationDefaults[P] },
  key: K,
  value: GenerationDefaults[K] | null | undefined,
): void {
  if (value !== null && value !== undefined) out[key] = value;
}

/** Validates a parsed generation_config.json. Throws ModelError("INVALID_CONFIG") naming the field. */
export function parseGenerationConfig(json: unknown): GenerationDefaults {
  const parsed = schema.safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    const field = issue?.path.map(String).join(".") || "(root)";
    throw new ModelError(
      "INVALID_CONFIG",
      `generation_config.json: ${field}: ${issue?.message ?? "invalid"}`,
    );
  }
  const raw = parsed.data;
  const out: { -readonly [P in keyof GenerationDefaults]?: GenerationDefaults[P] } = {};
  setIfPresent(out, "temperature", raw.temperature);
  setIfPresent(out, "topP", raw.top_p);
  setIfPresent(out, "topK", raw.top_k);
  setIfPresent(out, "repetitionPenalty", raw.repetition_penalty);
  setIfPresent(out, "maxNewTokens", raw.max_new_tokens);
  setIfPresent(out, "doSample", raw.do_sample);
  setIfPresent(out, "bosTokenId", raw.bos_token_id);
  const eos = raw.eos_token_id;
  setIfPresent(out, "eosTokenIds", typeof eos === "number" ? [eos] : eos);
  return out;
}

/**
 * Reads `<dir>/generation_config.json`; a missing file gives `{}` (it is optional in HF
 * checkpoints). Throws ModelError("INVALID_CONFIG") for bad JSON or bad fields.
 */
export async function loadGenerationConfig(dir: string): Promise<GenerationDefaults> {
  let json: unknown;
  try {
    json = await readJsonFile(join(dir, "generation_config.json"), "INVALID_CONFIG");
  } catch (err) {
    if (err instanceof ModelError && err.code === "NOT_FOUND") return {};
    throw err;
  }
  return parseGenerationConfig(json);
}

import { KilnError } from "@kiln/proto";
import { z } from "zod";
import { MAX_TOP_LOGPROBS, parseBody, rejectUnsupported, samplingFields } from "./common";

const tokenIds = z.array(z.number().int().min(0)).min(1);

const completionSchema = z.strictObject({
  ...samplingFields,
  prompt: z.union([z.string(), z.array(z.string()).min(1), tokenIds, z.array(tokenIds).min(1)], {
    error:
      "`prompt` must be a string, an array of strings, an array of token ids, or an array of token id arrays",
  }),
  echo: z.boolean().nullish(),
  logprobs: z.number().int().min(0).max(MAX_TOP_LOGPROBS).nullish(),
  best_of: z.number().int().min(1).nullish(),
  suffix: z.unknown().optional(),
  // Structured output (ADR 0016): checked in structured/response-format.ts.
  response_format: z.unknown().optional(),
  structured_outputs: z.unknown().optional(),
});

export type CompletionBody = z.infer<typeof completionSchema>;

/** A prompt as given: text to encode, or token ids to pass through unchanged. */
export type PromptInput = { readonly text: string } | { readonly ids: readonly number[] };

/** Validates a completion body; throws KilnError("INVALID_REQUEST") naming the param. */
export function parseCompletionBody(body: unknown): CompletionBody {
  const parsed = parseBody(completionSchema, body);
  rejectUnsupported(parsed, [
    { param: "suffix", isOff: (v) => v === null || v === undefined || v === "" },
    {
      param: "best_of",
      isOff: (v) => v === null || v === undefined || v === (parsed.n ?? 1),
      hint: "best_of must equal n.",
    },
  ]);
  return parsed;
}

/** The prompt field as a list of prompts (OpenAI batches several prompts in one request). */
export function promptInputs(prompt: CompletionBody["prompt"]): PromptInput[] {
  if (typeof prompt === "string") return [{ text: prompt }];
  if (prompt.every((p) => typeof p === "string")) return prompt.map((text) => ({ text }));
  if (prompt.every((p) => typeof p === "number")) return [{ ids: prompt }];
  if (prompt.every((p) => Array.isArray(p))) return prompt.map((ids) => ({ ids }));
  throw new KilnError("INVALID_REQUEST", "Invalid value for 'prompt'.", "prompt");
}

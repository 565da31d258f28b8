import { z } from "zod";
import { parseBody } from "./common";

/** OpenAI's limit on inputs per embeddings request. */
export const MAX_EMBEDDING_INPUTS = 2048;

const tokenIds = z.array(z.number().int().min(0)).min(1);

const embeddingsSchema = z.strictObject({
  model: z.string({ error: "`model` is required and must be a string" }),
  input: z.union(
    [
      z.string().min(1),
      z.array(z.string().min(1)).min(1).max(MAX_EMBEDDING_INPUTS),
      tokenIds,
      z.array(tokenIds).min(1).max(MAX_EMBEDDING_INPUTS),
    ],
    {
      error:
        "`input` must be a non-empty string, an array of them, an array of token ids, or an array of token id arrays",
    },
  ),
  encoding_format: z.enum(["float", "base64"]).nullish(),
  dimensions: z.number().int().min(1).nullish(),
  user: z.string().nullish(),
});

export type EmbeddingsBody = z.infer<typeof embeddingsSchema>;

export function parseEmbeddingsBody(body: unknown): EmbeddingsBody {
  return parseBody(embeddingsSchema, body);
}

/** The input as a list: texts to encode, or token ids passed through. */
export function embeddingInputs(
  input: EmbeddingsBody["input"],
): ({ readonly text: string } | { readonly ids: readonly number[] })[] {
  if (typeof input === "string") return [{ text: input }];
  if (input.every((x) => typeof x === "string")) return input.map((text) => ({ text }));
  if (input.every((x) => typeof x === "number")) return [{ ids: input }];
  return (input as number[][]).map((ids) => ({ ids }));
}

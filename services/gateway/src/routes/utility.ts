import { KilnError } from "@kiln/proto";
import type { FastifyInstance } from "fastify";
import { z } from "zod";
import gatewayPackage from "../../package.json" with { type: "json" };
import type { GatewayDeps } from "../app";
import { checkModel } from "../model-info";
import { type ChatBody, normalizeMessages } from "../schemas/chat";
import { parseBody } from "../schemas/common";

/**
 * The gateway package's version, reported by GET /version. Imported, not read at run time, so
 * the compiled dist/ bundle carries it too.
 */
export const KILN_VERSION: string = gatewayPackage.version;

const tokenIds = z.array(z.number().int().min(0));

const tokenizeSchema = z.union(
  [
    z.strictObject({
      model: z.string().nullish(),
      prompt: z.string(),
      add_special_tokens: z.boolean().nullish(),
      return_token_strs: z.boolean().nullish(),
    }),
    z.strictObject({
      model: z.string().nullish(),
      messages: z
        .array(z.looseObject({ role: z.string(), content: z.unknown().optional() }))
        .min(1),
      add_generation_prompt: z.boolean().nullish(),
      add_special_tokens: z.boolean().nullish(),
      return_token_strs: z.boolean().nullish(),
    }),
  ],
  { error: "expected {prompt} or {messages} (see docs/api.md, /tokenize)" },
);

const detokenizeSchema = z.strictObject({ model: z.string().nullish(), tokens: tokenIds });

/**
 * vLLM's utility routes: POST /tokenize, POST /detokenize and GET /version. A prompt gets the
 * tokenizer's special tokens (BOS) unless `add_special_tokens` is false; messages are rendered
 * with the chat template (`add_generation_prompt` defaults to true), which writes its own.
 */
export function registerUtilityRoutes(app: FastifyInstance, deps: GatewayDeps): void {
  app.post("/tokenize", async (request) => {
    const body = parseBody(tokenizeSchema, request.body);
    if (body.model) checkModel(body.model, deps.model);
    const tokens =
      "prompt" in body
        ? await deps.codec.encodePrompt(body.prompt, {
            addSpecialTokens: body.add_special_tokens ?? true,
          })
        : await deps.codec.encodeChat(
            normalizeMessages(body.messages as unknown as ChatBody["messages"]),
            { addGenerationPrompt: body.add_generation_prompt ?? true },
          );
    const tokenStrs = body.return_token_strs
      ? tokens.map((id) => deps.codec.tokenPiece(id).text)
      : null;
    return {
      count: tokens.length,
      max_model_len: deps.model.contextLen,
      tokens,
      token_strs: tokenStrs,
    };
  });

  app.post("/detokenize", async (request) => {
    const body = parseBody(detokenizeSchema, request.body);
    if (body.model) checkModel(body.model, deps.model);
    const bad = body.tokens.find((id) => id >= deps.codec.vocabSize);
    if (bad !== undefined) {
      throw new KilnError(
        "INVALID_REQUEST",
        `Invalid value for 'tokens': token id ${bad} is out of range (vocabulary size ${deps.codec.vocabSize}).`,
        "tokens",
      );
    }
    return { prompt: deps.codec.decode(body.tokens) };
  });

  app.get("/version", async () => ({ version: KILN_VERSION }));
}

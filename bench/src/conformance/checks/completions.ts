import { type Check, type CheckContext, expect, expectStatus, requireSupported } from "../check";
import { requestJson, requestSse } from "../http";
import { assertSchema } from "../validate";
import { streamChunks } from "./stream";

interface Completion {
  choices: { text: string; index: number; logprobs: { tokens?: string[] } | null }[];
  usage: { prompt_tokens: number; prompt_tokens_details?: { cached_tokens?: number } };
}

async function complete(ctx: CheckContext, extra: Record<string, unknown>) {
  return requestJson(ctx.target, "POST", "/v1/completions", {
    model: ctx.target.model,
    prompt: "Once upon a time",
    max_tokens: 8,
    ...extra,
  });
}

async function completeOk(ctx: CheckContext, extra: Record<string, unknown>): Promise<Completion> {
  const reply = await complete(ctx, extra);
  expectStatus(reply, 200, "completion");
  assertSchema("CreateCompletionResponse", reply.body);
  return reply.body as Completion;
}

export const COMPLETION_CHECKS: readonly Check[] = [
  {
    id: "completions.basic",
    endpoint: "POST /v1/completions",
    title: "a completion, raw and through the official client",
    run: async (ctx) => {
      await completeOk(ctx, {});
      const viaClient = await ctx.client.completions.create({
        model: ctx.target.model,
        prompt: "Once upon a time",
        max_tokens: 4,
      });
      assertSchema("CreateCompletionResponse", viaClient, "client response");
    },
  },
  {
    id: "completions.stream",
    endpoint: "POST /v1/completions",
    title: "stream: every chunk matches the schema, ends with [DONE]",
    run: async (ctx) => {
      const reply = await requestSse(ctx.target, "/v1/completions", {
        model: ctx.target.model,
        prompt: "Once upon a time",
        max_tokens: 8,
        stream: true,
      });
      streamChunks(reply, "CreateCompletionStreamChunk");
    },
  },
  {
    id: "completions.prompt-list",
    endpoint: "POST /v1/completions",
    title: "a list of prompts gives one choice per prompt",
    run: async (ctx) => {
      const reply = await complete(ctx, { prompt: ["Once upon a time", "Lily had"] });
      requireSupported(reply, "prompt list");
      assertSchema("CreateCompletionResponse", reply.body);
      const indexes = (reply.body as Completion).choices.map((c) => c.index).sort();
      expect(indexes.join() === "0,1", `choice indexes ${indexes.join()}`);
    },
  },
  {
    id: "completions.token-ids",
    endpoint: "POST /v1/completions",
    title: "a prompt of token ids",
    run: async (ctx) => {
      const reply = await complete(ctx, { prompt: [1, 403, 407] });
      requireSupported(reply, "token-id prompt");
      assertSchema("CreateCompletionResponse", reply.body);
    },
  },
  {
    id: "completions.echo-logprobs",
    endpoint: "POST /v1/completions",
    title: "echo with logprobs",
    run: async (ctx) => {
      const reply = await complete(ctx, { echo: true, logprobs: 1, max_tokens: 2 });
      requireSupported(reply, "echo/logprobs");
      assertSchema("CreateCompletionResponse", reply.body);
      const choice = (reply.body as Completion).choices[0]!;
      expect(choice.text.startsWith("Once upon a time"), "echo missing");
      expect((choice.logprobs?.tokens?.length ?? 0) > 2, "logprobs.tokens missing");
    },
  },
  {
    id: "completions.max_tokens",
    endpoint: "POST /v1/completions",
    title: "max_tokens bounds the output (finish_reason length)",
    run: async (ctx) => {
      const body = (await completeOk(ctx, { max_tokens: 3, temperature: 0 })) as Completion & {
        usage: { completion_tokens: number };
        choices: { finish_reason: string }[];
      };
      expect(
        body.usage.completion_tokens <= 3,
        `completion_tokens ${body.usage.completion_tokens}`,
      );
      if (body.usage.completion_tokens === 3) {
        expect(body.choices[0]!.finish_reason === "length", "finish_reason is not length");
      }
    },
  },
  {
    id: "completions.usage-cached-tokens",
    endpoint: "POST /v1/completions",
    title: "usage.prompt_tokens_details.cached_tokens is reported",
    run: async (ctx) => {
      const body = await completeOk(ctx, {});
      const cached = body.usage.prompt_tokens_details?.cached_tokens;
      expect(Number.isInteger(cached), "usage.prompt_tokens_details.cached_tokens missing");
    },
  },
];

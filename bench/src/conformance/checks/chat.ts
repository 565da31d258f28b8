import { type Check, type CheckContext, expect, expectStatus, requireSupported } from "../check";
import { requestJson, requestSse } from "../http";
import { assertSchema } from "../validate";
import { streamChunks } from "./stream";

interface Chat {
  choices: {
    message: { content: string | null; tool_calls?: unknown[] };
    finish_reason: string;
    logprobs: { content: { top_logprobs: unknown[] }[] | null } | null;
  }[];
  usage: {
    prompt_tokens: number;
    completion_tokens: number;
    prompt_tokens_details?: { cached_tokens?: number };
  };
}
interface ChatChunk {
  choices: { delta: { content?: string | null }; finish_reason: string | null }[];
  usage?: unknown;
}

const USER = [{ role: "user", content: "Tell me a story about a dog." }];

async function chat(ctx: CheckContext, extra: Record<string, unknown>) {
  const reply = await requestJson(ctx.target, "POST", "/v1/chat/completions", {
    model: ctx.target.model,
    messages: USER,
    max_tokens: 16,
    ...extra,
  });
  return reply;
}

async function chatOk(ctx: CheckContext, extra: Record<string, unknown>): Promise<Chat> {
  const reply = await chat(ctx, extra);
  expectStatus(reply, 200, "chat");
  assertSchema("CreateChatCompletionResponse", reply.body);
  return reply.body as Chat;
}

export const CHAT_CHECKS: readonly Check[] = [
  {
    id: "chat.basic",
    endpoint: "POST /v1/chat/completions",
    title: "a chat completion, raw and through the official client",
    run: async (ctx) => {
      const body = await chatOk(ctx, {});
      expect(typeof body.choices[0]?.message.content === "string", "no message content");
      const viaClient = await ctx.client.chat.completions.create({
        model: ctx.target.model,
        messages: [{ role: "user", content: "Hi" }],
        max_tokens: 8,
      });
      assertSchema("CreateChatCompletionResponse", viaClient, "client response");
    },
  },
  {
    id: "chat.stream",
    endpoint: "POST /v1/chat/completions",
    title: "stream: every chunk matches the chunk schema, ends with [DONE]",
    run: async (ctx) => {
      const reply = await requestSse(ctx.target, "/v1/chat/completions", {
        model: ctx.target.model,
        messages: USER,
        max_tokens: 16,
        stream: true,
      });
      const chunks = streamChunks<ChatChunk>(reply, "CreateChatCompletionStreamResponse");
      expect(
        chunks.some((c) => c.choices[0]?.finish_reason),
        "no chunk carries finish_reason",
      );
    },
  },
  {
    id: "chat.stream-include-usage",
    endpoint: "POST /v1/chat/completions",
    title: "stream_options.include_usage: a final usage chunk with empty choices",
    run: async (ctx) => {
      const reply = await requestSse(ctx.target, "/v1/chat/completions", {
        model: ctx.target.model,
        messages: USER,
        max_tokens: 8,
        stream: true,
        stream_options: { include_usage: true },
      });
      if (reply.status !== 200)
        requireSupported({ status: reply.status, body: reply.body }, "include_usage");
      const chunks = streamChunks<ChatChunk>(reply, "CreateChatCompletionStreamResponse");
      const last = chunks.at(-1)!;
      expect(last.choices.length === 0 && last.usage, "last chunk is not a usage chunk");
    },
  },
  {
    id: "chat.max_completion_tokens",
    endpoint: "POST /v1/chat/completions",
    title: "max_completion_tokens bounds the output (finish_reason length)",
    run: async (ctx) => {
      const reply = await chat(ctx, {
        max_tokens: undefined,
        max_completion_tokens: 3,
        temperature: 0,
      });
      requireSupported(reply, "max_completion_tokens");
      assertSchema("CreateChatCompletionResponse", reply.body);
      const body = reply.body as Chat;
      expect(
        body.usage.completion_tokens <= 3,
        `completion_tokens ${body.usage.completion_tokens}`,
      );
    },
  },
  {
    id: "chat.n",
    endpoint: "POST /v1/chat/completions",
    title: "n: several choices",
    run: async (ctx) => {
      const reply = await chat(ctx, { n: 2 });
      requireSupported(reply, "n");
      assertSchema("CreateChatCompletionResponse", reply.body);
      expect((reply.body as Chat).choices.length === 2, "expected 2 choices");
    },
  },
  {
    id: "chat.stop",
    endpoint: "POST /v1/chat/completions",
    title: "stop: the output ends before the stop string",
    run: async (ctx) => {
      const full = await chatOk(ctx, { temperature: 0, max_tokens: 24 });
      const text = full.choices[0]!.message.content ?? "";
      const words = text.split(/\s+/).filter((w) => w.length >= 3);
      expect(words.length > 1, `output too short to pick a stop string: ${JSON.stringify(text)}`);
      const stop = words[1]!;
      const cut = await chatOk(ctx, { temperature: 0, max_tokens: 24, stop: [stop] });
      const cutText = cut.choices[0]!.message.content ?? "";
      expect(!cutText.includes(stop), `stop string ${stop} in ${JSON.stringify(cutText)}`);
      expect(
        cut.choices[0]!.finish_reason === "stop",
        `finish_reason ${cut.choices[0]!.finish_reason}`,
      );
    },
  },
  {
    id: "chat.logprobs",
    endpoint: "POST /v1/chat/completions",
    title: "logprobs with top_logprobs",
    run: async (ctx) => {
      const reply = await chat(ctx, { logprobs: true, top_logprobs: 2, max_tokens: 4 });
      requireSupported(reply, "logprobs");
      assertSchema("CreateChatCompletionResponse", reply.body);
      const content = (reply.body as Chat).choices[0]!.logprobs?.content;
      expect(content && content.length > 0, "no logprobs.content");
      expect(
        content.every((t) => t.top_logprobs.length === 2),
        "top_logprobs is not 2 per token",
      );
    },
  },
  {
    id: "chat.seed",
    endpoint: "POST /v1/chat/completions",
    title: "seed: the same seed samples the same text",
    run: async (ctx) => {
      const a = await chatOk(ctx, { seed: 1234, temperature: 1 });
      const b = await chatOk(ctx, { seed: 1234, temperature: 1 });
      expect(a.choices[0]!.message.content === b.choices[0]!.message.content, "texts differ");
    },
  },
  {
    id: "chat.roles-and-parts",
    endpoint: "POST /v1/chat/completions",
    title: "developer and system roles, content-part arrays",
    run: async (ctx) => {
      await chatOk(ctx, {
        messages: [
          { role: "developer", content: "Be kind." },
          { role: "system", content: "Short answers." },
          { role: "user", content: [{ type: "text", text: "Hello" }] },
        ],
      });
    },
  },
  {
    id: "chat.usage-cached-tokens",
    endpoint: "POST /v1/chat/completions",
    title: "usage.prompt_tokens_details.cached_tokens is reported",
    run: async (ctx) => {
      const body = await chatOk(ctx, {});
      const cached = body.usage.prompt_tokens_details?.cached_tokens;
      expect(Number.isInteger(cached), "usage.prompt_tokens_details.cached_tokens missing");
    },
  },
  {
    id: "chat.json-mode",
    endpoint: "POST /v1/chat/completions",
    title: "response_format json_object gives JSON (a cut at max_tokens gives a JSON prefix)",
    run: async (ctx) => {
      const reply = await chat(ctx, {
        messages: [{ role: "user", content: "Answer in JSON." }],
        response_format: { type: "json_object" },
        max_tokens: 32,
      });
      requireSupported(reply, "response_format");
      assertSchema("CreateChatCompletionResponse", reply.body);
      const choice = (reply.body as Chat).choices[0]!;
      const content = choice.message.content ?? "";
      // json_object does not bound the output, so a small model may be cut by max_tokens: then
      // only the start can be checked (as with OpenAI, whose docs warn of the same cut).
      if (choice.finish_reason === "stop") JSON.parse(content);
      else expect(/^\s*[[{]/.test(content), `json_object output does not start JSON: ${content}`);
    },
  },
  {
    id: "chat.json-schema",
    endpoint: "POST /v1/chat/completions",
    title: "response_format json_schema (strict) gives schema-valid JSON",
    run: async (ctx) => {
      const schema = {
        type: "object",
        properties: { ok: { type: "boolean" }, n: { type: "integer", minimum: 0, maximum: 9 } },
        required: ["ok", "n"],
        additionalProperties: false,
      };
      const reply = await chat(ctx, {
        messages: [{ role: "user", content: "Answer in JSON." }],
        response_format: { type: "json_schema", json_schema: { name: "a", schema, strict: true } },
        max_tokens: 64,
      });
      requireSupported(reply, "response_format");
      assertSchema("CreateChatCompletionResponse", reply.body);
      const value = JSON.parse((reply.body as Chat).choices[0]!.message.content ?? "");
      expect(typeof value.ok === "boolean", "ok is not a boolean");
      expect(Number.isInteger(value.n) && value.n >= 0 && value.n <= 9, "n is out of its bounds");
      expect(Object.keys(value).sort().join() === "n,ok", "extra or missing properties");
    },
  },
  {
    id: "chat.tools",
    endpoint: "POST /v1/chat/completions",
    title: "function tools are accepted",
    run: async (ctx) => {
      const reply = await chat(ctx, {
        tools: [
          {
            type: "function",
            function: { name: "f", parameters: { type: "object", properties: {} } },
          },
        ],
      });
      requireSupported(reply, "tools");
      assertSchema("CreateChatCompletionResponse", reply.body);
    },
  },
  {
    id: "chat.invalid-param",
    endpoint: "POST /v1/chat/completions",
    title: "an out-of-range parameter is a 400 with an OpenAI error body",
    run: async (ctx) => {
      const reply = await chat(ctx, { temperature: 5 });
      expectStatus(reply, 400, "temperature 5");
      assertSchema("ErrorResponse", reply.body);
    },
  },
  {
    id: "chat.unknown-model",
    endpoint: "POST /v1/chat/completions",
    title: "an unknown model is a 404 with an OpenAI error body",
    run: async (ctx) => {
      const reply = await chat(ctx, { model: "no-such-model-kiln" });
      expectStatus(reply, 404, "unknown model");
      assertSchema("ErrorResponse", reply.body);
    },
  },
];

import type OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MODEL, type Stack, startStack, stopStack } from "./helpers/stack";

/**
 * The Responses API and the utility routes through real router, worker and gateway processes,
 * driven by the official `openai` client.
 */
let stack: Stack;
let client: OpenAI;
let origin: string;
beforeAll(async () => {
  stack = await startStack();
  client = stack.client;
  origin = stack.baseURL.replace(/\/v1$/, "");
}, 90_000);
afterAll(() => stopStack(stack), 30_000);

const WEATHER_TOOL = {
  type: "function" as const,
  name: "get_weather",
  description: "The weather in a city",
  parameters: { type: "object", properties: { city: { type: "string" } }, required: ["city"] },
  strict: false,
};

describe("the Responses API on the running stack", { timeout: 30_000 }, () => {
  it("answers like chat does for the same conversation (greedy)", async () => {
    const input = "Tell me a story about a cat who lived in a big house with a girl named Lily.";
    const res = await client.responses.create({
      model: MODEL,
      input,
      temperature: 0,
      max_output_tokens: 24,
    });
    const chat = await client.chat.completions.create({
      model: MODEL,
      messages: [{ role: "user", content: input }],
      temperature: 0,
      max_tokens: 24,
    });
    expect(res.status).toBe(
      chat.choices[0]!.finish_reason === "length" ? "incomplete" : "completed",
    );
    expect(res.output_text).toBe(chat.choices[0]!.message.content);
    expect(res.usage!.input_tokens).toBe(chat.usage!.prompt_tokens);
    expect(res.usage!.output_tokens).toBe(chat.usage!.completion_tokens);
    // The same prompt twice: its full blocks come from the prefix cache the second time.
    expect(chat.usage!.prompt_tokens_details!.cached_tokens).toBeGreaterThan(0);
    expect((await client.responses.retrieve(res.id)).output_text).toBe(res.output_text);
  });

  it("streams the typed events, ending with the same text as the stored response", async () => {
    const stream = await client.responses.create({
      model: MODEL,
      input: "Once upon a time",
      temperature: 0,
      max_output_tokens: 16,
      stream: true,
    });
    const types: string[] = [];
    let text = "";
    let final: OpenAI.Responses.Response | null = null;
    for await (const event of stream) {
      types.push(event.type);
      if (event.type === "response.output_text.delta") text += event.delta;
      if (event.type === "response.completed" || event.type === "response.incomplete") {
        final = event.response;
      }
    }
    expect(types.slice(0, 4)).toEqual([
      "response.created",
      "response.in_progress",
      "response.output_item.added",
      "response.content_part.added",
    ]);
    expect(types).toContain("response.output_text.done");
    expect(final).not.toBeNull();
    expect((await client.responses.retrieve(final!.id)).output_text).toBe(text);
  });

  it("chains a conversation with previous_response_id", async () => {
    const first = await client.responses.create({
      model: MODEL,
      input: "Lily had a red ball.",
      temperature: 0,
      max_output_tokens: 8,
    });
    const second = await client.responses.create({
      model: MODEL,
      input: "What color was it?",
      previous_response_id: first.id,
      temperature: 0,
      max_output_tokens: 8,
    });
    expect(second.previous_response_id).toBe(first.id);
    // The second prompt holds the first turn: the first input, its answer and the new input.
    const alone = await client.responses.create({
      model: MODEL,
      input: "What color was it?",
      temperature: 0,
      max_output_tokens: 8,
      store: false,
    });
    expect(second.usage!.input_tokens).toBeGreaterThan(
      alone.usage!.input_tokens + first.usage!.output_tokens,
    );
    await client.responses.delete(first.id);
    await expect(client.responses.retrieve(first.id)).rejects.toMatchObject({ status: 404 });
  });

  it("accepts a function tool, and a function_call_output continuing the call", async () => {
    const withTool = await client.responses.create({
      model: MODEL,
      input: "What is the weather in Paris?",
      tools: [WEATHER_TOOL],
      temperature: 0,
      max_output_tokens: 8,
    });
    const without = await client.responses.create({
      model: MODEL,
      input: "What is the weather in Paris?",
      temperature: 0,
      max_output_tokens: 8,
    });
    // stories260K's template ignores `tools`: the documented fallback system message is added.
    expect(withTool.usage!.input_tokens).toBeGreaterThan(without.usage!.input_tokens + 20);
    expect(withTool.tools).toEqual([WEATHER_TOOL]);
    const followUp = await client.responses.create({
      model: MODEL,
      previous_response_id: withTool.id,
      tools: [WEATHER_TOOL],
      input: [
        {
          type: "function_call",
          call_id: "call_1",
          name: "get_weather",
          arguments: '{"city":"Paris"}',
        },
        { type: "function_call_output", call_id: "call_1", output: "sunny, 21 C" },
      ],
      max_output_tokens: 8,
    });
    expect(followUp.status).toMatch(/^(completed|incomplete)$/);
    await expect(
      client.responses.create({ model: MODEL, input: "x", tools: [{ type: "web_search" }] }),
    ).rejects.toMatchObject({ status: 400 });
  });

  it("cancels a background response", async () => {
    const created = await client.responses.create({
      model: MODEL,
      input: "Tell me a long story.",
      background: true,
      max_output_tokens: 400,
    });
    expect(created.status).toBe("queued");
    const cancelled = await client.responses.cancel(created.id);
    expect(["cancelled", "completed", "incomplete"]).toContain(cancelled.status);
    expect((await client.responses.retrieve(created.id)).status).toBe(cancelled.status);
  });
});

describe("the utility routes on the running stack", { timeout: 30_000 }, () => {
  it("tokenizes and detokenizes with the model's tokenizer", async () => {
    const post = async (path: string, body: object) => {
      const res = await fetch(`${origin}${path}`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify(body),
      });
      expect(res.status).toBe(200);
      return (await res.json()) as Record<string, unknown>;
    };
    // The golden file's first prompt: "Once upon a time" is [1, 403, 407, 261, 378] with BOS.
    const tokenized = await post("/tokenize", { model: MODEL, prompt: "Once upon a time" });
    expect(tokenized.tokens).toEqual([1, 403, 407, 261, 378]);
    const bare = await post("/tokenize", { prompt: "Once upon a time", add_special_tokens: false });
    expect(bare.tokens).toEqual([403, 407, 261, 378]);
    expect(await post("/detokenize", { tokens: [1, 403, 407, 261, 378] })).toEqual({
      prompt: "Once upon a time",
    });
    const chat = await post("/tokenize", { messages: [{ role: "user", content: "Hi" }] });
    const version = await (await fetch(`${origin}/version`)).json();
    expect(version).toHaveProperty("version");
    expect(chat.count).toBeGreaterThan(2);
  });
});

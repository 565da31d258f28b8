import { readFileSync } from "node:fs";
import { join } from "node:path";
import { SHARED_DIR } from "@kiln/model";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MODEL, type Stack, startStack, stopStack } from "./helpers/stack";

interface GoldenCase {
  prompt: string;
  prompt_ids: number[];
  greedy_ids: number[];
  greedy_text: string;
}
const GOLDEN: { max_new_tokens: number; cases: GoldenCase[] } = JSON.parse(
  readFileSync(join(SHARED_DIR, "golden/stories260K-greedy.json"), "utf8"),
);

let stack: Stack;
let client: OpenAI;
beforeAll(async () => {
  // A small body limit: a rejected body small enough to sit in socket buffers, so the client
  // reads the 413 instead of racing the server's close of the connection (EPIPE).
  stack = await startStack({ KILN_MAX_BODY_BYTES: String(64 * 1024) });
  client = stack.client;
}, 90_000);
afterAll(() => stopStack(stack), 30_000);

const chatMessages = [{ role: "user" as const, content: "Tell me a story about a dog." }];

async function streamChatText(params: Omit<OpenAI.ChatCompletionCreateParamsStreaming, "stream">) {
  const stream = await client.chat.completions.create({ ...params, stream: true });
  let text = "";
  let finishReason: string | null = null;
  let usage: OpenAI.CompletionUsage | null | undefined;
  for await (const chunk of stream) {
    text += chunk.choices[0]?.delta.content ?? "";
    finishReason = chunk.choices[0]?.finish_reason ?? finishReason;
    if (chunk.usage) usage = chunk.usage;
  }
  return { text, finishReason, usage };
}

describe("the running stack, through the official openai client", () => {
  it("lists the model", async () => {
    const models = await client.models.list();
    expect(models.data.map((m) => m.id)).toEqual([MODEL]);
    expect((await client.models.retrieve(MODEL)).id).toBe(MODEL);
  });

  it("reproduces the golden greedy completions, from text and from token ids", async () => {
    for (const c of GOLDEN.cases) {
      for (const prompt of [c.prompt, c.prompt_ids]) {
        const res = await client.completions.create({
          model: MODEL,
          prompt,
          max_tokens: GOLDEN.max_new_tokens,
          temperature: 0,
        });
        expect(res.choices[0]!.text).toBe(c.greedy_text);
        expect(res.choices[0]!.finish_reason).toBe("length");
        expect(res.usage).toEqual({
          prompt_tokens: c.prompt_ids.length,
          completion_tokens: c.greedy_ids.length,
          total_tokens: c.prompt_ids.length + c.greedy_ids.length,
          // The second run of a prompt may reuse its cached prefix blocks.
          prompt_tokens_details: { cached_tokens: expect.any(Number) },
        });
      }
    }
  });

  it("streams chat text equal to the non-streamed text for the same seed", async () => {
    const params = { model: MODEL, messages: chatMessages, seed: 7, max_tokens: 40 };
    const whole = await client.chat.completions.create(params);
    expect(whole.object).toBe("chat.completion");
    const streamed = await streamChatText({ ...params, stream_options: { include_usage: true } });
    expect(streamed.text).toBe(whole.choices[0]!.message.content);
    expect(streamed.finishReason).toBe(whole.choices[0]!.finish_reason);
    const { prompt_tokens_details: streamedDetails, ...streamedCounts } = streamed.usage!;
    const { prompt_tokens_details: _, ...wholeCounts } = whole.usage!;
    expect(streamedCounts).toEqual(wholeCounts);
    // The same prompt a second time: its whole KV blocks come from the prefix cache.
    expect(streamedDetails!.cached_tokens).toBeGreaterThan(0);
    expect(streamedDetails!.cached_tokens).toBeLessThan(wholeCounts.prompt_tokens);
  });

  it("streams completions equal to the non-streamed ones, with n=2 reproducible by seed", async () => {
    const params = { model: MODEL, prompt: "The little dog", seed: 11, n: 2, max_tokens: 24 };
    const first = await client.completions.create(params);
    const again = await client.completions.create(params);
    expect(again.choices.map((c) => c.text)).toEqual(first.choices.map((c) => c.text));
    expect(first.choices.map((c) => c.index)).toEqual([0, 1]);
    const stream = await client.completions.create({ ...params, stream: true });
    const texts = ["", ""];
    for await (const chunk of stream) {
      for (const c of chunk.choices) texts[c.index] += c.text;
    }
    expect(texts).toEqual(first.choices.map((c) => c.text));
  });

  it("cuts at stop strings and reports length at max_tokens", async () => {
    const c = GOLDEN.cases[0]!;
    const cut = c.greedy_text.indexOf("Lily");
    const stopped = await client.completions.create({
      model: MODEL,
      prompt: c.prompt,
      max_tokens: 64,
      temperature: 0,
      stop: ["Lily", "zzz"],
    });
    expect(stopped.choices[0]).toMatchObject({
      text: c.greedy_text.slice(0, cut),
      finish_reason: "stop",
    });
    const short = await client.chat.completions.create({
      model: MODEL,
      messages: chatMessages,
      max_completion_tokens: 5,
    });
    expect(short.choices[0]!.finish_reason).toBe("length");
    expect(short.usage!.completion_tokens).toBe(5);
  });

  it("returns logprobs consistent with the sampled tokens", async () => {
    const res = await client.chat.completions.create({
      model: MODEL,
      messages: chatMessages,
      temperature: 0,
      max_tokens: 12,
      logprobs: true,
      top_logprobs: 3,
    });
    const content = res.choices[0]!.logprobs!.content!;
    expect(content).toHaveLength(res.usage!.completion_tokens);
    expect(
      content
        .map((t) => t.token)
        .join("")
        .trimStart(),
    ).toBe(res.choices[0]!.message.content);
    for (const t of content) {
      expect(t.logprob).toBeLessThanOrEqual(0);
      expect(t.top_logprobs).toHaveLength(3);
      // Greedy: the sampled token is the most likely one.
      expect(t.top_logprobs[0]!.token).toBe(t.token);
      expect(t.top_logprobs[0]!.logprob).toBeCloseTo(t.logprob, 5);
      expect(t.bytes).toEqual([...Buffer.from(t.token)]);
    }
    const cmpl = await client.completions.create({
      model: MODEL,
      prompt: "Once upon a time",
      temperature: 0,
      max_tokens: 8,
      logprobs: 2,
    });
    const lp = cmpl.choices[0]!.logprobs!;
    expect(lp.tokens).toHaveLength(8);
    expect(lp.top_logprobs!.every((top) => Object.keys(top).length >= 1)).toBe(true);
  });

  it("completes 100 concurrent streaming requests", async () => {
    const results = await Promise.all(
      Array.from({ length: 100 }, (_, i) =>
        streamChatText({ model: MODEL, messages: chatMessages, seed: i, max_tokens: 16 }),
      ),
    );
    for (const r of results) {
      expect(["stop", "length"]).toContain(r.finishReason);
    }
  }, 60_000);

  it("aborts a request whose client disconnects, and keeps serving", async () => {
    const controller = new AbortController();
    const stream = await client.completions.create(
      { model: MODEL, prompt: "Once", max_tokens: 400, stream: true },
      { signal: controller.signal },
    );
    let numChunks = 0;
    try {
      for await (const _ of stream) {
        if (++numChunks === 3) controller.abort();
      }
    } catch (err) {
      // Depending on timing the client ends the loop quietly or with an abort error.
      expect(String(err)).toMatch(/abort/i);
    }
    expect(numChunks).toBeLessThan(10);
    const res = await client.completions.create({ model: MODEL, prompt: "Once", max_tokens: 4 });
    expect(res.choices[0]!.finish_reason).toBe("length");
  });
});

describe("malformed requests against the running stack", () => {
  const chat = { model: MODEL, messages: chatMessages };
  const cases: [string, string, unknown, number][] = [
    ["unknown model", "chat/completions", { ...chat, model: "gpt-4o" }, 404],
    [
      "tools",
      "chat/completions",
      { ...chat, tools: [{ type: "function", function: { name: "f" } }] },
      400,
    ],
    ["json_schema", "chat/completions", { ...chat, response_format: { type: "json_schema" } }, 400],
    ["bad temperature", "chat/completions", { ...chat, temperature: -1 }, 400],
    ["prompt over the context", "completions", { model: MODEL, prompt: "Once ".repeat(600) }, 400],
    [
      "max_tokens over the context",
      "completions",
      { model: MODEL, prompt: "Hi", max_tokens: 600 },
      400,
    ],
    ["token id out of range", "completions", { model: MODEL, prompt: [1, 99999] }, 400],
    ["no prompt", "completions", { model: MODEL }, 400],
    ["not JSON", "completions", "{oops", 400],
    ["too large", "completions", { model: MODEL, prompt: "x".repeat(100 * 1024) }, 413],
  ];

  it.each(cases)("%s", async (_name, path, body, status) => {
    const res = await fetch(`${stack.baseURL}/${path}`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: typeof body === "string" ? body : JSON.stringify(body),
    });
    expect(res.status).toBe(status);
    const json = (await res.json()) as { error: Record<string, unknown> };
    expect(Object.keys(json.error).sort()).toEqual(["code", "message", "param", "type"]);
  });

  it("maps errors to the openai client's classes, and stays healthy", async () => {
    await expect(client.chat.completions.create({ ...chat, model: "nope" })).rejects.toBeInstanceOf(
      OpenAI.NotFoundError,
    );
    await expect(client.chat.completions.create({ ...chat, n: 0 })).rejects.toBeInstanceOf(
      OpenAI.BadRequestError,
    );
    const health = await fetch(stack.baseURL.replace("/v1", "/health"));
    expect(health.status).toBe(200);
  });
});

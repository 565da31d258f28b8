import { freePort, loadGolden, scrapeSum, waitFor } from "@kiln/test-support";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MODEL, type Stack, startStack, stopStack } from "./helpers/stack";

const GOLDEN = loadGolden();

let stack: Stack;
let client: OpenAI;
/** The router's and the worker's /metrics: what the server side did, not what the client saw. */
let routerMetricsPort: number;
let workerMetricsPort: number;
beforeAll(async () => {
  [routerMetricsPort, workerMetricsPort] = [await freePort(), await freePort()];
  // A small body limit: a rejected body small enough to sit in socket buffers, so the client
  // reads the 413 instead of racing the server's close of the connection (EPIPE).
  stack = await startStack({
    KILN_MAX_BODY_BYTES: String(64 * 1024),
    KILN_ROUTER_METRICS_PORT: String(routerMetricsPort),
    KILN_WORKER_METRICS_PORT: String(workerMetricsPort),
  });
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
    const bursts = () => scrapeSum(routerMetricsPort, "kiln_multi_step_decode_steps_count");
    const burstsBefore = await bursts();
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
        expect(res.usage).toMatchObject({
          prompt_tokens: c.prompt_ids.length,
          completion_tokens: c.greedy_ids.length,
          total_tokens: c.prompt_ids.length + c.greedy_ids.length,
          // The second run of a prompt may reuse its cached prefix blocks.
          prompt_tokens_details: { cached_tokens: expect.any(Number) },
        });
      }
    }
    // By default a single stream's decodes run in multi-step bursts (ADR 0028).
    expect(await bursts()).toBeGreaterThan(burstsBefore);
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
    // One request seed, but each choice samples with its own stream (seed + index): the two
    // choices must differ, or n > 1 would return n copies of one sample.
    expect(first.choices[0]!.text).not.toBe(first.choices[1]!.text);
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

  it("aborts a request whose client disconnects: recorded as an abort, computed no further", async () => {
    const finished = (reason: string) =>
      scrapeSum(routerMetricsPort, "kiln_request_success_total", { finished_reason: reason });
    const generated = () => scrapeSum(routerMetricsPort, "kiln_generation_tokens_total");
    const before = { aborted: await finished("abort"), length: await finished("length") };
    const generatedBefore = await generated();
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
    // The server side: the router ended the request as an abort (not as a finished one), the
    // worker holds no sequence, no KV block is in use, and generation stopped far short of 400.
    await waitFor(
      async () =>
        (await finished("abort")) === before.aborted + 1 &&
        (await scrapeSum(workerMetricsPort, "kiln_worker_num_sequences")) === 0 &&
        (await scrapeSum(routerMetricsPort, "kiln_kv_cache_usage_ratio")) === 0,
      "the router to record the abort and the worker to drop the sequence",
      { timeoutMs: 5000 },
    );
    expect(await finished("length")).toBe(before.length);
    expect((await generated()) - generatedBefore).toBeLessThan(40);
    const res = await client.completions.create({ model: MODEL, prompt: "Once", max_tokens: 4 });
    expect(res.choices[0]!.finish_reason).toBe("length");
    expect(await finished("length")).toBe(before.length + 1);
  });
});

describe("malformed requests against the running stack", () => {
  const chat = { model: MODEL, messages: chatMessages };
  const cases: [string, string, unknown, number][] = [
    ["unknown model", "chat/completions", { ...chat, model: "gpt-4o" }, 404],
    ["tools of an unknown type", "chat/completions", { ...chat, tools: [{ type: "web" }] }, 400],
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
    // docs/api.md: n is at most the router's --max-num-seqs (64 by default), not the schema's 128.
    ["n over --max-num-seqs", "completions", { model: MODEL, prompt: "Hi", n: 65 }, 400],
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
    await expect(client.completions.create({ model: MODEL, prompt: "Hi", n: 65 })).rejects.toThrow(
      /n must be an integer in \[1, 64\]/,
    );
    expect(
      (await client.completions.create({ model: MODEL, prompt: "Hi", n: 64, max_tokens: 2 }))
        .choices,
    ).toHaveLength(64);
    const health = await fetch(stack.baseURL.replace("/v1", "/health"));
    expect(health.status).toBe(200);
  });
});

import { afterEach, describe, expect, it } from "vitest";
import { makeApp, parseChunks, type TestApp } from "./helpers/app";
import { toyCodec } from "./helpers/toy-codec";

// The fake router writes "Hello world. The end." for seed 0, choice 0, one char per token.
const HELLO = "Hello world. The end.";
const base = { model: "toy", messages: [{ role: "user", content: "hi" }], seed: 0 };

let t: TestApp;
afterEach(async () => {
  await t?.app.close();
});

async function post(body: object) {
  return t.app.inject({ method: "POST", url: "/v1/chat/completions", payload: body });
}

describe("POST /v1/chat/completions", () => {
  it("returns OpenAI's shape with usage from the tokenizer's counts", async () => {
    t = makeApp();
    const res = await post(base);
    expect(res.statusCode).toBe(200);
    const body = res.json();
    const promptLen = (await toyCodec.encodeChat([{ role: "user", content: "hi" }])).length;
    expect(body).toMatchObject({
      object: "chat.completion",
      model: "toy",
      choices: [
        {
          index: 0,
          message: { role: "assistant", content: HELLO },
          logprobs: null,
          finish_reason: "stop",
        },
      ],
      usage: {
        prompt_tokens: promptLen,
        completion_tokens: HELLO.length,
        total_tokens: promptLen + HELLO.length,
        prompt_tokens_details: { cached_tokens: 0 },
      },
    });
    expect(body.id).toMatch(/^chatcmpl-[0-9a-f]{24}$/);
    expect(Number.isInteger(body.created)).toBe(true);
  });

  it("maps parameters onto the router request", async () => {
    t = makeApp();
    await post({
      ...base,
      temperature: 0.5,
      top_p: 0.9,
      top_k: -1,
      min_p: 0.1,
      seed: -1,
      presence_penalty: 1,
      frequency_penalty: -1,
      repetition_penalty: 1.2,
      logit_bias: { "50": 5 },
      max_completion_tokens: 7,
      min_tokens: 2,
      ignore_eos: true,
      stop_token_ids: [60],
      user: "me",
    });
    const req = t.router.requests[0]!;
    expect(req).toMatchObject({ maxTokens: 7, minTokens: 2, ignoreEos: true, n: 1 });
    expect(req.stopTokenIds).toEqual([60]);
    expect(req.sampling).toEqual({
      temperature: 0.5,
      topK: 0,
      topP: 0.9,
      minP: 0.1,
      repetitionPenalty: 1.2,
      presencePenalty: 1,
      frequencyPenalty: -1,
      logitBias: { 50: 5 },
      seed: 0xffffffff,
      numTopLogprobs: 0,
    });
  });

  it("defaults to temperature 1, a random seed and the rest of the context", async () => {
    t = makeApp();
    await post({ model: "toy", messages: [{ role: "user", content: "hi" }] });
    const req = t.router.requests[0]!;
    expect(req.sampling?.temperature).toBe(1);
    expect(req.maxTokens).toBe(64 - req.promptTokenIds.length);
  });

  it("ends with finish_reason length at max_tokens", async () => {
    t = makeApp();
    const body = (await post({ ...base, max_tokens: 5 })).json();
    expect(body.choices[0]).toMatchObject({
      message: { content: "Hello" },
      finish_reason: "length",
    });
    expect(body.usage.completion_tokens).toBe(5);
  });

  it("cuts at a stop string, excludes it and counts the tokens used", async () => {
    t = makeApp();
    const body = (await post({ ...base, stop: ["xyz", "world"] })).json();
    expect(body.choices[0]).toMatchObject({
      message: { content: "Hello " },
      finish_reason: "stop",
    });
    expect(body.usage.completion_tokens).toBe("Hello world".length);
  });

  it("samples n choices with one seed, each with its own text", async () => {
    t = makeApp();
    const body = (await post({ ...base, n: 2, seed: 1 })).json();
    expect(t.router.requests[0]).toMatchObject({ n: 2, sampling: { seed: 1 } });
    expect(body.choices.map((c: { index: number }) => c.index)).toEqual([0, 1]);
    expect(body.choices[0].message.content).toBe("Once upon a time.");
    expect(body.choices[1].message.content).toBe("Lily saw a dog!");
  });

  it("returns logprobs consistent with the tokens", async () => {
    t = makeApp();
    const body = (await post({ ...base, logprobs: true, top_logprobs: 2, max_tokens: 4 })).json();
    const content = body.choices[0].logprobs.content;
    expect(content.map((c: { token: string }) => c.token).join("")).toBe("Hell");
    expect(content[0]).toEqual({
      token: "H",
      logprob: -0.25,
      bytes: [72],
      top_logprobs: [
        { token: "H", logprob: -0.25, bytes: [72] },
        { token: "b", logprob: -0.5, bytes: [98] },
      ],
    });
  });

  it("streams chunks that concatenate to the non-streamed text, with include_usage", async () => {
    t = makeApp();
    const whole = (await post({ ...base, stop: "end" })).json();
    const res = await post({
      ...base,
      stop: "end",
      stream: true,
      stream_options: { include_usage: true },
    });
    expect(res.statusCode).toBe(200);
    expect(res.headers["content-type"]).toContain("text/event-stream");
    const chunks = parseChunks(res.body);
    expect(chunks[0]!.choices[0]!.delta).toEqual({ role: "assistant", content: "" });
    for (const c of chunks.slice(0, -1)) {
      expect(c.object).toBe("chat.completion.chunk");
      expect(c.usage).toBeNull();
      expect(c.id).toBe(chunks[0]!.id);
    }
    const text = chunks.map((c) => c.choices[0]?.delta?.content ?? "").join("");
    expect(text).toBe(whole.choices[0].message.content);
    expect(chunks.at(-2)!.choices[0]!.finish_reason).toBe("stop");
    expect(chunks.at(-1)).toMatchObject({ choices: [], usage: whole.usage });
  });

  it("omits usage from chunks without include_usage", async () => {
    t = makeApp();
    const chunks = parseChunks((await post({ ...base, stream: true, max_tokens: 3 })).body);
    for (const c of chunks) expect(c).not.toHaveProperty("usage");
    expect(chunks.at(-1)!.choices[0]!.finish_reason).toBe("length");
  });

  it("flattens text content parts", async () => {
    t = makeApp();
    const res = await post({
      ...base,
      messages: [
        {
          role: "user",
          content: [
            { type: "text", text: "a" },
            { type: "text", text: "b" },
          ],
        },
      ],
    });
    expect(res.statusCode).toBe(200);
    const expected = await toyCodec.encodeChat([{ role: "user", content: "a\nb" }]);
    expect(t.router.requests[0]!.promptTokenIds).toEqual(expected);
  });
});

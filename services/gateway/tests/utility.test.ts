import { describe, expect, it } from "vitest";
import { KILN_VERSION } from "../src/routes/utility";
import { makeApp, parseChunks } from "./helpers/app";
import { BOS, charId } from "./helpers/toy-codec";

describe("vLLM's utility routes", () => {
  it("tokenizes a prompt with and without special tokens", async () => {
    const { app } = makeApp();
    const post = (payload: object) => app.inject({ method: "POST", url: "/tokenize", payload });
    const withBos = (await post({ model: "toy", prompt: "ab" })).json();
    expect(withBos).toEqual({
      count: 3,
      max_model_len: 64,
      tokens: [BOS, charId("a"), charId("b")],
      token_strs: null,
    });
    const bare = (
      await post({ prompt: "ab", add_special_tokens: false, return_token_strs: true })
    ).json();
    expect(bare).toMatchObject({
      count: 2,
      tokens: [charId("a"), charId("b")],
      token_strs: ["a", "b"],
    });
  });

  it("tokenizes chat messages through the template, with or without the generation cue", async () => {
    const { app } = makeApp();
    const messages = [{ role: "user", content: "hi" }];
    const post = (payload: object) => app.inject({ method: "POST", url: "/tokenize", payload });
    const cued = (await post({ messages })).json();
    const bare = (await post({ messages, add_generation_prompt: false })).json();
    expect(cued.count - bare.count).toBe("assistant:".length);
    expect(cued.tokens[0]).toBe(BOS);
  });

  it("detokenizes ids and rejects ids outside the vocabulary", async () => {
    const { app } = makeApp();
    const ok = await app.inject({
      method: "POST",
      url: "/detokenize",
      payload: { tokens: [BOS, charId("h"), charId("i")] },
    });
    expect(ok.json()).toEqual({ prompt: "hi" });
    const bad = await app.inject({
      method: "POST",
      url: "/detokenize",
      payload: { tokens: [99999] },
    });
    expect(bad.statusCode).toBe(400);
    expect(bad.json().error.param).toBe("tokens");
  });

  it("rejects an unknown model and a body with neither prompt nor messages", async () => {
    const { app } = makeApp();
    const wrong = await app.inject({
      method: "POST",
      url: "/tokenize",
      payload: { model: "x", prompt: "a" },
    });
    expect(wrong.statusCode).toBe(404);
    const empty = await app.inject({ method: "POST", url: "/tokenize", payload: {} });
    expect(empty.statusCode).toBe(400);
  });

  it("reports the version", async () => {
    const { app } = makeApp();
    const res = await app.inject({ method: "GET", url: "/version" });
    expect(res.json()).toEqual({ version: KILN_VERSION });
    expect(KILN_VERSION).toMatch(/^\d+\.\d+\.\d+/);
  });
});

describe("usage extras", () => {
  it("reports the router's cached_tokens in chat and completion usage", async () => {
    const { app } = makeApp({ script: { cachedTokens: 3 } });
    const chat = await app.inject({
      method: "POST",
      url: "/v1/chat/completions",
      payload: { model: "toy", messages: [{ role: "user", content: "x" }], n: 2 },
    });
    expect(chat.json().usage.prompt_tokens_details).toEqual({ cached_tokens: 3 });
    const completion = await app.inject({
      method: "POST",
      url: "/v1/completions",
      payload: { model: "toy", prompt: ["a", "b"] },
    });
    // One router request per prompt, each reporting its own cached tokens.
    expect(completion.json().usage.prompt_tokens_details).toEqual({ cached_tokens: 6 });
  });

  it("puts running usage in every chunk with continuous_usage_stats", async () => {
    const { app } = makeApp({ script: { text: () => "abc", cachedTokens: 2 } });
    const res = await app.inject({
      method: "POST",
      url: "/v1/chat/completions",
      payload: {
        model: "toy",
        messages: [{ role: "user", content: "x" }],
        stream: true,
        stream_options: { include_usage: true, continuous_usage_stats: true },
      },
    });
    const chunks = parseChunks(res.body) as unknown as {
      choices: unknown[];
      usage: { completion_tokens: number; prompt_tokens_details: { cached_tokens: number } };
    }[];
    const counts = chunks.map((c) => c.usage.completion_tokens);
    expect(counts).toEqual([0, 1, 2, 3, 3, 3]);
    expect(chunks.at(-1)!.choices).toEqual([]);
    expect(chunks.at(-1)!.usage.prompt_tokens_details.cached_tokens).toBe(2);
  });
});

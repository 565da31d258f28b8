import { afterEach, describe, expect, it } from "vitest";
import { makeApp, parseChunks, type TestApp } from "./helpers/app";
import { BOS, charId } from "./helpers/toy-codec";

const HELLO = "Hello world. The end.";
const base = { model: "toy", prompt: "hi", seed: 0 };

let t: TestApp;
afterEach(async () => {
  await t?.app.close();
});

async function post(body: object) {
  return t.app.inject({ method: "POST", url: "/v1/completions", payload: body });
}

interface CompletionChoice {
  index: number;
  text: string;
  finish_reason: string;
  logprobs: {
    tokens: string[];
    token_logprobs: (number | null)[];
    top_logprobs: (Record<string, number> | null)[];
    text_offset: number[];
  } | null;
}

describe("POST /v1/completions", () => {
  it("returns OpenAI's shape, 16 tokens by default", async () => {
    t = makeApp();
    const res = await post(base);
    expect(res.statusCode).toBe(200);
    const body = res.json();
    expect(body).toMatchObject({
      object: "text_completion",
      model: "toy",
      choices: [{ index: 0, text: HELLO.slice(0, 16), logprobs: null, finish_reason: "length" }],
      usage: {
        prompt_tokens: 3,
        completion_tokens: 16,
        total_tokens: 19,
        prompt_tokens_details: { cached_tokens: 0 },
      },
    });
    expect(body.id).toMatch(/^cmpl-/);
    expect(t.router.requests[0]!.promptTokenIds).toEqual([BOS, charId("h"), charId("i")]);
  });

  it("passes token-id prompts through and orders choices prompt by prompt", async () => {
    t = makeApp();
    const body = (await post({ ...base, prompt: [[5, 6], [7]], n: 2, max_tokens: 3 })).json();
    expect(t.router.requests.map((r) => r.promptTokenIds).sort()).toEqual([[5, 6], [7]]);
    const choices = body.choices as CompletionChoice[];
    expect(choices.map((c) => c.index)).toEqual([0, 1, 2, 3]);
    expect(choices.map((c) => c.text)).toEqual(["Hel", "Onc", "Hel", "Onc"]);
    expect(body.usage).toEqual({
      prompt_tokens: 3,
      completion_tokens: 12,
      total_tokens: 15,
      prompt_tokens_details: { cached_tokens: 0 },
    });
  });

  it("accepts an array of strings and a flat token list", async () => {
    t = makeApp();
    expect((await post({ ...base, prompt: ["a", "b"] })).json().choices).toHaveLength(2);
    expect((await post({ ...base, prompt: [9, 10, 11] })).statusCode).toBe(200);
    expect(t.router.requests.at(-1)!.promptTokenIds).toEqual([9, 10, 11]);
  });

  it("echoes the prompt and reports logprobs with text offsets", async () => {
    t = makeApp();
    const body = (await post({ ...base, echo: true, logprobs: 1, max_tokens: 3 })).json();
    const choice = body.choices[0] as CompletionChoice;
    expect(choice.text).toBe("hiHel");
    expect(choice.logprobs).toEqual({
      tokens: ["<s>", "h", "i", "H", "e", "l"],
      token_logprobs: [null, null, null, -0.25, -0.25, -0.25],
      top_logprobs: [null, null, null, { H: -0.25 }, { e: -0.25 }, { l: -0.25 }],
      text_offset: [0, 3, 4, 2, 3, 4],
    });
  });

  it("streams text that concatenates to the non-streamed text", async () => {
    t = makeApp();
    const whole = (await post({ ...base, stop: ". ", max_tokens: 30, echo: true })).json();
    const res = await post({
      ...base,
      stop: ". ",
      max_tokens: 30,
      echo: true,
      stream: true,
      stream_options: { include_usage: true },
    });
    const chunks = parseChunks(res.body);
    const text = chunks.map((c) => c.choices[0]?.text ?? "").join("");
    expect(text).toBe(whole.choices[0].text);
    expect(text).toBe("hiHello world");
    expect(chunks.at(-1)).toMatchObject({
      object: "text_completion",
      choices: [],
      usage: whole.usage,
    });
    expect(chunks.at(-2)!.choices[0]!.finish_reason).toBe("stop");
  });

  it("streams logprobs whose offsets continue across chunks", async () => {
    t = makeApp();
    const res = await post({ ...base, logprobs: 0, max_tokens: 3, stream: true });
    const offsets = parseChunks(res.body).flatMap(
      (c) => (c.choices[0]?.logprobs as CompletionChoice["logprobs"])?.text_offset ?? [],
    );
    expect(offsets).toEqual([0, 1, 2]);
  });
});

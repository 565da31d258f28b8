import { KilnError } from "@kiln/proto";
import { afterEach, describe, expect, it } from "vitest";
import { makeApp, parseSse, type TestApp } from "./helpers/app";

const chat = { model: "toy", messages: [{ role: "user", content: "hi" }] };
const completion = { model: "toy", prompt: "hi" };
const long = "x".repeat(70); // the toy model's context is 64 tokens

type Case = [name: string, url: string, body: unknown, status: number, param: string | null];

const CHAT = "/v1/chat/completions";
const CMPL = "/v1/completions";

// Every row must answer with OpenAI's error body and the given status; none may 500.
const MALFORMED: Case[] = [
  ["body is not an object", CHAT, [1, 2], 400, null],
  ["missing model", CHAT, { messages: chat.messages }, 400, "model"],
  ["unknown model", CHAT, { ...chat, model: "gpt-4" }, 404, "model"],
  ["missing messages", CHAT, { model: "toy" }, 400, "messages"],
  ["empty messages", CHAT, { ...chat, messages: [] }, 400, "messages"],
  [
    "unknown role",
    CHAT,
    { ...chat, messages: [{ role: "robot", content: "x" }] },
    400,
    "messages[0].role",
  ],
  [
    "tool message without tool_call_id",
    CHAT,
    { ...chat, messages: [{ role: "tool", content: "x" }] },
    400,
    "messages[0].tool_call_id",
  ],
  [
    "content is a number",
    CHAT,
    { ...chat, messages: [{ role: "user", content: 5 }] },
    400,
    "messages[0].content",
  ],
  [
    "image content part",
    CHAT,
    {
      ...chat,
      messages: [{ role: "user", content: [{ type: "image_url", image_url: { url: "x" } }] }],
    },
    400,
    "messages[0].content[0].type",
  ],
  ["unknown field", CHAT, { ...chat, frobnicate: 1 }, 400, "frobnicate"],
  ["tools of an unknown type", CHAT, { ...chat, tools: [{ type: "web_search" }] }, 400, "tools[0]"],
  ["tool_choice", CHAT, { ...chat, tool_choice: "required" }, 400, "tool_choice"],
  ["function_call", CHAT, { ...chat, function_call: "auto" }, 400, "function_call"],
  [
    "response_format json_schema with an unsupported keyword",
    CHAT,
    {
      ...chat,
      response_format: { type: "json_schema", json_schema: { name: "x", schema: { not: {} } } },
    },
    400,
    "response_format.json_schema.schema",
  ],
  ["temperature too high", CHAT, { ...chat, temperature: 3 }, 400, "temperature"],
  ["temperature a string", CHAT, { ...chat, temperature: "hot" }, 400, "temperature"],
  ["top_p above 1", CHAT, { ...chat, top_p: 1.5 }, 400, "top_p"],
  ["n zero", CHAT, { ...chat, n: 0 }, 400, "n"],
  ["n fractional", CHAT, { ...chat, n: 1.5 }, 400, "n"],
  ["max_tokens zero", CHAT, { ...chat, max_tokens: 0 }, 400, "max_tokens"],
  ["max_tokens over the context", CHAT, { ...chat, max_tokens: 1000 }, 400, "max_tokens"],
  [
    "prompt over the context",
    CHAT,
    { ...chat, messages: [{ role: "user", content: long }] },
    400,
    "messages",
  ],
  ["five stop strings", CHAT, { ...chat, stop: ["a", "b", "c", "d", "e"] }, 400, "stop"],
  ["empty stop string", CHAT, { ...chat, stop: "" }, 400, "stop"],
  ["top_logprobs without logprobs", CHAT, { ...chat, top_logprobs: 2 }, 400, "top_logprobs"],
  ["top_logprobs 21", CHAT, { ...chat, logprobs: true, top_logprobs: 21 }, 400, "top_logprobs"],
  ["logit_bias key not an id", CHAT, { ...chat, logit_bias: { abc: 1 } }, 400, "logit_bias"],
  ["logit_bias id out of range", CHAT, { ...chat, logit_bias: { "99999": 1 } }, 400, "logit_bias"],
  ["logit_bias value too large", CHAT, { ...chat, logit_bias: { "5": 500 } }, 400, "logit_bias.5"],
  [
    "stream_options without stream",
    CHAT,
    { ...chat, stream_options: { include_usage: true } },
    400,
    "stream_options",
  ],
  [
    "min_tokens over max_tokens",
    CHAT,
    { ...chat, min_tokens: 5, max_tokens: 2 },
    400,
    "min_tokens",
  ],
  ["seed not an integer", CHAT, { ...chat, seed: 1.5 }, 400, "seed"],
  ["missing prompt", CMPL, { model: "toy" }, 400, "prompt"],
  ["prompt an object", CMPL, { ...completion, prompt: { a: 1 } }, 400, "prompt"],
  ["mixed prompt array", CMPL, { ...completion, prompt: ["a", 1] }, 400, "prompt"],
  ["empty token list", CMPL, { ...completion, prompt: [] }, 400, "prompt"],
  ["token id out of range", CMPL, { ...completion, prompt: [1, 100000] }, 400, "prompt"],
  ["negative token id", CMPL, { ...completion, prompt: [-1] }, 400, "prompt[0]"],
  ["completion prompt over the context", CMPL, { ...completion, prompt: long }, 400, "prompt"],
  ["suffix", CMPL, { ...completion, suffix: "end" }, 400, "suffix"],
  ["best_of above n", CMPL, { ...completion, best_of: 3 }, 400, "best_of"],
  ["logprobs boolean on completions", CMPL, { ...completion, logprobs: true }, 400, "logprobs"],
  ["messages on completions", CMPL, { ...completion, messages: [] }, 400, "messages"],
];

let t: TestApp;
afterEach(async () => {
  await t?.app.close();
});

function expectErrorBody(body: unknown, param: string | null): void {
  expect(body).toEqual({
    error: {
      message: expect.any(String),
      type: expect.any(String),
      param,
      code: expect.any(String),
    },
  });
}

describe("malformed requests", () => {
  it.each(MALFORMED)("%s", async (_name, url, body, status, param) => {
    t = makeApp();
    const res = await t.app.inject({ method: "POST", url, payload: body as object });
    expect(res.statusCode).toBe(status);
    expectErrorBody(res.json(), param);
    expect(t.router.requests).toHaveLength(0);
    expect((await t.app.inject({ method: "GET", url: "/health" })).statusCode).toBe(200);
  });

  it.each([
    ["invalid JSON", "{not json", "application/json"],
    ["truncated JSON", '{"model": "toy", "messages": [', "application/json"],
    ["form-encoded garbage", "a=b", "application/x-www-form-urlencoded"],
    ["empty body", "", "application/json"],
  ])("%s → 400", async (_name, payload, contentType) => {
    t = makeApp();
    const res = await t.app.inject({
      method: "POST",
      url: CHAT,
      payload,
      headers: { "content-type": contentType },
    });
    expect(res.statusCode).toBe(400);
    expectErrorBody(res.json(), null);
  });

  it("parses JSON whatever the content type (curl -d)", async () => {
    t = makeApp();
    const res = await t.app.inject({
      method: "POST",
      url: CHAT,
      payload: JSON.stringify({ ...chat, max_tokens: 2 }),
      headers: { "content-type": "application/x-www-form-urlencoded" },
    });
    expect(res.statusCode).toBe(200);
  });

  it("answers an unknown route with 404 and a body too large with 413", async () => {
    t = makeApp({ bodyLimit: 1024 });
    const notFound = await t.app.inject({ method: "GET", url: "/v1/nope" });
    expect(notFound.statusCode).toBe(404);
    expectErrorBody(notFound.json(), null);
    const big = await t.app.inject({
      method: "POST",
      url: CHAT,
      payload: { ...chat, user: "x".repeat(2048) },
    });
    expect(big.statusCode).toBe(413);
    expectErrorBody(big.json(), null);
  });
});

describe("authentication", () => {
  it("requires a configured key on /v1 but not on /health", async () => {
    t = makeApp({ apiKeys: ["k1", "k2"] });
    const inject = (authorization?: string) =>
      t.app.inject({
        method: "GET",
        url: "/v1/models",
        headers: authorization ? { authorization } : {},
      });
    expect((await inject()).statusCode).toBe(401);
    expectErrorBody((await inject("Bearer nope")).json(), null);
    expect((await inject("Bearer nope")).statusCode).toBe(401);
    expect((await inject("Bearer k2")).statusCode).toBe(200);
    expect((await t.app.inject({ method: "GET", url: "/health" })).statusCode).toBe(200);
  });
});

describe("router failures", () => {
  it("maps a full queue to 429 with Retry-After, streamed or not", async () => {
    t = makeApp({ script: { failWith: new KilnError("OVERLOADED", "queue full") } });
    for (const stream of [false, true]) {
      const res = await t.app.inject({ method: "POST", url: CHAT, payload: { ...chat, stream } });
      expect(res.statusCode).toBe(429);
      expect(res.headers["retry-after"]).toBe("1");
      expect(res.json().error.type).toBe("rate_limit_error");
    }
  });

  it("sends an error event when the worker is lost mid-stream", async () => {
    const error = new KilnError("WORKER_LOST", "worker went away");
    t = makeApp({ script: { failMidStream: { afterTokens: 3, error } } });
    const res = await t.app.inject({
      method: "POST",
      url: CHAT,
      payload: { ...chat, stream: true },
    });
    expect(res.statusCode).toBe(200);
    const events = parseSse(res.body);
    expect(events.at(-2)).toEqual({
      error: {
        message: "worker went away",
        type: "server_error",
        param: null,
        code: "worker_lost",
      },
    });
    const nonStream = await t.app.inject({ method: "POST", url: CHAT, payload: chat });
    expect(nonStream.statusCode).toBe(503);
  });

  it("reports unhealthy when the router has no workers", async () => {
    t = makeApp();
    t.router.isHealthyValue = false;
    const res = await t.app.inject({ method: "GET", url: "/health" });
    expect(res.statusCode).toBe(503);
  });
});

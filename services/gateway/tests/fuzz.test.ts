import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { makeApp } from "./helpers/app";

const t = makeApp();
afterAll(() => t.app.close());

// Plausible values for any field: right and wrong types, edge numbers, nesting.
const value = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom(0, -1, 1, 2, 1.5, 1e300, -1e9, 2 ** 53, "", "toy", null, true, [], {}),
);

const chatKeys = [
  "model",
  "messages",
  "max_tokens",
  "max_completion_tokens",
  "temperature",
  "top_p",
  "top_k",
  "min_p",
  "n",
  "stop",
  "seed",
  "presence_penalty",
  "frequency_penalty",
  "repetition_penalty",
  "logit_bias",
  "logprobs",
  "top_logprobs",
  "stream",
  "stream_options",
  "user",
  "ignore_eos",
  "min_tokens",
  "tools",
  "response_format",
  "stop_token_ids",
];
const completionKeys = [
  ...chatKeys.filter((k) => k !== "messages"),
  "prompt",
  "echo",
  "best_of",
  "suffix",
];

const message = fc.record(
  { role: fc.constantFrom("user", "system", "assistant", "tool", "x"), content: value },
  { requiredKeys: [] },
);

function bodies(keys: string[]) {
  const fields = Object.fromEntries(keys.map((k) => [k, value]));
  return fc.record(
    {
      ...fields,
      model: fc.constantFrom("toy", "toy", "other", 5),
      messages: fc.oneof(fc.array(message, { maxLength: 3 }), value),
      prompt: fc.oneof(fc.string(), fc.array(fc.integer({ min: -5, max: 200 })), value),
    },
    { requiredKeys: [] },
  );
}

async function expectNo5xx(url: string, body: unknown): Promise<void> {
  const res = await t.app.inject({ method: "POST", url, payload: JSON.stringify(body) });
  expect(res.statusCode).toBeLessThan(500);
  if (res.statusCode >= 400) {
    expect(Object.keys(res.json().error).sort()).toEqual(["code", "message", "param", "type"]);
  }
}

describe("no input produces a 5xx", () => {
  it("chat completions", async () => {
    await fc.assert(
      fc.asyncProperty(bodies(chatKeys), (body) => expectNo5xx("/v1/chat/completions", body)),
      { numRuns: 300 },
    );
  });

  it("completions", async () => {
    await fc.assert(
      fc.asyncProperty(bodies(completionKeys), (body) => expectNo5xx("/v1/completions", body)),
      { numRuns: 300 },
    );
  });

  it("any JSON at all", async () => {
    await fc.assert(
      fc.asyncProperty(fc.jsonValue(), async (body) => {
        await expectNo5xx("/v1/chat/completions", body);
        await expectNo5xx("/v1/completions", body);
      }),
      { numRuns: 200 },
    );
  });
});

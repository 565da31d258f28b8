import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MODEL, type Stack, startStack, stopStack } from "./helpers/stack";

// A router that lets 2 requests run and 1 wait: the rest of a burst must be refused with 429.
let stack: Stack;
beforeAll(async () => {
  stack = await startStack({ KILN_MAX_NUM_SEQS: "2", KILN_MAX_WAITING: "1" });
}, 90_000);
afterAll(() => stopStack(stack), 30_000);

describe("a full router queue", () => {
  it("answers 429 with Retry-After and OpenAI's body, and serves the rest", async () => {
    const burst = Array.from({ length: 12 }, () =>
      fetch(`${stack.baseURL}/completions`, {
        method: "POST",
        headers: { "content-type": "application/json" },
        body: JSON.stringify({ model: MODEL, prompt: "Once", max_tokens: 64, stream: true }),
      }).then(async (res) => ({ res, body: await res.text() })),
    );
    const results = await Promise.all(burst);
    const refused = results.filter((r) => r.res.status === 429);
    const served = results.filter((r) => r.res.status === 200);
    expect(refused.length).toBeGreaterThan(0);
    expect(served.length).toBeGreaterThan(0);
    expect(refused.length + served.length).toBe(results.length);
    for (const r of refused) {
      expect(r.res.headers.get("retry-after")).toBe("1");
      expect(JSON.parse(r.body).error).toMatchObject({
        type: "rate_limit_error",
        code: "overloaded",
      });
    }
    for (const r of served) expect(r.body.trimEnd().endsWith("data: [DONE]")).toBe(true);
  });

  it("surfaces as RateLimitError in the openai client", async () => {
    const client = new OpenAI({ baseURL: stack.baseURL, apiKey: "unused", maxRetries: 0 });
    const outcomes = await Promise.allSettled(
      Array.from({ length: 12 }, () =>
        client.completions.create({ model: MODEL, prompt: "Once", max_tokens: 64 }),
      ),
    );
    const errors = outcomes.flatMap((o) => (o.status === "rejected" ? [o.reason] : []));
    expect(errors.length).toBeGreaterThan(0);
    for (const e of errors) expect(e).toBeInstanceOf(OpenAI.RateLimitError);
  });
});

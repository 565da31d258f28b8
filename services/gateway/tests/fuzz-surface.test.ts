import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { makeApp, TOY_MODEL } from "./helpers/app";

/** The Responses API, embeddings and utility routes: no input produces a 5xx. */
const t = makeApp({
  model: { ...TOY_MODEL, contextLen: 512 },
  embedding: { pooling: "mean", isNormalized: true, hiddenSize: 4 },
});
afterAll(() => t.app.close());

const value = fc.oneof(
  fc.jsonValue({ maxDepth: 2 }),
  fc.constantFrom(0, -1, 1, 2, 1.5, 1e300, 2 ** 53, "", "toy", null, true, [], {}),
);
const item = fc.oneof(
  fc.record(
    { role: fc.constantFrom("user", "assistant", "system", "tool"), content: value, type: value },
    { requiredKeys: [] },
  ),
  fc.record(
    {
      type: fc.constantFrom("function_call", "function_call_output", "message", "x"),
      call_id: value,
      name: value,
      arguments: value,
      output: value,
    },
    { requiredKeys: [] },
  ),
);
const tool = fc.oneof(
  fc.record(
    { type: fc.constantFrom("function", "web_search", "x"), name: value, parameters: value },
    { requiredKeys: [] },
  ),
  value,
);

const responsesBody = fc.record(
  {
    model: fc.constantFrom("toy", "toy", "other", 5),
    input: fc.oneof(fc.string(), fc.array(item, { maxLength: 3 }), value),
    instructions: value,
    max_output_tokens: value,
    temperature: value,
    top_p: value,
    tools: fc.oneof(fc.array(tool, { maxLength: 2 }), value),
    tool_choice: value,
    previous_response_id: value,
    store: value,
    background: value,
    stream: value,
    text: value,
    metadata: value,
  },
  { requiredKeys: [] },
);

const utilityBody = fc.record(
  {
    model: fc.constantFrom("toy", "other", 5),
    prompt: value,
    messages: value,
    tokens: fc.oneof(fc.array(fc.integer({ min: -5, max: 300 })), value),
    input: fc.oneof(fc.string(), fc.array(fc.integer({ min: -5, max: 300 })), value),
    add_special_tokens: value,
    encoding_format: value,
    dimensions: value,
  },
  { requiredKeys: [] },
);

async function expectNo5xx(url: string, body: unknown): Promise<void> {
  const res = await t.app.inject({ method: "POST", url, payload: JSON.stringify(body) });
  expect(res.statusCode, res.body).toBeLessThan(500);
  if (res.statusCode >= 400) {
    expect(Object.keys(res.json().error).sort()).toEqual(["code", "message", "param", "type"]);
  }
}

describe("no input produces a 5xx", () => {
  it("responses", async () => {
    await fc.assert(
      fc.asyncProperty(responsesBody, (body) => expectNo5xx("/v1/responses", body)),
      { numRuns: 300 },
    );
  });

  it("embeddings, tokenize and detokenize", async () => {
    await fc.assert(
      fc.asyncProperty(utilityBody, async (body) => {
        await expectNo5xx("/v1/embeddings", body);
        await expectNo5xx("/tokenize", body);
        await expectNo5xx("/detokenize", body);
      }),
      { numRuns: 200 },
    );
  });
});

/**
 * Draft-model speculative decoding through the whole stack as `npm start` runs it: the
 * supervisor reads KILN_SPECULATIVE_CONFIG, starts a draft worker beside the target (stories260K
 * drafting for itself) and the official openai client gets the golden completions alone and 16
 * at once, with nearly every draft accepted on the gateway's /metrics (ADR 0017).
 */
import { loadGolden, sumSamples } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MODEL, MODEL_DIR, type Stack, startStack, stopStack } from "./helpers/stack";

const GOLDEN = loadGolden();
let stack: Stack;

beforeAll(async () => {
  stack = await startStack({
    KILN_SPECULATIVE_CONFIG: JSON.stringify({
      method: "draft_model",
      model: MODEL_DIR,
      num_speculative_tokens: 3,
      // Draft every step: drafting for itself costs as much as the target, so the adaptive
      // policy would soon stop drafting here.
      adaptive: false,
    }),
  });
}, 90_000);
afterAll(() => stopStack(stack), 30_000);

async function gatewayCounter(name: string): Promise<number> {
  const text = await (await fetch(stack.baseURL.replace(/\/v1$/, "/metrics"))).text();
  return sumSamples(text, `kiln_spec_decode_${name}_total`);
}

const complete = (prompt: number[]) =>
  stack.client.completions.create({
    model: MODEL,
    prompt,
    max_tokens: GOLDEN.max_new_tokens,
    temperature: 0,
  });

describe("draft-model speculative decoding through the gateway", () => {
  it("starts a draft worker and reproduces the goldens alone, then 16 at once", async () => {
    expect(stack.cluster.pids["draft-replica-0"]).toBeGreaterThan(0);
    for (const c of GOLDEN.cases) {
      expect((await complete(c.prompt_ids)).choices[0]!.text).toBe(c.greedy_text);
    }
    const cases = Array.from({ length: 16 }, (_, i) => GOLDEN.cases[i % GOLDEN.cases.length]!);
    const results = await Promise.all(cases.map((c) => complete(c.prompt_ids)));
    results.forEach((res, i) => {
      expect(res.choices[0]!.text).toBe(cases[i]!.greedy_text);
    });
    const drafted = await gatewayCounter("num_draft_tokens");
    expect(drafted).toBeGreaterThan(0);
    expect((await gatewayCounter("num_accepted_tokens")) / drafted).toBeGreaterThan(0.95);
  }, 60_000);
});

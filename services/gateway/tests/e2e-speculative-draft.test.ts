/**
 * Draft-model speculative decoding through the whole stack as `npm start` runs it: the
 * supervisor reads KILN_SPECULATIVE_CONFIG, starts a draft worker beside the target (stories260K
 * drafting for itself) and the official openai client gets the golden completions alone and 16
 * at once, with nearly every draft accepted on the gateway's /metrics (ADR 0017).
 */
import { loadGolden } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  expectGoldenCompletions,
  gatewayMetric,
  greedyCompletion,
  MODEL_DIR,
  type Stack,
  startStack,
  stopStack,
} from "./helpers/stack";

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

const gatewayCounter = (name: string) => gatewayMetric(stack, `kiln_spec_decode_${name}_total`);
const complete = (prompt: number[], extra: Record<string, unknown> = {}) =>
  greedyCompletion(stack, prompt, extra);

describe("draft-model speculative decoding through the gateway", () => {
  it("starts a draft worker and reproduces the goldens alone, then 16 at once", async () => {
    expect(stack.cluster.pids["draft-replica-0"]).toBeGreaterThan(0);
    await expectGoldenCompletions(stack);
    const drafted = await gatewayCounter("num_draft_tokens");
    expect(drafted).toBeGreaterThan(0);
    expect((await gatewayCounter("num_accepted_tokens")) / drafted).toBeGreaterThan(0.95);
  }, 60_000);

  it("logprobs, a stop string, n = 2 and a seeded sample match the opted-out request", async () => {
    const c = GOLDEN.cases[0]!;
    const stop = c.greedy_text.slice(40, 52);
    const before = await gatewayCounter("num_draft_tokens");
    const params = { logprobs: 2, stop, n: 2 };
    const spec = await complete(c.prompt_ids, params);
    expect(await gatewayCounter("num_draft_tokens")).toBeGreaterThan(before);
    const plain = await complete(c.prompt_ids, { ...params, speculative: false });
    expect(spec.choices.map((ch) => ch.text)).toEqual(plain.choices.map((ch) => ch.text));
    expect(spec.choices[0]!.text).toBe(c.greedy_text.slice(0, c.greedy_text.indexOf(stop)));
    expect(spec.choices[0]!.finish_reason).toBe("stop");
    expect(spec.choices[0]!.logprobs!.tokens).toEqual(plain.choices[0]!.logprobs!.tokens);
    spec.choices[0]!.logprobs!.token_logprobs!.forEach((lp, i) => {
      expect(lp).toBeCloseTo(plain.choices[0]!.logprobs!.token_logprobs![i]!, 3);
    });
    // Sampling stays lossless and seeded output reproducible (ADR 0017).
    const sampled = { temperature: 0.8, seed: 11, max_tokens: 60 };
    const specSampled = await complete(c.prompt_ids, sampled);
    const plainSampled = await complete(c.prompt_ids, { ...sampled, speculative: false });
    expect(specSampled.choices[0]!.text).toBe(plainSampled.choices[0]!.text);
    expect(specSampled.usage?.completion_tokens).toBe(plainSampled.usage?.completion_tokens);
  });
});

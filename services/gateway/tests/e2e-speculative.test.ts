/**
 * Speculative decoding through the whole stack as `npm start` runs it (KILN_SPECULATIVE_CONFIG
 * reaches the router through the cluster supervisor), with the official openai client: goldens
 * exact alone and 16 at once, logprobs, a stop string and `n` unchanged by speculation, the
 * `"speculative": false` opt-out, and the spec-decode counters relayed on the gateway's /metrics.
 */
import { loadGolden } from "@kiln/test-support";
import type OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  expectGoldenCompletions,
  gatewayMetric,
  greedyCompletion,
  MODEL,
  type Stack,
  startStack,
  stopStack,
} from "./helpers/stack";

const GOLDEN = loadGolden();
let stack: Stack;
let _client: OpenAI;

beforeAll(async () => {
  stack = await startStack({
    KILN_SPECULATIVE_CONFIG: JSON.stringify({
      method: "ngram",
      num_speculative_tokens: 4,
      prompt_lookup_max: 3,
      adaptive: false,
    }),
  });
  _client = stack.client;
}, 90_000);
afterAll(() => stopStack(stack), 30_000);

const gatewayCounter = (name: string) => gatewayMetric(stack, name);
const complete = (prompt: number[], extra: Record<string, unknown> = {}) =>
  greedyCompletion(stack, prompt, extra);

describe("speculative decoding (n-gram) through the gateway", () => {
  it("reproduces the golden completions alone, then 16 at once", async () => {
    await expectGoldenCompletions(stack);
    expect(await gatewayCounter("kiln_spec_decode_num_draft_tokens_total")).toBeGreaterThan(0);
    expect(await gatewayCounter("kiln_spec_decode_num_accepted_tokens_total")).toBeGreaterThan(0);
    expect(await gatewayCounter("kiln_spec_decode_num_drafts_total")).toBeGreaterThan(0);
  }, 60_000);

  it("logprobs, a stop string and n = 2 match the opted-out request", async () => {
    const c = GOLDEN.cases[0]!;
    const stop = c.greedy_text.slice(40, 52);
    const params = { logprobs: 2, stop, n: 2 };
    const before = await gatewayCounter("kiln_spec_decode_num_draft_tokens_total");
    const plain = await complete(c.prompt_ids, { ...params, speculative: false });
    expect(await gatewayCounter("kiln_spec_decode_num_draft_tokens_total")).toBe(before);
    const spec = await complete(c.prompt_ids, params);
    expect(await gatewayCounter("kiln_spec_decode_num_draft_tokens_total")).toBeGreaterThan(before);
    expect(spec.choices.map((ch) => ch.text)).toEqual(plain.choices.map((ch) => ch.text));
    expect(spec.choices[0]!.text).toBe(c.greedy_text.slice(0, c.greedy_text.indexOf(stop)));
    expect(spec.choices[0]!.finish_reason).toBe("stop");
    const specLp = spec.choices[0]!.logprobs!;
    const plainLp = plain.choices[0]!.logprobs!;
    expect(specLp.tokens).toEqual(plainLp.tokens);
    specLp.token_logprobs!.forEach((lp, i) => {
      expect(lp).toBeCloseTo(plainLp.token_logprobs![i]!, 3);
    });
  });

  it("rejects a non-boolean speculative field with a 400 naming it", async () => {
    const res = await fetch(`${stack.baseURL}/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: MODEL, prompt: "Once", speculative: "no" }),
    });
    expect(res.status).toBe(400);
    const body = (await res.json()) as { error: { param: string } };
    expect(body.error.param).toBe("speculative");
  });
});

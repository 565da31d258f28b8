import { type GoldenCase, loadGolden, scrapeSum, waitFor } from "@kiln/test-support";
import { expect } from "vitest";
import type { TestRouterClient } from "./router-client";

/** One greedy Generate stream for golden case `c`, expected to reproduce its golden ids. */
export async function expectGoldenCase(client: TestRouterClient, c: GoldenCase): Promise<void> {
  const result = await client.generate({
    promptTokenIds: c.prompt_ids,
    maxTokens: c.greedy_ids.length,
    ignoreEos: true,
  });
  expect(result.error).toBeNull();
  expect(result.tokenIds).toEqual(c.greedy_ids);
}

/**
 * Sends `numStreams` concurrent greedy Generate streams over the golden cases (round robin) and
 * expects each to reproduce its golden ids token for token, ending with `length` and the right
 * usage. Returns the cases sent, in order.
 */
export async function expectGoldenStreams(client: TestRouterClient, numStreams: number) {
  const { cases: golden } = loadGolden();
  const cases = Array.from({ length: numStreams }, (_, i) => golden[i % golden.length]!);
  const results = await Promise.all(
    cases.map((c) =>
      client.generate({
        promptTokenIds: c.prompt_ids,
        maxTokens: c.greedy_ids.length,
        ignoreEos: true,
      }),
    ),
  );
  results.forEach((result, i) => {
    expect(result.error).toBeNull();
    expect(result.tokenIds).toEqual(cases[i]!.greedy_ids);
    const finished = result.events.at(-1)?.finished;
    expect(finished?.finishReason).toBe("length");
    expect(finished?.usage?.completionTokens).toBe(cases[i]!.greedy_ids.length);
  });
  return cases;
}

/**
 * 16 concurrent golden streams on a router that speculates: each reproduces its golden, drafts
 * were proposed meanwhile (the router's kiln_spec_decode_num_draft_tokens_total on
 * `metricsPort` rose), and afterwards replica 0 holds no block.
 */
export async function expectSpeculatedGoldenStreams(
  client: TestRouterClient,
  metricsPort: number,
): Promise<void> {
  const draftTokens = () => scrapeSum(metricsPort, "kiln_spec_decode_num_draft_tokens_total");
  const before = await draftTokens();
  await expectGoldenStreams(client, 16);
  expect(await draftTokens()).toBeGreaterThan(before);
  await waitFor(
    async () => (await client.stats()).replicas[0]!.numUsedBlocks === 0,
    "every block free",
    { timeoutMs: 5000 },
  );
}

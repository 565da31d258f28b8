import { type GoldenCase, loadGolden } from "@kiln/test-support";
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

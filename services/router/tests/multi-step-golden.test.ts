/**
 * Multi-step decode (ADR 0028) between real router and worker processes on the real model: with
 * bursts forced (up to 5 steps, a time budget no step reaches), greedy streams alone and
 * batched reproduce their goldens token for token, a stop id or max_tokens inside a burst ends
 * the sequence exactly there, and every block comes back.
 */
import { freePort, loadGolden, scrapeSum, waitFor } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectGoldenCase, expectGoldenStreams } from "./golden-streams";
import { type OneReplica, startOneReplica, stopOneReplica } from "./processes";
import type { TestRouterClient } from "./router-client";

const golden = loadGolden();
const MAX_STEPS = 5;

describe("greedy goldens in multi-step decode bursts", () => {
  let cluster: OneReplica;
  let client: TestRouterClient;
  let metricsPort: number;
  const burstCount = () => scrapeSum(metricsPort, "kiln_multi_step_decode_steps_count");
  const burstSteps = () => scrapeSum(metricsPort, "kiln_multi_step_decode_steps_sum");

  beforeAll(async () => {
    metricsPort = await freePort();
    cluster = await startOneReplica([
      ...["--metrics-port", `${metricsPort}`],
      ...["--num-scheduler-steps", `${MAX_STEPS}`, "--multi-step-max-ms", "600000"],
    ]);
    client = cluster.client;
  }, 90_000);

  afterAll(() => stopOneReplica(cluster));

  it("one stream at a time reproduces every golden, in bursts", async () => {
    const before = await burstCount();
    for (const c of golden.cases) await expectGoldenCase(client, c);
    const numBursts = (await burstCount()) - before;
    expect(numBursts).toBeGreaterThan(0);
    // Most decode steps ran in bursts of up to MAX_STEPS.
    expect((await burstSteps()) / (await burstCount())).toBeGreaterThan(2);
  }, 60_000);

  it("8 concurrent streams reproduce the goldens", async () => {
    const before = await burstCount();
    await expectGoldenStreams(client, 8);
    expect(await burstCount()).toBeGreaterThan(before);
  }, 60_000);

  it("a stop id or max_tokens inside a burst ends the sequence there", async () => {
    const c = golden.cases[0]!;
    const stopId = c.greedy_ids[MAX_STEPS + 2]!;
    const stopAt = c.greedy_ids.indexOf(stopId);
    const stopped = await client.generate({
      promptTokenIds: c.prompt_ids,
      maxTokens: c.greedy_ids.length,
      stopTokenIds: [stopId],
      ignoreEos: true,
    });
    expect(stopped.tokenIds).toEqual(c.greedy_ids.slice(0, stopAt + 1));
    expect(stopped.events.at(-1)?.finished?.finishReason).toBe("stop");
    const maxTokens = MAX_STEPS + 2;
    const capped = await client.generate({
      promptTokenIds: c.prompt_ids,
      maxTokens,
      ignoreEos: true,
    });
    expect(capped.tokenIds).toEqual(c.greedy_ids.slice(0, maxTokens));
    expect(capped.events.at(-1)?.finished?.finishReason).toBe("length");
    await waitFor(
      async () => (await client.stats()).replicas[0]!.numUsedBlocks === 0,
      "every block free",
      { timeoutMs: 5000 },
    );
  }, 60_000);
});

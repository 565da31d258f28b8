/**
 * The real scheduler under pressure, on the real model: a KV pool far smaller than the load
 * needs forces preemptions (recompute), and a token budget smaller than a prompt forces chunked
 * prefill. Every greedy stream must still reproduce its golden continuation token for token.
 */
import { freePort, loadGolden, scrapeSum, waitFor } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectGoldenStreams } from "./golden-streams";
import { type OneReplica, startOneReplica, stopOneReplica } from "./processes";
import type { TestRouterClient } from "./router-client";

const golden = loadGolden();
/** stories260K's KV per token: K and V × 5 layers × 4 KV heads × head_dim 8 × 4 bytes. */
const KV_BYTES_PER_TOKEN = 2 * 5 * 4 * 8 * 4;
const BLOCK_SIZE = 16;
/** 24 blocks: room for about five whole golden sequences (5 blocks each) of the 16 sent. */
const NUM_BLOCKS = 24;
/**
 * Fewer tokens per step than the longest golden prompt (12), so its prefill is chunked. The
 * router raises the budget to --max-num-seqs, so that is 8 too.
 */
const TOKEN_BUDGET = 8;

describe("greedy goldens through preemption and chunked prefill", () => {
  let cluster: OneReplica;
  let client: TestRouterClient;
  let routerMetricsPort: number;

  beforeAll(async () => {
    routerMetricsPort = await freePort();
    cluster = await startOneReplica(
      [
        ...["--metrics-port", `${routerMetricsPort}`],
        ...["--max-num-batched-tokens", `${TOKEN_BUDGET}`, "--max-num-seqs", `${TOKEN_BUDGET}`],
        // auto would not plan ahead when the worker's threads take every core of this machine.
        ...["--schedule-ahead", "on"],
      ],
      [
        ...["--block-size", `${BLOCK_SIZE}`],
        ...["--kv-cache-memory", `${NUM_BLOCKS * BLOCK_SIZE * KV_BYTES_PER_TOKEN}`],
      ],
    );
    client = cluster.client;
  }, 90_000);

  afterAll(() => stopOneReplica(cluster));

  it("16 concurrent streams reproduce the goldens while being preempted and chunked", async () => {
    const [replica] = (await client.stats()).replicas;
    expect(replica!.numBlocks).toBe(NUM_BLOCKS);
    const longestPrompt = Math.max(...golden.cases.map((c) => c.prompt_ids.length));
    expect(longestPrompt).toBeGreaterThan(TOKEN_BUDGET);
    await expectGoldenStreams(client, 16);
    const [after] = (await client.stats()).replicas;
    // The pressure was real: sequences were preempted and recomputed...
    expect(after!.numPreemptions).toBeGreaterThan(0);
    expect(await scrapeSum(routerMetricsPort, "kiln_num_preemptions_total")).toBeGreaterThan(0);
    // ...steps were planned ahead of the previous one's return (--schedule-ahead on)...
    expect(after!.numStepsPlannedAhead).toBeGreaterThan(0);
    expect(await scrapeSum(routerMetricsPort, "kiln_steps_planned_ahead_total")).toBe(
      after!.numStepsPlannedAhead,
    );
    // ...no step computed more than the budget, so the 12-token prompt was prefilled in chunks...
    const numSteps = await scrapeSum(routerMetricsPort, "kiln_iteration_tokens_count");
    const numOverBudget =
      numSteps -
      (await scrapeSum(routerMetricsPort, "kiln_iteration_tokens_bucket", {
        le: `${TOKEN_BUDGET}`,
      }));
    expect(numSteps).toBeGreaterThan(0);
    expect(numOverBudget).toBe(0);
    // ...and everything was given back.
    await waitFor(
      async () => (await client.stats()).replicas[0]!.numUsedBlocks === 0,
      "every block free",
      { timeoutMs: 5000 },
    );
  }, 60_000);
});

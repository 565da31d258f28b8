/**
 * The other engine-loop order (ADR 0021): with `--async-scheduling off` (stream, then plan) the
 * greedy goldens must come out token for token under preemption and chunked prefill, as they do
 * with overlapped steps in preemption-golden.test.ts (the default, on).
 */
import { loadGolden, waitFor } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectGoldenStreams } from "./golden-streams";
import { type OneReplica, startOneReplica, stopOneReplica } from "./processes";
import type { TestRouterClient } from "./router-client";

/** stories260K's KV per token: K and V × 5 layers × 4 KV heads × head_dim 8 × 4 bytes. */
const KV_BYTES_PER_TOKEN = 2 * 5 * 4 * 8 * 4;
const BLOCK_SIZE = 16;
/** Room for about five whole golden sequences of the 16 sent: preemption is certain. */
const NUM_BLOCKS = 24;
/** Below the longest golden prompt (12 tokens): its prefill is chunked. */
const TOKEN_BUDGET = 8;

describe("greedy goldens with async scheduling off", () => {
  let cluster: OneReplica;
  let client: TestRouterClient;

  beforeAll(async () => {
    cluster = await startOneReplica(
      [
        ...["--max-num-batched-tokens", `${TOKEN_BUDGET}`, "--max-num-seqs", `${TOKEN_BUDGET}`],
        ...["--async-scheduling", "off"],
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
    expect(loadGolden().cases.length).toBeGreaterThan(0);
    await expectGoldenStreams(client, 16);
    const [replica] = (await client.stats()).replicas;
    expect(replica!.numPreemptions).toBeGreaterThan(0);
    expect(replica!.numStepsPlannedAhead).toBe(0);
    await waitFor(
      async () => (await client.stats()).replicas[0]!.numUsedBlocks === 0,
      "every block free",
      { timeoutMs: 5000 },
    );
  }, 60_000);
});

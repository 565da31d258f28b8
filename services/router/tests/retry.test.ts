import { type GoldenCase, loadGoldenCases, STORIES_GOLDEN_PATH, waitFor } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  type ServiceProcess,
  startTwoReplicas,
  startWorker,
  stopTwoReplicas,
  type TwoReplicas,
} from "./processes";

/**
 * Safe retry (src/retry.ts) with real processes: a request whose worker is lost before any
 * token reached the client runs again on the other replica and produces exactly the greedy
 * golden continuation; a request that already streamed tokens ends with WORKER_LOST.
 */

const cases = loadGoldenCases(STORIES_GOLDEN_PATH);

const WORKER_ARGS = ["--kv-cache-memory", "8MiB"];

describe("safe retry on another replica", () => {
  let cluster: TwoReplicas;

  beforeAll(async () => {
    cluster = await startTwoReplicas(["--retry-wait", "30"], WORKER_ARGS);
  }, 90_000);

  afterAll(() => stopTwoReplicas(cluster));

  /**
   * Freezes `worker` (SIGSTOP) so its first step cannot answer, sends `golden` greedily and
   * resolves once the router has routed it to `replicaId`. The generation itself is returned
   * wrapped in `{ pending }`, so awaiting this does not wait for it to finish.
   */
  async function sendToFrozen(worker: ServiceProcess, replicaId: string, golden: GoldenCase) {
    process.kill(worker.pid!, "SIGSTOP");
    const pending = cluster.client.generate({
      promptTokenIds: [...golden.prompt_ids],
      maxTokens: golden.greedy_ids.length,
      ignoreEos: true,
    });
    await waitFor(
      async () =>
        (await cluster.client.stats()).replicas.find((r) => r.replicaId === replicaId)
          ?.numRequestsRouted === 1,
      `the request to be routed to ${replicaId}`,
    );
    return { pending };
  }

  it("a request lost before its first token completes on the other replica, token for token", async () => {
    const golden = cases[0]!;
    // Freeze replica-a (the one a tie routes to) so its first step cannot answer, then kill it.
    const { pending } = await sendToFrozen(cluster.workerA, "replica-a", golden);
    await cluster.workerA.kill();
    const result = await pending;
    expect(result.error).toBeNull();
    expect(result.tokenIds).toEqual(golden.greedy_ids);
    expect(result.events.at(-1)?.finished?.usage?.completionTokens).toBe(golden.greedy_ids.length);
    const stats = await cluster.client.stats();
    const b = stats.replicas.find((r) => r.replicaId === "replica-b")!;
    expect(b.numRequestsRouted).toBe(1);
    expect(b.numUsedBlocks).toBe(0);
  }, 30_000);

  it("a request that already streamed tokens ends with WORKER_LOST (no replay)", async () => {
    const golden = cases[1]!;
    let killed: Promise<void> | null = null;
    const result = await cluster.client.generate(
      { promptTokenIds: [...golden.prompt_ids], maxTokens: 400, ignoreEos: true },
      (numTokens) => {
        if (numTokens === 2) killed = cluster.workerB.kill();
        return false;
      },
    );
    await killed;
    expect(result.tokenIds.length).toBeGreaterThanOrEqual(2);
    expect(result.tokenIds.length).toBeLessThan(400);
    expect(result.events.at(-1)?.error?.message).toMatch(/worker lost/);
  }, 30_000);

  it("with no other replica, waits for the lost worker to come back and completes there", async () => {
    // Both workers are gone by now: one replica that is lost, then restarted within the wait.
    const golden = cases[2 % cases.length]!;
    cluster.workerA = await startWorker(cluster.router.port, "replica-c", WORKER_ARGS);
    await waitFor(
      async () =>
        (await cluster.client.stats()).replicas.some(
          (r) => r.replicaId === "replica-c" && r.healthy,
        ),
      "replica-c",
      { timeoutMs: 30_000 },
    );
    const { pending } = await sendToFrozen(cluster.workerA, "replica-c", golden);
    await cluster.workerA.kill();
    cluster.workerA = await startWorker(cluster.router.port, "replica-c", WORKER_ARGS);
    const result = await pending;
    expect(result.error).toBeNull();
    expect(result.tokenIds).toEqual(golden.greedy_ids);
    const c = (await cluster.client.stats()).replicas.find((r) => r.replicaId === "replica-c")!;
    expect(c.numRequestsRouted).toBe(2);
  }, 40_000);
});

import { loadGoldenCases, STORIES_GOLDEN_PATH, sleep, waitFor } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { startTwoReplicas, stopTwoReplicas, type TwoReplicas } from "./processes";

/**
 * Worker drain with real processes (services/worker/src/drain.ts and src/drain.ts): SIGTERM on
 * a worker lets its running request finish, new requests go to the other replica, and the
 * drained replica leaves the set and its process exits 0, with no error anywhere.
 */

const cases = loadGoldenCases(STORIES_GOLDEN_PATH);

const WORKER_ARGS = ["--kv-cache-memory", "8MiB", "--drain-timeout", "30"];

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch {
    return false;
  }
}

describe("worker drain on SIGTERM", () => {
  let cluster: TwoReplicas;

  beforeAll(async () => {
    // Drain probes every 200 ms, so the router learns of the drain well within the long request.
    cluster = await startTwoReplicas(["--health-probe-interval-ms", "200"], WORKER_ARGS);
  }, 90_000);

  afterAll(() => stopTwoReplicas(cluster));

  it("finishes the running request, routes new ones elsewhere, then leaves", async () => {
    const golden = cases[0]!;
    let terminatedAt = 0;
    // ~4 s of generation on replica-a (the one a tie routes to); SIGTERM after its first token.
    const running = cluster.client.generate(
      { promptTokenIds: [...golden.prompt_ids], maxTokens: 480, ignoreEos: true },
      () => {
        if (terminatedAt === 0) {
          terminatedAt = Date.now();
          process.kill(cluster.workerA.pid!, "SIGTERM");
        }
        return false;
      },
    );
    await waitFor(() => terminatedAt > 0, "the first token");
    await sleep(700); // a few drain probes
    const otherCases = [1, 2, 1].map((i) => cases[i % cases.length]!);
    const others = await Promise.all(
      otherCases.map((c) =>
        cluster.client.generate({
          promptTokenIds: [...c.prompt_ids],
          maxTokens: c.greedy_ids.length,
          ignoreEos: true,
        }),
      ),
    );
    others.forEach((r, i) => {
      expect(r.error).toBeNull();
      expect(r.tokenIds).toEqual(otherCases[i]!.greedy_ids);
    });
    const stats = await cluster.client.stats();
    // On a fast machine the long request may already be over and replica-a gone from the set.
    const a = stats.replicas.find((r) => r.replicaId === "replica-a");
    if (a) expect(a.numRequestsRouted).toBe(1);
    expect(stats.replicas.find((r) => r.replicaId === "replica-b")?.numRequestsRouted).toBe(3);

    const result = await running;
    expect(result.error).toBeNull();
    expect(result.tokenIds).toHaveLength(480);
    expect(result.tokenIds.slice(0, golden.greedy_ids.length)).toEqual(golden.greedy_ids);
    expect(result.events.at(-1)?.finished?.finishReason).toBe("length");
    // Without the drain, SIGTERM would have killed the worker mid-stream: WORKER_LOST.

    await waitFor(() => !isAlive(cluster.workerA.pid!), "the drained worker to exit", {
      timeoutMs: 10_000,
    });
    await waitFor(
      async () => (await cluster.client.stats()).replicas.every((r) => r.replicaId === "replica-b"),
      "replica-a to leave the set",
    );
    const b = (await cluster.client.stats()).replicas[0]!;
    expect(b).toMatchObject({ healthy: true, numUsedBlocks: 0 });
  }, 40_000);
});

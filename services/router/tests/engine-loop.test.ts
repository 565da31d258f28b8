import { ErrorCode, SamplingParams } from "@kiln/proto";
import { loadGolden, STORIES_DIR, waitFor } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServiceProcess, startService } from "./processes";
import { TestRouterClient } from "./router-client";

const golden = loadGolden();

async function startWorker(routerPort: number, replicaId = "replica-0"): Promise<ServiceProcess> {
  return startService("worker", [
    "--model",
    STORIES_DIR,
    "--router",
    `127.0.0.1:${routerPort}`,
    "--replica-id",
    replicaId,
    "--kv-cache-memory",
    "8MiB",
  ]);
}

async function waitForReplicas(client: TestRouterClient, numHealthy: number): Promise<void> {
  await waitFor(
    async () => (await client.stats()).replicas.filter((r) => r.healthy).length === numHealthy,
    `${numHealthy} healthy replicas`,
    { timeoutMs: 30_000 },
  );
}

describe("router and worker processes", () => {
  let router: ServiceProcess;
  let worker: ServiceProcess;
  let client: TestRouterClient;

  beforeAll(async () => {
    router = await startService("router", ["--port", "0", "--max-num-seqs", "64"]);
    worker = await startWorker(router.port);
    client = new TestRouterClient(router.port);
    await waitForReplicas(client, 1);
  }, 90_000);

  afterAll(async () => {
    client?.close();
    await worker?.stop();
    await router?.stop();
  });

  it("16 concurrent greedy streams reproduce the golden continuations", async () => {
    const cases = Array.from({ length: 16 }, (_, i) => golden.cases[i % golden.cases.length]!);
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
  }, 60_000);

  it("50 streams aborted mid-generation give every block back", async () => {
    const prompt = golden.cases[0]!.prompt_ids;
    const results = await Promise.all(
      Array.from({ length: 50 }, (_, i) =>
        client.generate(
          {
            promptTokenIds: prompt,
            maxTokens: 400,
            ignoreEos: true,
            sampling: SamplingParams.fromPartial({ temperature: 1, seed: i }),
          },
          (numTokens) => numTokens >= 3 + (i % 5),
        ),
      ),
    );
    expect(results.every((r) => r.error === "cancelled")).toBe(true);
    await waitFor(
      async () => {
        const [replica] = (await client.stats()).replicas;
        return (
          replica!.numUsedBlocks === 0 && replica!.numRunning === 0 && replica!.numWaiting === 0
        );
      },
      "all blocks free",
      { timeoutMs: 5000 },
    );
  }, 60_000);
});

describe("a worker killed mid-stream", () => {
  it("ends every open stream with WORKER_LOST, then serves again after a restart", async () => {
    const router = await startService("router", ["--port", "0"]);
    let worker = await startWorker(router.port);
    const client = new TestRouterClient(router.port);
    try {
      await waitForReplicas(client, 1);
      const prompt = golden.cases[1]!.prompt_ids;
      let numStarted = 0;
      const streams = Array.from({ length: 8 }, () =>
        client.generate({ promptTokenIds: prompt, maxTokens: 480, ignoreEos: true }, (n) => {
          if (n === 1) numStarted++;
          return false;
        }),
      );
      await waitFor(() => numStarted === 8, "every stream to start", { timeoutMs: 30_000 });
      const killedAt = Date.now();
      const killed = worker.kill();
      const results = await Promise.all(streams);
      await killed;
      expect(Date.now() - killedAt).toBeLessThan(5000);
      for (const result of results) {
        expect(result.events.at(-1)?.error?.code).toBe(ErrorCode.WORKER_LOST);
      }

      worker = await startWorker(router.port);
      await waitForReplicas(client, 1);
      const c = golden.cases[0]!;
      const after = await client.generate({
        promptTokenIds: c.prompt_ids,
        maxTokens: c.greedy_ids.length,
        ignoreEos: true,
      });
      expect(after.tokenIds).toEqual(c.greedy_ids);
    } finally {
      client.close();
      await worker.stop();
      await router.stop();
    }
  }, 120_000);
});

describe("a bounded waiting queue", () => {
  it("refuses Generate with RESOURCE_EXHAUSTED once the queue is full", async () => {
    const router = await startService("router", [
      "--port",
      "0",
      "--max-waiting",
      "2",
      "--max-num-seqs",
      "1",
    ]);
    const worker = await startWorker(router.port);
    const client = new TestRouterClient(router.port);
    try {
      await waitForReplicas(client, 1);
      const prompt = golden.cases[0]!.prompt_ids;
      const results = await Promise.all(
        Array.from({ length: 6 }, () =>
          client.generate({ promptTokenIds: prompt, maxTokens: 32, ignoreEos: true }),
        ),
      );
      const refused = results.filter((r) => r.error?.includes("RESOURCE_EXHAUSTED"));
      expect(refused.length).toBeGreaterThanOrEqual(3);
      expect(refused.every((r) => r.tokenIds.length === 0)).toBe(true);
      const served = results.filter((r) => r.error === null);
      expect(served.length).toBe(6 - refused.length);
      expect(served.every((r) => r.tokenIds.length === 32)).toBe(true);
    } finally {
      client.close();
      await worker.stop();
      await router.stop();
    }
  }, 120_000);
});

describe("two replicas", () => {
  it("routes requests that share a long prefix to the replica that caches it", async () => {
    const router = await startService("router", ["--port", "0"]);
    const workers = await Promise.all([
      startWorker(router.port, "a"),
      startWorker(router.port, "b"),
    ]);
    const client = new TestRouterClient(router.port);
    try {
      await waitForReplicas(client, 2);
      // 160 tokens of shared prefix: ten full blocks of 16.
      const prefix = [1, ...Array.from({ length: 159 }, (_, i) => 300 + (i % 150))];
      const first = await client.generate({ promptTokenIds: [...prefix, 400], maxTokens: 4 });
      expect(first.error).toBeNull();
      for (let i = 0; i < 4; i++) {
        const r = await client.generate({ promptTokenIds: [...prefix, 401 + i], maxTokens: 4 });
        expect(r.error).toBeNull();
      }
      const { replicas } = await client.stats();
      const routed = replicas.map((r) => r.numRequestsRouted).sort();
      expect(routed).toEqual([0, 5]);
      const hot = replicas.find((r) => r.numRequestsRouted === 5)!;
      expect(hot.prefixCacheHits).toBeGreaterThanOrEqual(4 * 160);

      // Unrelated prompts at once spread by load instead.
      const spread = await Promise.all(
        [0, 1].map((i) =>
          client.generate({ promptTokenIds: [1, 20 + i, 30, 40], maxTokens: 64, ignoreEos: true }),
        ),
      );
      expect(spread.every((r) => r.error === null)).toBe(true);
      const after = (await client.stats()).replicas;
      expect(after.map((r) => r.numRequestsRouted).sort()).toEqual([1, 6]);
    } finally {
      client.close();
      await Promise.all(workers.map((w) => w.stop()));
      await router.stop();
    }
  }, 120_000);
});

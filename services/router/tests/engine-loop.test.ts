import { ErrorCode, SamplingParams } from "@kiln/proto";
import { freePort, loadGolden, STORIES_DIR, scrapeSum, waitFor } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectGoldenStreams } from "./golden-streams";
import { type ServiceProcess, startService } from "./processes";
import { TestRouterClient } from "./router-client";

const golden = loadGolden();

async function startWorker(
  routerPort: number,
  replicaId = "replica-0",
  extraArgs: readonly string[] = [],
): Promise<ServiceProcess> {
  return startService("worker", [
    ...extraArgs,
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
  let routerMetricsPort: number;
  let workerMetricsPort: number;

  beforeAll(async () => {
    [routerMetricsPort, workerMetricsPort] = [await freePort(), await freePort()];
    router = await startService("router", [
      ...["--port", "0", "--max-num-seqs", "64"],
      ...["--metrics-port", `${routerMetricsPort}`],
    ]);
    worker = await startWorker(router.port, "replica-0", [
      ...["--metrics-port", `${workerMetricsPort}`],
    ]);
    client = new TestRouterClient(router.port);
    await waitForReplicas(client, 1);
  }, 90_000);

  afterAll(async () => {
    client?.close();
    await worker?.stop();
    await router?.stop();
  });

  it("16 concurrent greedy streams reproduce the golden continuations", async () => {
    await expectGoldenStreams(client, 16);
  }, 60_000);

  it("50 streams cancelled mid-generation end as aborted, stop computing and give every block back", async () => {
    const finished = (reason: string) =>
      scrapeSum(routerMetricsPort, "kiln_request_success_total", { finished_reason: reason });
    const generated = () => scrapeSum(routerMetricsPort, "kiln_generation_tokens_total");
    const before = {
      aborted: await finished("abort"),
      completed: (await finished("stop")) + (await finished("length")),
      generated: await generated(),
    };
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
    expect(results.every((r) => r.events.every((e) => e.finished === undefined))).toBe(true);
    // The server side: the router recorded 50 aborts and no completion, the worker dropped every
    // sequence, the scheduler holds no request and no block.
    await waitFor(
      async () => {
        const [replica] = (await client.stats()).replicas;
        return (
          replica!.numUsedBlocks === 0 &&
          replica!.numRunning + replica!.numWaiting === 0 &&
          (await finished("abort")) - before.aborted === 50 &&
          (await scrapeSum(workerMetricsPort, "kiln_worker_num_sequences")) === 0
        );
      },
      "50 aborts recorded, no sequence on the worker, all blocks free",
      { timeoutMs: 5000 },
    );
    expect((await finished("stop")) + (await finished("length")) - before.completed).toBe(0);
    // Cancelled work stops: each stream saw at most 7 tokens; a few steps in flight may add more,
    // but nowhere near the 400 a stream would compute if the cancel were ignored.
    expect((await generated()) - before.generated).toBeLessThan(50 * 40);
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
  it("routes requests that share a long prefix to the replica that caches it, against the load tie-break", async () => {
    const router = await startService("router", ["--port", "0"]);
    const workers = await Promise.all([
      startWorker(router.port, "a"),
      startWorker(router.port, "b"),
    ]);
    const client = new TestRouterClient(router.port);
    const routed = async () =>
      new Map((await client.stats()).replicas.map((r) => [r.replicaId, r.numRequestsRouted]));
    try {
      await waitForReplicas(client, 2);
      // With both replicas idle, a tie goes to the first one: occupy it with an unrelated long
      // stream, so the prefix is warmed on the other one, the replica that loses ties.
      let isBusyStarted = false;
      let isBusyCancelled = false;
      const busy = client.generate(
        { promptTokenIds: [1, 20, 30, 40], maxTokens: 400, ignoreEos: true },
        () => {
          isBusyStarted = true;
          return isBusyCancelled;
        },
      );
      await waitFor(() => isBusyStarted, "the unrelated stream to start", { timeoutMs: 30_000 });
      const tieWinner = [...(await routed())].find(([, n]) => n === 1)![0];
      // 160 tokens of shared prefix: ten full blocks of 16.
      const prefix = [1, ...Array.from({ length: 159 }, (_, i) => 300 + (i % 150))];
      const first = await client.generate({ promptTokenIds: [...prefix, 400], maxTokens: 4 });
      expect(first.error).toBeNull();
      const warm = [...(await routed())].find(([id]) => id !== tieWinner)![0];
      expect(await routed()).toEqual(
        new Map([
          [tieWinner, 1],
          [warm, 1],
        ]),
      );
      // Both idle again: load alone would now send every request to the tie winner.
      isBusyCancelled = true;
      expect((await busy).error).toBe("cancelled");
      await waitFor(
        async () => (await client.stats()).replicas.every((r) => r.numRunning + r.numWaiting === 0),
        "both replicas idle",
        { timeoutMs: 10_000 },
      );
      for (let i = 0; i < 4; i++) {
        const r = await client.generate({ promptTokenIds: [...prefix, 401 + i], maxTokens: 4 });
        expect(r.error).toBeNull();
      }
      const { replicas } = await client.stats();
      expect(new Map(replicas.map((r) => [r.replicaId, r.numRequestsRouted]))).toEqual(
        new Map([
          [tieWinner, 1],
          [warm, 5],
        ]),
      );
      const hot = replicas.find((r) => r.replicaId === warm)!;
      expect(hot.prefixCacheHits).toBeGreaterThanOrEqual(4 * 160);
    } finally {
      client.close();
      await Promise.all(workers.map((w) => w.stop()));
      await router.stop();
    }
  }, 120_000);
});

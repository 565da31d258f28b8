import { resolve } from "node:path";
import { STORIES_DIR, waitFor } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type ServiceProcess, startRouter, startWorker, waitForHealthyReplicas } from "./processes";
import { TestRouterClient } from "./router-client";

// Routing with LoRA (ADR 0015): a replica where the adapter is resident wins over one that
// would win on load and replica order alone.

const LORA_A_DIR = resolve(STORIES_DIR, "../stories260K-lora-a");
const ADAPTER = { adapter: "lora-a", adapterPath: LORA_A_DIR };

describe("routing prefers a replica with the adapter resident", () => {
  let router: ServiceProcess;
  const workers: ServiceProcess[] = [];
  let client: TestRouterClient;

  beforeAll(async () => {
    router = await startRouter();
    for (const replicaId of ["replica-0", "replica-1"]) {
      const args = ["--kv-cache-memory", "8MiB", "--max-loras", "2"];
      workers.push(await startWorker(router.port, replicaId, args));
    }
    client = new TestRouterClient(router.port);
    await waitForHealthyReplicas(client, 2);
  }, 90_000);

  afterAll(async () => {
    client?.close();
    await Promise.all([...workers.map((w) => w.stop()), router?.stop()]);
  }, 30_000);

  it("sends the adapter's requests where it already sits", async () => {
    // A long base request keeps replica-0 busy, so the first adapter request goes to replica-1.
    const long = client.generate({
      promptTokenIds: [1, 400, 401],
      maxTokens: 300,
      ignoreEos: true,
    });
    await waitFor(async () => (await client.stats()).replicas[0]!.numRunning === 1, "busy", {
      timeoutMs: 10_000,
    });
    const first = await client.generate({
      promptTokenIds: [1, 291, 376],
      maxTokens: 4,
      ...ADAPTER,
    });
    expect(first.error).toBeNull();
    await long;
    // Both idle now: load and replica order would pick replica-0; residency picks replica-1.
    const second = await client.generate({
      promptTokenIds: [1, 50, 60, 70],
      maxTokens: 4,
      ...ADAPTER,
    });
    expect(second.error).toBeNull();
    const [r0, r1] = (await client.stats()).replicas;
    expect(r1!.residentAdapters).toEqual(["lora-a"]);
    expect(r0!.residentAdapters).toEqual([]);
    expect(Number(r1!.numRequestsRouted)).toBe(2);
    expect(Number(r0!.numRequestsRouted)).toBe(1);
  }, 60_000);
});

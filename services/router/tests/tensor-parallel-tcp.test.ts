import { ErrorCode } from "@kiln/proto";
import { freePort, loadGolden, waitFor } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectGoldenStreams } from "./golden-streams";
import { type ServiceProcess, startRouter, startWorker, waitForHealthyReplicas } from "./processes";
import { TestRouterClient } from "./router-client";

// A tensor-parallel group whose ranks talk over the TCP ring (--tp-peers), as ranks on two hosts
// would, here on loopback: real router, two real worker processes, real gRPC.
describe("a T = 2 group over the TCP ring", () => {
  let router: ServiceProcess;
  let ranks: ServiceProcess[] = [];
  let client: TestRouterClient;

  beforeAll(async () => {
    router = await startRouter();
    const peers = `127.0.0.1:${await freePort()},127.0.0.1:${await freePort()}`;
    ranks = await Promise.all(
      [0, 1].map((rank) =>
        startWorker(router.port, "replica-tcp", [
          ...["--threads", "1", "--kv-cache-memory", "16MiB", "--tensor-parallel-size", "2"],
          ...["--tp-rank", String(rank), "--tp-peers", peers, "--tp-timeout-ms", "3000"],
        ]),
      ),
    );
    client = new TestRouterClient(router.port);
    await waitForHealthyReplicas(client, 1);
  }, 90_000);

  afterAll(async () => {
    client?.close();
    await Promise.all(ranks.map((r) => r.kill()));
    await router?.stop();
  });

  it("reproduces the golden continuations (one replica, batched)", async () => {
    await expectGoldenStreams(client, 6);
  }, 60_000);

  it("kill -9 of rank 1 mid-stream ends the stream with WORKER_LOST and rank 0 exits to restart", async () => {
    const golden = loadGolden().cases[0]!;
    let killedAt = 0;
    const result = await client.generate(
      { promptTokenIds: golden.prompt_ids, maxTokens: 400, ignoreEos: true },
      (numTokens) => {
        if (numTokens === 3) {
          killedAt = performance.now();
          process.kill(ranks[1]!.pid!, "SIGKILL");
        }
        return false;
      },
    );
    expect(killedAt).toBeGreaterThan(0);
    expect(performance.now() - killedAt).toBeLessThan(5000);
    expect(result.events.at(-1)?.error?.code).toBe(ErrorCode.WORKER_LOST);
    // The ring cannot be re-formed in place: rank 0 exits so that a restart reconnects it.
    const isAlive = (pid: number) => {
      try {
        process.kill(pid, 0);
        return true;
      } catch {
        return false;
      }
    };
    await waitFor(async () => !isAlive(ranks[0]!.pid!), "rank 0 to exit", { timeoutMs: 10_000 });
  }, 30_000);
});

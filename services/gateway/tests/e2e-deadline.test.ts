import { resolve } from "node:path";
import { credentials } from "@grpc/grpc-js";
import { startCluster } from "@kiln/cluster";
import { RouterClient, type StatsResponse } from "@kiln/proto";
import { freePort, REPO_ROOT, STORIES_DIR, waitFor } from "@kiln/test-support";
import OpenAI, { APIConnectionTimeoutError, APIError } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

// Real router, worker and gateway processes with a 1 s request timeout (KILN_REQUEST_TIMEOUT_S).
const MODEL = "stories260K";
const LONG = { model: MODEL, prompt: "Once upon a time", max_tokens: 450, n: 16 };

let cluster: Awaited<ReturnType<typeof startCluster>>;
let router: RouterClient;
let client: OpenAI;
const logs: string[] = [];

beforeAll(async () => {
  const routerPort = await freePort();
  cluster = await startCluster({
    repoRoot: resolve(REPO_ROOT),
    modelDir: STORIES_DIR,
    servedName: MODEL,
    host: "127.0.0.1",
    port: 0,
    routerPort,
    drainTimeoutS: 5,
    startTimeoutMs: 60_000,
    env: { ...process.env, KILN_KV_CACHE_MEMORY: "64MiB", KILN_REQUEST_TIMEOUT_S: "1" },
    log: (line) => logs.push(line),
  });
  router = new RouterClient(`127.0.0.1:${routerPort}`, credentials.createInsecure());
  const baseURL = `http://127.0.0.1:${cluster.gatewayPort}/v1`;
  client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0, timeout: 30_000 });
}, 90_000);

afterAll(async () => {
  router?.close();
  await cluster?.stop("tests done");
}, 30_000);

function stats(): Promise<StatsResponse> {
  return new Promise((res, rej) => router.stats({}, (err, s) => (err ? rej(err) : res(s))));
}

async function expectBlocksFreed(): Promise<void> {
  await waitFor(
    async () => {
      const [replica] = (await stats()).replicas;
      return replica!.numUsedBlocks === 0 && replica!.numRunning === 0 && replica!.numWaiting === 0;
    },
    "every KV block back in the pool",
    { timeoutMs: 5000 },
  );
}

describe("request deadlines end to end", () => {
  it("a request that finishes in time is untouched", async () => {
    const res = await client.completions.create({ model: MODEL, prompt: "Once", max_tokens: 4 });
    expect(res.choices[0]!.finish_reason).toBe("length");
  }, 30_000);

  it("a non-streamed request past the timeout gets 504 deadline_exceeded; its blocks return", async () => {
    const startedAt = Date.now();
    const err = await client.completions.create(LONG).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIError);
    expect((err as APIError).status).toBe(504);
    expect((err as APIError).code).toBe("deadline_exceeded");
    expect(Date.now() - startedAt).toBeLessThan(5000);
    await expectBlocksFreed();
  }, 30_000);

  it("a stream past the timeout ends with an error event; its blocks return", async () => {
    const stream = await client.completions.create({ ...LONG, stream: true });
    let numChunks = 0;
    const err = await (async () => {
      for await (const _chunk of stream) numChunks++;
    })().catch((e: unknown) => e);
    expect(numChunks).toBeGreaterThan(0);
    expect(err).toBeInstanceOf(APIError);
    expect(String((err as APIError).message)).toMatch(/timeout/i);
    await expectBlocksFreed();
  }, 30_000);

  it("the client's own HTTP timeout closes the connection and frees the blocks", async () => {
    const impatient = new OpenAI({ baseURL: client.baseURL, apiKey: "unused", maxRetries: 0 });
    const err = await impatient.completions.create(LONG, { timeout: 300 }).catch((e: unknown) => e);
    expect(err).toBeInstanceOf(APIConnectionTimeoutError);
    await expectBlocksFreed();
  }, 30_000);
});

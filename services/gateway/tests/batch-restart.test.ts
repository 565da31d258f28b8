import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { hasRedisServer } from "@kiln/cluster";
import { REPO_ROOT, requireAvailable } from "@kiln/test-support";
import OpenAI from "openai";
import { afterAll, describe, expect, it } from "vitest";
import { expectExactlyOnce, submit, waitForProgress } from "./helpers/batch-chaos";

const hasRedis = requireAvailable("redis-server", hasRedisServer(), "apt-get install redis-server");

/** `npm start`'s supervisor (services/cluster), which also starts redis-server itself. */
async function startSupervisor(dataDir: string) {
  const proc = spawn(process.execPath, ["--import", "tsx", "services/cluster/src/main.ts"], {
    cwd: REPO_ROOT,
    env: {
      ...process.env,
      PORT: "0",
      KILN_DATA_DIR: dataDir,
      KILN_KV_CACHE_MEMORY: "64MiB",
      KILN_BATCH_LOCK_MS: "1500",
      KILN_DRAIN_TIMEOUT_S: "1",
      KILN_REDIS_URL: "",
    },
    stdio: ["ignore", "pipe", "pipe"],
  });
  const logs: string[] = [];
  createInterface({ input: proc.stderr }).on("line", (l) => logs.push(l));
  const exited = new Promise<number | null>((resolve) => proc.once("exit", resolve));
  const ready = await new Promise<{ port: number }>((resolve, reject) => {
    createInterface({ input: proc.stdout }).on("line", (line) => {
      if (line.includes('"ready"')) resolve(JSON.parse(line) as { port: number });
    });
    void exited.then((code) =>
      reject(new Error(`supervisor exited (${code}):\n${logs.join("\n")}`)),
    );
  });
  const client = new OpenAI({
    baseURL: `http://127.0.0.1:${ready.port}/v1`,
    apiKey: "unused",
    maxRetries: 0,
  });
  return { proc, client, exited, logs };
}

describe.skipIf(!hasRedis)("batch across an npm start restart", () => {
  const dataDir = mkdtempSync(join(tmpdir(), "kiln-batch-supervisor-"));
  afterAll(() => rmSync(dataDir, { recursive: true, force: true }));

  it("Ctrl-C mid-batch, start again on the same KILN_DATA_DIR: the batch completes once", async () => {
    const first = await startSupervisor(dataDir);
    const id = await submit(first.client);
    await waitForProgress(first.client, id, 3);
    first.proc.kill("SIGINT");
    expect(await first.exited).toBe(0);
    const second = await startSupervisor(dataDir);
    try {
      await expectExactlyOnce(second.client, id);
    } finally {
      second.proc.kill("SIGINT");
      await second.exited;
    }
  }, 150_000);
});

import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createInterface } from "node:readline";
import { hasRedisServer } from "@kiln/cluster";
import { loadGolden, REPO_ROOT, requireAvailable, waitFor } from "@kiln/test-support";
import OpenAI, { toFile } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BatchStack, jsonl, MODEL, readJsonl, waitForBatch } from "./helpers/batch-stack";

const GOLDEN = loadGolden();
const hasRedis = requireAvailable("redis-server", hasRedisServer(), "apt-get install redis-server");
const NUM_LINES = 24;

/** NUM_LINES greedy golden prompts; every third line is invalid (an error line). */
function chaosLines() {
  return Array.from({ length: NUM_LINES }, (_, i) => {
    const c = GOLDEN.cases[i % GOLDEN.cases.length]!;
    const maxTokens = i % 3 === 2 ? -1 : GOLDEN.max_new_tokens;
    return {
      custom_id: `line-${i}`,
      method: "POST",
      url: "/v1/completions",
      body: { model: MODEL, prompt: c.prompt, max_tokens: maxTokens, temperature: 0 },
    };
  });
}

async function submit(client: OpenAI): Promise<string> {
  const file = await client.files.create({
    file: await toFile(Buffer.from(jsonl(chaosLines())), "chaos.jsonl"),
    purpose: "batch",
  });
  const batch = await client.batches.create({
    input_file_id: file.id,
    endpoint: "/v1/completions",
    completion_window: "24h",
  });
  return batch.id;
}

async function waitForProgress(client: OpenAI, id: string, minDone: number): Promise<void> {
  await waitFor(
    async () => {
      const { request_counts: c } = await client.batches.retrieve(id);
      return (c?.completed ?? 0) + (c?.failed ?? 0) >= minDone;
    },
    `batch ${id} to answer ${minDone} lines`,
    { timeoutMs: 60_000 },
  );
}

/** Every line answered exactly once, in the right file, with the golden text. */
async function expectExactlyOnce(client: OpenAI, id: string): Promise<void> {
  const batch = await waitForBatch(client, id, 90_000);
  expect(batch.status).toBe("completed");
  const numErrors = NUM_LINES / 3;
  expect(batch.request_counts).toEqual({
    total: NUM_LINES,
    completed: NUM_LINES - numErrors,
    failed: numErrors,
  });
  const outputs = await readJsonl(client, batch.output_file_id!);
  const errors = await readJsonl(client, batch.error_file_id!);
  const ids = [...outputs, ...errors].map((l) => l.custom_id).sort();
  expect(ids).toEqual(Array.from({ length: NUM_LINES }, (_, i) => `line-${i}`).sort());
  for (const line of outputs) {
    const i = Number(line.custom_id!.slice("line-".length));
    expect(line.response.body.choices?.[0]?.text).toBe(
      GOLDEN.cases[i % GOLDEN.cases.length]!.greedy_text,
    );
  }
  for (const line of errors) expect(line.response.status_code).toBe(400);
}

describe.skipIf(!hasRedis)("batch chaos: every line answered exactly once", () => {
  let stack: BatchStack;
  beforeAll(async () => {
    stack = await BatchStack.start();
  }, 90_000);
  afterAll(async () => stack?.stop(), 30_000);

  it("survives kill -9 of the gateway mid-batch and a restart", async () => {
    const id = await submit(stack.client());
    await waitForProgress(stack.client(), id, 3);
    await stack.gateway.kill();
    await stack.startGateway();
    await expectExactlyOnce(stack.client(), id);
  }, 120_000);

  it("survives kill -9 of Redis mid-batch and a restart from its AOF", async () => {
    const id = await submit(stack.client());
    await waitForProgress(stack.client(), id, 3);
    await stack.restartRedis();
    await expectExactlyOnce(stack.client(), id);
  }, 120_000);
});

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

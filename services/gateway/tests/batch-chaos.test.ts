import { hasRedisServer } from "@kiln/cluster";
import { requireAvailable, waitFor } from "@kiln/test-support";
import { Queue } from "bullmq";
import { Redis } from "ioredis";
import { toFile } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { BATCH_QUEUE } from "../src/batch/batch-service";
import { chaosLines, expectExactlyOnce, submit, waitForProgress } from "./helpers/batch-chaos";
import { BatchStack, jsonl, MODEL, readJsonl, waitForBatch } from "./helpers/batch-stack";

const hasRedis = requireAvailable("redis-server", hasRedisServer(), "apt-get install redis-server");

/**
 * Exactly once across kill -9 of the router and of a worker, duplicate job delivery, and a
 * completion window that elapses (issue 15). Real router, worker, gateway and Redis processes;
 * the official `openai` client. Gateway, Redis and Ctrl-C restarts are in batch-lifecycle and
 * batch-restart.
 */
describe.skipIf(!hasRedis)("batch chaos: router, worker, duplicates, expiry", () => {
  let stack: BatchStack;
  beforeAll(async () => {
    // Lines whose router or worker died are retried (503) until one comes back.
    stack = await BatchStack.start({ KILN_BATCH_MAX_ATTEMPTS: "30" });
  }, 90_000);
  afterAll(async () => stack?.stop(), 30_000);

  it("survives kill -9 of the router mid-batch and a restart", async () => {
    const id = await submit(stack.client());
    await waitForProgress(stack.client(), id, 3);
    await stack.restartRouter();
    await expectExactlyOnce(stack.client(), id);
  }, 120_000);

  it("survives kill -9 of the worker mid-batch and a new worker", async () => {
    const id = await submit(stack.client());
    await waitForProgress(stack.client(), id, 3);
    await stack.restartWorker();
    await expectExactlyOnce(stack.client(), id);
  }, 120_000);

  it("answers a line delivered twice once", async () => {
    const connection = new Redis(stack.redis.url, { maxRetriesPerRequest: null });
    const queue = new Queue(BATCH_QUEUE, { connection });
    try {
      const id = await submit(stack.client());
      // Every line delivered a second time as its own job, racing the first delivery.
      const duplicate = (index: number, suffix: string) => ({
        name: "line",
        data: { batchId: id, index, text: JSON.stringify(chaosLines()[index]) },
        opts: { jobId: `${id}_${index}_${suffix}`, removeOnComplete: true, removeOnFail: true },
      });
      await queue.addBulk(chaosLines().map((_, i) => duplicate(i, "dup")));
      await expectExactlyOnce(stack.client(), id);
      // And once more after the batch ended: the redelivery changes nothing.
      await queue.add("line", duplicate(0, "late").data, duplicate(0, "late").opts);
      await waitFor(
        async () => {
          const c = await queue.getJobCounts("waiting", "active", "delayed");
          return (c.waiting ?? 0) + (c.active ?? 0) + (c.delayed ?? 0) === 0;
        },
        "the late duplicate to be taken",
        { timeoutMs: 20_000 },
      );
      await expectExactlyOnce(stack.client(), id);
    } finally {
      await queue.close();
      connection.disconnect();
    }
  }, 120_000);

  it("expires a batch whose completion window elapses: the rest are batch_expired errors", async () => {
    await stack.gateway.kill();
    await stack.startGateway({ KILN_BATCH_COMPLETION_WINDOW_S: "2" });
    const client = stack.client();
    const numLines = 120;
    const lines = Array.from({ length: numLines }, (_, i) => ({
      custom_id: `slow-${i}`,
      method: "POST",
      url: "/v1/completions",
      body: { model: MODEL, prompt: "Once upon a time", max_tokens: 200, ignore_eos: true },
    }));
    const file = await client.files.create({
      file: await toFile(Buffer.from(jsonl(lines)), "slow.jsonl"),
      purpose: "batch",
    });
    const created = await client.batches.create({
      input_file_id: file.id,
      endpoint: "/v1/completions",
      completion_window: "24h",
    });
    expect(created.expires_at! - created.created_at).toBe(2);
    const batch = await waitForBatch(client, created.id, 30_000);
    expect(batch.status).toBe("expired");
    expect(batch.expired_at).not.toBeNull();
    const { total, completed, failed } = batch.request_counts!;
    expect(total).toBe(numLines);
    expect(completed + failed).toBe(numLines);
    expect(completed).toBeLessThan(numLines);
    const outputs = batch.output_file_id ? await readJsonl(client, batch.output_file_id) : [];
    const errors = await readJsonl(client, batch.error_file_id!);
    expect(outputs.length).toBe(completed);
    expect(errors.length).toBe(failed);
    for (const line of outputs) expect(line.response.status_code).toBe(200);
    for (const line of errors as unknown as ExpiredLine[]) {
      expect(line.response).toBeNull();
      expect(line.error).toEqual({
        code: "batch_expired",
        message: "This request could not be executed before the completion window expired.",
      });
    }
    const ids = [...outputs, ...errors].map((l) => l.custom_id).sort();
    expect(ids).toEqual(lines.map((l) => l.custom_id).sort());
  }, 60_000);
});

interface ExpiredLine {
  readonly response: null;
  readonly error: { readonly code: string; readonly message: string };
}

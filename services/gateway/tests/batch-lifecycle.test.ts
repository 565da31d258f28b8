import { hasRedisServer } from "@kiln/cluster";
import { loadGolden, requireAvailable } from "@kiln/test-support";
import { toFile } from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectExactlyOnce, submit, waitForProgress } from "./helpers/batch-chaos";
import { BatchStack, jsonl, MODEL, readJsonl, waitForBatch } from "./helpers/batch-stack";

const GOLDEN = loadGolden();
const hasRedis = requireAvailable("redis-server", hasRedisServer(), "apt-get install redis-server");

const completionLine = (customId: string, prompt: string, maxTokens = GOLDEN.max_new_tokens) => ({
  custom_id: customId,
  method: "POST",
  url: "/v1/completions",
  body: { model: MODEL, prompt, max_tokens: maxTokens, temperature: 0 },
});

/** The official `openai` client over a real router, worker, batch-enabled gateway and Redis. */
describe.skipIf(!hasRedis)(
  "Batch and Files APIs: lifecycle and chaos (every line answered exactly once)",
  () => {
    let stack: BatchStack;
    beforeAll(async () => {
      stack = await BatchStack.start();
    }, 90_000);
    afterAll(async () => stack?.stop(), 30_000);

    it("runs a batch: golden outputs, live-API errors for bad lines, counts, files", async () => {
      const client = stack.client();
      const lines = [
        ...GOLDEN.cases.map((c, i) => completionLine(`golden-${i}`, c.prompt)),
        "{ this is not json",
        {
          ...completionLine("bad-body", "Once"),
          body: { model: MODEL, prompt: "Once", max_tokens: -3 },
        },
        { ...completionLine("wrong-model", "Once"), body: { model: "nope", prompt: "Once" } },
        { ...completionLine("wrong-url", "Once"), url: "/v1/chat/completions" },
      ];
      const file = await client.files.create({
        file: await toFile(Buffer.from(jsonl(lines)), "in.jsonl"),
        purpose: "batch",
      });
      expect(file).toMatchObject({ object: "file", purpose: "batch", filename: "in.jsonl" });
      const created = await client.batches.create({
        input_file_id: file.id,
        endpoint: "/v1/completions",
        completion_window: "24h",
        metadata: { job: "nightly" },
      });
      expect(created.status).toBe("validating");
      const done = await waitForBatch(client, created.id);
      expect(done.status).toBe("completed");
      expect(done.request_counts).toEqual({ total: 7, completed: 3, failed: 4 });
      expect(done.metadata).toEqual({ job: "nightly" });
      expect(done.in_progress_at).toBeGreaterThan(0);
      expect(done.finalizing_at).toBeGreaterThan(0);

      const outputs = await readJsonl(client, done.output_file_id!);
      expect(outputs.map((o) => o.custom_id)).toEqual(["golden-0", "golden-1", "golden-2"]);
      GOLDEN.cases.forEach((c, i) => {
        expect(outputs[i]!.response.status_code).toBe(200);
        expect(outputs[i]!.response.body.choices?.[0]?.text).toBe(c.greedy_text);
        expect(outputs[i]!.id).toMatch(/^batch_req_/);
      });

      const errors = await readJsonl(client, done.error_file_id!);
      expect(errors.map((e) => e.custom_id)).toEqual([
        null,
        "bad-body",
        "wrong-model",
        "wrong-url",
      ]);
      // Each error is exactly what the live API answers for the same body.
      const live = async (payload: string) => {
        const res = await fetch(`http://127.0.0.1:${stack.gateway.port}/v1/completions`, {
          method: "POST",
          headers: { "content-type": "application/json" },
          body: payload,
        });
        return { status_code: res.status, body: await res.json() };
      };
      expect(errors[0]!.response).toMatchObject(await live("{ this is not json"));
      expect(errors[1]!.response).toMatchObject(
        await live(JSON.stringify((lines[4] as { body: unknown }).body)),
      );
      expect(errors[2]!.response).toMatchObject(
        await live(JSON.stringify((lines[5] as { body: unknown }).body)),
      );
      expect(errors[2]!.response.body.error?.code).toBe("model_not_found");
      expect(errors[3]!.response.status_code).toBe(400);
      expect(errors[3]!.response.body.error?.param).toBe("url");

      const metrics = await (await fetch(`http://127.0.0.1:${stack.gateway.port}/metrics`)).text();
      expect(metrics).toContain('kiln_batch_lines{state="completed"} 3');
      expect(metrics).toContain('kiln_batch_lines{state="failed"} 4');
      expect(metrics).toContain('kiln_batch_lines{state="queued"} 0');
      expect(metrics).toContain("kiln_batch_oldest_queued_age_seconds 0");

      const listed = await client.batches.list();
      expect(listed.data.map((b) => b.id)).toContain(created.id);
      const files = await client.files.list();
      const ids = files.data.map((f) => f.id);
      expect(ids).toEqual(
        expect.arrayContaining([file.id, done.output_file_id, done.error_file_id]),
      );
      expect(await client.files.delete(file.id)).toEqual({
        id: file.id,
        object: "file",
        deleted: true,
      });
      await expect(client.files.retrieve(file.id)).rejects.toMatchObject({ status: 404 });
    }, 90_000);

    it("cancels a running batch: skipped lines are not answered, files match the counts", async () => {
      const client = stack.client();
      const lines = Array.from({ length: 40 }, (_, i) =>
        completionLine(`c-${i}`, "Once upon a time", 200),
      );
      const file = await client.files.create({
        file: await toFile(Buffer.from(jsonl(lines)), "cancel.jsonl"),
        purpose: "batch",
      });
      const created = await client.batches.create({
        input_file_id: file.id,
        endpoint: "/v1/completions",
        completion_window: "24h",
      });
      const cancelling = await client.batches.cancel(created.id);
      expect(["cancelling", "cancelled"]).toContain(cancelling.status);
      const done = await waitForBatch(client, created.id);
      expect(done.status).toBe("cancelled");
      expect(done.cancelled_at).toBeGreaterThan(0);
      const { completed, failed } = done.request_counts!;
      expect(completed + failed).toBeLessThan(40);
      const outputs = done.output_file_id ? await readJsonl(client, done.output_file_id) : [];
      expect(outputs.length).toBe(completed);
      await expect(client.batches.cancel(created.id)).rejects.toMatchObject({ status: 400 });
    }, 60_000);

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
  },
);

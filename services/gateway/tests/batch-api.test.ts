import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { hasRedisServer, type RunningRedis, startRedis } from "@kiln/cluster";
import { PriorityClass } from "@kiln/proto";
import { requireAvailable } from "@kiln/test-support";
import type { FastifyInstance } from "fastify";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../src/app";
import { BATCH_DISABLED_MESSAGE, BatchService, FileStore } from "../src/batch";
import { type KilnTenant, unlimitedTenant } from "../src/tenancy";
import { TOY_MODEL } from "./helpers/app";
import { FakeRouter } from "./helpers/fake-router";
import { toyCodec } from "./helpers/toy-codec";

const hasRedis = requireAvailable("redis-server", hasRedisServer(), "apt-get install redis-server");

/** A multipart body with a `purpose` field and one file. */
function multipart(content: string, purpose = "batch", filename = "in.jsonl") {
  const boundary = "----kilnboundary";
  const payload =
    `--${boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\n${purpose}\r\n` +
    `--${boundary}\r\nContent-Disposition: form-data; name="file"; filename="${filename}"\r\n` +
    `Content-Type: application/jsonl\r\n\r\n${content}\r\n--${boundary}--\r\n`;
  return { payload, headers: { "content-type": `multipart/form-data; boundary=${boundary}` } };
}

describe("Batch and Files APIs without Redis", () => {
  const app = buildApp({
    model: TOY_MODEL,
    codec: toyCodec,
    router: new FakeRouter(),
    apiKeys: null,
  });
  afterAll(() => app.close());

  it.each([
    ["GET", "/v1/files"],
    ["GET", "/v1/batches"],
    ["POST", "/v1/batches"],
    ["GET", "/v1/files/file-abc/content"],
  ])("%s %s answers 503 saying how to enable them; the rest still works", async (method, url) => {
    const res = await app.inject({
      method: method as "GET",
      url,
      payload: method === "POST" ? {} : undefined,
    });
    expect(res.statusCode).toBe(503);
    expect(res.json().error).toEqual({
      message: BATCH_DISABLED_MESSAGE,
      type: "server_error",
      param: null,
      code: "unavailable",
    });
    expect((await app.inject({ method: "GET", url: "/v1/models" })).statusCode).toBe(200);
  });
});

describe.skipIf(!hasRedis)(
  "Files API limits, validation and tenancy (in-process, real Redis)",
  () => {
    let redis: RunningRedis;
    let service: BatchService;
    let app: FastifyInstance;
    let router: FakeRouter;
    const dataDir = mkdtempSync(join(tmpdir(), "kiln-batch-api-"));
    beforeAll(async () => {
      redis = await startRedis(dataDir, () => {});
      const config = {
        dataDir,
        redisUrl: redis.url,
        maxFileBytes: 200_000,
        maxFileLines: 1500,
        concurrency: 8,
        busyConcurrency: 8,
        maxAttempts: 2,
        lockMs: 2000,
        completionWindowS: 86_400,
      };
      service = new BatchService(config, new FileStore(dataDir), (m) => console.log(m));
      router = new FakeRouter();
      app = buildApp({
        model: TOY_MODEL,
        codec: toyCodec,
        router,
        apiKeys: null,
        batch: service,
      });
      // What the tenancy plugin will do: a tenant per request, from a test header here.
      app.addHook("onRequest", async (request) => {
        const name = request.headers["x-test-tenant"];
        if (typeof name === "string") {
          const config = unlimitedTenant(name);
          const isAdmin = name === "admin";
          request.kilnTenant = {
            name,
            isAdmin,
            weight: 1,
            keyId: name,
            config,
          } satisfies KilnTenant;
        }
      });
      await service.start(app);
    }, 30_000);
    afterAll(async () => {
      await service?.close();
      await app?.close();
      await redis?.stop();
      rmSync(dataDir, { recursive: true, force: true });
    });

    it("refuses a file over the byte limit with 413 naming it, and keeps nothing", async () => {
      const res = await app.inject({
        method: "POST",
        url: "/v1/files",
        ...multipart("x".repeat(200_001)),
      });
      expect(res.statusCode).toBe(413);
      expect(res.json().error.message).toContain("limit of 200000 bytes");
      expect(res.json().error.param).toBe("file");
      expect((await app.inject({ method: "GET", url: "/v1/files" })).json().data).toEqual([]);
    });

    it("refuses a file over the line limit with 400 naming it", async () => {
      const res = await app.inject({
        method: "POST",
        url: "/v1/files",
        ...multipart("{}\n".repeat(1501)),
      });
      expect(res.statusCode).toBe(400);
      expect(res.json().error.message).toContain("limit of 1500 lines");
    });

    it("refuses an unsupported purpose and a non-multipart upload", async () => {
      const bad = await app.inject({
        method: "POST",
        url: "/v1/files",
        ...multipart("{}\n", "fine-tune"),
      });
      expect(bad.statusCode).toBe(400);
      expect(bad.json().error.param).toBe("purpose");
      const json = await app.inject({ method: "POST", url: "/v1/files", payload: { file: "x" } });
      expect(json.statusCode).toBe(400);
    });

    it("stores content byte for byte; tenants see only their own files, admins all", async () => {
      const content = '{"a":1}\n{"b":2}\n';
      const upload = (tenant: string) =>
        app.inject({
          method: "POST",
          url: "/v1/files",
          ...multipart(content),
          headers: { ...multipart(content).headers, "x-test-tenant": tenant },
        });
      const a = (await upload("alice")).json();
      const b = (await upload("bob")).json();
      expect(a).toMatchObject({
        object: "file",
        bytes: content.length,
        purpose: "batch",
        status: "processed",
      });
      const list = (tenant: string) =>
        app
          .inject({ method: "GET", url: "/v1/files", headers: { "x-test-tenant": tenant } })
          .then((r) => r.json().data.map((f: { id: string }) => f.id));
      expect(await list("alice")).toEqual([a.id]);
      expect(await list("admin")).toEqual(expect.arrayContaining([a.id, b.id]));
      const asBob = await app.inject({
        method: "GET",
        url: `/v1/files/${a.id}/content`,
        headers: { "x-test-tenant": "bob" },
      });
      expect(asBob.statusCode).toBe(404);
      const asAlice = await app.inject({
        method: "GET",
        url: `/v1/files/${a.id}/content`,
        headers: { "x-test-tenant": "alice" },
      });
      expect(asAlice.body).toBe(content);
      const batchAsBob = await app.inject({
        method: "POST",
        url: "/v1/batches",
        headers: { "x-test-tenant": "bob" },
        payload: { input_file_id: a.id, endpoint: "/v1/completions", completion_window: "24h" },
      });
      expect(batchAsBob.statusCode).toBe(404);
      expect(batchAsBob.json().error.param).toBe("input_file_id");
    });

    it("validates batch creation like OpenAI (endpoint, window, unknown fields)", async () => {
      const create = (payload: object) =>
        app.inject({ method: "POST", url: "/v1/batches", payload });
      const base = {
        input_file_id: "file-x",
        endpoint: "/v1/completions",
        completion_window: "24h",
      };
      expect((await create({ ...base, endpoint: "/v1/embeddings" })).json().error.param).toBe(
        "endpoint",
      );
      expect((await create({ ...base, completion_window: "1h" })).json().error.param).toBe(
        "completion_window",
      );
      expect((await create({ ...base, extra: 1 })).json().error.param).toBe("extra");
      expect((await create(base)).statusCode).toBe(404);
    });

    it("runs a 1000-line batch (two full enqueue chunks), every line at the batch priority class, answered once", async () => {
      const numLines = 1000;
      const lines = Array.from({ length: numLines }, (_, i) =>
        JSON.stringify({
          custom_id: `l${i}`,
          method: "POST",
          url: "/v1/completions",
          body: { model: "toy", prompt: "hi", max_tokens: 3, seed: i },
        }),
      ).join("\n");
      const file = (
        await app.inject({ method: "POST", url: "/v1/files", ...multipart(lines) })
      ).json();
      const numBefore = router.requests.length;
      const created = await app.inject({
        method: "POST",
        url: "/v1/batches",
        payload: { input_file_id: file.id, endpoint: "/v1/completions", completion_window: "24h" },
      });
      const id = created.json().id as string;
      let batch = created.json();
      while (!["completed", "failed"].includes(batch.status)) {
        await new Promise((r) => setTimeout(r, 50));
        batch = (await app.inject({ method: "GET", url: `/v1/batches/${id}` })).json();
      }
      expect(batch.status).toBe("completed");
      expect(batch.request_counts).toEqual({ total: numLines, completed: numLines, failed: 0 });
      const sent = router.requests.slice(numBefore);
      expect(sent.length).toBe(numLines);
      expect(sent.every((r) => r.priorityClass === PriorityClass.PRIORITY_CLASS_BATCH)).toBe(true);
      const output = (
        await app.inject({ method: "GET", url: `/v1/files/${batch.output_file_id}/content` })
      ).body;
      const ids = output
        .trim()
        .split("\n")
        .map((l) => JSON.parse(l).custom_id);
      expect(ids).toEqual(Array.from({ length: numLines }, (_, i) => `l${i}`));
      // An interactive request is sent at the interactive class.
      await app.inject({
        method: "POST",
        url: "/v1/completions",
        payload: { model: "toy", prompt: "hi", max_tokens: 2 },
      });
      expect(router.requests.at(-1)!.priorityClass).toBe(PriorityClass.PRIORITY_CLASS_INTERACTIVE);
    }, 60_000);
  },
);

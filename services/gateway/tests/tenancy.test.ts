import { createHash } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createMetricsRegistry } from "@kiln/telemetry";
import { waitFor } from "@kiln/test-support";
import type { FastifyInstance } from "fastify";
import OpenAI, { type APIError } from "openai";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import { buildApp } from "../src/app";
import { InFlight } from "../src/in-flight";
import { canAccess, KeySource, ownerOf, requireAdmin } from "../src/tenancy";
import { TOY_MODEL } from "./helpers/app";
import { FakeRouter } from "./helpers/fake-router";
import { toyCodec } from "./helpers/toy-codec";

const sha = (key: string) => `sha256:${createHash("sha256").update(key).digest("hex")}`;
const MODEL = TOY_MODEL.id;

function keysJson(extra: Record<string, unknown> = {}) {
  return JSON.stringify({
    admin_keys: ["sk-admin"],
    tenants: [
      { name: "team-a", api_keys: ["sk-a", sha("sk-a-hashed")], weight: 3, ...extra },
      { name: "team-rpm", api_keys: ["sk-rpm"], requests_per_minute: 2 },
      { name: "team-tpm", api_keys: ["sk-tpm"], tokens_per_minute: 100 },
      { name: "team-conc", api_keys: ["sk-conc"], max_concurrent_requests: 1 },
      { name: "team-other", api_keys: ["sk-other"], models: ["some-adapter"] },
      { name: "team-cap", api_keys: ["sk-cap"], max_tokens: 8 },
    ],
  });
}

let dir: string;
let keysPath: string;
let keys: KeySource;
let app: FastifyInstance;
let router: FakeRouter;
let baseURL: string;
const auditLines: string[] = [];
const keyLog: string[] = [];
const registry = createMetricsRegistry({ processMetrics: false });

const client = (apiKey: string) => new OpenAI({ baseURL, apiKey, maxRetries: 0 });
const chat = (apiKey: string, extra: Record<string, unknown> = {}) =>
  client(apiKey).chat.completions.create({
    model: MODEL,
    messages: [{ role: "user", content: "Hi" }],
    max_tokens: 30,
    ...extra,
  } as OpenAI.ChatCompletionCreateParamsNonStreaming);

async function statusOf(promise: Promise<unknown>): Promise<APIError> {
  const err = await promise.then(
    () => null,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(OpenAI.APIError);
  return err as APIError;
}

beforeAll(async () => {
  dir = mkdtempSync(join(tmpdir(), "kiln-tenancy-"));
  keysPath = join(dir, "keys.json");
  writeFileSync(keysPath, keysJson());
  keys = new KeySource({
    keysFile: keysPath,
    plainKeys: ["sk-legacy"],
    pollMs: 50,
    log: (l) => keyLog.push(l),
  });
  router = new FakeRouter();
  app = buildApp({
    model: TOY_MODEL,
    codec: toyCodec,
    router,
    apiKeys: null,
    inFlight: new InFlight(),
    tenancy: { keys, audit: (l) => auditLines.push(l), registry },
  });
  app.post("/v1/admin/ping", async (request) => {
    requireAdmin(request);
    return { ok: true };
  });
  // A tenant-scoped object store, as the Files and Batches APIs use it.
  const owners = new Map<string, string | null>();
  app.post("/v1/things", async (request) => {
    const id = `thing-${owners.size}`;
    owners.set(id, ownerOf(request));
    return { id };
  });
  app.get<{ Params: { id: string } }>("/v1/things/:id", async (request, reply) => {
    const owner = owners.get(request.params.id);
    if (owner === undefined || !canAccess(request, owner)) return reply.code(404).send({});
    return { id: request.params.id, owner };
  });
  await app.listen({ host: "127.0.0.1", port: 0 });
  const address = app.server.address();
  baseURL = `http://127.0.0.1:${typeof address === "object" && address ? address.port : 0}/v1`;
});

afterAll(async () => {
  await app?.close();
  keys?.close();
  rmSync(dir, { recursive: true, force: true });
});

afterEach(() => {
  router.script = {};
});

describe("keys", () => {
  it("accepts plain, sha256-hashed, admin and KILN_API_KEYS keys; 401 for missing or unknown", async () => {
    for (const key of ["sk-a", "sk-a-hashed", "sk-admin", "sk-legacy"]) {
      const res = await chat(key);
      expect(res.choices[0]!.message.content!.length).toBeGreaterThan(0);
    }
    expect(router.requests.at(-4)).toMatchObject({ tenant: "team-a", tenantWeight: 3 });
    expect((await statusOf(chat("sk-nope"))).status).toBe(401);
    const missing = await app.inject({ method: "GET", url: "/v1/models" });
    expect(missing.statusCode).toBe(401);
    expect(missing.json().error.code).toBe("unauthorized");
    expect((await app.inject({ method: "GET", url: "/health" })).statusCode).not.toBe(401);
  });

  it("answers 404, as for a missing model, when the tenant may not use the model", async () => {
    const err = await statusOf(chat("sk-other"));
    expect(err.status).toBe(404);
    expect(err.code).toBe("model_not_found");
    expect(router.requests.at(-1)?.tenant).not.toBe("team-other");
    const listed = await client("sk-other").models.list();
    expect(listed.data).toEqual([]);
    expect((await statusOf(client("sk-other").models.retrieve(MODEL))).status).toBe(404);
    expect((await client("sk-a").models.list()).data.map((m) => m.id)).toEqual([MODEL]);
  });

  it("caps max_tokens per tenant: above is a 400 naming max_tokens, absent means the cap", async () => {
    const err = await statusOf(chat("sk-cap", { max_tokens: 30 }));
    expect(err.status).toBe(400);
    expect(err.param).toBe("max_tokens");
    const res = await chat("sk-cap", { max_tokens: undefined });
    expect(router.requests.at(-1)).toMatchObject({ tenant: "team-cap", maxTokens: 8 });
    expect(res.usage!.completion_tokens).toBeLessThanOrEqual(8);
  });

  it("keeps admin-only endpoints for admin keys (403 otherwise)", async () => {
    const asTenant = await app.inject({
      method: "POST",
      url: "/v1/admin/ping",
      headers: { authorization: "Bearer sk-a" },
    });
    expect(asTenant.statusCode).toBe(403);
    expect(asTenant.json().error.code).toBe("permission_denied");
    const asAdmin = await app.inject({
      method: "POST",
      url: "/v1/admin/ping",
      headers: { authorization: "Bearer sk-admin" },
    });
    expect(asAdmin.json()).toEqual({ ok: true });
  });
});

describe("tenant-scoped objects (files, batches)", () => {
  it("shows an object to its tenant and to admins, 404 to other tenants", async () => {
    const as = (key: string) => ({ authorization: `Bearer ${key}` });
    const created = await app.inject({ method: "POST", url: "/v1/things", headers: as("sk-a") });
    const url = `/v1/things/${created.json().id}`;
    const own = await app.inject({ method: "GET", url, headers: as("sk-a-hashed") });
    expect(own.json()).toMatchObject({ owner: "team-a" });
    expect((await app.inject({ method: "GET", url, headers: as("sk-admin") })).statusCode).toBe(
      200,
    );
    expect((await app.inject({ method: "GET", url, headers: as("sk-rpm") })).statusCode).toBe(404);
  });
});

describe("limits", () => {
  it("429s over requests per minute, with Retry-After and x-ratelimit-* headers", async () => {
    const ok = await client("sk-rpm")
      .chat.completions.create({
        model: MODEL,
        messages: [{ role: "user", content: "Hi" }],
        max_tokens: 5,
      })
      .withResponse();
    expect(ok.response.headers.get("x-ratelimit-limit-requests")).toBe("2");
    expect(ok.response.headers.get("x-ratelimit-remaining-requests")).toBe("1");
    await chat("sk-rpm");
    const err = await statusOf(chat("sk-rpm"));
    expect(err.status).toBe(429);
    expect(err.code).toBe("rate_limited");
    expect(Number(err.headers?.get("retry-after"))).toBeGreaterThanOrEqual(1);
    expect(err.headers?.get("x-ratelimit-limit-requests")).toBe("2");
    expect(err.headers?.get("x-ratelimit-remaining-requests")).toBe("0");
    expect(err.headers?.get("x-ratelimit-reset-requests")).toMatch(/^\d+\.\d{3}s$/);
  });

  it("reserves prompt + max_tokens up front and returns the unused part at the end", async () => {
    // 100 tokens a minute; each request reserves prompt + 40 but uses far fewer.
    router.script = { text: () => "ok" };
    const first = await chat("sk-tpm", { max_tokens: 40 });
    const used = first.usage!.total_tokens;
    const reserve = first.usage!.prompt_tokens + 40;
    expect(used).toBeLessThan(reserve);
    expect(2 * reserve).toBeGreaterThan(100); // without settlement the second would be refused
    const second = await client("sk-tpm")
      .chat.completions.create({
        model: MODEL,
        messages: [{ role: "user", content: "Hi" }],
        max_tokens: 40,
      })
      .withResponse();
    expect(second.response.headers.get("x-ratelimit-limit-tokens")).toBe("100");
    // The second reservation was taken from what the first left (refill adds at most ~2).
    const remaining = Number(second.response.headers.get("x-ratelimit-remaining-tokens"));
    expect(remaining).toBeGreaterThanOrEqual(100 - used - reserve);
    expect(remaining).toBeLessThanOrEqual(100 - used - reserve + 3);
    const err = await statusOf(chat("sk-tpm", { max_tokens: 40 }));
    expect(err.status).toBe(429);
    expect(err.message).toMatch(/tokens/);
    expect(err.headers?.get("x-ratelimit-remaining-tokens")).toBeDefined();
  });

  it("429s over max concurrent requests while one runs, and admits again once it ends", async () => {
    router.script = { isEndless: true };
    const ac = new AbortController();
    const running = client("sk-conc").chat.completions.create(
      { model: MODEL, messages: [{ role: "user", content: "Hi" }], stream: true },
      { signal: ac.signal },
    );
    const stream = await running;
    const it = stream[Symbol.asyncIterator]();
    await it.next();
    const err = await statusOf(chat("sk-conc"));
    expect(err.status).toBe(429);
    expect(err.message).toMatch(/concurrent/);
    ac.abort();
    await it.next().catch(() => {});
    router.script = {};
    await waitFor(() => router.numOpen === 0, "the stream to end");
    const res = await chat("sk-conc");
    expect(res.choices).toHaveLength(1);
  });
});

describe("isolation and accounting", () => {
  it("salts the prefix cache with the tenant, and with the request's own cache_salt", async () => {
    await chat("sk-a");
    const a = router.requests.at(-1)!.cacheSalt;
    await chat("sk-admin");
    const admin = router.requests.at(-1)!.cacheSalt;
    await chat("sk-a", { cache_salt: "user-7" });
    const aSalted = router.requests.at(-1)!.cacheSalt;
    expect(new Set([a, admin, aSalted]).size).toBe(3);
    expect(a).toContain("team-a");
    expect(aSalted).toContain("user-7");
  });

  it("writes one audit line per request, without prompt, output or key", async () => {
    auditLines.length = 0;
    const res = await chat("sk-a", { messages: [{ role: "user", content: "SECRET-PROMPT" }] });
    await chat("sk-nope").catch(() => {});
    await waitFor(() => auditLines.length === 2, "two audit lines");
    const [ok, denied] = auditLines.map((l) => JSON.parse(l));
    expect(ok).toMatchObject({
      tenant: "team-a",
      model: MODEL,
      prompt_tokens: res.usage!.prompt_tokens,
      completion_tokens: res.usage!.completion_tokens,
      status: 200,
      error_code: null,
    });
    expect(ok.key_id).toMatch(/^key-[0-9a-f]{12}$/);
    expect(ok.latency_ms).toBeGreaterThanOrEqual(0);
    expect(Number.isNaN(Date.parse(ok.time))).toBe(false);
    expect(denied).toMatchObject({ tenant: null, status: 401, error_code: "unauthorized" });
    const all = auditLines.join("\n");
    for (const secret of ["SECRET-PROMPT", res.choices[0]!.message.content!, "sk-a"]) {
      expect(all).not.toContain(secret);
    }
  });

  it("counts kiln_tenant_* series", async () => {
    await statusOf(chat("sk-other"));
    const text = await registry.metrics();
    expect(text).toMatch(/kiln_tenant_requests_total\{tenant="team-a",status="200"\} [1-9]/);
    expect(text).toMatch(/kiln_tenant_requests_total\{tenant="team-other",status="404"\} [1-9]/);
    expect(text).toMatch(/kiln_tenant_tokens_total\{tenant="team-a",kind="completion"\} [1-9]/);
    expect(text).toMatch(/kiln_tenant_rate_limited_total\{tenant="team-rpm",limit="requests"\} 1/);
  });
});

describe("hot reload", () => {
  it("picks up a changed file, keeps the previous keys when the new file is invalid, reloads on SIGHUP", async () => {
    const before = keys.generation;
    writeFileSync(
      keysPath,
      JSON.stringify({ tenants: [{ name: "team-new", api_keys: ["sk-new"] }] }),
    );
    await waitFor(() => keys.generation > before, "the file change to be picked up");
    expect((await chat("sk-new")).choices).toHaveLength(1);
    expect((await statusOf(chat("sk-a"))).status).toBe(401);

    const numLogs = keyLog.length;
    writeFileSync(keysPath, '{"tenants": [{"name": "broken", "api_keys": "not-a-list"}]}');
    await waitFor(() => keyLog.length > numLogs, "the invalid file to be reported");
    expect(keyLog.at(-1)).toMatch(/rejected.*keeping the previous keys.*api_keys/);
    expect((await chat("sk-new")).choices).toHaveLength(1);

    keys.close(); // no polling: only the signal can reload now
    writeFileSync(keysPath, keysJson());
    const generation = keys.generation;
    process.emit("SIGHUP", "SIGHUP");
    expect(keys.generation).toBe(generation); // closed: listener removed
    keys = new KeySource({ keysFile: keysPath, plainKeys: null, pollMs: 60_000, log: () => {} });
    writeFileSync(keysPath, JSON.stringify({ tenants: [{ name: "t", api_keys: ["sk-hup"] }] }));
    process.emit("SIGHUP", "SIGHUP");
    expect(keys.table?.lookup("sk-hup")?.tenant.name).toBe("t");
  });
});

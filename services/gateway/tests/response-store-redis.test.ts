import { type ChildProcess, spawn } from "node:child_process";
import { freePort, hasBinary, requireAvailable, waitFor } from "@kiln/test-support";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createResponseStore } from "../src/responses/create-store";
import { RedisResponseStore } from "../src/responses/store";
import { makeApp, TOY_MODEL } from "./helpers/app";

/** The Redis response store against a real redis-server: two gateways share one chain. */
const isAvailable = requireAvailable(
  "redis-server",
  hasBinary("redis-server"),
  "install Redis (apt-get install redis-server)",
);

describe.skipIf(!isAvailable)("responses stored in Redis", () => {
  let server: ChildProcess;
  let url: string;
  beforeAll(async () => {
    const port = await freePort();
    url = `redis://127.0.0.1:${port}`;
    server = spawn("redis-server", ["--port", String(port), "--save", "", "--appendonly", "no"], {
      stdio: "ignore",
    });
    const probe = new Redis(url, { lazyConnect: true, maxRetriesPerRequest: 0 });
    await waitFor(
      () =>
        probe.ping().then(
          () => true,
          () => false,
        ),
      "redis-server answers PING",
      { timeoutMs: 10_000 },
    );
    probe.disconnect();
  }, 15_000);
  afterAll(() => {
    server?.kill();
  });

  it("chains previous_response_id across two gateways and expires with the TTL", async () => {
    const opts = { redisUrl: url, responsesMaxStored: 10, responsesTtlS: 60 };
    const [storeA, storeB] = [createResponseStore(opts), createResponseStore(opts)];
    expect(storeA).toBeInstanceOf(RedisResponseStore);
    const model = { ...TOY_MODEL, contextLen: 1024 };
    const a = makeApp({ model, responseStore: storeA, script: { text: () => "Hello" } });
    const b = makeApp({ model, responseStore: storeB });
    const first = (
      await a.app.inject({
        method: "POST",
        url: "/v1/responses",
        payload: { model: "toy", input: "One" },
      })
    ).json();
    const second = await b.app.inject({
      method: "POST",
      url: "/v1/responses",
      payload: { model: "toy", input: "Two", previous_response_id: first.id },
    });
    expect(second.statusCode).toBe(200);
    const prompt = b.router.requests[0]!.promptTokenIds;
    expect(prompt.length).toBeGreaterThan(a.router.requests[0]!.promptTokenIds.length);
    const got = await b.app.inject({ method: "GET", url: `/v1/responses/${first.id}` });
    expect(got.json()).toEqual(first);
    const redis = new Redis(url);
    const ttl = await redis.ttl(`kiln:response:${first.id}`);
    expect(ttl).toBeGreaterThan(50);
    expect(ttl).toBeLessThanOrEqual(60);
    await b.app.inject({ method: "DELETE", url: `/v1/responses/${first.id}` });
    expect(await redis.exists(`kiln:response:${first.id}`)).toBe(0);
    redis.disconnect();
    await Promise.all([storeA.close(), storeB.close()]);
  });
});

import { createHash } from "node:crypto";
import { describe, expect, it } from "vitest";
import { KeyTable } from "./keys-file";
import { TenantLimiter } from "./rate-limiter";

const hex = (key: string) => createHash("sha256").update(key).digest("hex");

describe("KeyTable", () => {
  const table = KeyTable.parse(
    JSON.stringify({
      admin_keys: ["root"],
      tenants: [{ name: "a", api_keys: ["plain", `sha256:${hex("hashed")}`], weight: 2 }],
    }),
  );

  it("finds plain and hashed keys, with a key id that is not the key", () => {
    expect(table.lookup("plain")?.tenant.name).toBe("a");
    expect(table.lookup("hashed")?.tenant).toMatchObject({ name: "a", weight: 2 });
    expect(table.lookup("root")?.isAdmin).toBe(true);
    expect(table.lookup("plain")?.keyId).toBe(`key-${hex("plain").slice(0, 12)}`);
    // The digest itself is not a key.
    expect(table.lookup(`sha256:${hex("hashed")}`)).toBeNull();
    expect(table.lookup("")).toBeNull();
  });

  it.each([
    ["not JSON", "{", /not valid JSON/],
    ["a short digest", '{"tenants":[{"name":"a","api_keys":["sha256:abc"]}]}', /64 hex/],
    ["an unknown field", '{"tenants":[{"name":"a","rpm":3}]}', /rpm/],
    ["a zero limit", '{"tenants":[{"name":"a","requests_per_minute":0}]}', /requests_per_minute/],
    [
      "a duplicate key",
      '{"tenants":[{"name":"a","api_keys":["k"]},{"name":"b","api_keys":["k"]}]}',
      /twice/,
    ],
    ["a duplicate tenant", '{"tenants":[{"name":"a"},{"name":"a"}]}', /listed twice/],
  ])("rejects %s, saying why", (_what, text, why) => {
    expect(() => KeyTable.parse(text)).toThrow(why);
  });
});

describe("TenantLimiter", () => {
  const tenant = {
    name: "t",
    requestsPerMinute: 2,
    tokensPerMinute: 600,
    maxConcurrentRequests: 2,
    weight: 1,
    models: ["*"],
    maxTokens: null,
  };

  it("refills continuously, refunds unused tokens at settle, and reports reset times", () => {
    let now = 0;
    const limiter = new TenantLimiter(tenant, () => now);
    const first = limiter.tryAcquire(500);
    if (!first.isAdmitted) throw new Error("first refused");
    expect(first.headers["x-ratelimit-remaining-tokens"]).toBe("100");
    expect(first.headers["x-ratelimit-reset-tokens"]).toBe("50.000s");
    const second = limiter.tryAcquire(200);
    expect(second).toMatchObject({ isAdmitted: false, kind: "tokens", retryAfterMs: 10_000 });
    first.lease.settle(150); // 350 of the 500 come back
    first.lease.settle(150); // settling twice changes nothing
    expect(limiter.tryAcquire(200).isAdmitted).toBe(true);
    expect(limiter.tryAcquire(1)).toMatchObject({ isAdmitted: false, kind: "requests" });
    now += 30_000; // one request refilled
    expect(limiter.tryAcquire(1).isAdmitted).toBe(true);
    now += 30_000;
    expect(limiter.numActiveRequests).toBe(2);
    expect(limiter.tryAcquire(1)).toMatchObject({ isAdmitted: false, kind: "concurrency" });
  });

  it("refuses a request larger than a minute's tokens with its own message", () => {
    const limiter = new TenantLimiter(tenant, () => 0);
    const refusal = limiter.tryAcquire(601);
    expect(refusal).toMatchObject({ isAdmitted: false, kind: "tokens" });
    if (!refusal.isAdmitted) expect(refusal.message).toMatch(/Request too large/);
  });
});

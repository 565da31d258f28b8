import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { RequestId } from "../src/index";
import { Harness } from "./harness";

const CONFIG = {
  numBlocks: 256,
  blockSize: 4,
  maxNumBatchedTokens: 32,
  maxNumSeqs: 4,
  maxModelLen: 64,
};
const MAX_PROMPT_LEN = 12;
const MAX_NEW_TOKENS = 12;

interface TenantSpec {
  readonly name: string;
  readonly weight: number;
}

/**
 * Keeps every tenant backlogged (6 waiting requests each, topped up as they finish) for `numSteps`
 * steps and returns the tokens planned per tenant.
 */
function simulate(tenants: readonly TenantSpec[], lengths: readonly number[], numSteps: number) {
  const h = new Harness(CONFIG);
  const requestToTenant = new Map<RequestId, TenantSpec>();
  const tenantToLive = new Map<string, Set<RequestId>>();
  let next = 0;
  const add = (tenant: TenantSpec) => {
    const len = lengths[next++ % lengths.length]!;
    const promptTokenIds = Array.from({ length: 1 + (len % MAX_PROMPT_LEN) }, (_, i) => i + 1);
    const maxTokens = 1 + ((len * 7) % MAX_NEW_TOKENS);
    const id = h.add({
      promptTokenIds,
      maxTokens,
      tenant: tenant.name,
      tenantWeight: tenant.weight,
    });
    requestToTenant.set(id, tenant);
    tenantToLive.get(tenant.name)!.add(id);
  };
  for (const t of tenants) tenantToLive.set(t.name, new Set());
  const served = new Map<string, number>(tenants.map((t) => [t.name, 0]));
  for (let step = 0; step < numSteps; step++) {
    for (const t of tenants) while (tenantToLive.get(t.name)!.size < 6) add(t);
    const plan = h.plan();
    for (const seq of plan.seqs) {
      const name = requestToTenant.get(seq.requestId)!.name;
      served.set(name, served.get(name)! + seq.queryLen);
    }
    for (const event of h.execute(plan)) {
      if (event.kind === "finished") {
        tenantToLive.get(requestToTenant.get(event.requestId)!.name)!.delete(event.requestId);
      }
    }
  }
  h.scheduler.checkInvariants();
  return served;
}

describe("weighted fair queuing across tenants (long simulation)", () => {
  it("serves backlogged tenants tokens in proportion to their weights", () => {
    fc.assert(
      fc.property(
        fc.array(fc.integer({ min: 1, max: 4 }), { minLength: 2, maxLength: 4 }),
        fc.array(fc.integer({ min: 0, max: 1000 }), { minLength: 5, maxLength: 20 }),
        (weights, lengths) => {
          const tenants = weights.map((weight, i) => ({ name: `t${i}`, weight }));
          const served = simulate(tenants, lengths, 800);
          const total = [...served.values()].reduce((a, b) => a + b, 0);
          const totalWeight = weights.reduce((a, b) => a + b, 0);
          for (const t of tenants) {
            const share = served.get(t.name)! / total;
            // Whole requests run once admitted: the error is a few requests' worth of tokens.
            expect(Math.abs(share - t.weight / totalWeight)).toBeLessThan(0.04);
          }
        },
      ),
      { numRuns: 6, seed: 20261203 },
    );
  }, 30_000);
});

describe("a flooding tenant", () => {
  it("delays another tenant's new request by about one slot's turnover, not the whole flood", () => {
    const h = new Harness(CONFIG);
    const flood: RequestId[] = [];
    for (let i = 0; i < 24; i++) {
      flood.push(h.add({ promptTokenIds: [1, 2, 3, 4], maxTokens: 12, tenant: "a" }));
    }
    const started = new Set<RequestId>();
    for (let i = 0; i < 3; i++) {
      for (const e of h.step()) if (e.kind === "token") started.add(e.requestId);
    }
    const late = h.add({ promptTokenIds: [5, 6], maxTokens: 2, tenant: "b" });
    let numFloodStartedBefore = 0;
    for (let i = 0; i < 400 && !started.has(late); i++) {
      const tokens = h.step().filter((e) => e.kind === "token" && !started.has(e.requestId));
      const isLateStarting = tokens.some((e) => e.requestId === late);
      for (const e of tokens) started.add(e.requestId);
      if (!isLateStarting) numFloodStartedBefore += tokens.length;
    }
    expect(started.has(late)).toBe(true);
    // FCFS would start all 20 waiting flood requests first; fair queuing admits b at the next
    // free slot.
    expect(numFloodStartedBefore).toBe(0);
    expect(flood.filter((id) => started.has(id)).length).toBeLessThan(24);
  });

  it("still runs a better priority first, whatever the tenants' virtual times", () => {
    const h = new Harness({ ...CONFIG, maxNumSeqs: 1 });
    h.add({ promptTokenIds: [1, 2], maxTokens: 4, tenant: "a" });
    h.step();
    h.add({ promptTokenIds: [3], maxTokens: 2, tenant: "b", priority: 1 });
    const urgent = h.add({ promptTokenIds: [4], maxTokens: 2, tenant: "a", priority: 0 });
    const order: RequestId[] = [];
    for (let i = 0; i < 20 && order.length < 3; i++) {
      for (const e of h.step()) if (e.kind === "finished") order.push(e.requestId);
    }
    expect(order[1]).toBe(urgent);
  });
});

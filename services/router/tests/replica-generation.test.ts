import { asRequestId } from "@kiln/engine-core";
import { ErrorCode, SamplingParams, type StepResponse } from "@kiln/proto";
import { describe, expect, it, vi } from "vitest";
import { Replica } from "../src/replica";
import { RouterTelemetry } from "../src/telemetry/router-telemetry";
import { collectingRecord, type Deferred, FakeConnection, workerInfo } from "./fake-connection";

const LIMITS = { maxNumSeqs: 8, maxNumBatchedTokens: 64, stepTimeoutMs: 10_000 };

function newReplica(conn: FakeConnection): Replica {
  const replica = new Replica("r", conn.asConnection(), LIMITS, () => performance.now());
  replica.connect(workerInfo("instance-1"), conn.asConnection());
  return replica;
}

function add(replica: Replica, id: string, prompt: number[], maxTokens: number, n = 1) {
  const collected = collectingRecord(id, prompt, n);
  const error = replica.tryAdd(
    {
      requestId: asRequestId(id),
      promptTokenIds: prompt,
      sampling: SamplingParams.fromPartial({}),
      n,
      maxTokens,
      ignoreEos: true,
    },
    collected.record,
  );
  expect(error).toBeNull();
  return collected;
}

const tokensOf = (events: { token?: { tokens: { tokenId: number }[] } }[]) =>
  events.flatMap((e) => e.token?.tokens.map((t) => t.tokenId) ?? []);

describe("a replica failed mid-step, then reconnected", () => {
  it.each([
    ["rejects", (held: Deferred<void>) => held.reject(new Error("late failure"))],
    ["resolves", (held: Deferred<void>) => held.resolve()],
  ])("serves new requests when the stale step later %s", async (_what, settle) => {
    const conn = new FakeConnection();
    const replica = newReplica(conn);
    const held = conn.hold();
    const first = add(replica, "a", [1, 2, 3], 4);
    // The held step, and the one planned ahead of it behind it.
    await vi.waitFor(() => expect(conn.steps).toHaveLength(2));

    replica.fail("health check failed");
    const firstEvents = await first.ended;
    expect(firstEvents.at(-1)?.error?.code).toBe(ErrorCode.WORKER_LOST);
    replica.connect(workerInfo("instance-1"), conn.asConnection());
    expect(replica.isHealthy).toBe(true);

    const second = add(replica, "b", [4, 5, 6], 3);
    // No step of the new scheduler goes out before the stale steps have settled.
    await new Promise((r) => setTimeout(r, 20));
    expect(conn.steps).toHaveLength(2);
    settle(held);

    const events = await second.ended;
    expect(events.some((e) => e.error)).toBe(false);
    expect(tokensOf(events)).toEqual([5, 5, 5]);
    expect(events.at(-1)?.finished?.finishReason).toBe("length");
    expect(replica.isHealthy).toBe(true);
    // The first step after the reconnect resets the worker's sequences.
    expect(conn.steps[2]?.reset).toBe(true);
    expect(conn.steps[2]?.instanceId).toBe("instance-1");
    expect(replica.stats()?.numUsedBlocks).toBe(0);
  });
});

describe("a sequence the worker refuses", () => {
  it("fails that request with INVALID_REQUEST and keeps the others and the replica", async () => {
    const conn = new FakeConnection();
    const replica = newReplica(conn);
    const good = add(replica, "good", [1, 2, 3], 4);
    const bad = add(replica, "bad", [7, 8], 4);
    // Sequence ids follow admission order: "bad" is the second sequence (id 1).
    conn.refusedSeqIds.add(1);
    const badEvents = await bad.ended;
    expect(badEvents.at(-1)?.error?.code).toBe(ErrorCode.INVALID_REQUEST);
    const goodEvents = await good.ended;
    expect(tokensOf(goodEvents)).toEqual([5, 5, 5, 5]);
    expect(replica.isHealthy).toBe(true);
    expect(replica.stats()?.numUsedBlocks).toBe(0);
  });
});

describe("aborting one of n choices", () => {
  it("stops that choice at once; the others run to max_tokens", async () => {
    const conn = new FakeConnection();
    const replica = newReplica(conn);
    const held = conn.hold(3);
    const req = add(replica, "n3", [1, 2, 3, 4, 5], 12, 3);
    // Step 3 is held; step 4, planned ahead of it, was sent behind it.
    await vi.waitFor(() => expect(conn.steps).toHaveLength(5));
    expect(replica.abortChoice("n3", 1)).toBe(true);
    held.resolve();
    expect(replica.abortChoice("n3", 1)).toBe(false);
    const events = await req.ended;
    const perChoice = [0, 1, 2].map((i) =>
      events.filter((e) => e.token?.index === i).reduce((n, e) => n + e.token!.tokens.length, 0),
    );
    expect(perChoice[0]).toBe(12);
    expect(perChoice[2]).toBe(12);
    expect(perChoice[1]).toBeLessThan(12);
    const finished = events.filter((e) => e.finished).map((e) => e.finished!);
    expect(finished.find((f) => f.index === 1)?.finishReason).toBe("abort");
    expect(finished.at(-1)?.usage?.completionTokens).toBe(24 + perChoice[1]!);
    expect(replica.stats()?.numUsedBlocks).toBe(0);
  });
});

describe("a worker that answers a step wrongly", () => {
  it.each<[string, (res: StepResponse) => StepResponse]>([
    ["another step id", (res) => ({ ...res, stepId: res.stepId + 7 })],
    [
      "a token id past the vocabulary",
      (res) => ({
        ...res,
        results: res.results.map((r) => ({ ...r, token: { ...r.token!, tokenId: 64 } })),
      }),
    ],
    [
      "a result for a sequence it was not asked to sample",
      (res) => ({ ...res, results: [...res.results, { ...res.results[0]!, seqId: 999 }] }),
    ],
    [
      "a NaN logprob",
      (res) => ({
        ...res,
        results: res.results.map((r) => ({ ...r, token: { ...r.token!, logprob: Number.NaN } })),
      }),
    ],
  ])("with %s fails the replica before any bad token reaches a client", async (_what, corrupt) => {
    const conn = new FakeConnection();
    const replica = newReplica(conn);
    conn.corrupt = corrupt;
    const req = add(replica, "a", [1, 2, 3], 4);
    const events = await req.ended;
    expect(tokensOf(events)).toEqual([]);
    expect(events.at(-1)?.error?.code).toBe(ErrorCode.WORKER_LOST);
    expect(events.at(-1)?.error?.message).toMatch(/invalid step answer/);
    expect(replica.isHealthy).toBe(false);
  });
});

describe("a choice stopped on a stop string", () => {
  async function successByReason(telemetry: RouterTelemetry): Promise<Record<string, number>> {
    const metric = await telemetry.registry.getSingleMetric("kiln_request_success_total")!.get();
    return Object.fromEntries(
      metric.values.map((v) => [String(v.labels.finished_reason), v.value]),
    );
  }

  it("ends an n = 1 request with reason stop and counts it as stop, not abort", async () => {
    const conn = new FakeConnection();
    const telemetry = new RouterTelemetry();
    const replica = new Replica("r", conn.asConnection(), LIMITS, () => 0, telemetry);
    replica.connect(workerInfo("instance-1"), conn.asConnection());
    const held = conn.hold(2);
    const stopped = add(replica, "s", [1, 2, 3], 40);
    await vi.waitFor(() => expect(conn.steps).toHaveLength(4)); // step 2 held, 3 behind it
    expect(replica.abortChoice("s", 1, true)).toBe(false);
    expect(replica.abortChoice("s", 0, true)).toBe(true);
    held.resolve();
    const events = await stopped.ended;
    expect(events.at(-1)?.finished).toMatchObject({ index: 0, finishReason: "stop" });
    expect(events.at(-1)?.finished?.usage?.completionTokens).toBe(tokensOf(events).length);

    const leftHeld = conn.hold(conn.steps.length + 2);
    const left = add(replica, "left", [1, 2, 3], 40);
    await vi.waitFor(() => expect(tokensOf(left.events).length).toBe(2));
    expect(replica.abort("left")).toBe(true);
    leftHeld.resolve();
    expect(await successByReason(telemetry)).toMatchObject({ stop: 1, abort: 1 });
    expect(replica.stats()?.numUsedBlocks).toBe(0);
  });
});

import { asRequestId, type NewRequest } from "@kiln/engine-core";
import { ErrorCode, type GenerateEvent, SamplingParams } from "@kiln/proto";
import { ROOT_CONTEXT } from "@kiln/telemetry";
import { describe, expect, it } from "vitest";
import type { Replica } from "./replica";
import type { ReplicaSet } from "./replica-set";
import type { RequestRecord } from "./request-record";
import { RequestRetry } from "./retry";

const REQUEST: NewRequest<SamplingParams> = {
  requestId: asRequestId("r1"),
  promptTokenIds: [1, 2, 3],
  sampling: SamplingParams.fromPartial({}),
  n: 2,
  priority: 0,
  maxTokens: 4,
  minTokens: 0,
  stopTokenIds: [],
  ignoreEos: false,
  cacheSalt: null,
};

/** A replica set whose `route` answers `replica` (null: none healthy), recording re-adds. */
function replicaSet(replica: { added: number } | null): ReplicaSet {
  const fake = replica && {
    replicaId: "b",
    tryAdd: () => {
      replica.added++;
      return null;
    },
  };
  return { route: () => fake as unknown as Replica } as unknown as ReplicaSet;
}

function record(outputTokenIds: number[][]): RequestRecord & { events: GenerateEvent[] } {
  const events: GenerateEvent[] = [];
  return {
    requestId: "r1",
    replicaId: "a",
    promptTokenIds: REQUEST.promptTokenIds,
    sampling: REQUEST.sampling,
    outputTokenIds,
    emit: (e) => events.push(e),
    end: () => events.push({}),
    events,
  };
}

const FAST = { retryWaitMs: 200, pollMs: 5 };

describe("RequestRetry", () => {
  it("re-adds a request with no token yet, once", async () => {
    const target = { added: 0 };
    const retry = new RequestRetry(replicaSet(target), REQUEST, ROOT_CONTEXT, FAST, Infinity);
    const r = record([[], []]);
    expect(retry.tryTakeOver(r, "lost")).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 30));
    expect(target.added).toBe(1);
    expect(r.events).toEqual([]);
    expect(retry.tryTakeOver(r, "lost again")).toBe(false);
  });

  it("refuses once any sequence streamed a token, when off, or after a cancel", () => {
    const target = { added: 0 };
    const set = replicaSet(target);
    expect(
      new RequestRetry(set, REQUEST, ROOT_CONTEXT, FAST, Infinity).tryTakeOver(
        record([[], [7]]),
        "x",
      ),
    ).toBe(false);
    const off = { retryWaitMs: 0 };
    expect(
      new RequestRetry(set, REQUEST, ROOT_CONTEXT, off, Infinity).tryTakeOver(
        record([[], []]),
        "x",
      ),
    ).toBe(false);
    const cancelled = new RequestRetry(set, REQUEST, ROOT_CONTEXT, FAST, Infinity);
    cancelled.cancel();
    expect(cancelled.tryTakeOver(record([[], []]), "x")).toBe(false);
    expect(target.added).toBe(0);
  });

  it("ends with WORKER_LOST when no replica is healthy within the wait", async () => {
    const retry = new RequestRetry(replicaSet(null), REQUEST, ROOT_CONTEXT, FAST, Infinity);
    const r = record([[], []]);
    expect(retry.tryTakeOver(r, "lost")).toBe(true);
    await new Promise((resolve) => setTimeout(resolve, 400));
    expect(r.events[0]?.error?.code).toBe(ErrorCode.WORKER_LOST);
    expect(r.events[0]?.error?.message).toMatch(/no healthy replica/);
    expect(r.events).toHaveLength(2); // the error, then the end
  });
});

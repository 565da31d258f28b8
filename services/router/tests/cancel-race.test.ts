import { EventEmitter } from "node:events";
import { Metadata, type ServerWritableStream } from "@grpc/grpc-js";
import { type GenerateEvent, GenerateRequest } from "@kiln/proto";
import { describe, expect, it } from "vitest";
import { Replica } from "../src/replica";
import type { ReplicaSet } from "../src/replica-set";
import { createRouterService } from "../src/router-service";
import { FakeConnection, workerInfo } from "./fake-connection";

const LIMITS = { maxNumSeqs: 8, maxNumBatchedTokens: 64, stepTimeoutMs: 10_000 };

/** A grpc-js server stream as the Generate handler sees it; `cancelled` as grpc-js sets it. */
class FakeCall extends EventEmitter {
  readonly metadata = new Metadata();
  readonly written: GenerateEvent[] = [];
  isEnded = false;

  constructor(
    readonly request: GenerateRequest,
    public cancelled: boolean,
  ) {
    super();
  }

  write(event: GenerateEvent): boolean {
    this.written.push(event);
    return true;
  }

  end(): void {
    this.isEnded = true;
  }

  /** No deadline (grpc-js answers Infinity for a call without one). */
  getDeadline(): number {
    return Number.POSITIVE_INFINITY;
  }
}

function setUp() {
  const conn = new FakeConnection();
  const replica = new Replica("r", conn.asConnection(), LIMITS, () => performance.now());
  replica.connect(workerInfo("instance-1"), conn.asConnection());
  const replicas = {
    numWaitingRequests: () => 0,
    route: () => replica,
    findRequest: (id: string) => (replica.hasRequest(id) ? replica : null),
  } as unknown as ReplicaSet;
  const service = createRouterService(replicas, { maxNumWaiting: 16 });
  return { conn, replica, service };
}

const request = GenerateRequest.fromPartial({
  requestId: "late",
  promptTokenIds: [1, 2, 3],
  maxTokens: 50,
  ignoreEos: true,
});

describe("a Generate cancelled before its handler ran", () => {
  it("is never scheduled: no step, no blocks, no record", async () => {
    const { conn, replica, service } = setUp();
    // grpc-js emitted "cancelled" already (client gone, deadline passed); nobody listened.
    const call = new FakeCall(request, true);
    service.generate(call as unknown as ServerWritableStream<GenerateRequest, GenerateEvent>);
    await new Promise((r) => setTimeout(r, 50));
    expect(replica.hasRequest("late")).toBe(false);
    expect(replica.stats()?.numUsedBlocks).toBe(0);
    expect(conn.steps).toHaveLength(0);
    expect(call.written).toEqual([]);
  });

  it("a live call runs, and a later cancel aborts it", async () => {
    const { conn, replica, service } = setUp();
    const call = new FakeCall(request, false);
    const held = conn.hold(1);
    service.generate(call as unknown as ServerWritableStream<GenerateRequest, GenerateEvent>);
    expect(replica.hasRequest("late")).toBe(true);
    await new Promise((r) => setTimeout(r, 20));
    call.cancelled = true;
    call.emit("cancelled", "cancelled");
    expect(replica.hasRequest("late")).toBe(false);
    expect(replica.stats()?.numUsedBlocks).toBe(0);
    held.resolve();
  });
});

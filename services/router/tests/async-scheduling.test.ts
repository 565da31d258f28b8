/**
 * Overlapped steps (ADR 0021): with async scheduling on, a committed step's token events are
 * streamed after the next Step has been sent, while the worker computes it. The streams a
 * client sees must be the same as with the switch off, through stops, max_tokens, aborts at any
 * step, parallel sampling and failures; and no block may stay owned.
 */
import { availableParallelism } from "node:os";
import { asRequestId } from "@kiln/engine-core";
import {
  ErrorCode,
  type GenerateEvent,
  SamplingParams,
  type StepRequest,
  type StepResponse,
  WorkerInfo,
} from "@kiln/proto";
import fc from "fast-check";
import { describe, expect, it, vi } from "vitest";
import { Replica } from "../src/replica";
import { afterIo } from "../src/step-emits";
import { collectingRecord, FakeConnection, workerInfo } from "./fake-connection";

const LIMITS = { maxNumSeqs: 8, maxNumBatchedTokens: 16, stepTimeoutMs: 10_000 };

/**
 * A fake worker whose token depends on the step and the sequence (so streams differ), that
 * notes how many token events had reached the clients when each Step was sent, and runs the
 * test's hooks at chosen steps (as if a client acted while that step was in flight), by step id:
 * on and off, a step id names the same plan, less the sequences a step planned ahead computes for
 * nothing.
 */
class ObservingConnection extends FakeConnection {
  readonly numTokensAtSend: number[] = [];
  readonly stepToHook = new Map<number, () => void>();
  constructor(private readonly countTokens: () => number) {
    super();
  }
  override async step(req: StepRequest): Promise<StepResponse> {
    this.numTokensAtSend.push(this.countTokens());
    const hook = this.stepToHook.get(req.stepId);
    const res = await super.step(req);
    if (hook) {
      // The router has committed the step before (a step planned ahead is answered right
      // after it): the client acts between that commit and this step's answer.
      await afterIo();
      hook();
    }
    return {
      ...res,
      results: res.results.map((r) => ({
        ...r,
        token: r.token && { ...r.token, tokenId: (req.stepId * 7 + r.seqId * 3) % 64 },
      })),
    };
  }
}

interface Scenario {
  readonly requests: readonly { maxTokens: number; n: number; promptLen: number }[];
  /** Abort request i when the step with id `atStep` is in flight. */
  readonly aborts: readonly { request: number; atStep: number }[];
  readonly stopTokenId: number;
}

/** Runs a scenario to completion; returns each request's events and the replica. */
async function run(scenario: Scenario, isAsyncScheduling: boolean) {
  const all: GenerateEvent[][] = [];
  const countTokens = () => all.flat().filter((e) => e.token).length;
  const conn = new ObservingConnection(countTokens);
  const limits = { ...LIMITS, isAsyncScheduling };
  const replica = new Replica("r", conn.asConnection(), limits, () => performance.now());
  replica.connect(workerInfo("instance-1"), conn.asConnection());
  const ended = scenario.requests.map((req, i) => {
    const prompt = Array.from({ length: req.promptLen }, (_, j) => (i + j) % 64);
    const collected = collectingRecord(`req-${i}`, prompt, req.n);
    all.push(collected.events);
    const error = replica.tryAdd(
      {
        requestId: asRequestId(`req-${i}`),
        promptTokenIds: prompt,
        sampling: SamplingParams.fromPartial({}),
        n: req.n,
        maxTokens: req.maxTokens,
        stopTokenIds: [scenario.stopTokenId],
      },
      collected.record,
    );
    expect(error).toBeNull();
    return collected.ended;
  });
  for (const { request, atStep } of scenario.aborts) {
    const previous = conn.stepToHook.get(atStep);
    conn.stepToHook.set(atStep, () => {
      previous?.();
      replica.abort(`req-${request}`);
    });
  }
  await Promise.all(ended);
  // The loop may still send a last Step with only removals: let it go idle.
  await new Promise((resolve) => setTimeout(resolve, 10));
  return { events: all, replica, conn };
}

/** Steps that continue from a token the worker sampled but the router had not seen. */
function countAheadSteps(steps: readonly StepRequest[]): number {
  return steps.filter((step) => step.sequences.some((seq) => seq.isInputPending)).length;
}

function newReplica(isAsyncScheduling: boolean, countTokens: () => number) {
  const conn = new ObservingConnection(countTokens);
  const limits = { ...LIMITS, isAsyncScheduling };
  const replica = new Replica("r", conn.asConnection(), limits, () => performance.now());
  replica.connect(workerInfo("instance-1"), conn.asConnection());
  return { conn, replica };
}

function addOne(replica: Replica, maxTokens: number) {
  const collected = collectingRecord("a", [1, 2, 3]);
  const request = {
    requestId: asRequestId("a"),
    promptTokenIds: [1, 2, 3],
    sampling: SamplingParams.fromPartial({}),
    maxTokens,
    ignoreEos: true,
  };
  expect(replica.tryAdd(request, collected.record)).toBeNull();
  return collected;
}

describe("KILN_SCHEDULE_AHEAD", () => {
  it.each([
    ["on", 0, 5],
    ["off", 0, 0],
    // auto: the fake worker is at 127.0.0.1; with a thread per core it shares the cores.
    ["auto", 0, 5],
    ["auto", availableParallelism(), 0],
  ] as const)(
    "%s with %d compute threads: %d steps planned ahead",
    async (mode, threads, numAhead) => {
      const conn = new ObservingConnection(() => 0);
      const limits = { ...LIMITS, scheduleAhead: mode };
      const replica = new Replica("r", conn.asConnection(), limits, () => performance.now());
      const info = WorkerInfo.fromPartial({
        ...workerInfo("instance-1"),
        numComputeThreads: threads,
      });
      replica.connect(info, conn.asConnection());
      const done = await addOne(replica, 6).ended;
      expect(done.filter((e) => e.token)).toHaveLength(6);
      expect(countAheadSteps(conn.steps)).toBe(numAhead);
      expect(replica.counters.numStepsPlannedAhead).toBe(numAhead);
    },
  );
});

describe("overlapped steps", () => {
  it.each([
    // Four decode steps, then one that only removes the finished sequence. On, each step is
    // planned and sent while the one before computes (the second before the first's token is
    // known), and the last one's token streams after the next Step left.
    [true, [0, 0, 0, 1, 3]],
    [false, [0, 1, 2, 3, 4]],
  ])(
    "async scheduling %s: tokens already streamed when each Step is sent: %j",
    async (isOn, expected) => {
      let events: GenerateEvent[] = [];
      const { conn, replica } = newReplica(isOn, () => events.filter((e) => e.token).length);
      const collected = addOne(replica, 4);
      events = collected.events;
      const done = await collected.ended;
      expect(done.filter((e) => e.token)).toHaveLength(4);
      expect(done.at(-1)?.finished?.finishReason).toBe("length");
      // On: step k+1 leaves before step k's token is known, k+2 before it is streamed. Off: after.
      expect(conn.numTokensAtSend).toEqual(expected);
      expect(replica.stats()?.numUsedBlocks).toBe(0);
    },
  );

  it("streams the committed token before the end when the client aborts mid-step", async () => {
    const { conn, replica } = newReplica(true, () => 0);
    const collected = addOne(replica, 100);
    const held = conn.hold(2);
    // Step 2 is held; step 3, planned ahead of it, was sent behind it.
    await vi.waitFor(() => expect(conn.steps).toHaveLength(4));
    // Step 1's token is committed; it may still be waiting to stream: abort flushes it first.
    expect(replica.abort("a")).toBe(true);
    const events = await collected.ended;
    expect(events.filter((e) => e.token)).toHaveLength(2);
    held.resolve();
    await vi.waitFor(() => expect(replica.stats()?.numUsedBlocks).toBe(0));
  });

  it("streams committed tokens before WORKER_LOST when the replica fails mid-step", async () => {
    const { conn, replica } = newReplica(true, () => 0);
    const collected = addOne(replica, 100);
    conn.hold(2);
    // Step 2 is held; step 3, planned ahead of it, was sent behind it.
    await vi.waitFor(() => expect(conn.steps).toHaveLength(4));
    replica.fail("health check failed");
    const events = await collected.ended;
    expect(events.filter((e) => e.token)).toHaveLength(2);
    expect(events.at(-1)?.error?.code).toBe(ErrorCode.WORKER_LOST);
  });

  it("gives every client the same stream on and off, through stops, max_tokens, n > 1 and aborts", async () => {
    let numAheadSteps = 0;
    const scenario = fc.record({
      requests: fc.array(
        fc.record({
          maxTokens: fc.integer({ min: 1, max: 12 }),
          n: fc.integer({ min: 1, max: 3 }),
          promptLen: fc.integer({ min: 1, max: 20 }),
        }),
        { minLength: 1, maxLength: 6 },
      ),
      aborts: fc.array(
        fc.record({ request: fc.nat({ max: 5 }), atStep: fc.integer({ min: 1, max: 12 }) }),
        { maxLength: 3 },
      ),
      stopTokenId: fc.nat({ max: 63 }),
    });
    await fc.assert(
      fc.asyncProperty(scenario, async (s) => {
        const on = await run(s, true);
        const off = await run(s, false);
        expect(on.events).toEqual(off.events);
        // On, a sequence that stops is computed once more for nothing (its step was planned
        // ahead): the Step counts may differ. Off, nothing is planned ahead.
        numAheadSteps += countAheadSteps(on.conn.steps);
        expect(countAheadSteps(off.conn.steps)).toBe(0);
        for (const { replica } of [on, off]) {
          await vi.waitFor(() => expect(replica.stats()?.numUsedBlocks).toBe(0));
          expect(replica.numRequests).toBe(0);
        }
      }),
      { numRuns: 60 },
    );
    expect(numAheadSteps).toBeGreaterThan(60);
  });
});

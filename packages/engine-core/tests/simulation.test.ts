import { mulberry32 } from "@kiln/test-support";
import { describe, expect, it } from "vitest";
import type { RequestId, RequestSummary } from "../src/index";
import { adapter, Harness } from "./harness";

const NUM_REQUESTS = 1000;
const NUM_BLOCKS = 48;
/** Per step; about 85% of what 48 blocks sustain, with bursts that build queues. */
const P_ARRIVAL = 0.08;
const P_BURST = 0.002;

/**
 * 1000 random requests against the fake model under memory pressure: 48 blocks of 4 tokens hold
 * 192 tokens while up to 16 sequences of up to 96 tokens run. A seeded RNG draws arrivals,
 * prompt lengths (over a few shared system prompts), n, output limits, priorities and aborts;
 * token ids come from the fake model, a hash of the K/V the worker holds, so any paging or
 * prefix-cache mistake changes the outputs, which are compared with the model's own.
 */
describe("simulation: 1000 random requests under memory pressure", () => {
  it("finishes every request exactly once, with preemptions, and starves none", () => {
    const rng = mulberry32(20260522);
    const int = (lo: number, hi: number): number => lo + Math.floor(rng() * (hi - lo + 1));
    const h = new Harness({
      numBlocks: NUM_BLOCKS,
      blockSize: 4,
      maxNumBatchedTokens: 32,
      maxNumSeqs: 16,
      maxModelLen: 96,
    });
    const systemPrompts = [0, 1, 2].map((k) =>
      Array.from({ length: 12 }, (_, i) => 1 + ((k * 7 + i) % 60)),
    );
    const ids: RequestId[] = [];
    const arrivalStep = new Map<RequestId, number>();
    const finishStep = new Map<RequestId, number>();
    const summaries = new Map<RequestId, RequestSummary>();
    for (let step = 0; ids.length < NUM_REQUESTS || h.scheduler.hasPendingWork(); step++) {
      if (step > 60_000) throw new Error("simulation did not drain");
      const numArrivals = rng() < P_BURST ? 12 : rng() < P_ARRIVAL ? 1 : 0;
      for (let k = 0; k < numArrivals && ids.length < NUM_REQUESTS; k++) {
        const prefix = rng() < 0.6 ? systemPrompts[int(0, 2)]! : [];
        const suffix = Array.from({ length: int(1, 40) }, () => int(1, 63));
        const id = h.add({
          promptTokenIds: [...prefix, ...suffix],
          n: rng() < 0.1 ? int(2, 3) : 1,
          maxTokens: int(1, 60),
          eosTokenIds: [0],
          priority: rng() < 0.1 ? 1 : 0,
          adapterId: rng() < 0.1 ? adapter("lora-x") : null,
        });
        ids.push(id);
        arrivalStep.set(id, step);
      }
      // Clients abort now and then, mostly recent (so likely unfinished) requests.
      if (rng() < 0.02 && ids.length > 0)
        h.abort(ids[int(Math.max(0, ids.length - 20), ids.length - 1)]!);
      for (const event of h.step()) {
        if (event.kind === "finished" && event.requestDone) {
          finishStep.set(event.requestId, step);
          summaries.set(event.requestId, event.requestDone);
        }
      }
      if (step % 25 === 0) h.scheduler.checkInvariants();
    }
    h.scheduler.checkInvariants();

    const stats = h.scheduler.stats();
    expect(stats.numUsedBlocks).toBe(0);
    expect(stats.numPreemptions).toBeGreaterThan(50);
    expect(h.numPreemptedEvents).toBe(stats.numPreemptions);
    expect(stats.prefixCacheHitTokens).toBeGreaterThan(0);
    let maxLatency = 0;
    for (const id of ids) {
      const record = h.requests.get(id)!;
      expect(record.numFinishes, `request ${id}`).toBe(1);
      record.outputs.forEach((out, index) => {
        expect(out).toEqual(h.expectedOutput(id, index, out.length));
      });
      if (!record.isAborted) {
        maxLatency = Math.max(maxLatency, finishStep.get(id)! - arrivalStep.get(id)!);
      }
    }
    // Bounded waits (bursts queue a few hundred steps' work), in a run of about 10 000 steps;
    // a starved request would wait for most of the run.
    expect(maxLatency).toBeLessThan(h.numSteps / 10);
    expectFcfsAdmission(h, summaries);
  });
});

/** No request is admitted before an earlier one of the same or a better (lower) priority. */
function expectFcfsAdmission(h: Harness, summaries: Map<RequestId, RequestSummary>): void {
  const done = [...summaries].sort(([, a], [, b]) => a.arrivalTime - b.arrivalTime);
  const latestAdmitted = new Map<number, number>(); // priority → latest first-scheduled time
  for (const [id, summary] of done) {
    const priority = h.requests.get(id)!.request.priority ?? 0;
    let latestAhead = Number.NEGATIVE_INFINITY;
    for (const [p, time] of latestAdmitted)
      if (p <= priority) latestAhead = Math.max(latestAhead, time);
    expect(summary.firstScheduledTime!, `request ${id}`).toBeGreaterThan(latestAhead);
    const mine = latestAdmitted.get(priority) ?? Number.NEGATIVE_INFINITY;
    latestAdmitted.set(priority, Math.max(mine, summary.firstScheduledTime!));
  }
}

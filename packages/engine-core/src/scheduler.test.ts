import { describe, expect, it } from "vitest";
import { InvariantError } from "./errors";
import { asRequestId, asSeqId, type RequestId, type SeqId } from "./ids";
import { Scheduler } from "./scheduler";
import type { SchedulerConfig, StepPlan } from "./types";

type Tok = { readonly tokenId: number };
const range = (from: number, to: number): number[] =>
  Array.from({ length: to - from }, (_, i) => from + i);

function tiny(overrides: Partial<SchedulerConfig> = {}): Scheduler<string, Tok> {
  let now = 0;
  return new Scheduler<string, Tok>({
    numBlocks: 8,
    blockSize: 4,
    maxNumBatchedTokens: 8,
    maxNumSeqs: 4,
    maxModelLen: 32,
    clock: () => now++,
    ...overrides,
  });
}

function add(
  scheduler: Scheduler<string, Tok>,
  id: string,
  promptTokenIds: number[],
  extra: Record<string, unknown> = {},
): RequestId {
  const requestId = asRequestId(id);
  const result = scheduler.addRequest({ requestId, promptTokenIds, sampling: "greedy", ...extra });
  expect(result).toEqual({ isAccepted: true });
  return requestId;
}

/** Commits `plan` answering every planned sample with `tokenId`. */
function commitAll(scheduler: Scheduler<string, Tok>, plan: StepPlan<string>, tokenId = 1) {
  const events = scheduler.commit(
    plan,
    plan.seqs.map((seq) => (seq.sample ? { tokenId } : null)),
  );
  scheduler.checkInvariants();
  return events;
}

/** The plan reduced to what tests pin: per sequence id, query, context and table delta. */
const brief = (plan: StepPlan<string>) =>
  plan.seqs.map((s) => ({
    seq: s.seqId,
    q: s.queryLen,
    ctx: s.contextLen,
    isNew: s.isNew,
    newBlocks: [...s.newBlockIds],
    sample: s.sample ? s.sample.outputIndex : null,
  }));

describe("Scheduler: chunked prefill and decode", () => {
  it("prefills in chunks under the token budget, then decodes, sending table deltas", () => {
    const s = tiny();
    add(s, "a", range(100, 110)); // 10 tokens, budget 8
    const p0 = s.schedule();
    expect(brief(p0)).toEqual([
      { seq: 0, q: 8, ctx: 8, isNew: true, newBlocks: [0, 1], sample: null },
    ]);
    expect(p0.seqs[0]!.tokenIds).toEqual(range(100, 108));
    expect(commitAll(s, p0)).toEqual([]);
    const p1 = s.schedule();
    expect(brief(p1)).toEqual([{ seq: 0, q: 2, ctx: 10, isNew: false, newBlocks: [2], sample: 0 }]);
    expect(p1.seqs[0]!.blockTable).toEqual([0, 1, 2]);
    expect(commitAll(s, p1, 7)).toEqual([
      {
        kind: "token",
        requestId: "a",
        seqId: 0,
        seqIndex: 0,
        outputIndex: 0,
        sampled: { tokenId: 7 },
      },
    ]);
    const p2 = s.schedule();
    expect(brief(p2)).toEqual([{ seq: 0, q: 1, ctx: 11, isNew: false, newBlocks: [], sample: 1 }]);
    expect(p2.seqs[0]!.tokenIds).toEqual([7]);
    expect(p2.seqs[0]!.sample!.outputTokenIds).toEqual([7]);
  });

  it("schedules decodes before prefill chunks, so a long prompt never starves them", () => {
    const s = tiny({ maxModelLen: 32 });
    add(s, "a", [1, 2, 3]);
    commitAll(s, s.schedule()); // a: prefill, first token
    add(s, "b", range(10, 30)); // 20 tokens
    for (const chunkLen of [7, 7, 6]) {
      const plan = s.schedule();
      expect(plan.seqs.map((q) => [q.requestId, q.queryLen])).toEqual([
        ["a", 1],
        ["b", chunkLen],
      ]);
      commitAll(s, plan);
    }
    expect(s.stats()).toMatchObject({ numRunningSeqs: 2, numWaitingSeqs: 0 });
  });

  it("admits in arrival order within a priority, and lower priority values first", () => {
    const s = tiny({ maxNumSeqs: 2, maxNumBatchedTokens: 32 });
    add(s, "late-low", [1, 2], { priority: 1, arrivalTime: 0 });
    add(s, "b", [3, 4], { arrivalTime: 5 });
    add(s, "a", [5, 6], { arrivalTime: 3 });
    expect(s.schedule().seqs.map((q) => q.requestId)).toEqual(["a", "b"]);
  });
});

describe("Scheduler: preemption by recompute", () => {
  it("preempts the most recently arrived, reports it, and resumes it from the cache", () => {
    const s = tiny({ maxNumBatchedTokens: 32 });
    add(s, "a", range(0, 11), { maxTokens: 7 });
    add(s, "b", range(50, 61));
    const p0 = s.schedule();
    expect(brief(p0).map((q) => q.newBlocks)).toEqual([
      [0, 1, 2],
      [3, 4, 5],
    ]);
    commitAll(s, p0);
    for (let step = 1; step < 6; step++) commitAll(s, s.schedule());
    // Both have 16 tokens in 4 blocks (0, 1, 2, 6 and 3, 4, 5, 7): a's next token needs a block.
    const p6 = s.schedule();
    expect(p6.preemptedSeqIds).toEqual([1]);
    // b's blocks went back last-first; its tail block 7 is evicted for a.
    expect(brief(p6)).toEqual([{ seq: 0, q: 1, ctx: 17, isNew: false, newBlocks: [7], sample: 6 }]);
    const e6 = commitAll(s, p6);
    expect(e6[0]).toEqual({ kind: "preempted", requestId: "b", seqId: 1, seqIndex: 0 });
    expect(e6.at(-1)).toMatchObject({ kind: "finished", requestId: "a", reason: "length" });
    expect(s.stats().numPreemptions).toBe(1);
    // b comes back as new: 11 prompt + 6 generated tokens, its first three blocks still cached.
    const p7 = s.schedule();
    expect(p7.finishedSeqIds).toEqual([0]);
    expect(brief(p7)).toEqual([
      { seq: 1, q: 5, ctx: 17, isNew: true, newBlocks: [3, 4, 5, 7, 6], sample: 6 },
    ]);
    expect(s.stats().prefixCacheHitTokens).toBe(12);
  });

  it("unschedules a decode already planned this step when a prefill chunk preempts it", () => {
    const s = tiny();
    add(s, "b-low", range(0, 7), { priority: 1 });
    commitAll(s, s.schedule());
    add(s, "a-high", range(100, 130));
    commitAll(s, s.schedule()); // b decodes; a takes the rest of the budget: blocks 2, 3
    commitAll(s, s.schedule()); // b gets block 4, a blocks 5, 6; block 7 is left
    const plan = s.schedule();
    // b's decode was planned first, then a's chunk needed 2 blocks: b (last in order) goes,
    // its budget returns, and a reuses b's uncached tail block 4 and the free block 7.
    expect(plan.preemptedSeqIds).toEqual([0]);
    expect(brief(plan)).toEqual([
      { seq: 1, q: 7, ctx: 21, isNew: false, newBlocks: [4, 7], sample: null },
    ]);
    expect(commitAll(s, plan)).toEqual([
      { kind: "preempted", requestId: "b-low", seqId: 0, seqIndex: 0 },
    ]);
  });
});

describe("Scheduler: parallel sampling (n > 1)", () => {
  it("prefills once, forks, and copies the shared partial block on write", () => {
    const s = tiny();
    add(s, "a", range(0, 7), { n: 3 });
    const p0 = s.schedule();
    // The parent computes all but the last prompt token: blocks 0 (full) and 1 (2 of 4 slots).
    expect(brief(p0)).toEqual([
      { seq: 0, q: 6, ctx: 6, isNew: true, newBlocks: [0, 1], sample: null },
    ]);
    commitAll(s, p0);
    const p1 = s.schedule();
    // Children first (new, whole tables), each copying block 1; the parent writes it in place.
    expect(brief(p1)).toEqual([
      { seq: 2, q: 1, ctx: 7, isNew: true, newBlocks: [0, 2], sample: 0 },
      { seq: 1, q: 1, ctx: 7, isNew: true, newBlocks: [0, 3], sample: 0 },
      { seq: 0, q: 1, ctx: 7, isNew: false, newBlocks: [], sample: 0 },
    ]);
    expect(p1.blockCopies).toEqual([
      { src: 1, dst: 2 },
      { src: 1, dst: 3 },
    ]);
    expect(p1.seqs.map((q) => q.sample!.seqIndex)).toEqual([2, 1, 0]);
    const events = s.commit(p1, [{ tokenId: 5 }, { tokenId: 6 }, { tokenId: 7 }]);
    expect(events.map((e) => e.kind === "token" && [e.seqIndex, e.sampled.tokenId])).toEqual([
      [2, 5],
      [1, 6],
      [0, 7],
    ]);
    s.checkInvariants();
  });

  it("finishes the request once, after its last sequence", () => {
    const s = tiny();
    add(s, "a", [1, 2, 3], { n: 2, maxTokens: 2 });
    const done: unknown[] = [];
    for (let i = 0; i < 6 && s.hasPendingWork(); i++) {
      for (const e of commitAll(s, s.schedule()))
        if (e.kind === "finished") done.push(e.requestDone);
    }
    expect(done).toHaveLength(2);
    expect(done[0]).toBeNull();
    expect(done[1]).toMatchObject({ arrivalTime: 0, firstScheduledTime: 1, numPreemptions: 0 });
    expect(s.stats().numUsedBlocks).toBe(0);
  });
});

describe("Scheduler: stop conditions", () => {
  const run = (extra: Record<string, unknown>, tokens: number[], maxModelLen = 32) => {
    const s = tiny({ maxModelLen });
    add(s, "a", [1, 2, 3], extra);
    const out: string[] = [];
    for (const tokenId of tokens) {
      const plan = s.schedule();
      if (plan.seqs.length === 0) break;
      out.push(
        ...commitAll(s, plan, tokenId).map((e) =>
          e.kind === "finished" ? e.reason : String(tokenId),
        ),
      );
    }
    return out;
  };

  it("stops on EOS, stop ids, max tokens and the context length", () => {
    expect(run({ eosTokenIds: [0, 2] }, [5, 2, 9])).toEqual(["5", "2", "stop"]);
    expect(run({ eosTokenIds: [2], ignoreEos: true, stopTokenIds: [9] }, [2, 9, 4])).toEqual([
      "2",
      "9",
      "stop",
    ]);
    expect(run({ eosTokenIds: [2], minTokens: 2 }, [2, 2, 2, 5])).toEqual(["2", "2", "2", "stop"]);
    expect(run({ maxTokens: 2 }, [5, 5, 5])).toEqual(["5", "5", "length"]);
    expect(run({}, [5, 5, 5, 5], 5)).toEqual(["5", "5", "length"]);
  });

  it("bans stop ids in the sample while minTokens is not reached", () => {
    const s = tiny();
    add(s, "a", [1, 2, 3], { eosTokenIds: [2], stopTokenIds: [9], minTokens: 1 });
    const p0 = s.schedule();
    expect(p0.seqs[0]!.sample!.bannedTokenIds).toEqual([2, 9]);
    commitAll(s, p0);
    expect(s.schedule().seqs[0]!.sample!.bannedTokenIds).toEqual([]);
  });
});

describe("Scheduler: abort and the plan/commit contract", () => {
  it("frees an aborted request's blocks at once and ignores its results", () => {
    const s = tiny();
    add(s, "a", [1, 2, 3, 4, 5]);
    add(s, "b", [6, 7]);
    const plan = s.schedule();
    expect(s.abortRequest(asRequestId("a"))).toBe(true);
    expect(s.stats().numUsedBlocks).toBe(1);
    const events = commitAll(s, plan);
    expect(events.map((e) => e.requestId)).toEqual(["b"]);
    expect(s.abortRequest(asRequestId("a"))).toBe(false);
    expect(s.schedule().finishedSeqIds).toEqual([0]);
  });

  it("aborts waiting requests too, without telling the worker", () => {
    const s = tiny({ maxNumSeqs: 1, maxNumBatchedTokens: 4 });
    add(s, "a", [1]);
    add(s, "b", [2]);
    commitAll(s, s.schedule());
    expect(s.abortRequest(asRequestId("b"))).toBe(true);
    expect(s.stats()).toMatchObject({ numWaitingSeqs: 0, numRunningSeqs: 1 });
    expect(s.schedule().finishedSeqIds).toEqual([]);
  });

  it("accepts results keyed by sequence id", () => {
    const s = tiny();
    add(s, "a", [1, 2]);
    const plan = s.schedule();
    const events = s.commit(plan, new Map<SeqId, Tok>([[asSeqId(0), { tokenId: 4 }]]));
    expect(events).toMatchObject([{ kind: "token", sampled: { tokenId: 4 } }]);
  });

  it("enforces one plan at a time; empty plans need no commit", () => {
    const s = tiny();
    expect(s.hasPendingWork()).toBe(false);
    const empty = s.schedule();
    expect(empty.seqs).toEqual([]);
    add(s, "a", [1, 2]);
    const plan = s.schedule();
    expect(() => s.schedule()).toThrow(InvariantError);
    expect(() => s.commit(empty, [])).toThrow(InvariantError);
    expect(() => s.commit(plan, [])).toThrow(InvariantError);
    commitAll(s, plan);
    expect(() => commitAll(s, plan)).toThrow(InvariantError);
    expect(() => s.commit(s.schedule(), [null])).toThrow(InvariantError);
  });

  it("rejects requests it can never serve", () => {
    const s = tiny();
    const reasonOf = (promptTokenIds: number[], extra: Record<string, unknown> = {}) => {
      const r = s.addRequest({
        requestId: asRequestId("x"),
        promptTokenIds,
        sampling: "",
        ...extra,
      });
      return r.isAccepted ? "ok" : r.reason;
    };
    expect(reasonOf([])).toBe("EMPTY_PROMPT");
    expect(reasonOf(range(0, 32))).toBe("PROMPT_TOO_LONG");
    expect(reasonOf([1], { n: 5 })).toBe("INVALID_PARAMS");
    expect(reasonOf([1], { maxTokens: 0 })).toBe("INVALID_PARAMS");
    expect(reasonOf([1], { maxTokens: 2, minTokens: 3 })).toBe("INVALID_PARAMS");
    expect(reasonOf([1.5])).toBe("INVALID_PARAMS");
    expect(reasonOf([1])).toBe("ok");
    expect(reasonOf([1])).toBe("DUPLICATE_REQUEST");
  });

  it("rejects configurations where one sequence could not fit", () => {
    expect(() => tiny({ maxModelLen: 33 })).toThrow(InvariantError);
    expect(() => tiny({ maxNumSeqs: 9 })).toThrow(InvariantError);
  });

  it("reports the prompt tokens its first admission found cached when a request finishes", () => {
    const s = tiny();
    const summaries: unknown[] = [];
    for (const id of ["a", "b"]) {
      add(s, id, range(0, 9), { maxTokens: 1 });
      while (s.hasPendingWork()) {
        for (const e of commitAll(s, s.schedule()))
          if (e.kind === "finished") summaries.push(e.requestDone);
      }
    }
    // b finds a's two whole blocks (8 of its 9 prompt tokens) in the cache.
    expect(summaries).toMatchObject([{ numCachedTokens: 0 }, { numCachedTokens: 8 }]);
  });

  it("probes the prefix cache without counting", () => {
    const s = tiny();
    add(s, "a", range(0, 9));
    commitAll(s, s.schedule());
    expect(s.prefixMatchLen(range(0, 9), null, null)).toBe(8);
    expect(s.prefixMatchLen(range(0, 9), null, "salt")).toBe(0);
    expect(s.stats()).toMatchObject({ prefixCacheQueryTokens: 9, prefixCacheHitTokens: 0 });
  });
});

describe("Scheduler: planning ahead (overlapped steps)", () => {
  it("plans step N + 1 while N is pending, its input the token N samples, then commits both", () => {
    const s = tiny();
    add(s, "a", range(100, 104), { maxTokens: 10 }); // 4 prompt tokens fill block 0
    const first = s.schedule();
    const ahead = s.scheduleAhead();
    expect(ahead).not.toBeNull();
    expect(ahead!.stepId).toBe(first.stepId + 1);
    // Position 4 (the first sampled token) needs block 1: taken now, sent as a delta.
    expect(brief(ahead!)).toEqual([
      { seq: 0, q: 1, ctx: 5, isNew: false, newBlocks: [1], sample: 1 },
    ]);
    expect(ahead!.seqs[0]!.isInputPending).toBe(true);
    expect(ahead!.seqs[0]!.tokenIds).toEqual([]);
    s.checkInvariants();
    expect(s.scheduleAhead()).toBeNull(); // one plan ahead at a time
    expect(() => s.schedule()).toThrow(InvariantError);
    expect(() => commitAll(s, ahead!)).toThrow(InvariantError); // in order
    expect(commitAll(s, first, 7).map((e) => e.kind)).toEqual(["token"]);
    // The ahead plan is now the pending one, and the next is planned ahead of it.
    const second = s.scheduleAhead();
    expect(brief(second!)).toEqual([
      { seq: 0, q: 1, ctx: 6, isNew: false, newBlocks: [], sample: 2 },
    ]);
    const events = commitAll(s, ahead!, 8);
    expect(events).toMatchObject([{ kind: "token", outputIndex: 1, sampled: { tokenId: 8 } }]);
    commitAll(s, second!, 9);
    expect(s.stats().numUsedBlocks).toBe(2);
  });

  it("refuses while a sequence waits, a prefill chunk runs, or no plan is pending", () => {
    const s = tiny({ maxNumSeqs: 1 });
    expect(s.scheduleAhead()).toBeNull();
    add(s, "a", range(100, 110)); // 10 tokens, budget 8: a chunk without a sample first
    add(s, "b", [1, 2]); // waits for the one slot
    const chunk = s.schedule();
    expect(s.scheduleAhead()).toBeNull();
    commitAll(s, chunk);
    const last = s.schedule(); // the last two prompt tokens, sampled; b still waits
    expect(last.seqs[0]!.sample).not.toBeNull();
    expect(s.scheduleAhead()).toBeNull();
  });

  it("leaves out a sequence certain to finish, and plans nothing when that is every one", () => {
    const s = tiny();
    add(s, "a", [1, 2, 3], { maxTokens: 1 });
    add(s, "b", [4, 5, 6], { maxTokens: 3 });
    const first = s.schedule();
    const ahead = s.scheduleAhead()!;
    expect(ahead.seqs.map((seq) => seq.requestId)).toEqual(["b"]);
    commitAll(s, first);
    const next = s.scheduleAhead()!;
    commitAll(s, ahead);
    // b's third token is its last: nothing left to plan ahead of `next`.
    expect(s.scheduleAhead()).toBeNull();
    const events = commitAll(s, next);
    expect(events.map((e) => e.kind)).toEqual(["token", "finished"]);
    expect(s.stats().numUsedBlocks).toBe(0);
  });

  it("ignores the ahead result of a sequence that stopped or was aborted, and frees its slot", () => {
    const s = tiny();
    add(s, "a", range(100, 104), { eosTokenIds: [2] });
    add(s, "b", range(200, 204));
    const first = s.schedule();
    const ahead = s.scheduleAhead()!;
    expect(ahead.seqs).toHaveLength(2);
    expect(s.stats().numUsedBlocks).toBe(4); // two prompt blocks, two ahead slots
    // a samples EOS in the first step; b is aborted while the ahead step is in flight.
    s.commit(first, [{ tokenId: 2 }, { tokenId: 1 }]);
    expect(s.abortRequest(asRequestId("b"))).toBe(true);
    expect(s.stats().numUsedBlocks).toBe(0);
    expect(s.commit(ahead, [{ tokenId: 3 }, { tokenId: 3 }])).toEqual([]);
    s.checkInvariants();
    // The worker still holds both: the next plan drops them.
    expect(s.schedule().finishedSeqIds).toEqual([asSeqId(0), asSeqId(1)]);
  });
});

describe("Scheduler: multi-step decode (plan-burst.ts)", () => {
  /** A request of 3 prompt tokens prefilled and given its first token: it decodes next. */
  function decoding(extra: Record<string, unknown> = {}) {
    const s = tiny();
    add(s, "a", [10, 11, 12], { maxTokens: 20, eosTokenIds: [9], ...extra });
    commitAll(s, s.schedule({ maxDecodeSteps: 8 }), 1);
    return s;
  }

  it("plans a burst of decodes with the slots of every step and the stop ids", () => {
    const s = decoding();
    const plan = s.schedule({ maxDecodeSteps: 6 });
    const [entry] = plan.seqs;
    expect(entry).toMatchObject({ queryLen: 1, contextLen: 4, numSteps: 6, stopTokenIds: [9] });
    // Slots 3 … 8: blocks for 9 tokens, of which the worker learns the new ones now.
    expect(entry!.blockTable).toHaveLength(3);
    expect(entry!.newBlockIds).toHaveLength(2);
    expect(plan.numScheduledTokens).toBe(1);
    s.checkInvariants();
    const events = s.commit(plan, [[2, 3, 4, 5, 6, 7].map((tokenId) => ({ tokenId }))]);
    expect(events.filter((e) => e.kind === "token").map((e) => e.outputIndex)).toEqual(range(1, 7));
    s.checkInvariants();
    expect(s.stats().numUsedBlocks).toBe(3);
  });

  it("ends at a stop id inside the burst and frees every block", () => {
    const s = decoding();
    const plan = s.schedule({ maxDecodeSteps: 6 });
    const events = s.commit(plan, [[2, 9].map((tokenId) => ({ tokenId }))]);
    expect(events.at(-1)).toMatchObject({ kind: "finished", reason: "stop", numOutputTokens: 3 });
    expect(s.stats().numUsedBlocks).toBe(0);
  });

  it("releases the slots of steps the worker did not run, and has it drop their blocks", () => {
    const s = decoding();
    commitAll(s, s.schedule({ maxDecodeSteps: 1 }), 2); // 5 tokens: blocks 0 … 1 hold them
    const plan = s.schedule({ maxDecodeSteps: 8 });
    expect(plan.seqs[0]).toMatchObject({ contextLen: 5, numSteps: 8 });
    expect(plan.seqs[0]!.blockTable).toHaveLength(3);
    s.commit(plan, [[{ tokenId: 3 }]]); // the worker answered one step only
    s.checkInvariants();
    expect(s.stats().numUsedBlocks).toBe(2);
    const next = s.schedule();
    expect(next.seqs[0]).toMatchObject({ contextLen: 6, numDroppedBlocks: 1 });
  });

  it("bounds a burst by max_tokens and the context, and runs one step before min_tokens", () => {
    const capped = decoding({ maxTokens: 4 });
    expect(capped.schedule({ maxDecodeSteps: 8 }).seqs[0]!.numSteps).toBe(3);
    const early = decoding({ minTokens: 3 });
    expect(early.schedule({ maxDecodeSteps: 8 }).seqs[0]!.numSteps).toBeUndefined();
  });

  it("runs one step while a request waits or a request's decodes may not burst", () => {
    const s = decoding();
    add(s, "b", [20, 21]);
    expect(s.schedule({ maxDecodeSteps: 8 }).seqs.every((e) => e.numSteps === undefined)).toBe(
      true,
    );
    const vetoed = decoding();
    const plan = vetoed.schedule({ maxDecodeSteps: 8, canBurst: () => false });
    expect(plan.seqs[0]!.numSteps).toBeUndefined();
  });

  it("asks a function for the steps of a plan's batch", () => {
    const s = decoding();
    const asked: number[] = [];
    const plan = s.schedule({
      maxDecodeSteps: (n) => {
        asked.push(n);
        return 4;
      },
    });
    expect(asked).toEqual([1]);
    expect(plan.seqs[0]!.numSteps).toBe(4);
  });
});

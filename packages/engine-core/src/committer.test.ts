import { describe, expect, it } from "vitest";
import { InvariantError } from "./errors";
import { asRequestId } from "./ids";
import { Scheduler } from "./scheduler";
import type { StepPlan } from "./types";

type Tok = { readonly tokenId: number };

function tiny(): Scheduler<string, Tok> {
  let now = 0;
  return new Scheduler<string, Tok>({
    numBlocks: 8,
    blockSize: 4,
    maxNumBatchedTokens: 16,
    maxNumSeqs: 4,
    maxModelLen: 32,
    clock: () => now++,
  });
}

const answer = (plan: StepPlan<string>, tokenId: number) =>
  plan.seqs.map((seq) => (seq.sample ? { tokenId } : null));

/** Everything a rejected commit could have changed. */
function snapshot(s: Scheduler<string, Tok>) {
  return JSON.stringify(s.stats());
}

describe("commit validates every result before it mutates anything", () => {
  it("a result missing for the second sequence leaves the first uncommitted", () => {
    const s = tiny();
    s.addRequest({ requestId: asRequestId("a"), promptTokenIds: [1, 2], sampling: "" });
    s.addRequest({ requestId: asRequestId("b"), promptTokenIds: [3, 4], sampling: "" });
    const plan = s.schedule();
    expect(plan.seqs).toHaveLength(2);
    const before = snapshot(s);
    expect(() => s.commit(plan, [{ tokenId: 7 }, null])).toThrow(InvariantError);
    expect(() => s.commit(plan, [{ tokenId: 7 }, { tokenId: -1 }])).toThrow(InvariantError);
    expect(() => s.commit(plan, [{ tokenId: 7 }, { tokenId: 1.5 }])).toThrow(InvariantError);
    expect(snapshot(s)).toBe(before);
    s.checkInvariants();
    // The plan is still pending: a valid commit of the same plan goes through, token by token.
    const events = s.commit(plan, answer(plan, 9));
    expect(events.filter((e) => e.kind === "token")).toHaveLength(2);
    const next = s.schedule();
    expect(next.seqs.map((seq) => seq.contextLen)).toEqual([3, 3]);
    s.checkInvariants();
  });
});

describe("abortSeq finishes one of n sequences", () => {
  it("frees that sequence's blocks, keeps the others, and reports the last one", () => {
    const s = tiny();
    const id = asRequestId("a");
    s.addRequest({ requestId: id, promptTokenIds: [1, 2, 3], sampling: "", n: 3 });
    // Before the fork no choice has a token: per-sequence abort is refused.
    expect(s.abortSeq(id, 1)).toBeNull();
    let plan = s.schedule();
    s.commit(plan, answer(plan, 5));
    plan = s.schedule();
    expect(plan.seqs).toHaveLength(3);
    s.commit(plan, answer(plan, 6));
    const usedBefore = s.stats().numUsedBlocks;
    expect(s.abortSeq(id, 1)).toEqual({ isRequestDone: false });
    expect(s.abortSeq(id, 1)).toBeNull();
    expect(s.stats().numUsedBlocks).toBeLessThan(usedBefore);
    plan = s.schedule();
    expect(plan.finishedSeqIds).toHaveLength(1);
    expect(plan.seqs).toHaveLength(2);
    const events = s.commit(plan, answer(plan, 7));
    const indices = events.map((e) => (e.kind === "token" ? e.seqIndex : -1));
    expect(indices.sort()).toEqual([0, 2]);
    s.checkInvariants();
    expect(s.abortSeq(id, 0)).toEqual({ isRequestDone: false });
    expect(s.abortSeq(id, 2)).toEqual({ isRequestDone: true });
    expect(s.stats().numUsedBlocks).toBe(0);
    expect(s.abortSeq(id, 0)).toBeNull();
    s.checkInvariants();
  });

  it("refuses n = 1 and unknown requests", () => {
    const s = tiny();
    const id = asRequestId("a");
    s.addRequest({ requestId: id, promptTokenIds: [1, 2], sampling: "" });
    const plan = s.schedule();
    s.commit(plan, answer(plan, 5));
    expect(s.abortSeq(id, 0)).toBeNull();
    expect(s.abortSeq(asRequestId("b"), 0)).toBeNull();
  });
});

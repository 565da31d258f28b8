import { describe, expect, it } from "vitest";
import { asRequestId } from "./ids";
import { Scheduler } from "./scheduler";
import type { SchedulerConfig, StepPlan } from "./types";

type Tok = { readonly tokenId: number };
const BATCH = 1_000;
const range = (from: number, n: number) => Array.from({ length: n }, (_, i) => from + i);

function make(overrides: Partial<SchedulerConfig> = {}) {
  let now = 0;
  return new Scheduler<string, Tok>({
    numBlocks: 32,
    blockSize: 4,
    maxNumBatchedTokens: 8,
    maxNumSeqs: 8,
    maxModelLen: 64,
    clock: () => now++,
    ...overrides,
  });
}

let nextToken = 10;

/** Distinct prompts (no prefix-cache hits between requests). */
function add(s: Scheduler<string, Tok>, id: string, promptLen: number, priority: number) {
  nextToken += 100;
  const res = s.addRequest({
    requestId: asRequestId(id),
    promptTokenIds: range(nextToken, promptLen),
    sampling: "greedy",
    priority,
    maxTokens: 20,
  });
  expect(res).toEqual({ isAccepted: true });
}

/** Plans and commits one step; returns each request's query length in it. */
function step(s: Scheduler<string, Tok>): Record<string, number> {
  const plan: StepPlan<string> = s.schedule();
  s.commit(
    plan,
    plan.seqs.map((seq) => (seq.sample ? { tokenId: 1 } : null)),
  );
  s.checkInvariants();
  return Object.fromEntries(plan.seqs.map((seq) => [seq.requestId as string, seq.queryLen]));
}

describe("batch prefill yields to interactive prefill (batchPriority)", () => {
  /** b decoding; then a batch line b2 and an interactive i arrive together (i arrives last). */
  function scenario(s: Scheduler<string, Tok>) {
    add(s, "b", 4, BATCH);
    expect(step(s)).toEqual({ b: 4 });
    add(s, "b2", 6, BATCH);
    add(s, "i", 6, 0);
    return step(s);
  }

  it("without it, the batch line's prefill shares the interactive prefill's step", () => {
    expect(scenario(make())).toEqual({ b: 1, i: 6, b2: 1 });
  });

  it("with it, the step computes the interactive prefill and decodes only; batch prefill follows", () => {
    const s = make({ batchPriority: BATCH });
    expect(scenario(s)).toEqual({ b: 1, i: 6 });
    // i now decodes: nothing interactive is pending, so b2 is admitted.
    expect(step(s)).toEqual({ b: 1, i: 1, b2: 6 });
  });

  it("holds a running batch prefill chunk too, and never more than maxBatchHoldSteps in a row", () => {
    const s = make({ batchPriority: BATCH, maxBatchHoldSteps: 2 });
    add(s, "b", 12, BATCH);
    expect(step(s)).toEqual({ b: 8 }); // 4 prompt tokens left
    const held: Record<string, number>[] = [];
    for (let k = 0; k < 3; k++) {
      add(s, `i${k}`, 3, 0); // a new interactive request every step
      held.push(step(s));
    }
    expect(held[0]).toEqual({ i0: 3 });
    expect(held[1]).toEqual({ i0: 1, i1: 3 });
    // The third step in a row lets the batch prefill through (running work goes before waiting).
    expect(held[2]).toEqual({ i0: 1, i1: 1, b: 4, i2: 2 });
  });
});

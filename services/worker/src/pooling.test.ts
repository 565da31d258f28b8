import { PoolingType, type ScheduledSequence, type StepRequest } from "@kiln/proto";
import { describe, expect, it } from "vitest";
import { Pooler } from "./pooling";

function seq(
  seqId: number,
  numTokens: number,
  pooling: PoolingType,
  doSample: boolean,
  numComputedTokens = 0,
): ScheduledSequence {
  return {
    seqId,
    tokenIds: Array.from({ length: numTokens }, () => 5),
    numComputedTokens,
    newBlockIds: [],
    doSample,
    outputIndex: 0,
    bannedTokenIds: [],
    pooling,
    loraSlot: 0,
    draftTokenIds: [],
    numDroppedBlocks: 0,
    isInputPending: false,
    numSteps: 1,
    stopTokenIds: [],
  };
}

function step(sequences: ScheduledSequence[], removedSeqIds: number[] = []): StepRequest {
  return {
    stepId: 0,
    newSequences: [],
    removedSeqIds,
    sequences,
    blockCopies: [],
    reset: false,
    instanceId: "",
    loraLoads: [],
  };
}

const { POOLING_TYPE_NONE: NONE, POOLING_TYPE_LAST: LAST, POOLING_TYPE_MEAN: MEAN } = PoolingType;

describe("Pooler", () => {
  it("asks for nothing when no sequence pools", () => {
    expect(new Pooler().planFor(step([seq(1, 3, NONE, true)]))).toBeUndefined();
  });

  it("asks for the last hidden state on the last chunk only, and sums on every mean chunk", () => {
    const req = step([seq(1, 4, LAST, false), seq(2, 4, LAST, true), seq(3, 4, MEAN, false)]);
    expect(new Pooler().planFor(req)).toEqual({
      pooling: [null, "last", "sum"],
      poolingFrom: [0, 0, 0],
    });
  });

  it("averages mean-pooled sums over chunks", () => {
    const pooler = new Pooler();
    const first = step([seq(7, 2, MEAN, false), seq(8, 1, MEAN, false)]);
    const plan1 = pooler.planFor(first)!;
    const out1 = pooler.collect(first, plan1, [Float32Array.of(2, 4), Float32Array.of(9, 9)]);
    expect(out1.size).toBe(0);
    const last = step([seq(7, 2, MEAN, true, 2)]);
    const out = pooler.collect(last, pooler.planFor(last)!, [Float32Array.of(6, 8)]);
    expect(out.get(0)).toEqual([2, 3]); // (2+6)/4, (4+8)/4
  });

  it("keeps a preempted sequence's sum and skips the tokens it recomputes", () => {
    const pooler = new Pooler();
    const first = step([seq(7, 4, MEAN, false)]);
    pooler.collect(first, pooler.planFor(first)!, [Float32Array.of(4, 8)]); // positions 0..3
    // Preempted, then resumed without a cache hit: positions 0..5 are recomputed.
    const resumed = step([seq(7, 6, MEAN, true, 0)], [7]);
    const plan = pooler.planFor(resumed)!;
    expect(plan.poolingFrom).toEqual([4]); // the backend sums positions 4 and 5 only
    const out = pooler.collect(resumed, plan, [Float32Array.of(2, 4)]);
    expect(out.get(0)).toEqual([1, 2]); // (4+2)/6, (8+4)/6
  });

  it("forgets every sum on a reset", () => {
    const pooler = new Pooler();
    const first = step([seq(7, 4, MEAN, false)]);
    pooler.collect(first, pooler.planFor(first)!, [Float32Array.of(4, 8)]);
    const again = { ...step([seq(7, 2, MEAN, true)]), reset: true };
    const plan = pooler.planFor(again)!;
    expect(plan.poolingFrom).toEqual([0]);
    expect(pooler.collect(again, plan, [Float32Array.of(2, 2)]).get(0)).toEqual([1, 1]);
  });
});

import { PoolingType, type ScheduledSequence, type StepRequest } from "@kiln/proto";
import { describe, expect, it } from "vitest";
import { Pooler } from "./pooling";

function seq(seqId: number, numTokens: number, pooling: PoolingType, doSample: boolean) {
  const s: ScheduledSequence = {
    seqId,
    tokenIds: Array.from({ length: numTokens }, () => 5),
    numComputedTokens: 0,
    newBlockIds: [],
    doSample,
    outputIndex: 0,
    bannedTokenIds: [],
    pooling,
  };
  return s;
}

function step(sequences: ScheduledSequence[], removedSeqIds: number[] = []): StepRequest {
  return { stepId: 0, newSequences: [], removedSeqIds, sequences, blockCopies: [], reset: false };
}

const { POOLING_TYPE_NONE: NONE, POOLING_TYPE_LAST: LAST, POOLING_TYPE_MEAN: MEAN } = PoolingType;

describe("Pooler", () => {
  it("asks for nothing when no sequence pools", () => {
    expect(new Pooler().kindsFor(step([seq(1, 3, NONE, true)]))).toBeUndefined();
  });

  it("asks for the last hidden state on the last chunk only, and sums on every mean chunk", () => {
    const pooler = new Pooler();
    const req = step([seq(1, 4, LAST, false), seq(2, 4, LAST, true), seq(3, 4, MEAN, false)]);
    expect(pooler.kindsFor(req)).toEqual([null, "last", "sum"]);
  });

  it("averages mean-pooled sums over chunks and forgets removed sequences", () => {
    const pooler = new Pooler();
    const first = step([seq(7, 2, MEAN, false), seq(8, 1, MEAN, false)]);
    pooler.kindsFor(first);
    expect(pooler.collect(first, [Float32Array.of(2, 4), Float32Array.of(9, 9)]).size).toBe(0);
    const last = step([seq(7, 2, MEAN, true)], [8]);
    pooler.kindsFor(last);
    const out = pooler.collect(last, [Float32Array.of(6, 8)]);
    expect(out.get(0)).toEqual([2, 3]); // (2+6)/4, (4+8)/4
    // Sequence 8 was removed: its partial sum is gone, a new chunk starts from zero.
    const again = step([seq(8, 1, MEAN, true)]);
    pooler.kindsFor(again);
    expect(pooler.collect(again, [Float32Array.of(1, 1)]).get(0)).toEqual([1, 1]);
  });
});

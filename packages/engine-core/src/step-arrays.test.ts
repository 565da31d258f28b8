import { describe, expect, it } from "vitest";
import { asRequestId } from "./ids";
import { Scheduler } from "./scheduler";
import { buildStepArrays } from "./step-arrays";

describe("buildStepArrays", () => {
  it("flattens a mixed decode + prefill-chunk + fork step into StepInput arrays", () => {
    let now = 0;
    const s = new Scheduler<null>({
      numBlocks: 8,
      blockSize: 4,
      maxNumBatchedTokens: 8,
      maxNumSeqs: 4,
      maxModelLen: 32,
      clock: () => now++,
    });
    s.addRequest({
      requestId: asRequestId("a"),
      promptTokenIds: [1, 2, 3, 4, 5, 6],
      sampling: null,
      n: 2,
    });
    s.commit(s.schedule(), [null]); // parent prefills 5 tokens: blocks 0 (full), 1 (1 of 4)
    s.addRequest({
      requestId: asRequestId("b"),
      promptTokenIds: [9, 9, 9, 9, 9, 9, 9],
      sampling: null,
    });
    const plan = s.schedule(); // child and parent compute token 6; b gets a 6-token chunk
    const arrays = buildStepArrays(plan, 4);
    expect(arrays.queryLens).toEqual(Int32Array.from([1, 1, 6]));
    expect(arrays.contextLens).toEqual(Int32Array.from([6, 6, 6]));
    expect(arrays.tokenIds).toEqual(Int32Array.from([6, 6, 9, 9, 9, 9, 9, 9]));
    expect(arrays.positions).toEqual(Int32Array.from([5, 5, 0, 1, 2, 3, 4, 5]));
    // child: [0, 2 (copy of 1)]; parent: [0, 1]; b: [3, 4].
    expect(arrays.blockTableOffsets).toEqual(Int32Array.from([0, 2, 4, 6]));
    expect(arrays.blockTables).toEqual(Int32Array.from([0, 2, 0, 1, 3, 4]));
    expect(arrays.slotMapping).toEqual(Int32Array.from([9, 5, 12, 13, 14, 15, 16, 17]));
    expect(arrays.blockCopies).toEqual(Int32Array.from([1, 2]));
  });
});

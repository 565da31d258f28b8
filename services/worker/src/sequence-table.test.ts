import { DEFAULT_SAMPLING } from "@kiln/kernels";
import { describe, expect, it } from "vitest";
import { SequenceTable, type StepDelta, StepDeltaError } from "./sequence-table";

const empty: StepDelta = {
  reset: false,
  newSequences: [],
  removedSeqIds: [],
  sequences: [],
  blockCopies: [],
};

describe("SequenceTable", () => {
  it("turns a prefill chunk then a decode into flattened backend inputs", () => {
    const table = new SequenceTable(4, 8);
    const prefill = table.applyStep({
      ...empty,
      newSequences: [
        {
          seqId: 7,
          promptTokenIds: [1, 2, 3, 4, 5],
          outputTokenIds: [],
          sampling: DEFAULT_SAMPLING,
        },
      ],
      sequences: [
        {
          seqId: 7,
          tokenIds: [1, 2, 3, 4, 5],
          numComputedTokens: 0,
          newBlockIds: [6, 2],
          doSample: true,
          outputIndex: 0,
        },
      ],
    });
    expect([...prefill.positions]).toEqual([0, 1, 2, 3, 4]);
    expect([...prefill.slotMapping]).toEqual([24, 25, 26, 27, 8]);
    expect([...prefill.blockTables]).toEqual([6, 2]);
    expect([...prefill.blockTableOffsets]).toEqual([0, 2]);
    expect(prefill.samples[0]?.outputIndex).toBe(0);
    table.recordSampled(7, 42);

    const decode = table.applyStep({
      ...empty,
      sequences: [
        {
          seqId: 7,
          tokenIds: [42],
          numComputedTokens: 5,
          newBlockIds: [],
          doSample: true,
          outputIndex: 1,
        },
      ],
    });
    expect([...decode.positions]).toEqual([5]);
    expect([...decode.slotMapping]).toEqual([9]);
    expect([...decode.contextLens]).toEqual([6]);
    expect(decode.samples[0]?.outputTokenIds).toEqual([42]);
  });

  it("rejects unknown sequences, out-of-range blocks and short tables", () => {
    const table = new SequenceTable(4, 8);
    const seq = {
      seqId: 1,
      tokenIds: [1, 2, 3, 4, 5],
      numComputedTokens: 0,
      newBlockIds: [0],
      doSample: false,
      outputIndex: 0,
    };
    expect(() => table.applyStep({ ...empty, sequences: [seq] })).toThrow(StepDeltaError);
    const newSeq = {
      seqId: 1,
      promptTokenIds: [1],
      outputTokenIds: [],
      sampling: DEFAULT_SAMPLING,
    };
    expect(() =>
      table.applyStep({
        ...empty,
        newSequences: [newSeq],
        sequences: [{ ...seq, newBlockIds: [8] }],
      }),
    ).toThrow(/outside/);
    expect(() =>
      table.applyStep({ ...empty, reset: true, newSequences: [newSeq], sequences: [seq] }),
    ).toThrow(/needs 5 KV slots/);
  });

  it("forgets removed sequences and everything on reset", () => {
    const table = new SequenceTable(4, 8);
    const newSeq = (seqId: number) => ({
      seqId,
      promptTokenIds: [1],
      outputTokenIds: [],
      sampling: DEFAULT_SAMPLING,
    });
    table.applyStep({ ...empty, newSequences: [newSeq(1), newSeq(2)] });
    expect(table.numSequences).toBe(2);
    table.applyStep({ ...empty, removedSeqIds: [1] });
    expect(table.numSequences).toBe(1);
    table.applyStep({ ...empty, reset: true });
    expect(table.numSequences).toBe(0);
  });
});

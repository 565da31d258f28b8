import { describe, expect, it } from "vitest";
import { DEFAULT_SAMPLING, type SampleRequest, type StepInput, type StepOutput } from "./backend";
import { runDecodeSteps } from "./decode-steps";

const BLOCK_SIZE = 4;

/** Two decodes: sequence 0 at position 5 on blocks [7, 2, 9], sequence 1 at position 2 on [4, 6]. */
function input(numSteps: number[], stopTokenIds: number[][] = [[], []]): StepInput {
  const sample = (outputIndex: number): SampleRequest => ({
    params: DEFAULT_SAMPLING,
    outputIndex,
    promptTokenIds: [1, 2],
    outputTokenIds: Array.from({ length: outputIndex }, () => 50),
  });
  return {
    tokenIds: Int32Array.of(11, 21),
    positions: Int32Array.of(5, 2),
    queryLens: Int32Array.of(1, 1),
    contextLens: Int32Array.of(6, 3),
    blockTableOffsets: Int32Array.of(0, 3, 5),
    blockTables: Int32Array.of(7, 2, 9, 4, 6),
    slotMapping: Int32Array.of(2 * 4 + 1, 4 * 4 + 2),
    blockCopies: new Int32Array(0),
    samples: [sample(3), sample(1)],
    loraSlots: Int32Array.of(0, -1),
    decodeSteps: { numSteps: Int32Array.from(numSteps), stopTokenIds },
  };
}

const token = (tokenId: number) => ({ tokenId, logprob: -1, topLogprobs: [] });

/** A backend step that records its input and samples 100 + position for each sequence. */
function recorder() {
  const inputs: StepInput[] = [];
  const stepOnce = (next: StepInput): StepOutput => {
    inputs.push(next);
    return { sampled: Array.from(next.positions, (p) => token(100 + p)) };
  };
  return { inputs, stepOnce };
}

describe("runDecodeSteps", () => {
  it("runs each sequence's further steps one position on, from the token sampled last", () => {
    const { inputs, stepOnce } = recorder();
    const first = { sampled: [token(100 + 5), token(100 + 2)] };
    const out = runDecodeSteps(input([3, 2]), first, BLOCK_SIZE, stepOnce);
    expect(out.runs!.map((run) => run.map((t) => t.tokenId))).toEqual([[106, 107], [103]]);
    expect(inputs).toHaveLength(2);
    const [second, third] = inputs;
    expect([...second!.tokenIds]).toEqual([105, 102]);
    expect([...second!.positions]).toEqual([6, 3]);
    expect([...second!.contextLens]).toEqual([7, 4]);
    // Position 6 is slot 2 of block 2; position 3 is slot 3 of block 4.
    expect([...second!.slotMapping]).toEqual([2 * 4 + 2, 4 * 4 + 3]);
    expect([...second!.loraSlots!]).toEqual([0, -1]);
    expect(second!.samples.map((s) => s!.outputIndex)).toEqual([4, 2]);
    expect(Array.from(second!.samples[0]!.outputTokenIds)).toEqual([50, 50, 50, 105]);
    // Only sequence 0 has a third step: position 7, its table alone.
    expect([...third!.tokenIds]).toEqual([106]);
    expect([...third!.blockTables]).toEqual([7, 2, 9]);
    expect(Array.from(third!.samples[0]!.outputTokenIds)).toEqual([50, 50, 50, 105, 106]);
  });

  it("runs no further step for a sequence that sampled one of its stop ids", () => {
    const { inputs, stepOnce } = recorder();
    const first = { sampled: [token(105), token(102)] };
    const out = runDecodeSteps(input([4, 4], [[106], [102]]), first, BLOCK_SIZE, stepOnce);
    expect(out.runs!.map((run) => run.map((t) => t.tokenId))).toEqual([[106], []]);
    expect(inputs.map((i) => i.tokenIds.length)).toEqual([1]);
  });

  it("refuses a step that is not all plain decodes, and a table without the slot", () => {
    const { stepOnce } = recorder();
    const first = { sampled: [token(1), token(2)] };
    const chunk = { ...input([2, 1]), queryLens: Int32Array.of(2, 1) };
    expect(() => runDecodeSteps(chunk, first, BLOCK_SIZE, stepOnce)).toThrow(/plain decode/);
    expect(() => runDecodeSteps(input([8, 1]), first, BLOCK_SIZE, stepOnce)).toThrow(/no slot/);
  });
});

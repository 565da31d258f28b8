import { describe, expect, it } from "vitest";
import { DEFAULT_SAMPLING, type SampleRequest, type StepInput } from "../src/backend";
import { CpuModelRunner } from "../src/cpu/model-runner";
import { randomWeights, tinyConfig } from "./helpers/random-model";
import { buildStepInput } from "./helpers/step-driver";

const GREEDY: SampleRequest = {
  params: DEFAULT_SAMPLING,
  outputIndex: 0,
  promptTokenIds: [],
  outputTokenIds: [],
};
const cfg = tinyConfig();
const weights = randomWeights(cfg, 3);
const BS = 4;
const prompt = [5, 9, 13, 17, 21, 25, 29, 33, 37, 41];

function newRunner(): CpuModelRunner {
  return new CpuModelRunner(cfg, weights, { numBlocks: 8, blockSize: BS });
}

/** Logits of decoding token 7 at position 10 after `prompt` sits in `blocks`. */
function decodeLogits(runner: CpuModelRunner, blocks: number[], copies: number[] = []) {
  const input = buildStepInput(
    [{ tokenIds: [7], startPos: prompt.length, blocks, sample: GREEDY }],
    BS,
  );
  return runner.step({ ...input, blockCopies: Int32Array.from(copies), returnLogits: true })
    .logits!;
}

function prefill(runner: CpuModelRunner, blocks: number[]): void {
  runner.step(buildStepInput([{ tokenIds: prompt, startPos: 0, blocks, sample: null }], BS));
}

describe("CpuModelRunner step semantics", () => {
  it("copies blocks before the forward pass (copy-on-write fork)", () => {
    const runner = newRunner();
    prefill(runner, [6, 2, 4]);
    const original = decodeLogits(runner, [6, 2, 4]);
    // Fork: the shared prefix keeps blocks 6 and 2; the partly filled block 4 is copied to 1
    // in the same step that decodes into it.
    const forked = decodeLogits(runner, [6, 2, 1], [4, 1]);
    expect(forked).toEqual(original);
  });

  it("leaves the KV pool untouched when it rejects a step", () => {
    const runner = newRunner();
    prefill(runner, [6, 2, 4]);
    const before = decodeLogits(runner, [6, 2, 4]);
    // Valid copies and slots followed by an out-of-range block id: nothing may be written.
    const bad = buildStepInput(
      [
        { tokenIds: [1, 2, 3, 4], startPos: 0, blocks: [6], sample: null },
        { tokenIds: [1], startPos: 0, blocks: [8], sample: null },
      ],
      BS,
    );
    expect(() => runner.step({ ...bad, blockCopies: Int32Array.from([0, 2]) })).toThrow(
      /block id \(sequence 1\) 8 is out of range/,
    );
    expect(decodeLogits(runner, [6, 2, 4])).toEqual(before);
  });

  const valid = () =>
    buildStepInput(
      [{ tokenIds: [1, 2, 3, 4, 5], startPos: 0, blocks: [3, 5], sample: GREEDY }],
      BS,
    );
  const invalid: [string, (v: StepInput) => StepInput, RegExp][] = [
    [
      "a slot off its block table",
      (v) => ({ ...v, slotMapping: v.slotMapping.map((s) => s + 1) }),
      /slot/,
    ],
    [
      "a wrong position",
      (v) => ({ ...v, positions: Int32Array.from([1, 2, 3, 4, 5]) }),
      /position/,
    ],
    [
      "too few blocks",
      (v) => ({
        ...v,
        blockTables: Int32Array.from([3]),
        blockTableOffsets: Int32Array.from([0, 1]),
      }),
      /too few/,
    ],
    [
      "a token outside the vocabulary",
      (v) => ({ ...v, tokenIds: Int32Array.from([1, 2, 3, 4, 64]) }),
      /vocabulary/,
    ],
    [
      "a block copy out of range",
      (v) => ({ ...v, blockCopies: Int32Array.from([0, 9]) }),
      /block copy/,
    ],
    ["an odd blockCopies", (v) => ({ ...v, blockCopies: Int32Array.from([0]) }), /odd/],
    ["missing samples", (v) => ({ ...v, samples: [] }), /samples/],
    [
      "contextLen beyond the model",
      (v) => ({ ...v, contextLens: Int32Array.from([500]) }),
      /contextLen/,
    ],
    [
      "no sequences",
      (v) => ({
        ...v,
        queryLens: new Int32Array(0),
        contextLens: new Int32Array(0),
        samples: [],
        blockTableOffsets: Int32Array.from([0]),
      }),
      /no sequences/,
    ],
  ];
  it.each(invalid)("rejects %s", (_name, mutate, message) => {
    const runner = newRunner();
    expect(() => runner.step(valid())).not.toThrow();
    expect(() => runner.step(mutate(valid()))).toThrow(message);
  });
});

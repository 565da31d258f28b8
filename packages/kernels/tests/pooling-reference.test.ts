import { mulberry32 } from "@kiln/test-support";
import { describe, expect, it } from "vitest";
import { CpuModelRunner } from "../src/cpu/model-runner";
import { referenceHiddenStates } from "../src/reference/llama-reference";
import { randomWeights, tinyConfig } from "./helpers/random-model";
import { buildStepInput } from "./helpers/step-driver";

// Pooled final hidden states (embeddings) against the float64 reference, in chunked prefills
// batched with a sequence that does not pool.

describe("CpuModelRunner pooling", () => {
  it("returns the last token's and the summed final-normed hidden states of each chunk", () => {
    const cfg = tinyConfig();
    const weights = randomWeights(cfg, 7);
    const rand = mulberry32(3);
    const tokens = Array.from({ length: 10 }, () => Math.floor(rand() * cfg.vocabSize));
    const hidden = referenceHiddenStates(cfg, weights, tokens);
    const dim = cfg.hiddenSize;
    const runner = new CpuModelRunner(cfg, weights, { numBlocks: 16, blockSize: 4 });
    const blocksA = [3, 9, 5];
    const blocksB = [0, 12, 7];
    const sums = new Float64Array(dim);
    let worst = 0;
    for (const [start, len] of [
      [0, 6],
      [6, 4],
    ] as const) {
      const chunk = (blocks: number[]) => ({
        tokenIds: tokens.slice(start, start + len),
        startPos: start,
        blocks: blocks.slice(0, Math.ceil((start + len) / 4)),
        sample: null,
      });
      const input = buildStepInput([chunk(blocksA), chunk(blocksB), chunk([1, 2, 4])], 4);
      const out = runner.step({ ...input, pooling: ["last", "sum", null] });
      expect(out.pooled![2]).toBeNull();
      const last = out.pooled![0]!;
      const lastPos = start + len - 1;
      for (let h = 0; h < dim; h++) {
        worst = Math.max(worst, Math.abs(last[h]! - hidden[lastPos * dim + h]!));
        sums[h]! += out.pooled![1]![h]!;
      }
    }
    for (let h = 0; h < dim; h++) {
      let want = 0;
      for (let t = 0; t < tokens.length; t++) want += hidden[t * dim + h]!;
      worst = Math.max(worst, Math.abs(sums[h]! - want) / tokens.length);
    }
    expect(worst).toBeLessThan(1e-4);
  });

  it("sums from poolingFrom on (tokens pooled before a preemption are not added twice)", () => {
    const cfg = tinyConfig();
    const weights = randomWeights(cfg, 5);
    const tokens = [5, 9, 2, 7, 1, 3];
    const hidden = referenceHiddenStates(cfg, weights, tokens);
    const runner = new CpuModelRunner(cfg, weights, { numBlocks: 4, blockSize: 4 });
    const input = buildStepInput(
      [{ tokenIds: tokens, startPos: 0, blocks: [2, 0], sample: null }],
      4,
    );
    const out = runner.step({ ...input, pooling: ["sum"], poolingFrom: [2] });
    const dim = cfg.hiddenSize;
    for (let h = 0; h < dim; h++) {
      let want = 0;
      for (let t = 2; t < tokens.length; t++) want += hidden[t * dim + h]!;
      expect(Math.abs(out.pooled![0]![h]! - want)).toBeLessThan(1e-4);
    }
  });

  it("returns no pooled field when nothing asks for it", () => {
    const cfg = tinyConfig();
    const runner = new CpuModelRunner(cfg, randomWeights(cfg, 1), { numBlocks: 4, blockSize: 4 });
    const input = buildStepInput([{ tokenIds: [1, 2], startPos: 0, blocks: [0], sample: null }], 4);
    expect(runner.step(input).pooled).toBeUndefined();
  });
});

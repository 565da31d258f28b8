import { type LoadedModel, loadModel } from "@kiln/model";
import { type GoldenCase, loadGoldenCases, STORIES_DIR } from "@kiln/test-support";
import { beforeAll, describe, expect, it } from "vitest";
import { type CpuKernels, CpuModelRunner } from "../src/cpu/model-runner";
import { type GreedyRunOptions, greedyGenerate } from "./helpers/step-driver";

// Parity: the CPU forward pass reproduces the independent reference's greedy continuations of
// stories260K token for token, whatever the batching, chunking and block size.

const cases: readonly GoldenCase[] = loadGoldenCases();
const prompts = cases.map((c) => c.prompt_ids);
const expected = cases.map((c) => c.greedy_ids);
const maxNewTokens = Math.max(...expected.map((ids) => ids.length));

let model: LoadedModel;
beforeAll(async () => {
  model = await loadModel(STORIES_DIR);
});

async function generate(
  opts: Omit<GreedyRunOptions, "maxNewTokens" | "numBlocks">,
  kernels?: CpuKernels,
) {
  const maxLen = Math.max(...prompts.map((p) => p.length)) + maxNewTokens;
  const numBlocks = cases.length * Math.ceil(maxLen / opts.blockSize) + 3;
  const runner = new CpuModelRunner(model.config, model.weights, {
    numBlocks,
    blockSize: opts.blockSize,
    ...(kernels === undefined ? {} : { kernels }),
    // One gemm thread: the matrices are tiny, and the test machine's cores are shared.
    numThreads: 1,
  });
  return greedyGenerate(runner, prompts, { ...opts, numBlocks, maxNewTokens });
}

describe("stories260K greedy golden", () => {
  it("one sequence at a time", async () => {
    expect(await generate({ blockSize: 16, isBatched: false })).toEqual(expected);
  });

  it("all cases in one batch", async () => {
    expect(await generate({ blockSize: 16, isBatched: true })).toEqual(expected);
  });

  it("prefills split into chunks of 7 tokens", async () => {
    expect(await generate({ blockSize: 16, isBatched: true, chunkLen: 7 })).toEqual(expected);
    expect(await generate({ blockSize: 4, isBatched: false, chunkLen: 7 })).toEqual(expected);
  });

  it.each(["typescript", "simd"] as const)("with the %s kernels", async (kernels) => {
    const generated = await generate({ blockSize: 4, isBatched: true, chunkLen: 7 }, kernels);
    expect(generated).toEqual(expected);
  });

  it.each([1, 4, 16])("block size %i", async (blockSize) => {
    expect(await generate({ blockSize, isBatched: true, chunkLen: 5 })).toEqual(expected);
  });
});

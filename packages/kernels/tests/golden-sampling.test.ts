import { type LoadedModel, loadModel } from "@kiln/model";
import { loadGoldenCases, STORIES_DIR } from "@kiln/test-support";
import { beforeAll, describe, expect, it } from "vitest";
import { CpuModelRunner } from "../src/cpu/model-runner";
import type { CpuSampling } from "../src/cpu/native-sampling";
import { greedyGenerate } from "./helpers/step-driver";

// The greedy goldens through each sampler the CPU runner can use: the native one (the default
// when the addon loads) and the TypeScript reference.
const cases = loadGoldenCases();
const prompts = cases.map((c) => c.prompt_ids);
const expected = cases.map((c) => c.greedy_ids);
const maxNewTokens = Math.max(...expected.map((ids) => ids.length));

let model: LoadedModel;
beforeAll(async () => {
  model = await loadModel(STORIES_DIR);
});

describe("stories260K greedy golden per sampler", () => {
  it.each(["native", "typescript"] as const)("with %s sampling", async (sampling: CpuSampling) => {
    const blockSize = 16;
    const maxLen = Math.max(...prompts.map((p) => p.length)) + maxNewTokens;
    const numBlocks = prompts.length * Math.ceil(maxLen / blockSize) + 3;
    const runner = new CpuModelRunner(model.config, model.weights, {
      numBlocks,
      blockSize,
      sampling,
      numThreads: 1,
    });
    expect(runner.sampling).toBe(sampling);
    const generated = await greedyGenerate(runner, prompts, {
      blockSize,
      isBatched: true,
      numBlocks,
      maxNewTokens,
    });
    expect(generated).toEqual(expected);
  });
});

import { type LoadedModel, loadModel } from "@kiln/model";
import { type GoldenCase, loadGoldenCases, STORIES_DIR } from "@kiln/test-support";
import { beforeAll, describe, expect, it } from "vitest";
import { type Gemm, typescriptGemm } from "../src/cpu/gemm";
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
  gemm?: Gemm,
  inputs: readonly (readonly number[])[] = prompts,
  numNewTokens = maxNewTokens,
) {
  const maxLen = Math.max(...inputs.map((p) => p.length)) + numNewTokens;
  const numBlocks = inputs.length * Math.ceil(maxLen / opts.blockSize) + 3;
  const runner = new CpuModelRunner(model.config, model.weights, {
    numBlocks,
    blockSize: opts.blockSize,
    ...(kernels === undefined ? {} : { kernels }),
    ...(gemm === undefined ? {} : { gemm }),
    // One gemm thread: the matrices are tiny, and the test machine's cores are shared.
    numThreads: 1,
  });
  if (gemm !== undefined) expect(runner.gemm.name).toBe(gemm.name);
  if (kernels !== undefined) expect(runner.kernels).toBe(kernels);
  return greedyGenerate(runner, inputs, { ...opts, numBlocks, maxNewTokens: numNewTokens });
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

describe("the pure-TypeScript fallback as a whole forward pass (no addon, no SIMD)", () => {
  /** typescriptGemm, counting the attention products (projections use matmulPacked). */
  function countingTypescriptGemm(): { gemm: Gemm; numAttentionProducts: () => number } {
    let numCalls = 0;
    const gemm: Gemm = {
      ...typescriptGemm,
      matmulTransB(...args: Parameters<Gemm["matmulTransB"]>) {
        numCalls++;
        typescriptGemm.matmulTransB(...args);
      },
    };
    return { gemm, numAttentionProducts: () => numCalls };
  }

  it("reproduces the goldens with typescriptGemm and TypeScript kernels", async () => {
    const { gemm, numAttentionProducts } = countingTypescriptGemm();
    const generated = await generate({ blockSize: 16, isBatched: true }, "typescript", gemm);
    expect(generated).toEqual(expected);
    // The 12-token prompt is one chunk of 8 or more: its attention ran through the gemm.
    expect(numAttentionProducts()).toBeGreaterThan(0);
  });

  it("continues the goldens from prompts extended by 24 golden tokens, prefilled in chunks of 8", async () => {
    // Every prefill chunk but the last has 8 tokens, so attention over long contexts runs
    // through the gemm; the continuation must still be the golden one, token for token.
    const numForced = 24;
    const extended = cases.map((c) => [...c.prompt_ids, ...c.greedy_ids.slice(0, numForced)]);
    const { gemm, numAttentionProducts } = countingTypescriptGemm();
    const generated = await generate(
      { blockSize: 4, isBatched: true, chunkLen: 8 },
      "typescript",
      gemm,
      extended,
      maxNewTokens - numForced,
    );
    expect(generated).toEqual(cases.map((c) => c.greedy_ids.slice(numForced)));
    expect(numAttentionProducts()).toBeGreaterThanOrEqual(cases.length * 3 * 2);
  });
});

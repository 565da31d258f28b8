import { type LoadedModel, loadModel } from "@kiln/model";
import { type GoldenCase, loadGoldenCases, STORIES_DIR } from "@kiln/test-support";
import { beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_SAMPLING, kvBytesPerBlock } from "../src/backend";
import { NativeAttention } from "../src/cpu/attention-native";
import { createCpuBackend } from "../src/cpu/cpu-backend";
import { CpuModelRunner } from "../src/cpu/model-runner";
import { maxRelativeError } from "./helpers/random-model";
import { buildStepInput, greedyGenerate } from "./helpers/step-driver";

const GREEDY = {
  params: DEFAULT_SAMPLING,
  outputIndex: 0,
  promptTokenIds: [],
  outputTokenIds: [],
};

// KILN_KV_CACHE_DTYPE=bf16 (issue 20, ADR 0027): keys and values stored as bfloat16 and read by
// the native attention kernel. stories260K's greedy goldens come out token for token, batched
// and chunked, in process and through the worker's backend thread.

const cases: readonly GoldenCase[] = loadGoldenCases();
const prompts = cases.map((c) => c.prompt_ids);
const expected = cases.map((c) => c.greedy_ids);
const maxNewTokens = Math.max(...expected.map((ids) => ids.length));
const blockSize = 16;
const numBlocks =
  cases.length * Math.ceil((Math.max(...prompts.map((p) => p.length)) + maxNewTokens) / blockSize) +
  3;
const hasNative = NativeAttention.tryCreate() !== null;

let model: LoadedModel;
beforeAll(async () => {
  model = await loadModel(STORIES_DIR);
});

describe.runIf(hasNative)("a bf16 KV cache", () => {
  it("reproduces the greedy goldens, batched and in chunks of 7", async () => {
    const runner = new CpuModelRunner(model.config, model.weights, {
      numBlocks,
      blockSize,
      numThreads: 1,
      kvCacheDtype: "bf16",
    });
    expect(runner.kernels).toBe("native");
    expect(runner.info.kvCacheDtype).toBe("bf16");
    // The stored keys and values really are rounded: the logits move, a little.
    const f32 = new CpuModelRunner(model.config, model.weights, { numBlocks, blockSize });
    expect(f32.info.kvCacheDtype).toBe("f32");
    const step = buildStepInput(
      [{ tokenIds: prompts[0]!, startPos: 0, blocks: [0, 1, 2], sample: GREEDY }],
      blockSize,
    );
    const a = runner.step({ ...step, returnLogits: true }).logits!;
    const b = f32.step({ ...step, returnLogits: true }).logits!;
    expect(a).not.toEqual(b);
    expect(maxRelativeError(a, Float64Array.from(b))).toBeLessThan(0.05);
    const opts = { blockSize, numBlocks, maxNewTokens, isBatched: true, chunkLen: 7 };
    expect(await greedyGenerate(runner, prompts, opts)).toEqual(expected);
  });

  it("through the worker's backend thread, in half the memory per block", async () => {
    const backend = await createCpuBackend({
      modelDir: STORIES_DIR,
      numBlocks,
      blockSize,
      numThreads: 1,
      kvCacheDtype: "bf16",
    });
    try {
      expect(backend.info.kvCacheDtype).toBe("bf16");
      const opts = { blockSize, numBlocks, maxNewTokens, isBatched: false };
      expect(await greedyGenerate(backend, prompts, opts)).toEqual(expected);
    } finally {
      await backend.dispose();
    }
    expect(kvBytesPerBlock(model.config, blockSize, "bf16")).toBe(
      kvBytesPerBlock(model.config, blockSize) / 2,
    );
  });
});

describe("a bf16 KV cache without the native kernel", () => {
  it("is refused with the reason", () => {
    expect(
      () =>
        new CpuModelRunner(model.config, model.weights, {
          numBlocks: 4,
          blockSize,
          kernels: "typescript",
          kvCacheDtype: "bf16",
        }),
    ).toThrow(/bf16 KV cache .* needs the native attention kernel/);
  });
});

import type { LlamaConfig } from "@kiln/model";
import { mulberry32 } from "@kiln/test-support";
import { describe, expect, it } from "vitest";
import { DEFAULT_SAMPLING, type SampleRequest } from "../src/backend";
import { type CpuKernels, CpuModelRunner } from "../src/cpu/model-runner";
import { computeInvFreq } from "../src/cpu/rope";
import { referenceForward, referenceInvFreq } from "../src/reference/llama-reference";
import { maxRelativeError, randomWeights, tinyConfig } from "./helpers/random-model";
import { buildStepInput, type ScheduledChunk } from "./helpers/step-driver";

// The paged, fused, batched f32 forward pass against the dense float64 reference, on configs
// the golden model does not cover: attention bias, rope scaling, untied lm_head, GQA 1/2/4.

const GREEDY: SampleRequest = {
  params: DEFAULT_SAMPLING,
  outputIndex: 0,
  promptTokenIds: [],
  outputTokenIds: [],
};

const configs: [string, LlamaConfig, number][] = [
  [
    "bias + llama3 scaling + untied head, GQA 2",
    tinyConfig({
      attentionBias: true,
      tieWordEmbeddings: false,
      ropeScaling: {
        type: "llama3",
        factor: 8,
        lowFreqFactor: 1,
        highFreqFactor: 4,
        originalMaxPositionEmbeddings: 128,
      },
    }),
    16,
  ],
  [
    "linear scaling, MHA",
    tinyConfig({ numKvHeads: 4, ropeScaling: { type: "linear", factor: 2 } }),
    4,
  ],
  ["GQA 4, headDim 16", tinyConfig({ numHeads: 8, numKvHeads: 2, headDim: 16 }), 1],
];

/**
 * Two sequences in the same steps: prefill chunks of 6 and 4 tokens, then decodes, each step
 * sampling the last token of each. Returns the worst error of the sampled rows' logits.
 */
function runnerVersusReference(cfg: LlamaConfig, blockSize: number, kernels?: CpuKernels): number {
  const weights = randomWeights(cfg, 42);
  const rand = mulberry32(9);
  const tokens = [0, 1].map(() =>
    Array.from({ length: 14 }, () => Math.floor(rand() * cfg.vocabSize)),
  );
  const expected = tokens.map((t) => referenceForward(cfg, weights, t));
  const runner = new CpuModelRunner(cfg, weights, {
    numBlocks: 40,
    blockSize,
    ...(kernels === undefined ? {} : { kernels }),
  });
  // Interleaved, descending and ascending ids: never contiguous, never shared.
  const blocks = [
    Array.from({ length: 14 }, (_, i) => 38 - 2 * i),
    Array.from({ length: 14 }, (_, i) => 2 * i + 1),
  ];
  const chunkLens = [6, 4, 1, 1, 1, 1];
  let worst = 0;
  let start = 0;
  for (const len of chunkLens) {
    const chunks: ScheduledChunk[] = tokens.map((t, s) => ({
      tokenIds: t.slice(start, start + len),
      startPos: start,
      blocks: blocks[s]!.slice(0, Math.ceil((start + len) / blockSize)),
      sample: GREEDY,
    }));
    const out = runner.step({ ...buildStepInput(chunks, blockSize), returnLogits: true });
    const v = cfg.vocabSize;
    const pos = start + len - 1;
    for (let s = 0; s < 2; s++) {
      const actual = out.logits!.subarray(s * v, (s + 1) * v);
      worst = Math.max(
        worst,
        maxRelativeError(actual, expected[s]!.subarray(pos * v, (pos + 1) * v)),
      );
    }
    start += len;
  }
  return worst;
}

describe("CpuModelRunner versus the float64 reference", () => {
  it.each(configs)("%s", (_name, cfg, blockSize) => {
    expect(runnerVersusReference(cfg, blockSize)).toBeLessThan(1e-4);
  });

  it.each(["typescript", "simd"] as const)("%s kernels", (kernels) => {
    for (const [, cfg, blockSize] of configs) {
      expect(runnerVersusReference(cfg, blockSize, kernels)).toBeLessThan(1e-4);
    }
  });

  it("computes rope frequencies as the reference does", () => {
    for (const [, cfg] of configs) {
      const actual = computeInvFreq(cfg);
      expect(maxRelativeError(actual, referenceInvFreq(cfg))).toBeLessThan(1e-12);
    }
  });

  it("computes lm_head only for sampled rows", () => {
    const cfg = tinyConfig();
    const runner = new CpuModelRunner(cfg, randomWeights(cfg, 1), { numBlocks: 4, blockSize: 4 });
    const input = buildStepInput(
      [
        { tokenIds: [1, 2, 3], startPos: 0, blocks: [0], sample: null },
        { tokenIds: [4, 5], startPos: 0, blocks: [1], sample: GREEDY },
      ],
      4,
    );
    const out = runner.step({ ...input, returnLogits: true });
    expect(out.sampled[0]).toBeNull();
    expect(out.sampled[1]?.tokenId).toBeTypeOf("number");
    expect(out.logits?.length).toBe(cfg.vocabSize);
  });
});

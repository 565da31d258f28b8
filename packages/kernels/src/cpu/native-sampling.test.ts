import { mulberry32, requireAvailable } from "@kiln/test-support";
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DEFAULT_SAMPLING, type SampledToken, type SampleRequest } from "../backend";
import { sampleRow } from "../sampling/sample-row";
import { createSamplingScratch } from "../sampling/scratch";
import { nativeAddonError } from "./native-addon";
import { tryNativeRowSampler } from "./native-sampling";

// The TypeScript sampler is the reference: the native one must pick the same token for every
// row and parameter set, and give the same logprobs up to log()'s last bit.
const native = tryNativeRowSampler();
requireAvailable("the kiln_gemm addon's sampleRow", native !== null, nativeAddonError());

function expectSame(actual: SampledToken, expected: SampledToken): void {
  expect(actual.tokenId).toBe(expected.tokenId);
  expect(actual.logprob).toBeCloseTo(expected.logprob, 9);
  expect(actual.topLogprobs.map((t) => t.tokenId)).toEqual(
    expected.topLogprobs.map((t) => t.tokenId),
  );
  actual.topLogprobs.forEach((t, j) => {
    expect(t.logprob).toBeCloseTo(expected.topLogprobs[j]!.logprob, 9);
  });
}

/** Logits with the awkward cases: ties, −∞, NaN, a peaked or a flat distribution. */
function randomRow(rand: () => number, vocabSize: number): Float32Array {
  const row = new Float32Array(vocabSize);
  const scale = rand() < 0.3 ? 0.05 : rand() < 0.5 ? 3 : 12;
  for (let i = 0; i < vocabSize; i++) row[i] = Math.round((rand() - 0.5) * scale * 64) / 64;
  for (let k = 0; k < 3; k++) {
    const roll = rand();
    const at = Math.floor(rand() * vocabSize);
    if (roll < 0.2) row[at] = Number.NEGATIVE_INFINITY;
    else if (roll < 0.3) row[at] = Number.NaN;
    else if (roll < 0.5) row[at] = row[(at + 1) % vocabSize]!; // a tie
  }
  return row;
}

describe.skipIf(native === null)("native sampling against the TypeScript reference", () => {
  const sample = native!;

  it("matches on random rows and parameters (greedy, temperature, top-k, top-p, min-p, logprobs)", () => {
    const vocabSize = 2000;
    const scratch = createSamplingScratch(vocabSize);
    fc.assert(
      fc.property(
        fc.record({
          seed: fc.integer({ min: 0, max: 2 ** 31 }),
          outputIndex: fc.nat({ max: 1000 }),
          temperature: fc.oneof(fc.constant(0), fc.double({ min: 0.05, max: 3, noNaN: true })),
          topK: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 2500 })),
          topP: fc.oneof(fc.constant(1), fc.double({ min: 0, max: 1, noNaN: true })),
          minP: fc.oneof(fc.constant(0), fc.double({ min: 0, max: 1, noNaN: true })),
          numTopLogprobs: fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 20 })),
          repetitionPenalty: fc.oneof(fc.constant(1), fc.constant(1.3)),
          rowSeed: fc.integer(),
        }),
        ({ rowSeed, outputIndex, ...params }) => {
          const row = randomRow(mulberry32(rowSeed), vocabSize);
          const req: SampleRequest = {
            params: { ...DEFAULT_SAMPLING, ...params },
            outputIndex,
            promptTokenIds: [1, 2, 3],
            outputTokenIds: [4, 5],
          };
          expectSame(sample(row, req, scratch), sampleRow(row, req, scratch));
        },
      ),
      { numRuns: 400 },
    );
  });

  it("draws the same tokens over many seeds at a realistic vocabulary (32000)", () => {
    const vocabSize = 32000;
    const scratch = createSamplingScratch(vocabSize);
    const row = randomRow(mulberry32(7), vocabSize);
    const cases = [
      { temperature: 0.8 },
      { temperature: 1, topK: 50 },
      { temperature: 0.7, topP: 0.9 },
      { temperature: 1.2, topK: 40, topP: 0.95, minP: 0.05 },
      { temperature: 1, minP: 0.1 },
    ];
    const seen = new Set<number>();
    for (const overrides of cases) {
      for (let outputIndex = 0; outputIndex < 20; outputIndex++) {
        const params = { ...DEFAULT_SAMPLING, seed: 11, numTopLogprobs: 5, ...overrides };
        const req = { params, outputIndex, promptTokenIds: [], outputTokenIds: [] };
        const expected = sampleRow(row, req, scratch);
        expectSame(sample(row, req, scratch), expected);
        seen.add(expected.tokenId);
      }
    }
    // Different draws pick different tokens: the comparison covered the inverse CDF, not argmax.
    expect(seen.size).toBeGreaterThan(10);
  });

  it("applies logit bias and banned tokens before drawing, and leaves the logits unchanged", () => {
    const row = Float32Array.from([5, 4, 3, 2, 1]);
    const copy = row.slice();
    const scratch = createSamplingScratch(row.length);
    const params = { ...DEFAULT_SAMPLING, logitBias: new Map([[4, 10]]) };
    const req = { params, outputIndex: 0, promptTokenIds: [], outputTokenIds: [] };
    const biased = sample(row, req, scratch);
    expect(biased.tokenId).toBe(4);
    expectSame(biased, sampleRow(row, req, scratch));
    const banned = sample(row, { ...req, params: DEFAULT_SAMPLING, bannedTokenIds: [0] }, scratch);
    expect(banned.tokenId).toBe(1);
    expect(row).toEqual(copy);
  });

  it("rejects invalid parameters with the reference's RangeError", () => {
    const row = new Float32Array(8);
    const scratch = createSamplingScratch(8);
    const req = {
      params: { ...DEFAULT_SAMPLING, topP: 1.5 },
      outputIndex: 0,
      promptTokenIds: [],
      outputTokenIds: [],
    };
    expect(() => sample(row, req, scratch)).toThrow(/invalid sampling topP/);
  });
});

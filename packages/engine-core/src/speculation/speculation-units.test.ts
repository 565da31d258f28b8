import { describe, expect, it } from "vitest";
import { proposeNgram } from "./ngram-proposer";
import { parseSpeculationConfig } from "./spec-config";
import { bestDraftDepth, chooseDraftLens } from "./spec-policy";
import { StepTimeModel } from "./step-time-model";

describe("proposeNgram", () => {
  const opts = { numSpeculativeTokens: 3, minN: 1, maxN: 3 };
  it("proposes what followed the latest match of the longest suffix", () => {
    // Suffix [1, 2] last occurred at 3..4, followed by 9, 9, 1.
    expect(proposeNgram([1, 2, 7, 1, 2, 9, 9, 1, 2], opts)).toEqual([9, 9, 1]);
    expect(proposeNgram([1, 2, 7, 1, 2, 9, 9, 1, 2], opts, 2)).toEqual([9, 9]);
  });
  it("falls back to shorter suffixes, and proposes nothing without a match", () => {
    expect(proposeNgram([4, 5, 6, 5], opts)).toEqual([6, 5]);
    expect(proposeNgram([1, 2, 3, 4], opts)).toEqual([]);
    expect(proposeNgram([3, 3], { ...opts, minN: 2 })).toEqual([]);
  });
});

describe("parseSpeculationConfig", () => {
  it("reads vLLM's keys with defaults", () => {
    expect(parseSpeculationConfig('{"method":"ngram","num_speculative_tokens":4}')).toEqual({
      method: "ngram",
      numSpeculativeTokens: 4,
      isAdaptive: true,
      promptLookupMin: 1,
      promptLookupMax: 4,
    });
    expect(parseSpeculationConfig("")).toBeNull();
    expect(parseSpeculationConfig(undefined)).toBeNull();
  });
  it("names the bad key", () => {
    expect(() => parseSpeculationConfig("{")).toThrow(/not JSON/);
    expect(() => parseSpeculationConfig('{"method":"ngram"}')).toThrow(/num_speculative_tokens/);
    expect(() => parseSpeculationConfig('{"method":"x","num_speculative_tokens":2}')).toThrow(
      /unknown method/,
    );
    expect(() => parseSpeculationConfig('{"num_speculative_tokens":2,"foo":1}')).toThrow(/foo/);
    expect(() =>
      parseSpeculationConfig(
        '{"num_speculative_tokens":2,"prompt_lookup_min":5,"prompt_lookup_max":2}',
      ),
    ).toThrow(/prompt_lookup_max/);
    expect(() =>
      parseSpeculationConfig('{"method":"draft_model","num_speculative_tokens":2}'),
    ).toThrow(/model/);
  });
});

describe("the adaptive policy", () => {
  const cands = [
    { numProposed: 4, acceptanceRate: 0.9 },
    { numProposed: 4, acceptanceRate: 0.2 },
  ];
  it("keeps good drafts when a step is memory-bound (fixed cost dominates)", () => {
    expect(chooseDraftLens(cands, 2, 2, { fixedMs: 20, perTokenMs: 0.1 })).toEqual([4, 2]);
  });
  it("drafts nothing when the batch is compute-bound", () => {
    expect(chooseDraftLens(cands, 64, 64, { fixedMs: 2, perTokenMs: 1 })).toEqual([0, 0]);
  });
  it("keeps every proposal until the step-time model is fitted", () => {
    expect(chooseDraftLens(cands, 2, 2, null)).toEqual([4, 4]);
  });
  it("counts the draft model's steps: cheap drafts keep their depth, costly ones are cut", () => {
    const sure = [{ numProposed: 4, acceptanceRate: 0.95 }];
    const fit = { fixedMs: 20, perTokenMs: 0.1 };
    // A draft step at 1/20 of the target's: every position pays.
    expect(bestDraftDepth(sure, [4], 1, 1, fit, 1)).toBe(4);
    // A draft as costly as the target (a model drafting for itself): none pays.
    expect(bestDraftDepth(sure, [4], 1, 1, fit, 20)).toBe(0);
    // In between, the first positions pay and the last do not.
    const mid = bestDraftDepth([{ numProposed: 4, acceptanceRate: 0.6 }], [4], 1, 1, fit, 6);
    expect(mid).toBeGreaterThan(0);
    expect(mid).toBeLessThan(4);
    // Never deeper than what chooseDraftLens kept.
    expect(bestDraftDepth(sure, [2], 1, 1, fit, 0)).toBe(2);
  });
  it("fits step time = a + b × tokens from observations", () => {
    const model = new StepTimeModel();
    expect(model.fit()).toBeNull();
    for (let i = 0; i < 50; i++) model.observe(1 + (i % 8), 10 + 0.5 * (1 + (i % 8)));
    const fit = model.fit()!;
    expect(fit.fixedMs).toBeCloseTo(10, 6);
    expect(fit.perTokenMs).toBeCloseTo(0.5, 6);
  });
});

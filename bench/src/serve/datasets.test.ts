import { describe, expect, it } from "vitest";
import { LLAMA2_VOCAB, prefixRepetitionDataset, randomDataset } from "./datasets";

describe("randomDataset", () => {
  const opts = { numPrompts: 20, inputLen: 128, outputLen: 64, rangeRatio: 0, seed: 7 };

  it("makes token-exact prompts: BOS first, then ids drawn from [3, vocab)", () => {
    const reqs = randomDataset(LLAMA2_VOCAB, opts);
    expect(reqs).toHaveLength(20);
    for (const r of reqs) {
      expect(r.promptIds).toHaveLength(128);
      expect(r.promptIds[0]).toBe(1);
      expect(r.promptIds.slice(1).every((id) => id >= 3 && id < 32000)).toBe(true);
      expect(r.outputLen).toBe(64);
    }
  });

  it("is a function of the seed", () => {
    expect(randomDataset(LLAMA2_VOCAB, opts)).toEqual(randomDataset(LLAMA2_VOCAB, opts));
    expect(randomDataset(LLAMA2_VOCAB, { ...opts, seed: 8 })[0]).not.toEqual(
      randomDataset(LLAMA2_VOCAB, opts)[0],
    );
  });

  it("spreads lengths over [len(1-r), len(1+r)]", () => {
    const reqs = randomDataset(LLAMA2_VOCAB, { ...opts, numPrompts: 200, rangeRatio: 0.5 });
    const lens = reqs.map((r) => r.promptIds.length);
    expect(Math.min(...lens)).toBeGreaterThanOrEqual(64);
    expect(Math.max(...lens)).toBeLessThanOrEqual(192);
    expect(new Set(lens).size).toBeGreaterThan(20);
  });

  it("omits BOS for a vocabulary without one", () => {
    const [r] = randomDataset({ vocabSize: 100, bosId: null, firstSampledId: 0 }, opts);
    expect(r!.promptIds).toHaveLength(128);
  });
});

describe("prefixRepetitionDataset", () => {
  it("shares each prefix among numPrompts / numPrefixes prompts", () => {
    const reqs = prefixRepetitionDataset(LLAMA2_VOCAB, {
      numPrompts: 12,
      prefixLen: 32,
      suffixLen: 8,
      numPrefixes: 3,
      outputLen: 16,
      seed: 1,
    });
    expect(reqs.every((r) => r.promptIds.length === 1 + 32 + 8)).toBe(true);
    const prefixToCount = new Map<string, number>();
    for (const r of reqs) {
      const key = r.promptIds.slice(0, 33).join(",");
      prefixToCount.set(key, (prefixToCount.get(key) ?? 0) + 1);
    }
    expect([...prefixToCount.values()]).toEqual([4, 4, 4]);
    // Shuffled: the first three requests do not simply cycle through the prefixes in order.
    const suffixes = new Set(reqs.map((r) => r.promptIds.slice(33).join(",")));
    expect(suffixes.size).toBe(12);
  });
});

import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DEFAULT_SAMPLING, type SamplingParams } from "../backend";
import { createSamplingScratch } from "./scratch";
import { sampleTemperature } from "./truncation";

/**
 * Float64 reference of the truncated distribution: a full sort (logit desc, id asc), top-k,
 * nucleus over the top-k mass, min-p against the top weight. `slack` > 0 widens the cuts so the
 * result is a superset of what any rounding of the same maths can keep.
 */
function referenceDistribution(
  row: Float32Array,
  params: SamplingParams,
  slack = 0,
): Map<number, number> {
  const max = Math.max(...row);
  const weight = (id: number) => Math.exp((row[id]! - max) / params.temperature);
  let kept = Array.from(row.keys()).sort((a, b) => row[b]! - row[a]! || a - b);
  if (params.topK > 0) kept = kept.slice(0, params.topK);
  if (params.topP < 1) {
    const mass = kept.reduce((s, id) => s + weight(id), 0);
    let cum = 0;
    const len = kept.findIndex((id) => {
      cum += weight(id);
      return cum >= params.topP * mass + slack * mass;
    });
    if (len >= 0) kept = kept.slice(0, len + 1);
  }
  if (params.minP > 0) {
    const threshold = params.minP * weight(kept[0]!) * (1 - slack);
    kept = kept.filter((id) => weight(id) >= threshold);
  }
  const mass = kept.reduce((s, id) => s + weight(id), 0);
  return new Map(kept.map((id) => [id, weight(id) / mass]));
}

/** Samples at a fixed grid of u values: counts / numPoints approximates the distribution. */
function gridCounts(row: Float32Array, params: SamplingParams, numPoints: number): number[] {
  const scratch = createSamplingScratch(row.length);
  const counts = new Array<number>(row.length).fill(0);
  for (let j = 0; j < numPoints; j++) {
    counts[sampleTemperature(row, params, (j + 0.5) / numPoints, scratch)]!++;
  }
  return counts;
}

const ROW = Float32Array.from([1.5, -0.3, 2.2, 0.7, 2.2, -3, 0.1, 1.1, -1.2, 0.4]);

describe("sampleTemperature", () => {
  it.each<[string, Partial<SamplingParams>]>([
    ["plain softmax", { temperature: 1 }],
    ["low temperature", { temperature: 0.4 }],
    ["top-k", { temperature: 1, topK: 3 }],
    ["top-k beyond the vocabulary", { temperature: 1, topK: 50 }],
    ["top-p", { temperature: 1.3, topP: 0.8 }],
    ["min-p", { temperature: 1, minP: 0.2 }],
    ["top-k, top-p and min-p", { temperature: 0.9, topK: 6, topP: 0.9, minP: 0.1 }],
    ["top-p 0 keeps one token", { temperature: 1, topP: 0 }],
  ])("inverts the CDF of the truncated softmax: %s", (_name, overrides) => {
    const params = { ...DEFAULT_SAMPLING, ...overrides };
    const numPoints = 4000;
    const counts = gridCounts(ROW, params, numPoints);
    const expected = referenceDistribution(ROW, params);
    for (let id = 0; id < ROW.length; id++) {
      // A token owns an interval of length p of [0, 1): the grid hits it p·N ± 1 times.
      expect(Math.abs(counts[id]! - (expected.get(id) ?? 0) * numPoints)).toBeLessThanOrEqual(1);
    }
  });

  it("keeps exactly the reference set with its renormalised probabilities (property)", () => {
    // Quarter-unit logits make ties common, so tie-breaking by id is exercised too.
    const rowArb = fc
      .array(fc.integer({ min: -20, max: 20 }), { minLength: 1, maxLength: 40 })
      .map((values) => Float32Array.from(values, (v) => v / 4));
    const paramsArb = fc.record({
      temperature: fc.double({ min: 0.05, max: 4, noNaN: true }),
      topK: fc.integer({ min: 0, max: 45 }),
      topP: fc.double({ min: 0, max: 1, noNaN: true }),
      minP: fc.double({ min: 0, max: 1, noNaN: true }),
    });
    fc.assert(
      fc.property(rowArb, paramsArb, (row, p) => {
        const params = { ...DEFAULT_SAMPLING, ...p };
        const expected = referenceDistribution(row, params);
        const numPoints = 256;
        const counts = gridCounts(row, params, numPoints);
        for (let id = 0; id < row.length; id++) {
          const expectedCount = (expected.get(id) ?? 0) * numPoints;
          // Excluded tokens must never appear; kept ones appear p·N ± 1 times.
          if (expectedCount === 0) expect(counts[id]).toBe(0);
          else expect(Math.abs(counts[id]! - expectedCount)).toBeLessThanOrEqual(1 + 1e-9);
        }
      }),
      { numRuns: 200 },
    );
  });

  it("bounds the sort with the bucket histogram on a wide vocabulary", () => {
    // 2000 tokens spread over ~100 nats: buckets must still find exactly the top-k / nucleus.
    const row = Float32Array.from({ length: 2000 }, (_, i) => ((i * 7919) % 2000) / 20);
    for (const overrides of [{ topK: 40 }, { topP: 0.95 }, { topK: 1500, topP: 0.999999 }]) {
      const params = { ...DEFAULT_SAMPLING, temperature: 1, ...overrides };
      const allowed = referenceDistribution(row, params, 1e-9);
      const counts = gridCounts(row, params, 300);
      counts.forEach((c, id) => {
        if (c > 0) expect(allowed.has(id)).toBe(true);
      });
    }
  });

  it("falls back to argmax when no logit is finite", () => {
    const row = Float32Array.from([Number.NEGATIVE_INFINITY, Number.NaN]);
    const params = { ...DEFAULT_SAMPLING, temperature: 1, topK: 1 };
    expect(sampleTemperature(row, params, 0.5, createSamplingScratch(2))).toBe(0);
  });
});

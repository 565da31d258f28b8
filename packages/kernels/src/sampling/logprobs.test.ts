import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { logprobOf, logSumExp, topLogprobs } from "./logprobs";

/** Float64 reference of log_softmax, with the naive max-shifted formula. */
function referenceLogSoftmax(row: Float32Array): number[] {
  const values = Array.from(row);
  const max = Math.max(...values);
  const sum = values.reduce((s, v) => s + Math.exp(v - max), 0);
  return values.map((v) => v - max - Math.log(sum));
}

const rowArb = fc
  .array(fc.float({ min: -30, max: 30, noNaN: true }), { minLength: 1, maxLength: 64 })
  .map((values) => Float32Array.from(values));

describe("logprobs", () => {
  it("exp(logprobs) sums to 1 and matches a float64 reference ", () => {
    fc.assert(
      fc.property(rowArb, (row) => {
        const lse = logSumExp(row);
        const reference = referenceLogSoftmax(row);
        let total = 0;
        for (let i = 0; i < row.length; i++) {
          const lp = logprobOf(row, i, lse);
          // expNonPositive is accurate to 1e-8 relative: far finer than float32 logits.
          expect(Math.abs(lp - reference[i]!)).toBeLessThan(1e-8);
          total += Math.exp(lp);
        }
        expect(Math.abs(total - 1)).toBeLessThan(1e-8);
      }),
      { numRuns: 200 },
    );
  });

  it("is stable for large logits and handles −∞ and NaN", () => {
    const row = Float32Array.from([10000, 10000, Number.NEGATIVE_INFINITY, Number.NaN]);
    const lse = logSumExp(row);
    expect(lse).toBeCloseTo(10000 + Math.LN2, 9);
    expect(logprobOf(row, 0, lse)).toBeCloseTo(-Math.LN2, 9);
    expect(logprobOf(row, 2, lse)).toBe(Number.NEGATIVE_INFINITY);
    expect(logprobOf(row, 3, lse)).toBe(Number.NEGATIVE_INFINITY);
    expect(logSumExp(Float32Array.from([Number.NEGATIVE_INFINITY]))).toBe(Number.NEGATIVE_INFINITY);
  });

  it("lists the top tokens most likely first, ties by lower id", () => {
    const row = Float32Array.from([1, 3, 2, 3, Number.NaN, 0, 2]);
    const lse = logSumExp(row);
    const top = topLogprobs(row, 4, lse);
    expect(top.map((t) => t.tokenId)).toEqual([1, 3, 2, 6]);
    expect(top[0]!.logprob).toBe(logprobOf(row, 1, lse));
    expect(topLogprobs(row, 100, lse).map((t) => t.tokenId)).toEqual([1, 3, 2, 6, 0, 5, 4]);
    expect(topLogprobs(row, 0, lse)).toEqual([]);
  });

  it("top-n equals a full stable sort, as a property", () => {
    fc.assert(
      fc.property(rowArb, fc.integer({ min: 1, max: 70 }), (row, n) => {
        const lse = logSumExp(row);
        const expected = Array.from(row.keys())
          .sort((a, b) => row[b]! - row[a]! || a - b)
          .slice(0, n);
        expect(topLogprobs(row, n, lse).map((t) => t.tokenId)).toEqual(expected);
      }),
      { numRuns: 200 },
    );
  });
});

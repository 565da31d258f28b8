import fc from "fast-check";
import { expect, it } from "vitest";
import { expNonPositive } from "./exp-non-positive";

it("matches Math.exp to 1e-8 relative wherever the result is normal", () => {
  fc.assert(
    fc.property(fc.double({ min: -708, max: 0, noNaN: true }), (z) => {
      const reference = Math.exp(z);
      expect(Math.abs(expNonPositive(z) - reference)).toBeLessThanOrEqual(1e-8 * reference);
    }),
    { numRuns: 2000 },
  );
  // Near the rounding boundaries of n, and at the edges of the contract.
  for (const z of [-0.3465735902799726, -0.34657359027997264, -1e-300, -0]) {
    expect(Math.abs(expNonPositive(z) / Math.exp(z) - 1)).toBeLessThan(1e-8);
  }
  expect(expNonPositive(0)).toBe(1);
  expect(expNonPositive(-800)).toBe(0);
  expect(expNonPositive(Number.NEGATIVE_INFINITY)).toBe(0);
  expect(expNonPositive(Number.NaN)).toBe(0);
});

import { describe, expect, it } from "vitest";
import { nativeSiluMul, siluMul } from "../src/cpu/elementwise";
import { mulberry32, randomArray } from "./helpers/random-model";

const native = nativeSiluMul();

describe("siluMul", () => {
  it("matches float64 silu(gate) × up, in TypeScript and natively", () => {
    const rand = mulberry32(3);
    for (const [numRows, ffnLen] of [
      [1, 1],
      [3, 17],
      [2, 48],
      [5, 2048],
    ] as const) {
      // Gates from −100 to 100 reach both tails of the sigmoid.
      const gateUp = randomArray(numRows * 2 * ffnLen, rand, 100);
      gateUp[0] = 0;
      gateUp[numRows * 2 * ffnLen - 1] = -1e-30;
      const impls = native === null ? [siluMul] : [siluMul, native];
      for (const impl of impls) {
        const out = new Float32Array(numRows * ffnLen).fill(Number.NaN);
        impl(out, gateUp, numRows, ffnLen);
        for (let r = 0; r < numRows; r++) {
          for (let i = 0; i < ffnLen; i++) {
            const g = gateUp[r * 2 * ffnLen + i]!;
            const up = gateUp[r * 2 * ffnLen + ffnLen + i]!;
            const want = (g / (1 + Math.exp(-g))) * up;
            const got = out[r * ffnLen + i]!;
            expect(Math.abs(got - want)).toBeLessThanOrEqual(1e-6 * Math.abs(want) + 1e-30);
          }
        }
      }
    }
  });

  it("rejects short arrays natively", () => {
    if (native === null) return;
    expect(() => native(new Float32Array(3), new Float32Array(8), 1, 4)).toThrow(RangeError);
  });
});

import { describe, expect, it } from "vitest";
import { philox2x32, uniform01 } from "./rng";

describe("philox2x32", () => {
  // Known-answer vectors from Random123's kat_vectors (philox2x32, 10 rounds).
  it.each([
    [0x00000000, 0x00000000, 0x00000000, 0xff1dae59, 0x6cd10df2],
    [0xffffffff, 0xffffffff, 0xffffffff, 0x2c3f628b, 0xab4fd7ad],
    [0x243f6a88, 0x85a308d3, 0x13198a2e, 0xdd7ce038, 0xf62a4c12],
  ])("ctr (%i, %i) key %i matches Random123", (c0, c1, key, r0, r1) => {
    const out = new Uint32Array(2);
    philox2x32(c0, c1, key, out);
    expect([out[0], out[1]]).toEqual([r0, r1]);
  });
});

/** Pearson chi-square statistic of observed counts against equal expected counts. */
function chiSquareUniform(counts: readonly number[], total: number): number {
  const expected = total / counts.length;
  return counts.reduce((s, c) => s + (c - expected) ** 2 / expected, 0);
}

describe("uniform01", () => {
  it("is a pure function of (seed, outputIndex, drawIndex)", () => {
    expect(uniform01(42, 7)).toBe(uniform01(42, 7));
    expect(uniform01(42, 7, 0)).toBe(uniform01(42, 7));
    expect(uniform01(42, 7, 1)).not.toBe(uniform01(42, 7));
    expect(uniform01(42, 8)).not.toBe(uniform01(42, 7));
    expect(uniform01(43, 7)).not.toBe(uniform01(42, 7));
    // Seeds are unsigned 32-bit: -1 and 2^32 - 1 are the same stream.
    expect(uniform01(-1, 3)).toBe(uniform01(0xffffffff, 3));
  });

  it("stays in [0, 1) and is uniform over indices and over seeds", () => {
    const numBins = 16;
    const numDraws = 8000;
    const byIndex = new Array<number>(numBins).fill(0);
    const bySeed = new Array<number>(numBins).fill(0);
    for (let i = 0; i < numDraws; i++) {
      const a = uniform01(12345, i);
      const b = uniform01(i, 0);
      for (const u of [a, b]) {
        expect(u).toBeGreaterThanOrEqual(0);
        expect(u).toBeLessThan(1);
      }
      byIndex[Math.floor(a * numBins)]!++;
      bySeed[Math.floor(b * numBins)]!++;
    }
    // 15 degrees of freedom: 37.7 is the 0.001 critical value. Fixed inputs: cannot flake.
    expect(chiSquareUniform(byIndex, numDraws)).toBeLessThan(37.7);
    expect(chiSquareUniform(bySeed, numDraws)).toBeLessThan(37.7);
  });

  it("gives independent draws at consecutive output indices", () => {
    const side = 4;
    const numPairs = 8000;
    const cells = new Array<number>(side * side).fill(0);
    let sumProduct = 0;
    for (let i = 0; i < numPairs; i++) {
      const a = uniform01(7, i);
      const b = uniform01(7, i + 1);
      cells[Math.floor(a * side) * side + Math.floor(b * side)]!++;
      sumProduct += (a - 0.5) * (b - 0.5);
    }
    // 15 degrees of freedom again; the correlation of independent uniforms has sd ≈ 1/sqrt(n).
    expect(chiSquareUniform(cells, numPairs)).toBeLessThan(37.7);
    expect(Math.abs(sumProduct / numPairs / (1 / 12))).toBeLessThan(4 / Math.sqrt(numPairs));
  });
});

import { describe, expect, it } from "vitest";
import { f32ToF16Bits } from "./weight-formats";

/** A half's value from its bits (the test's own reference decoder). */
function halfToNumber(h: number): number {
  const sign = h & 0x8000 ? -1 : 1;
  const e = (h >> 10) & 0x1f;
  const m = h & 0x3ff;
  if (e === 0) return sign * m * 2 ** -24;
  if (e === 31) return m !== 0 ? Number.NaN : sign * Number.POSITIVE_INFINITY;
  return sign * (1 + m / 1024) * 2 ** (e - 15);
}

describe("f32ToF16Bits", () => {
  it("maps every half value to itself and every midpoint to the even neighbour", () => {
    let numChecked = 0;
    for (let h = 0; h < 0x10000; h++) {
      const value = halfToNumber(h);
      if (Number.isNaN(value)) continue;
      expect(f32ToF16Bits(value)).toBe(h);
      if ((h & 0x7fff) >= 0x7bff) continue; // the largest finite half has no finite neighbour
      const mid = (value + halfToNumber(h + 1)) / 2;
      if (Math.fround(mid) !== mid) continue;
      expect(f32ToF16Bits(mid)).toBe(h % 2 === 0 ? h : h + 1);
      numChecked++;
    }
    expect(numChecked).toBeGreaterThan(60_000);
  });

  it("overflows to infinity, underflows to zero, keeps NaN", () => {
    expect(f32ToF16Bits(70_000)).toBe(0x7c00);
    expect(f32ToF16Bits(-70_000)).toBe(0xfc00);
    expect(f32ToF16Bits(1e-9)).toBe(0);
    expect(f32ToF16Bits(Number.NaN) & 0x7e00).toBe(0x7e00);
  });
});

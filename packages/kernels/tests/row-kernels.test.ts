import { mulberry32, requireAvailable } from "@kiln/test-support";
import { describe, expect, it } from "vitest";
import { type RowKernels, tryNativeRowKernels, typescriptRowKernels } from "../src/cpu/row-kernels";
import { randomArray } from "./helpers/random-model";

// The row kernels against float64 formulas: the TypeScript set always, the native set when the
// addon is built (gemm.test.ts fails if it is built but does not load; CI=true requires it).
const native = tryNativeRowKernels();
requireAvailable(
  "the native row kernels (kiln_gemm addon)",
  native !== null,
  "build it: npm run build -w @kiln/kernels",
);
const kernelSets: RowKernels[] =
  native === null ? [typescriptRowKernels] : [typescriptRowKernels, native];

function expectClose(got: number, want: number, rel: number): void {
  expect(Math.abs(got - want)).toBeLessThanOrEqual(rel * Math.abs(want) + 1e-30);
}

describe.each(kernelSets)("$name row kernels", (k) => {
  it("siluMul matches float64 silu(gate) × up", () => {
    const rand = mulberry32(3);
    for (const [numRows, ffnLen] of [
      [1, 1],
      [3, 17],
      [5, 2048],
    ] as const) {
      // Gates from −100 to 100 reach both tails of the sigmoid.
      const gateUp = randomArray(numRows * 2 * ffnLen, rand, 100);
      gateUp[0] = 0;
      const out = new Float32Array(numRows * ffnLen).fill(Number.NaN);
      k.siluMul(out, gateUp, numRows, ffnLen);
      for (let r = 0; r < numRows; r++) {
        for (let i = 0; i < ffnLen; i++) {
          const g = gateUp[r * 2 * ffnLen + i]!;
          const up = gateUp[r * 2 * ffnLen + ffnLen + i]!;
          expectClose(out[r * ffnLen + i]!, (g / (1 + Math.exp(-g))) * up, 1e-6);
        }
      }
    }
  });

  it("rmsNorm matches float64, in place too", () => {
    const rand = mulberry32(4);
    for (const dim of [1, 13, 64, 771]) {
      const x = randomArray(3 * dim, rand, 10);
      const weight = randomArray(dim, rand, 1, 1);
      const out = new Float32Array(3 * dim);
      k.rmsNorm(out, x, weight, 3, dim, 1e-5);
      const inPlace = x.slice();
      k.rmsNorm(inPlace, inPlace, weight, 3, dim, 1e-5);
      expect(inPlace).toEqual(out);
      for (let r = 0; r < 3; r++) {
        let sumSq = 0;
        for (let i = 0; i < dim; i++) sumSq += x[r * dim + i]! ** 2;
        const inv = 1 / Math.sqrt(sumSq / dim + 1e-5);
        for (let i = 0; i < dim; i++) {
          expectClose(out[r * dim + i]!, x[r * dim + i]! * inv * weight[i]!, 1e-6);
        }
      }
    }
  });

  it("applyRope rotates heads inside wider rows and leaves the rest alone", () => {
    const rand = mulberry32(5);
    for (const headDim of [2, 8, 64, 70]) {
      const half = headDim / 2;
      const numTokens = 3;
      const rowStride = 3 * headDim + 5;
      const buf = randomArray(numTokens * rowStride, rand);
      const cos = randomArray(numTokens * half, rand);
      const sin = randomArray(numTokens * half, rand);
      const before = buf.slice();
      k.applyRope(buf, numTokens, rowStride, 2, 3, headDim, cos, sin);
      for (let t = 0; t < numTokens; t++) {
        for (let j = 0; j < rowStride; j++) {
          const col = j - 2;
          const idx = t * rowStride + j;
          if (col < 0 || col >= 3 * headDim) {
            expect(buf[idx]).toBe(before[idx]);
            continue;
          }
          const i = col % headDim;
          const pair = i < half ? idx + half : idx - half;
          const c = cos[t * half + (i % half)]!;
          const s = sin[t * half + (i % half)]!;
          const want =
            i < half ? before[idx]! * c - before[pair]! * s : before[idx]! * c + before[pair]! * s;
          expect(Math.abs(buf[idx]! - want)).toBeLessThan(1e-6);
        }
      }
    }
  });

  it("writeKv into a bf16 pool rounds each value to nearest, ties to even", () => {
    const [numKvHeads, headDim, blockSize] = [1, 4, 2];
    const keys = new Uint16Array(2 * blockSize * headDim);
    const values = new Uint16Array(keys.length);
    // K: exact, a tie rounding down to even, a tie rounding up to even, above a tie; V: NaN,
    // ±infinity, the largest finite value that rounds to infinity.
    const qkv = Float32Array.of(
      1.5,
      1 + 2 ** -8,
      1 + 3 * 2 ** -8,
      1 + 2 ** -8 + 2 ** -20,
      Number.NaN,
      Number.POSITIVE_INFINITY,
      Number.NEGATIVE_INFINITY,
      3.4e38,
    );
    k.writeKv(keys, values, qkv, 1, 8, 0, 4, Int32Array.of(3), numKvHeads, blockSize, headDim);
    // Slot 3 is block 1, offset 1: elements 12..15.
    expect([...keys.subarray(12, 16)]).toEqual([0x3fc0, 0x3f80, 0x3f82, 0x3f81]);
    expect(values[12]! & 0x7fc0).toBe(0x7fc0); // a quiet NaN
    expect([...values.subarray(13, 16)]).toEqual([0x7f80, 0xff80, 0x7f80]);
    expect(keys.subarray(0, 12).every((x) => x === 0)).toBe(true);
    expect(() =>
      k.writeKv(keys, new Float32Array(16), qkv, 1, 8, 0, 4, Int32Array.of(0), 1, 2, 4),
    ).toThrow();
  });

  it("writeKv copies each token's K and V heads into its slot", () => {
    const numKvHeads = 2;
    const headDim = 3;
    const blockSize = 4;
    const numBlocks = 3;
    const pool = numBlocks * numKvHeads * blockSize * headDim;
    const keys = new Float32Array(pool);
    const values = new Float32Array(pool);
    const rowStride = 20;
    const qkv = Float32Array.from({ length: 2 * rowStride }, (_, i) => i + 1);
    const slots = Int32Array.of(9, 2);
    k.writeKv(keys, values, qkv, 2, rowStride, 4, 11, slots, numKvHeads, blockSize, headDim);
    for (let t = 0; t < 2; t++) {
      const block = Math.floor(slots[t]! / blockSize);
      for (let g = 0; g < numKvHeads; g++) {
        for (let d = 0; d < headDim; d++) {
          const dst =
            ((block * numKvHeads + g) * blockSize + (slots[t]! % blockSize)) * headDim + d;
          expect(keys[dst]).toBe(qkv[t * rowStride + 4 + g * headDim + d]);
          expect(values[dst]).toBe(qkv[t * rowStride + 11 + g * headDim + d]);
        }
      }
    }
    expect(keys.filter((v) => v !== 0).length).toBe(2 * numKvHeads * headDim);
    if (k.name === "native") {
      const bad = Int32Array.of(numBlocks * blockSize, 0);
      expect(() =>
        k.writeKv(keys, values, qkv, 2, rowStride, 4, 11, bad, numKvHeads, blockSize, headDim),
      ).toThrow(RangeError);
    }
  });
});

import { mulberry32 } from "@kiln/test-support";
import { describe, expect, it } from "vitest";
import { rmsNorm, siluMul } from "./elementwise";
import { typescriptGemm } from "./gemm";
import { selectKernelTier } from "./kernel-tier";
import { gemmKernelsOf } from "./row-kernels";
import { createWasmGemm, loadWasmGemmModule } from "./wasm-gemm";
import { WasmHeap } from "./wasm-heap";

// The WebAssembly SIMD GEMM (ADR 0026) against the TypeScript one: ragged shapes (rows not a
// multiple of its 4-row tile, columns not of its 8-column panels, K over its 256 block), views,
// accumulate, K = 0, one and three threads (helper worker_threads over the shared memory).

const module = loadWasmGemmModule();
if (typeof module === "string") throw new Error(module);

describe("wasm-simd GEMM", () => {
  it("KILN_KERNEL_TIER=wasm selects it", () => {
    const { gemm, tier } = selectKernelTier({ setting: "wasm", numThreads: 2 });
    expect(gemm.name).toBe("wasm-simd");
    expect(tier).toMatchObject({ name: "wasm-simd", source: "wasm", isFast: true });
  });

  for (const numThreads of [1, 3]) {
    it(`matches the TypeScript GEMM on ragged shapes (${numThreads} threads)`, () => {
      const gemm = createWasmGemm(module, numThreads);
      const rand = mulberry32(11);
      for (const [m, n, k] of [
        [1, 1, 1],
        [7, 33, 5],
        [13, 65, 64],
        [6, 8, 0],
        [40, 300, 129],
        [19, 41, 600],
      ] as const) {
        const a = Float32Array.from({ length: m * k + 3 }, () => rand() - 0.5).subarray(3);
        const w = Float32Array.from({ length: n * k }, () => rand() - 0.5);
        for (const accumulate of [false, true]) {
          const want = Float32Array.from({ length: m * n + 2 }, () => rand()).subarray(2);
          const got = want.slice();
          typescriptGemm.matmulTransB(a, w, want, m, n, k, accumulate);
          const unpacked = got.slice();
          gemm.matmulPacked(a, gemm.packWeights(w, n, k), got, m, accumulate);
          gemm.matmulTransB(a, w, unpacked, m, n, k, accumulate);
          for (let i = 0; i < want.length; i++) {
            expect(got[i]).toBeCloseTo(want[i]!, 4);
            expect(unpacked[i]).toBeCloseTo(want[i]!, 4);
          }
        }
      }
    });
  }

  for (const numThreads of [1, 3]) {
    it(`its SiLU·mul and RMSNorm match TypeScript's (${numThreads} threads)`, () => {
      const rows = gemmKernelsOf(createWasmGemm(module, numThreads))!.rows;
      expect(rows.name).toBe("wasm");
      const rand = mulberry32(5);
      for (const [numRows, len] of [
        [1, 7],
        [3, 64],
        [40, 2051], // threaded, ragged
      ] as const) {
        const gateUp = Float32Array.from({ length: numRows * 2 * len }, () => 20 * rand() - 10);
        const want = new Float32Array(numRows * len);
        const got = new Float32Array(numRows * len);
        siluMul(want, gateUp, numRows, len);
        rows.siluMul(got, gateUp, numRows, len);
        for (let i = 0; i < want.length; i++) {
          expect(Math.abs(got[i]! - want[i]!)).toBeLessThanOrEqual(1e-5 * (1 + Math.abs(want[i]!)));
        }
        const x = Float32Array.from({ length: numRows * len }, () => 4 * rand() - 2);
        const weight = Float32Array.from({ length: len }, () => rand() + 0.5);
        rmsNorm(want, x, weight, numRows, len, 1e-5);
        const inPlace = x.slice();
        rows.rmsNorm(inPlace, inPlace, weight, numRows, len, 1e-5); // out may alias x
        for (let i = 0; i < want.length; i++) {
          expect(Math.abs(inPlace[i]! - want[i]!)).toBeLessThanOrEqual(
            1e-5 * (1 + Math.abs(want[i]!)),
          );
        }
      }
    });
  }

  it("rejects short arrays and weights packed elsewhere", () => {
    const gemm = createWasmGemm(module, 1);
    const packed = gemm.packWeights(new Float32Array(6), 2, 3);
    expect(() => gemm.matmulPacked(new Float32Array(2), packed, new Float32Array(2), 1)).toThrow(
      RangeError,
    );
    expect(() => gemm.packWeights(new Float32Array(5), 2, 3)).toThrow(RangeError);
    const foreign = typescriptGemm.packWeights(new Float32Array(6), 2, 3);
    expect(() => gemm.matmulPacked(new Float32Array(3), foreign, new Float32Array(2), 1)).toThrow(
      TypeError,
    );
    const other = createWasmGemm(module, 1).packWeights(new Float32Array(6), 2, 3);
    expect(() => gemm.matmulPacked(new Float32Array(3), other, new Float32Array(2), 1)).toThrow(
      TypeError,
    );
  });
});

describe("WasmHeap", () => {
  it("reuses released blocks, merges neighbours and refuses more than 4 GiB", () => {
    const heap = new WasmHeap(2);
    const a = heap.alloc(100);
    const b = heap.alloc(200_000); // grows the memory
    const c = heap.alloc(64);
    expect(heap.memory.buffer.byteLength).toBeGreaterThanOrEqual(c + 64);
    expect(heap.f32.length * 4).toBe(heap.memory.buffer.byteLength);
    heap.release(a, 100);
    expect(heap.alloc(64)).toBe(a);
    heap.release(a, 64);
    heap.release(b, 200_000);
    expect(heap.alloc(200_064)).toBe(a); // a and b merged
    expect(() => heap.alloc(2 ** 32)).toThrow(/4 GiB/);
  });
});

import { mulberry32 } from "@kiln/test-support";
import { describe, expect, it } from "vitest";
import { typescriptGemm } from "./gemm";
import { kernelTierSetting, selectKernelTier } from "./kernel-tier";
import { loadTierAddonFrom } from "./tier-addon";

// The addon's own GEMM (kiln_tier, ADR 0022) against the TypeScript one, on the shapes its tiles
// split unevenly (rows not a multiple of 6/3, columns not of 32), accumulate, views and K = 0.

const prebuilt = loadTierAddonFrom("prebuilt");

describe("kiln_tier GEMM", () => {
  it("the committed linux-x64 prebuilt loads", () => {
    if (process.platform !== "linux" || process.arch !== "x64") return;
    expect(typeof prebuilt === "string" ? prebuilt : prebuilt.addon.info().isa).toMatch(
      /^(avx512|avx2|scalar)$/,
    );
  });

  it("matches the TypeScript GEMM on ragged shapes", () => {
    const { gemm } = selectKernelTier({ setting: "native", numThreads: 2 });
    const rand = mulberry32(7);
    for (const [m, n, k] of [
      [1, 1, 1],
      [7, 33, 5],
      [13, 65, 64],
      [6, 32, 0],
      [40, 300, 129],
    ] as const) {
      const a = Float32Array.from({ length: m * k + 3 }, () => rand() - 0.5).subarray(3);
      const w = Float32Array.from({ length: n * k }, () => rand() - 0.5);
      for (const accumulate of [false, true]) {
        const want = Float32Array.from({ length: m * n }, () => rand());
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

  it("rejects short arrays and foreign weights", () => {
    const { gemm } = selectKernelTier({ setting: "native" });
    const packed = gemm.packWeights(new Float32Array(6), 2, 3);
    expect(() => gemm.matmulPacked(new Float32Array(2), packed, new Float32Array(2), 1)).toThrow(
      RangeError,
    );
    const foreign = typescriptGemm.packWeights(new Float32Array(6), 2, 3);
    expect(() => gemm.matmulPacked(new Float32Array(3), foreign, new Float32Array(2), 1)).toThrow(
      TypeError,
    );
    expect(() => kernelTierSetting("fastest")).toThrow(/KILN_KERNEL_TIER/);
  });
});

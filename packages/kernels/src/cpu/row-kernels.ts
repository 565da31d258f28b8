import { rmsNorm, siluMul } from "./elementwise";
import { type KvWriter, writeKvRows } from "./kv-cache";
import { type NativeAddon, tryLoadNativeAddon } from "./native-addon";
import { applyRope } from "./rope";

/**
 * The row-wise kernels of the forward pass, as one set: the TypeScript functions, or the addon's
 * vectorized versions (native/elementwise.cc) with the same contracts. Native results differ
 * from TypeScript by float32 rounding only (see the tests).
 */
export interface RowKernels {
  readonly name: "typescript" | "native" | "wasm";
  readonly rmsNorm: typeof rmsNorm;
  readonly siluMul: typeof siluMul;
  readonly applyRope: typeof applyRope;
  readonly writeKv: KvWriter;
}

export const typescriptRowKernels: RowKernels = {
  name: "typescript",
  rmsNorm,
  siluMul,
  applyRope,
  writeKv: writeKvRows,
};

/** The addon's row kernels, or null when it is unavailable. */
export function tryNativeRowKernels(): RowKernels | null {
  const native = tryLoadNativeAddon();
  if (native === null) return null;
  return {
    name: "native",
    rmsNorm: (out, x, weight, numRows, dim, eps) =>
      native.rmsNorm(out, x, weight, numRows, dim, eps),
    siluMul: (out, gateUp, numRows, ffnLen) => native.siluMul(out, gateUp, numRows, ffnLen),
    applyRope: (buf, numTokens, rowStride, colOffset, numHeads, headDim, cos, sin) =>
      native.applyRope(buf, numTokens, rowStride, colOffset, numHeads, headDim, cos, sin),
    writeKv: (...args) => native.writeKv(...args),
  };
}

/**
 * Kernels that come with a Gemm (kiln_tier's native ones, or the wasm tier's rows: ADR 0026): its row kernels, its paged
 * attention (native/attention.cc on the addon's own threads) and its sampler, same contracts as
 * kiln_gemm's.
 */
export interface GemmKernels {
  readonly rows: RowKernels;
  readonly pagedAttention: NativeAddon["pagedAttention"] | null;
  readonly sampleRow: NativeAddon["sampleRow"] | null;
}

const gemmKernels = new WeakMap<object, GemmKernels>();

/** Records the native kernels of the addon behind `gemm` (tierGemm; wrappers forward them). */
export function attachGemmKernels(gemm: object, kernels: GemmKernels): void {
  gemmKernels.set(gemm, kernels);
}

/** The native kernels that came with `gemm`, or null (oneDNN's, wasm and TypeScript gemms). */
export function gemmKernelsOf(gemm: object): GemmKernels | null {
  return gemmKernels.get(gemm) ?? null;
}

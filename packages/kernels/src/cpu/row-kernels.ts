import { rmsNorm, siluMul } from "./elementwise";
import { type KvWriter, writeKvRows } from "./kv-cache";
import { tryLoadNativeAddon } from "./native-addon";
import { applyRope } from "./rope";

/**
 * The row-wise kernels of the forward pass, as one set: the TypeScript functions, or the addon's
 * vectorized versions (native/elementwise.cc) with the same contracts. Native results differ
 * from TypeScript by float32 rounding only (see the tests).
 */
export interface RowKernels {
  readonly name: "typescript" | "native";
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

/** Row kernels that come with a Gemm (kiln_tier's, ADR 0026), keyed by that Gemm. */
const gemmRowKernels = new WeakMap<object, RowKernels>();

/** Records the row kernels of the addon behind `gemm` (tierGemm). */
export function attachRowKernels(gemm: object, rows: RowKernels): void {
  gemmRowKernels.set(gemm, rows);
}

/** The native row kernels that came with `gemm`, or null (oneDNN's, wasm, TypeScript gemms). */
export function rowKernelsOf(gemm: object): RowKernels | null {
  return gemmRowKernels.get(gemm) ?? null;
}

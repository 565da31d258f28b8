import { writeKvRows } from "./kv-cache";
import { applyRope } from "./rope";
import type { RowKernels } from "./row-kernels";
import { align64, checkLen, scratchFor, type WasmState } from "./wasm-state";
import { OP_RMS_NORM, OP_SILU_MUL } from "./wasm-threads";

/** Below this many floats a wake-up of the helpers costs more than it saves. */
const SERIAL_ROW_FLOATS = 65_536;

/**
 * The wasm tier's row kernels (ADR 0026): SiLU·mul and RMSNorm in wasm/gemm-simd.c, split by
 * rows over the tier's threads (operands copied into its memory and back), with the contracts
 * of elementwise.ts; RoPE and KV writes are the TypeScript ones. `state` starts the tier.
 */
export function wasmRowKernels(state: () => WasmState): RowKernels {
  const threadsFor = (numFloats: number, st: WasmState) =>
    numFloats < SERIAL_ROW_FLOATS ? 1 : st.threads.numThreads;
  return {
    name: "wasm",
    siluMul(out, gateUp, numRows, ffnLen) {
      checkLen(out, numRows * ffnLen, "out");
      checkLen(gateUp, numRows * 2 * ffnLen, "gateUp");
      if (numRows === 0 || ffnLen === 0) return;
      const st = state();
      const inBytes = align64(8 * numRows * ffnLen);
      const inPtr = scratchFor(st, inBytes + 4 * numRows * ffnLen);
      const outPtr = inPtr + inBytes;
      const f32 = st.heap.f32;
      f32.set(gateUp.subarray(0, 2 * numRows * ffnLen), inPtr / 4);
      const args = [inPtr, 0, outPtr, numRows, ffnLen, 0, 0, numRows, 0];
      st.threads.run(OP_SILU_MUL, args, threadsFor(numRows * ffnLen, st));
      out.set(f32.subarray(outPtr / 4, outPtr / 4 + numRows * ffnLen));
    },
    rmsNorm(out, x, weight, numRows, dim, eps) {
      checkLen(out, numRows * dim, "out");
      checkLen(x, numRows * dim, "x");
      checkLen(weight, dim, "weight");
      if (numRows === 0 || dim === 0) return;
      const st = state();
      const xBytes = align64(4 * numRows * dim);
      const xPtr = scratchFor(st, xBytes + 4 * dim);
      const wPtr = xPtr + xBytes;
      const f32 = st.heap.f32;
      f32.set(x.subarray(0, numRows * dim), xPtr / 4);
      f32.set(weight.subarray(0, dim), wPtr / 4);
      const args = [xPtr, wPtr, xPtr, numRows, dim, 0, 0, numRows, 0];
      st.threads.run(OP_RMS_NORM, args, threadsFor(numRows * dim, st), eps);
      out.set(f32.subarray(xPtr / 4, xPtr / 4 + numRows * dim));
    },
    applyRope,
    writeKv: writeKvRows,
  };
}

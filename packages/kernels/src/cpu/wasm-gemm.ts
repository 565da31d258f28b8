import { readFileSync } from "node:fs";
import { fileURLToPath } from "node:url";
import type { Gemm, PackedWeights } from "./gemm";
import { attachGemmKernels } from "./row-kernels";
import { type WasmModule, wasmApi } from "./wasm-api";
import type { WasmHeap } from "./wasm-heap";
import { wasmRowKernels } from "./wasm-rows";
import { align64, checkLen, scratchFor, startWasm, type WasmState } from "./wasm-state";
import { OP_PACK_THEN_GEMM, OP_PACKED } from "./wasm-threads";

export { defaultWasmThreads } from "./wasm-state";

/**
 * The WebAssembly SIMD GEMM tier (ADR 0026): wasm/gemm-simd.c compiled to wasm32 + SIMD128 and
 * committed as prebuilds/wasm32/kiln_gemm_simd.wasm (`node scripts/build-wasm.mjs` rebuilds it),
 * so it runs on every platform Node runs on, with no compiler. Weights are packed once into the
 * module's shared memory (panels of 8 columns); each product copies a (and out when
 * accumulating) in, runs on the calling thread plus helper worker_threads (wasm-threads.ts) and
 * copies out back. SiLU·mul and RMSNorm come attached as row kernels on the same threads
 * (wasm-rows.ts, row-kernels.ts gemmKernelsOf). Products throw RangeError on arrays shorter
 * than their shape and TypeError on weights packed by another Gemm; packWeights throws
 * RangeError past wasm32's 4 GiB. Not reentrant: call from one thread (the backend's).
 */

export const WASM_GEMM_PATH = fileURLToPath(
  new URL("../../prebuilds/wasm32/kiln_gemm_simd.wasm", import.meta.url),
);

const NR = 8; // columns per panel (gemm-simd.c)
const TIER_NAME = "wasm-simd";
const SERIAL_FLOPS = 200_000; // below this a wake-up costs more than it saves

class WasmPackedWeights implements PackedWeights {
  readonly kind = TIER_NAME;
  constructor(
    readonly owner: WasmHeap,
    readonly ptr: number,
    readonly n: number,
    readonly k: number,
    readonly numBytes: number,
  ) {}
}

/** Writes w [n, k] into the heap at byte `ptr` in gemm-simd.c's panel layout. */
function packInto(f32: Float32Array, ptr: number, w: Float32Array, n: number, k: number): void {
  const numPanels = Math.ceil(n / NR);
  const base = ptr / 4;
  for (let j = 0; j < numPanels * NR; j++) {
    const dst = base + Math.floor(j / NR) * k * NR + (j % NR);
    if (j < n) {
      const src = j * k;
      for (let kk = 0; kk < k; kk++) f32[dst + kk * NR] = w[src + kk]!;
    } else {
      for (let kk = 0; kk < k; kk++) f32[dst + kk * NR] = 0;
    }
  }
}

/** The module, or a string saying why it cannot load (no SIMD, missing file). */
export function loadWasmGemmModule(path = WASM_GEMM_PATH): WasmModule | string {
  if (wasmApi === undefined) return "this runtime has no WebAssembly";
  try {
    return new wasmApi.Module(readFileSync(path));
  } catch (err) {
    return `${path}: ${err instanceof Error ? err.message : String(err)}`;
  }
}

/**
 * out[m, n] = a·wᵀ (+ out): a and out (and, unpacked, w and room for its panels, which each
 * thread packs for its own share) laid out in the scratch block, then one job on the threads.
 */
function product(
  st: WasmState,
  a: Float32Array,
  w: Float32Array | WasmPackedWeights,
  out: Float32Array,
  m: number,
  n: number,
  k: number,
  accumulate: boolean,
): void {
  checkLen(a, m * k, "a");
  checkLen(out, m * n, "out");
  if (m === 0 || n === 0) return;
  const numPanels = Math.ceil(n / NR);
  const isPacked = w instanceof WasmPackedWeights;
  const aBytes = align64(4 * m * k);
  const outBytes = align64(4 * m * n);
  const wBytes = isPacked ? 0 : align64(4 * n * k);
  const panelBytes = isPacked ? 0 : 4 * numPanels * NR * k;
  const aPtr = scratchFor(st, aBytes + outBytes + wBytes + panelBytes);
  const outPtr = aPtr + aBytes;
  const wPtr = outPtr + outBytes;
  const panelsPtr = isPacked ? w.ptr : wPtr + wBytes;
  const f32 = st.heap.f32;
  f32.set(a.subarray(0, m * k), aPtr / 4);
  if (accumulate) f32.set(out.subarray(0, m * n), outPtr / 4);
  if (!isPacked) f32.set(w.subarray(0, n * k), wPtr / 4);
  st.threads.run(
    isPacked ? OP_PACKED : OP_PACK_THEN_GEMM,
    [aPtr, panelsPtr, outPtr, m, n, k, accumulate ? 1 : 0, numPanels, wPtr],
    2 * m * n * k < SERIAL_FLOPS ? 1 : st.threads.numThreads,
  );
  out.set(f32.subarray(outPtr / 4, outPtr / 4 + m * n));
}

/**
 * A Gemm on the wasm module with `numThreads` threads (0: defaultWasmThreads()). The shared
 * memory and the helper threads start on the first call, so describing the tier costs nothing.
 */
export function createWasmGemm(module: WasmModule, numThreads = 0): Gemm {
  let started: WasmState | null = null;
  const state = (): WasmState => {
    started ??= startWasm(module, numThreads);
    return started;
  };
  const gemm: Gemm = {
    name: TIER_NAME,
    matmulTransB(a, w, out, m, n, k, accumulate = false) {
      checkLen(w, n * k, "w");
      product(state(), a, w, out, m, n, k, accumulate);
    },
    packWeights(w, n, k) {
      checkLen(w, n * k, "w");
      const st = state();
      const bytes = Math.max(4, 4 * Math.ceil(n / NR) * NR * k);
      const ptr = st.heap.alloc(bytes);
      packInto(st.heap.f32, ptr, w, n, k);
      const packed = new WasmPackedWeights(st.heap, ptr, n, k, bytes);
      st.freed.register(packed, [ptr, bytes]);
      return packed;
    },
    matmulPacked(a, packed, out, m, accumulate = false) {
      if (!(packed instanceof WasmPackedWeights) || packed.owner !== started?.heap) {
        throw new TypeError(`weights packed by ${packed.kind} passed to the ${TIER_NAME} gemm`);
      }
      product(started, a, packed, out, m, packed.n, packed.k, accumulate);
    },
  };
  attachGemmKernels(gemm, { rows: wasmRowKernels(state), pagedAttention: null, sampleRow: null });
  return gemm;
}

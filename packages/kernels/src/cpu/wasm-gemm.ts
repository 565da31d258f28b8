import { readFileSync } from "node:fs";
import { availableParallelism } from "node:os";
import { fileURLToPath } from "node:url";
import type { Gemm, PackedWeights } from "./gemm";
import { writeKvRows } from "./kv-cache";
import { applyRope } from "./rope";
import { attachGemmKernels, type RowKernels } from "./row-kernels";
import { type WasmModule, wasmApi } from "./wasm-api";
import { WasmHeap } from "./wasm-heap";
import {
  type GemmExports,
  OP_PACK_THEN_GEMM,
  OP_PACKED,
  OP_RMS_NORM,
  OP_SILU_MUL,
  WasmThreads,
} from "./wasm-threads";

/**
 * The WebAssembly SIMD GEMM tier (ADR 0026): wasm/gemm-simd.c compiled to wasm32 + SIMD128 and
 * committed as prebuilds/wasm32/kiln_gemm_simd.wasm (`node scripts/build-wasm.mjs` rebuilds it),
 * so it runs on every platform Node runs on, with no compiler. Weights are packed once into the
 * module's shared memory (panels of 8 columns); each product copies a (and out when
 * accumulating) in, runs on the calling thread plus helper worker_threads (wasm-threads.ts) and
 * copies out back. SiLU·mul and RMSNorm come attached as row kernels on the same threads
 * (row-kernels.ts gemmKernelsOf); RoPE and KV writes stay TypeScript. Products throw RangeError on arrays shorter than their shape and TypeError
 * on weights packed by another Gemm; packWeights throws RangeError past wasm32's 4 GiB.
 */

export const WASM_GEMM_PATH = fileURLToPath(
  new URL("../../prebuilds/wasm32/kiln_gemm_simd.wasm", import.meta.url),
);

const NR = 8; // columns per panel (gemm-simd.c)
const TIER_NAME = "wasm-simd";
const SERIAL_FLOPS = 200_000; // below this a wake-up costs more than it saves
const SERIAL_ROW_FLOATS = 65_536; // the same for the row kernels

/** KILN_NATIVE_THREADS, OMP_NUM_THREADS or all CPUs (as the native tiers count). */
export function defaultWasmThreads(env: NodeJS.ProcessEnv = process.env): number {
  for (const name of ["KILN_NATIVE_THREADS", "OMP_NUM_THREADS"]) {
    const v = Number.parseInt(env[name] ?? "", 10);
    if (v > 0) return v;
  }
  return Math.max(1, availableParallelism());
}

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

function checkLen(arr: Float32Array, len: number, what: string): void {
  if (!(arr instanceof Float32Array)) throw new TypeError(`${what} must be a Float32Array`);
  if (arr.length < len) throw new RangeError(`${what} has ${arr.length} floats, needs ${len}`);
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

/** The memory, this thread's instance and the helpers, made on first use. */
interface WasmState {
  readonly heap: WasmHeap;
  readonly threads: WasmThreads;
  readonly freed: FinalizationRegistry<[number, number]>;
  scratch: number;
  scratchBytes: number;
}

function startWasm(module: WasmModule, numThreads: number): WasmState {
  const heap = new WasmHeap(16);
  const ex = new wasmApi!.Instance(module, { env: { memory: heap.memory } })
    .exports as unknown as GemmExports;
  const threads = new WasmThreads(ex, module, heap.memory, numThreads || defaultWasmThreads());
  const freed = new FinalizationRegistry<[number, number]>(([ptr, bytes]) =>
    heap.release(ptr, bytes),
  );
  return { heap, threads, freed, scratch: 0, scratchBytes: 0 };
}

/** A grow-only scratch block of at least `bytes`. */
function scratchFor(st: WasmState, bytes: number): number {
  if (bytes > st.scratchBytes) {
    if (st.scratchBytes > 0) st.heap.release(st.scratch, st.scratchBytes);
    st.scratchBytes = Math.max(bytes, 2 * st.scratchBytes);
    st.scratch = st.heap.alloc(st.scratchBytes);
  }
  return st.scratch;
}

/**
 * A Gemm on the wasm module with `numThreads` threads (0: defaultWasmThreads()). The shared
 * memory and the helper threads start on the first packWeights or product, so describing the
 * tier costs nothing.
 */
export function createWasmGemm(module: WasmModule, numThreads = 0): Gemm {
  let started: WasmState | null = null;
  const state = (): WasmState => {
    started ??= startWasm(module, numThreads);
    return started;
  };
  // a and out (and w and its panels for op 1) laid out in the scratch block, then the job.
  const product = (
    a: Float32Array,
    w: Float32Array | WasmPackedWeights,
    out: Float32Array,
    m: number,
    n: number,
    k: number,
    accumulate: boolean,
  ): void => {
    checkLen(a, m * k, "a");
    checkLen(out, m * n, "out");
    if (m === 0 || n === 0) return;
    const numPanels = Math.ceil(n / NR);
    const isPacked = w instanceof WasmPackedWeights;
    const aBytes = 4 * m * k;
    const outBytes = 4 * m * n;
    const wBytes = isPacked ? 0 : 4 * n * k;
    const st = state();
    const base = scratchFor(st, aBytes + outBytes + wBytes * 2 + 4 * NR * k + 256);
    const aPtr = base;
    const outPtr = aPtr + Math.ceil(aBytes / 64) * 64;
    const wPtr = outPtr + Math.ceil(outBytes / 64) * 64;
    const panelsPtr = isPacked ? w.ptr : wPtr + Math.ceil(wBytes / 64) * 64;
    const f32 = st.heap.f32;
    f32.set(a.subarray(0, m * k), aPtr / 4);
    if (accumulate) f32.set(out.subarray(0, m * n), outPtr / 4);
    if (!isPacked) f32.set(w.subarray(0, n * k), wPtr / 4);
    const flops = 2 * m * n * k;
    st.threads.run(
      isPacked ? OP_PACKED : OP_PACK_THEN_GEMM,
      [aPtr, panelsPtr, outPtr, m, n, k, accumulate ? 1 : 0, numPanels, wPtr],
      flops < SERIAL_FLOPS ? 1 : st.threads.numThreads,
    );
    out.set(f32.subarray(outPtr / 4, outPtr / 4 + m * n));
  };
  const rowThreads = (numFloats: number, st: WasmState) =>
    numFloats < SERIAL_ROW_FLOATS ? 1 : st.threads.numThreads;
  const rows: RowKernels = {
    name: "wasm",
    siluMul(out, gateUp, numRows, ffnLen) {
      checkLen(out, numRows * ffnLen, "out");
      checkLen(gateUp, numRows * 2 * ffnLen, "gateUp");
      if (numRows === 0 || ffnLen === 0) return;
      const st = state();
      const inBytes = Math.ceil((8 * numRows * ffnLen) / 64) * 64;
      const inPtr = scratchFor(st, inBytes + 4 * numRows * ffnLen);
      const outPtr = inPtr + inBytes;
      const f32 = st.heap.f32;
      f32.set(gateUp.subarray(0, 2 * numRows * ffnLen), inPtr / 4);
      const args = [inPtr, 0, outPtr, numRows, ffnLen, 0, 0, numRows, 0];
      st.threads.run(OP_SILU_MUL, args, rowThreads(numRows * ffnLen, st));
      out.set(f32.subarray(outPtr / 4, outPtr / 4 + numRows * ffnLen));
    },
    rmsNorm(out, x, weight, numRows, dim, eps) {
      checkLen(out, numRows * dim, "out");
      checkLen(x, numRows * dim, "x");
      checkLen(weight, dim, "weight");
      if (numRows === 0 || dim === 0) return;
      const st = state();
      const xBytes = Math.ceil((4 * numRows * dim) / 64) * 64;
      const xPtr = scratchFor(st, xBytes + 4 * dim);
      const wPtr = xPtr + xBytes;
      const f32 = st.heap.f32;
      f32.set(x.subarray(0, numRows * dim), xPtr / 4);
      f32.set(weight.subarray(0, dim), wPtr / 4);
      const args = [xPtr, wPtr, xPtr, numRows, dim, 0, 0, numRows, 0];
      st.threads.run(OP_RMS_NORM, args, rowThreads(numRows * dim, st), eps);
      out.set(f32.subarray(xPtr / 4, xPtr / 4 + numRows * dim));
    },
    applyRope,
    writeKv: writeKvRows,
  };
  const gemm: Gemm = {
    name: TIER_NAME,
    matmulTransB(a, w, out, m, n, k, accumulate = false) {
      checkLen(w, n * k, "w");
      product(a, w, out, m, n, k, accumulate);
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
      product(a, packed, out, m, packed.n, packed.k, accumulate);
    },
  };
  attachGemmKernels(gemm, { rows, pagedAttention: null, sampleRow: null });
  return gemm;
}

import { availableParallelism } from "node:os";
import { type WasmModule, wasmApi } from "./wasm-api";
import { WasmHeap } from "./wasm-heap";
import { type GemmExports, WasmThreads } from "./wasm-threads";

/**
 * What one wasm-tier Gemm owns (ADR 0026): the shared memory, the calling thread's instance and
 * the helper threads (wasm-threads.ts), and a grow-only scratch block for each call's operands.
 */
export interface WasmState {
  readonly heap: WasmHeap;
  readonly threads: WasmThreads;
  /** Frees packed weights' blocks when their PackedWeights is garbage-collected. */
  readonly freed: FinalizationRegistry<[number, number]>;
  scratch: number;
  scratchBytes: number;
}

/** KILN_NATIVE_THREADS, OMP_NUM_THREADS or all CPUs (as the native tiers count). */
export function defaultWasmThreads(env: NodeJS.ProcessEnv = process.env): number {
  for (const name of ["KILN_NATIVE_THREADS", "OMP_NUM_THREADS"]) {
    const v = Number.parseInt(env[name] ?? "", 10);
    if (v > 0) return v;
  }
  return Math.max(1, availableParallelism());
}

/** Creates the memory, instantiates the module over it and starts the helpers. */
export function startWasm(module: WasmModule, numThreads: number): WasmState {
  if (wasmApi === undefined) throw new Error("this runtime has no WebAssembly");
  const heap = new WasmHeap(16);
  const ex = new wasmApi.Instance(module, { env: { memory: heap.memory } })
    .exports as unknown as GemmExports;
  const threads = new WasmThreads(ex, module, heap.memory, numThreads || defaultWasmThreads());
  const freed = new FinalizationRegistry<[number, number]>(([ptr, bytes]) =>
    heap.release(ptr, bytes),
  );
  return { heap, threads, freed, scratch: 0, scratchBytes: 0 };
}

/** The scratch block, grown (never shrunk) to at least `bytes`; its byte offset. */
export function scratchFor(st: WasmState, bytes: number): number {
  if (bytes > st.scratchBytes) {
    if (st.scratchBytes > 0) st.heap.release(st.scratch, st.scratchBytes);
    st.scratchBytes = Math.max(bytes, 2 * st.scratchBytes);
    st.scratch = st.heap.alloc(st.scratchBytes);
  }
  return st.scratch;
}

/** Throws TypeError for a non-Float32Array and RangeError when it is shorter than `len`. */
export function checkLen(arr: Float32Array, len: number, what: string): void {
  if (!(arr instanceof Float32Array)) throw new TypeError(`${what} must be a Float32Array`);
  if (arr.length < len) throw new RangeError(`${what} has ${arr.length} floats, needs ${len}`);
}

/** Rounds a byte count up to the heap's 64-byte alignment. */
export const align64 = (bytes: number): number => Math.ceil(bytes / 64) * 64;

/**
 * The parts of the WebAssembly JS API the wasm GEMM tier uses (the repository's TypeScript libs
 * do not declare WebAssembly; attention-simd-kernels.ts declares its own smaller subset).
 */

/** A compiled module (can be posted to worker_threads). */
export type WasmModule = { readonly __wasmModule: unique symbol };

export interface WasmMemory {
  /** A SharedArrayBuffer for shared memories; a new object after each grow. */
  readonly buffer: ArrayBufferLike;
  grow(pages: number): number;
}

interface WasmApi {
  Module: new (bytes: Uint8Array) => WasmModule;
  Instance: new (module: WasmModule, imports: object) => { readonly exports: unknown };
  Memory: new (desc: { initial: number; maximum: number; shared: boolean }) => WasmMemory;
}

/** globalThis.WebAssembly, or undefined where the runtime has none. */
export const wasmApi = (globalThis as { WebAssembly?: WasmApi }).WebAssembly;

/**
 * The WebAssembly tier's one shared linear memory (ADR 0026): a `WebAssembly.Memory` backed by a
 * SharedArrayBuffer, seen by every thread's module instance, with a first-fit allocator for the
 * packed weights and the per-call scratch. wasm32 addresses at most 4 GiB, so a model whose
 * packed projections exceed that cannot use this tier (alloc throws a RangeError saying so).
 * Only the thread that owns the heap allocates, grows or writes through `f32`.
 */

import { type WasmMemory, wasmApi } from "./wasm-api";

const PAGE = 65_536;
const MAX_PAGES = 65_536; // 4 GiB, the wasm32 limit
const ALIGN = 64;

interface Span {
  off: number;
  size: number;
}

export class WasmHeap {
  readonly memory: WasmMemory;
  private view: Float32Array;
  /** First byte never handed out; everything above it up to the memory's end is free. */
  private top = PAGE; // address 0 stays unused, so a zero pointer is never valid data
  private readonly free: Span[] = [];

  constructor(initialPages: number) {
    if (wasmApi === undefined) throw new Error("this runtime has no WebAssembly");
    this.memory = new wasmApi.Memory({
      initial: Math.max(initialPages, 2),
      maximum: MAX_PAGES,
      shared: true,
    });
    this.view = new Float32Array(this.memory.buffer);
  }

  /** A Float32Array over the whole memory (refreshed after growth). */
  get f32(): Float32Array {
    return this.view;
  }

  /** Bytes reserved for the heap's blocks (not counting free spans below the top). */
  get bytesInUse(): number {
    return this.top - this.free.reduce((sum, s) => sum + s.size, 0);
  }

  /** A 64-byte-aligned block of at least `bytes`; its contents are undefined. */
  alloc(bytes: number): number {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    const i = this.free.findIndex((s) => s.size >= size);
    if (i >= 0) {
      const span = this.free[i]!;
      const off = span.off;
      if (span.size === size) this.free.splice(i, 1);
      else {
        span.off += size;
        span.size -= size;
      }
      return off;
    }
    const off = this.top;
    const end = off + size;
    const have = this.memory.buffer.byteLength;
    if (end > have) {
      const pages = Math.ceil((end - have) / PAGE);
      if (have / PAGE + pages > MAX_PAGES) {
        throw new RangeError(
          `the wasm kernel tier's memory would exceed 4 GiB (wasm32) for ${bytes} more bytes ` +
            `(${(this.bytesInUse / 2 ** 30).toFixed(2)} GiB in use): use a native tier for this model`,
        );
      }
      this.memory.grow(pages);
      this.view = new Float32Array(this.memory.buffer);
    }
    this.top = end;
    return off;
  }

  /** Returns a block from `alloc` (same size); adjacent free spans merge. */
  release(off: number, bytes: number): void {
    const size = Math.max(ALIGN, Math.ceil(bytes / ALIGN) * ALIGN);
    this.free.push({ off, size });
    this.free.sort((x, y) => x.off - y.off);
    for (let i = this.free.length - 1; i > 0; i--) {
      const prev = this.free[i - 1]!;
      const cur = this.free[i]!;
      if (prev.off + prev.size === cur.off) {
        prev.size += cur.size;
        this.free.splice(i, 1);
      }
    }
    const last = this.free.at(-1);
    if (last !== undefined && last.off + last.size === this.top) {
      this.top = last.off;
      this.free.pop();
    }
  }
}

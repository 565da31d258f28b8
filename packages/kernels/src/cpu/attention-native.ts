import type { KvLayer } from "./kv-cache";
import { checkNumThreads, type NativeAddon, tryLoadNativeAddon } from "./native-addon";
import type { AttentionBatch, AttentionShape } from "./paged-attention";

export interface NativeAttentionOptions {
  /**
   * Threads one call may use (the calling thread's OpenMP team, shared with the native gemm);
   * OpenMP's default when absent.
   */
  readonly numThreads?: number;
}

/**
 * Paged attention in the native addon (native/attention.cc): one call per layer for the whole
 * batch, parallel over (sequence, KV head) on the calling thread's OpenMP team, float32 scores
 * with an exact max-subtracted softmax. Reads the KV pool in place, whether it lives in plain
 * arrays or in a SIMD layer's WebAssembly memory. Not reentrant per thread.
 */
export class NativeAttention {
  private readonly native: Pick<NativeAddon, "pagedAttention">;
  private readonly numThreads: number;

  private constructor(native: Pick<NativeAddon, "pagedAttention">, numThreads: number) {
    this.native = native;
    this.numThreads = numThreads;
  }

  /** Null when the addon is not built or cannot load (see describeNativeGemm). */
  static tryCreate(opts: NativeAttentionOptions = {}): NativeAttention | null {
    checkNumThreads(opts.numThreads);
    const native = tryLoadNativeAddon();
    return native === null ? null : new NativeAttention(native, opts.numThreads ?? 0);
  }

  /** The same kernel from another addon (kiln_tier's, on its own threads: ADR 0026). */
  static fromKernel(
    pagedAttention: NativeAddon["pagedAttention"],
    opts: NativeAttentionOptions = {},
  ): NativeAttention {
    checkNumThreads(opts.numThreads);
    return new NativeAttention({ pagedAttention }, opts.numThreads ?? 0);
  }

  /**
   * PagedAttention.run for every sequence with queryLen < skipQueryLen (0: every sequence);
   * the rows of the other sequences in `out` are left untouched.
   */
  run(
    out: Float32Array,
    q: Float32Array,
    qStride: number,
    qOffset: number,
    layer: KvLayer,
    batch: AttentionBatch,
    shape: AttentionShape,
    skipQueryLen: number,
  ): void {
    this.native.pagedAttention(
      out,
      q,
      qStride,
      qOffset,
      layer.keys,
      layer.values,
      batch.queryLens,
      batch.contextLens,
      batch.blockTableOffsets,
      batch.blockTables,
      shape.numHeads,
      shape.numKvHeads,
      shape.headDim,
      shape.blockSize,
      skipQueryLen,
      this.numThreads,
    );
  }
}

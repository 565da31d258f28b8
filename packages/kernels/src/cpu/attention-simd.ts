import { expNonPositive } from "../sampling/exp-non-positive";
import { type AttentionSimdKernels, tryCreateAttentionKernels } from "./attention-simd-kernels";
import type { AttentionSequence } from "./paged-attention";

export interface SimdLayerShape {
  readonly numKvHeads: number;
  /** A multiple of 4 (one SIMD lane group). */
  readonly headDim: number;
  readonly blockSize: number;
  readonly numBlocks: number;
  /** Longest context a sequence may attend over (sizes the score scratch). */
  readonly maxContextLen: number;
}

const PAGE_BYTES = 65536;
const MAX_PAGES = 65536; // 4 GiB: the most a 32-bit WebAssembly memory can address

function align16(n: number): number {
  return Math.ceil(n / 16) * 16;
}

/**
 * One layer's K/V pool living in its own WebAssembly memory, with the SIMD kernels bound to it.
 * Layout (bytes): q row [headDim] · acc [headDim] · block table [maxContextLen / blockSize] ·
 * scores [maxContextLen] · keys [numBlocks, numKvHeads, blockSize, headDim] · values (same).
 * `keys` and `values` are Float32Array views the KV cache writes through; the memory never
 * grows, so the views stay valid.
 */
export class SimdAttentionLayer {
  readonly keys: Float32Array;
  readonly values: Float32Array;
  private readonly shape: SimdLayerShape;
  private readonly kernels: AttentionSimdKernels;
  private readonly f32: Float32Array;
  private readonly i32: Int32Array;
  private readonly qOff: number;
  private readonly accOff: number;
  private readonly tableOff: number;
  private readonly scoresOff: number;
  private readonly keysOff: number;
  private readonly valuesOff: number;

  private constructor(shape: SimdLayerShape, buffer: ArrayBuffer, kernels: AttentionSimdKernels) {
    this.shape = shape;
    this.kernels = kernels;
    const rowBytes = shape.headDim * 4;
    const poolLen = shape.numBlocks * shape.numKvHeads * shape.blockSize * shape.headDim;
    this.qOff = 0;
    this.accOff = align16(rowBytes);
    this.tableOff = this.accOff + align16(rowBytes);
    this.scoresOff = this.tableOff + align16(4 * Math.ceil(shape.maxContextLen / shape.blockSize));
    this.keysOff = this.scoresOff + align16(4 * shape.maxContextLen);
    this.valuesOff = this.keysOff + poolLen * 4;
    this.f32 = new Float32Array(buffer);
    this.i32 = new Int32Array(buffer);
    this.keys = new Float32Array(buffer, this.keysOff, poolLen);
    this.values = new Float32Array(buffer, this.valuesOff, poolLen);
  }

  /** Bytes of memory the layout needs. */
  static memoryBytes(shape: SimdLayerShape): number {
    const poolBytes = shape.numBlocks * shape.numKvHeads * shape.blockSize * shape.headDim * 4;
    const scratch =
      2 * align16(shape.headDim * 4) +
      align16(4 * Math.ceil(shape.maxContextLen / shape.blockSize)) +
      align16(4 * shape.maxContextLen);
    return scratch + 2 * poolBytes;
  }

  /**
   * A layer with SIMD kernels, or null when they cannot serve this shape: WebAssembly SIMD
   * unavailable, headDim not a multiple of 4, or a pool beyond 4 GiB.
   */
  static tryCreate(shape: SimdLayerShape): SimdAttentionLayer | null {
    if (shape.headDim % 4 !== 0) return null;
    const numPages = Math.ceil(SimdAttentionLayer.memoryBytes(shape) / PAGE_BYTES);
    if (numPages > MAX_PAGES) return null;
    const bound = tryCreateAttentionKernels(numPages);
    return bound === null ? null : new SimdAttentionLayer(shape, bound.buffer, bound.kernels);
  }

  /** PagedAttention.run for one sequence over this layer's pool, `numHeads` query heads. */
  attendSequence(
    out: Float32Array,
    q: Float32Array,
    qStride: number,
    qOffset: number,
    seq: AttentionSequence,
    numHeads: number,
  ): void {
    const { numKvHeads, headDim, blockSize, maxContextLen } = this.shape;
    const { tokenStart, queryLen, contextLen, table } = seq;
    if (contextLen > maxContextLen) {
      throw new Error(`contextLen ${contextLen} exceeds the attention scratch (${maxContextLen})`);
    }
    const groupSize = numHeads / numKvHeads;
    const scale = 1 / Math.sqrt(headDim);
    const rowBytes = headDim * 4;
    const headBytes = blockSize * rowBytes;
    const blockStride = numKvHeads * headBytes;
    const { f32, kernels } = this;
    const qBase = this.qOff / 4;
    const accBase = this.accOff / 4;
    const scoresBase = this.scoresOff / 4;
    this.i32.set(table.subarray(0, Math.ceil(contextLen / blockSize)), this.tableOff / 4);
    for (let i = 0; i < queryLen; i++) {
      const t = tokenStart + i;
      const numKeys = contextLen - queryLen + i + 1;
      for (let h = 0; h < numHeads; h++) {
        const qRow = t * qStride + qOffset + h * headDim;
        for (let d = 0; d < headDim; d++) f32[qBase + d] = q[qRow + d]! * scale;
        const headOff = ((h / groupSize) | 0) * headBytes;
        kernels.scoreRow(
          this.qOff,
          this.tableOff,
          numKeys,
          this.keysOff + headOff,
          blockStride,
          blockSize,
          rowBytes,
          this.scoresOff,
        );
        const sum = expInPlace(f32, scoresBase, numKeys);
        kernels.mixRow(
          this.scoresOff,
          this.tableOff,
          numKeys,
          this.valuesOff + headOff,
          blockStride,
          blockSize,
          rowBytes,
          this.accOff,
        );
        const outRow = t * numHeads * headDim + h * headDim;
        const invSum = 1 / sum;
        for (let d = 0; d < headDim; d++) out[outRow + d] = f32[accBase + d]! * invSum;
      }
    }
  }
}

/** x[i] = exp(x[i] − max) over `len` floats from `base`; returns their sum (softmax numerator). */
function expInPlace(x: Float32Array, base: number, len: number): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let j = base; j < base + len; j++) if (x[j]! > max) max = x[j]!;
  let sum = 0;
  for (let j = base; j < base + len; j++) {
    const e = expNonPositive(x[j]! - max);
    x[j] = e;
    sum += e;
  }
  return sum;
}

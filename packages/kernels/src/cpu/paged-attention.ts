import type { StepInput } from "../backend";
import { expNonPositive } from "../sampling/exp-non-positive";
import { GemmAttention } from "./attention-gemm";
import type { NativeAttention } from "./attention-native";
import type { Gemm } from "./gemm";
import { f32Pools, type KvLayer } from "./kv-cache";

/** Head geometry of paged attention; numHeads must be a multiple of numKvHeads (GQA). */
export interface AttentionShape {
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly blockSize: number;
}

/** The per-sequence part of a step that attention reads (already validated). */
export type AttentionBatch = Pick<
  StepInput,
  "queryLens" | "contextLens" | "blockTableOffsets" | "blockTables"
>;

/**
 * Causal paged attention over the flattened batch: the native kernel when given one, else the
 * WebAssembly SIMD kernels when the layer has them (see SimdAttentionLayer), else this
 * TypeScript loop; long chunks go to the gemm path when it is enabled. Query token i of a sequence
 * (at position contextLen − queryLen + i) attends to positions 0..that position, read from the
 * layer's K/V pool ([numBlocks, numKvHeads, blockSize, headDim], see KvCache) through the
 * sequence's block table; query head h reads KV head floor(h / (numHeads / numKvHeads)).
 * Softmax is exact (two passes over float64 scores), no online rescaling.
 *
 * Owns its scratch (grown to the longest context seen); not reentrant.
 */
/** One sequence of the batch, as the attention paths take it. */
export interface AttentionSequence {
  /** Index of the sequence's first token in the flattened batch. */
  readonly tokenStart: number;
  readonly queryLen: number;
  readonly contextLen: number;
  /** The sequence's block table (at least ceil(contextLen / blockSize) ids). */
  readonly table: Int32Array;
}

export interface PagedAttentionOptions {
  /** When set, every sequence not taken by the gemm path runs here, in one call per layer. */
  readonly native?: NativeAttention | null;
  /** When set, chunks of at least `gemmMinQueryLen` tokens run as matrix multiplies. */
  readonly gemm?: Gemm;
  /** 8 by default. */
  readonly gemmMinQueryLen?: number;
  /** Floats of one score tile of the gemm path (tests shrink it to exercise tiling). */
  readonly gemmMaxTileScores?: number;
}

export class PagedAttention {
  readonly shape: AttentionShape;
  private scores = new Float64Array(1024); // [maxContextLen] one query row's scores, then weights
  private readonly qRow: Float64Array; // [headDim] query × 1/sqrt(headDim)
  private readonly acc: Float64Array; // [headDim] weighted sum of values
  private readonly gemmAttention: GemmAttention | null;
  private readonly gemmMinQueryLen: number;
  private readonly native: NativeAttention | null;

  constructor(shape: AttentionShape, opts: PagedAttentionOptions = {}) {
    if (shape.numHeads % shape.numKvHeads !== 0) {
      throw new Error(`numHeads ${shape.numHeads} is not a multiple of ${shape.numKvHeads}`);
    }
    this.shape = shape;
    this.qRow = new Float64Array(shape.headDim);
    this.acc = new Float64Array(shape.headDim);
    this.gemmAttention = opts.gemm
      ? new GemmAttention(shape, opts.gemm, opts.gemmMaxTileScores)
      : null;
    this.gemmMinQueryLen = opts.gemmMinQueryLen ?? 8;
    this.native = opts.native ?? null;
  }

  /**
   * out[t, h × headDim ..] for every token t and query head h. Query head h of token t is read
   * at q[t × qStride + qOffset + h × headDim]; `out` is [numTokens, numHeads × headDim].
   * `layer` is the layer's K/V pool ([numBlocks, numKvHeads, blockSize, headDim] each).
   * Per sequence: long chunks go to the gemm path, the rest to the native kernel (all in one
   * call), SIMD (when the layer has it) or TypeScript.
   */
  run(
    out: Float32Array,
    q: Float32Array,
    qStride: number,
    qOffset: number,
    layer: KvLayer,
    batch: AttentionBatch,
  ): void {
    const { numHeads, blockSize } = this.shape;
    const hasGemm = this.gemmAttention !== null;
    if (this.native !== null) {
      const skipQueryLen = hasGemm ? this.gemmMinQueryLen : 0;
      this.native.run(out, q, qStride, qOffset, layer, batch, this.shape, skipQueryLen);
      if (!hasGemm) return;
    }
    let tokenStart = 0;
    for (let s = 0; s < batch.queryLens.length; s++) {
      const queryLen = batch.queryLens[s]!;
      const contextLen = batch.contextLens[s]!;
      const tableStart = batch.blockTableOffsets[s]!;
      const numTableBlocks = Math.ceil(contextLen / blockSize);
      const table = batch.blockTables.subarray(tableStart, tableStart + numTableBlocks);
      const seq: AttentionSequence = { tokenStart, queryLen, contextLen, table };
      if (this.gemmAttention !== null && queryLen >= this.gemmMinQueryLen) {
        this.gemmAttention.attendSequence(out, q, qStride, qOffset, layer, seq);
      } else if (this.native !== null) {
        // Done above, in one call for the batch.
      } else if (layer.simd !== null) {
        layer.simd.attendSequence(out, q, qStride, qOffset, seq, numHeads);
      } else {
        this.attendSequence(out, q, qStride, qOffset, layer, seq);
      }
      tokenStart += queryLen;
    }
  }

  /** The TypeScript path for one sequence. */
  private attendSequence(
    out: Float32Array,
    q: Float32Array,
    qStride: number,
    qOffset: number,
    layer: KvLayer,
    seq: AttentionSequence,
  ): void {
    const { keys: kCache, values: vCache } = f32Pools(layer);
    const { numHeads, numKvHeads, headDim } = this.shape;
    const groupSize = numHeads / numKvHeads;
    const scale = 1 / Math.sqrt(headDim);
    const outStride = numHeads * headDim;
    const { tokenStart, queryLen, contextLen, table } = seq;
    if (contextLen > this.scores.length) this.scores = new Float64Array(contextLen * 2);
    const prefixLen = contextLen - queryLen;
    for (let i = 0; i < queryLen; i++) {
      const t = tokenStart + i;
      for (let h = 0; h < numHeads; h++) {
        const qOff = t * qStride + qOffset + h * headDim;
        for (let d = 0; d < headDim; d++) this.qRow[d] = q[qOff + d]! * scale;
        const kvHead = (h / groupSize) | 0;
        const numKeys = prefixLen + i + 1;
        this.scoreKeys(kCache, table, kvHead, numKeys);
        this.softmaxInPlace(numKeys);
        this.mixValues(vCache, table, kvHead, numKeys);
        const outOff = t * outStride + h * headDim;
        for (let d = 0; d < headDim; d++) out[outOff + d] = this.acc[d]!;
      }
    }
  }

  /** scores[j] = qRow · K[j] for j < numKeys; four keys per pass share each qRow load. */
  private scoreKeys(
    kCache: Float32Array,
    table: Int32Array,
    kvHead: number,
    numKeys: number,
  ): void {
    const { numKvHeads, headDim, blockSize } = this.shape;
    const blockStride = numKvHeads * blockSize * headDim;
    const headOff = kvHead * blockSize * headDim;
    const qRow = this.qRow;
    const scores = this.scores;
    for (let j = 0, b = 0; j < numKeys; b++) {
      const base = table[b]! * blockStride + headOff;
      const n = Math.min(blockSize, numKeys - j);
      let p = 0;
      for (; p + 3 < n; p += 4) {
        const k0 = base + p * headDim;
        const k1 = k0 + headDim;
        const k2 = k1 + headDim;
        const k3 = k2 + headDim;
        let s0 = 0;
        let s1 = 0;
        let s2 = 0;
        let s3 = 0;
        for (let d = 0; d < headDim; d++) {
          const qd = qRow[d]!;
          s0 += qd * kCache[k0 + d]!;
          s1 += qd * kCache[k1 + d]!;
          s2 += qd * kCache[k2 + d]!;
          s3 += qd * kCache[k3 + d]!;
        }
        scores[j + p] = s0;
        scores[j + p + 1] = s1;
        scores[j + p + 2] = s2;
        scores[j + p + 3] = s3;
      }
      for (; p < n; p++) {
        const k0 = base + p * headDim;
        let s0 = 0;
        for (let d = 0; d < headDim; d++) s0 += qRow[d]! * kCache[k0 + d]!;
        scores[j + p] = s0;
      }
      j += n;
    }
  }

  /** Turns scores[0..numKeys) into probabilities. */
  private softmaxInPlace(numKeys: number): void {
    const scores = this.scores;
    let max = Number.NEGATIVE_INFINITY;
    for (let j = 0; j < numKeys; j++) if (scores[j]! > max) max = scores[j]!;
    let sum = 0;
    for (let j = 0; j < numKeys; j++) {
      const e = expNonPositive(scores[j]! - max);
      scores[j] = e;
      sum += e;
    }
    const invSum = 1 / sum;
    for (let j = 0; j < numKeys; j++) scores[j] = scores[j]! * invSum;
  }

  /** acc = Σ_j scores[j] × V[j]; four values per pass share each acc load and store. */
  private mixValues(
    vCache: Float32Array,
    table: Int32Array,
    kvHead: number,
    numKeys: number,
  ): void {
    const { numKvHeads, headDim, blockSize } = this.shape;
    const blockStride = numKvHeads * blockSize * headDim;
    const headOff = kvHead * blockSize * headDim;
    const acc = this.acc;
    const weights = this.scores;
    acc.fill(0);
    for (let j = 0, b = 0; j < numKeys; b++) {
      const base = table[b]! * blockStride + headOff;
      const n = Math.min(blockSize, numKeys - j);
      let p = 0;
      for (; p + 3 < n; p += 4) {
        const v0 = base + p * headDim;
        const v1 = v0 + headDim;
        const v2 = v1 + headDim;
        const v3 = v2 + headDim;
        const w0 = weights[j + p]!;
        const w1 = weights[j + p + 1]!;
        const w2 = weights[j + p + 2]!;
        const w3 = weights[j + p + 3]!;
        for (let d = 0; d < headDim; d++) {
          acc[d] =
            acc[d]! +
            w0 * vCache[v0 + d]! +
            w1 * vCache[v1 + d]! +
            w2 * vCache[v2 + d]! +
            w3 * vCache[v3 + d]!;
        }
      }
      for (; p < n; p++) {
        const v0 = base + p * headDim;
        const w0 = weights[j + p]!;
        for (let d = 0; d < headDim; d++) acc[d] = acc[d]! + w0 * vCache[v0 + d]!;
      }
      j += n;
    }
  }
}

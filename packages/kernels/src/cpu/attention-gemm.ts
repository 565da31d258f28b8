import { expNonPositive } from "../sampling/exp-non-positive";
import type { Gemm } from "./gemm";
import { f32Pools, type KvLayer } from "./kv-cache";
import type { AttentionSequence, AttentionShape } from "./paged-attention";

/** Scores held at once (floats) by default: bounds the [rows, keys] tile of long prefills. */
export const DEFAULT_MAX_TILE_SCORES = 1 << 22;
/**
 * Query tokens per tile at most. A tile computes scores up to its last token's position, so
 * smaller tiles skip more of the causally masked triangle; 64 keeps the gemm rows long enough.
 */
const MAX_TILE_TOKENS = 64;

/**
 * Attention of one long query chunk as matrix multiplies, for prefill: per KV head, the keys
 * are gathered once from the blocks and every query row of the head group meets them in one
 * gemm (S = Q·Kᵀ), then P = causal softmax(S) and O = P·V in a second gemm. Each key is read
 * once per chunk instead of once per query token, and the multiply runs at gemm speed.
 * Query rows are tiled so the score tile stays under `maxTileScores` floats.
 *
 * Owns its scratch (grown on demand, never shrunk); not reentrant.
 */
export class GemmAttention {
  private readonly shape: AttentionShape;
  private readonly gemm: Gemm;
  private readonly maxTileScores: number;
  private keys = new Float32Array(0); // [contextLen, headDim] one KV head's keys
  private valuesT = new Float32Array(0); // [headDim, numKeys] one KV head's values, transposed
  private queries = new Float32Array(0); // [rows, headDim] the group's scaled query rows
  private scores = new Float32Array(0); // [rows, numKeys] scores, then probabilities
  private mixed = new Float32Array(0); // [rows, headDim] attention output rows

  constructor(shape: AttentionShape, gemm: Gemm, maxTileScores = DEFAULT_MAX_TILE_SCORES) {
    this.shape = shape;
    this.gemm = gemm;
    this.maxTileScores = maxTileScores;
  }

  /**
   * Writes out[t, h × headDim ..] for the tokens of one sequence (the contract of
   * PagedAttention.run, restricted to that sequence).
   */
  attendSequence(
    out: Float32Array,
    q: Float32Array,
    qStride: number,
    qOffset: number,
    layer: KvLayer,
    seq: AttentionSequence,
  ): void {
    const { table, tokenStart, queryLen, contextLen } = seq;
    const { numHeads, numKvHeads, headDim } = this.shape;
    const groupSize = numHeads / numKvHeads;
    const maxByScores = Math.floor(this.maxTileScores / (groupSize * contextLen));
    const tileLen = Math.max(1, Math.min(queryLen, MAX_TILE_TOKENS, maxByScores));
    this.keys = grow(this.keys, contextLen * headDim);
    this.valuesT = grow(this.valuesT, contextLen * headDim);
    this.queries = grow(this.queries, groupSize * tileLen * headDim);
    this.scores = grow(this.scores, groupSize * tileLen * contextLen);
    this.mixed = grow(this.mixed, groupSize * tileLen * headDim);
    const pools = f32Pools(layer);
    for (let g = 0; g < numKvHeads; g++) {
      this.gatherKeys(pools.keys, table, g, contextLen);
      for (let i0 = 0; i0 < queryLen; i0 += tileLen) {
        const rowsPerHead = Math.min(tileLen, queryLen - i0);
        // The last token of the tile sees the most keys; later keys are masked for every row.
        const numKeys = contextLen - queryLen + i0 + rowsPerHead;
        this.gatherValuesT(pools.values, table, g, numKeys);
        const tile = { tokenStart, i0, rowsPerHead, numKeys, prefixLen: contextLen - queryLen };
        this.attendTile(out, q, qStride, qOffset, g, tile);
      }
    }
  }

  private attendTile(
    out: Float32Array,
    q: Float32Array,
    qStride: number,
    qOffset: number,
    kvHead: number,
    tile: {
      tokenStart: number;
      i0: number;
      rowsPerHead: number;
      numKeys: number;
      prefixLen: number;
    },
  ): void {
    const { numHeads, numKvHeads, headDim } = this.shape;
    const groupSize = numHeads / numKvHeads;
    const { tokenStart, i0, rowsPerHead, numKeys, prefixLen } = tile;
    const numRows = groupSize * rowsPerHead;
    const scale = 1 / Math.sqrt(headDim);
    const { queries, scores, mixed } = this;
    // Row r = hq × rowsPerHead + i: query head kvHead × groupSize + hq, token i0 + i.
    for (let hq = 0; hq < groupSize; hq++) {
      const h = kvHead * groupSize + hq;
      for (let i = 0; i < rowsPerHead; i++) {
        const src = (tokenStart + i0 + i) * qStride + qOffset + h * headDim;
        const dst = (hq * rowsPerHead + i) * headDim;
        for (let d = 0; d < headDim; d++) queries[dst + d] = q[src + d]! * scale;
      }
    }
    this.gemm.matmulTransB(queries, this.keys, scores, numRows, numKeys, headDim);
    for (let r = 0; r < numRows; r++) {
      const numVisible = prefixLen + i0 + (r % rowsPerHead) + 1;
      causalSoftmaxRow(scores, r * numKeys, numVisible, numKeys);
    }
    this.gemm.matmulTransB(scores, this.valuesT, mixed, numRows, headDim, numKeys);
    const outStride = numHeads * headDim;
    for (let hq = 0; hq < groupSize; hq++) {
      const h = kvHead * groupSize + hq;
      for (let i = 0; i < rowsPerHead; i++) {
        const src = (hq * rowsPerHead + i) * headDim;
        const dst = (tokenStart + i0 + i) * outStride + h * headDim;
        out.set(mixed.subarray(src, src + headDim), dst);
      }
    }
  }

  /** keys[j, :] = K of KV head `kvHead` at position j, for j < numKeys. */
  private gatherKeys(pool: Float32Array, table: Int32Array, kvHead: number, numKeys: number): void {
    const { numKvHeads, headDim, blockSize } = this.shape;
    const headLen = blockSize * headDim;
    for (let j = 0, b = 0; j < numKeys; b++, j += blockSize) {
      const src = (table[b]! * numKvHeads + kvHead) * headLen;
      const n = Math.min(blockSize, numKeys - j) * headDim;
      this.keys.set(pool.subarray(src, src + n), j * headDim);
    }
  }

  /** valuesT[d, j] = V of KV head `kvHead` at position j, dimension d, for j < numKeys. */
  private gatherValuesT(pool: Float32Array, table: Int32Array, kvHead: number, numKeys: number) {
    const { numKvHeads, headDim, blockSize } = this.shape;
    const headLen = blockSize * headDim;
    const valuesT = this.valuesT;
    for (let j = 0; j < numKeys; j++) {
      const b = (j / blockSize) | 0;
      const src = (table[b]! * numKvHeads + kvHead) * headLen + (j - b * blockSize) * headDim;
      for (let d = 0; d < headDim; d++) valuesT[d * numKeys + j] = pool[src + d]!;
    }
  }
}

/** Softmax of row[off .. off + numVisible), zeroes row[off + numVisible .. off + rowLen). */
function causalSoftmaxRow(
  row: Float32Array,
  off: number,
  numVisible: number,
  rowLen: number,
): void {
  let max = Number.NEGATIVE_INFINITY;
  for (let j = off; j < off + numVisible; j++) if (row[j]! > max) max = row[j]!;
  let sum = 0;
  for (let j = off; j < off + numVisible; j++) {
    const e = expNonPositive(row[j]! - max);
    row[j] = e;
    sum += e;
  }
  const invSum = 1 / sum;
  for (let j = off; j < off + numVisible; j++) row[j] = row[j]! * invSum;
  row.fill(0, off + numVisible, off + rowLen);
}

function grow(buf: Float32Array<ArrayBuffer>, len: number): Float32Array<ArrayBuffer> {
  return buf.length >= len ? buf : new Float32Array(Math.max(len, buf.length * 2));
}

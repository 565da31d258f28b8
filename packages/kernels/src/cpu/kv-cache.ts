/**
 * The paged KV pool of the CPU backend. Per layer, K and V are each one Float32Array of shape
 * [numBlocks, numKvHeads, blockSize, headDim]: a block's keys for one KV head are contiguous
 * (blockSize × headDim floats), which is what the attention inner loop streams through.
 * Slot s (StepInput.slotMapping) is block floor(s / blockSize), offset s mod blockSize.
 */
export interface KvCacheShape {
  readonly numLayers: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly numBlocks: number;
  readonly blockSize: number;
}

export class KvCache {
  readonly shape: KvCacheShape;
  /** [numLayers] of [numBlocks, numKvHeads, blockSize, headDim]. */
  readonly keys: Float32Array[];
  /** [numLayers] of [numBlocks, numKvHeads, blockSize, headDim]. */
  readonly values: Float32Array[];
  /** Floats per block per layer: numKvHeads × blockSize × headDim. */
  readonly blockStride: number;

  constructor(shape: KvCacheShape) {
    this.shape = shape;
    this.blockStride = shape.numKvHeads * shape.blockSize * shape.headDim;
    const layerLen = shape.numBlocks * this.blockStride;
    // One typed array per layer and tensor keeps each far below V8's 4 GiB array limit.
    if (layerLen * 4 > 2 ** 32) {
      throw new Error(
        `KV pool too large: ${shape.numBlocks} blocks need ${layerLen * 4} bytes per layer, over 4 GiB`,
      );
    }
    this.keys = [];
    this.values = [];
    for (let l = 0; l < shape.numLayers; l++) {
      this.keys.push(new Float32Array(layerLen));
      this.values.push(new Float32Array(layerLen));
    }
  }

  /** Copies every layer's K and V of block `src` into block `dst` (copy-on-write). */
  copyBlock(src: number, dst: number): void {
    const stride = this.blockStride;
    for (let l = 0; l < this.shape.numLayers; l++) {
      this.keys[l]!.copyWithin(dst * stride, src * stride, (src + 1) * stride);
      this.values[l]!.copyWithin(dst * stride, src * stride, (src + 1) * stride);
    }
  }

  /**
   * Writes K and V of `numTokens` tokens of `layer` into their slots. Token t's KV head g is
   * read from qkv[t × rowStride + kOffset + g × headDim] (and vOffset for V), so the fused
   * [numTokens, qDim + 2 × kvDim] projection output is consumed without a copy.
   */
  writeTokens(
    layer: number,
    qkv: Float32Array,
    numTokens: number,
    rowStride: number,
    kOffset: number,
    vOffset: number,
    slotMapping: Int32Array,
  ): void {
    const { numKvHeads, blockSize, headDim } = this.shape;
    const kCache = this.keys[layer]!;
    const vCache = this.values[layer]!;
    const headStride = blockSize * headDim;
    for (let t = 0; t < numTokens; t++) {
      const slot = slotMapping[t]!;
      const block = (slot / blockSize) | 0;
      const slotBase = block * this.blockStride + (slot - block * blockSize) * headDim;
      const rowOff = t * rowStride;
      for (let g = 0; g < numKvHeads; g++) {
        const dst = slotBase + g * headStride;
        const kSrc = rowOff + kOffset + g * headDim;
        const vSrc = rowOff + vOffset + g * headDim;
        for (let d = 0; d < headDim; d++) {
          kCache[dst + d] = qkv[kSrc + d]!;
          vCache[dst + d] = qkv[vSrc + d]!;
        }
      }
    }
  }
}

import type { KvCacheDtype } from "../backend";
import { SimdAttentionLayer } from "./attention-simd";
import { newLargeBuffer } from "./native-addon";
import { f32ToBf16Bits } from "./weight-formats";

/**
 * The paged KV pool of the CPU backend. Per layer, K and V are each one Float32Array of shape
 * [numBlocks, numKvHeads, blockSize, headDim]: a block's keys for one KV head are contiguous
 * (blockSize × headDim floats), which is what the attention inner loop streams through.
 * Slot s (StepInput.slotMapping) is block floor(s / blockSize), offset s mod blockSize.
 * With KILN_KV_CACHE_DTYPE=bf16 the arrays are Uint16Arrays of bfloat16 bits (rounded to
 * nearest, ties to even, when written), read by the native attention kernel only.
 */
export interface KvCacheShape {
  readonly numLayers: number;
  readonly numKvHeads: number;
  readonly headDim: number;
  readonly numBlocks: number;
  readonly blockSize: number;
}

/** A layer's K or V pool: float32, or bfloat16 bits. */
export type KvPool = Float32Array | Uint16Array;

/** One layer's pool: plain arrays, or views into a SIMD attention layer's memory. */
export interface KvLayer {
  /** [numBlocks, numKvHeads, blockSize, headDim] */
  readonly keys: KvPool;
  /** [numBlocks, numKvHeads, blockSize, headDim] */
  readonly values: KvPool;
  /** Set when attention over this layer runs the WebAssembly SIMD kernels. */
  readonly simd: SimdAttentionLayer | null;
}

/** The layer's pools as float32 (the TypeScript, gemm and SIMD attention paths read only those). */
export function f32Pools(layer: KvLayer): { keys: Float32Array; values: Float32Array } {
  const { keys, values } = layer;
  if (!(keys instanceof Float32Array) || !(values instanceof Float32Array)) {
    throw new Error("a bf16 KV cache is read by the native attention kernel only");
  }
  return { keys, values };
}

export interface KvCacheOptions {
  /** Longest context any sequence reaches (the model's maxModelLen). */
  readonly maxContextLen: number;
  /** Use WebAssembly SIMD attention where the shape allows; true by default. */
  readonly useSimd?: boolean;
  /** Writes new tokens' K/V (writeTokens); `writeKvRows` by default. */
  readonly writeKv?: KvWriter;
  /** "f32" (default) or "bf16" (Uint16Array pools, no SIMD layer). */
  readonly dtype?: KvCacheDtype;
}

/**
 * Writes K and V of `numTokens` tokens into their slots of one layer's pool (keys/values
 * [numBlocks, numKvHeads, blockSize, headDim]). Token t's KV head g is read from
 * qkv[t × rowStride + kOffset + g × headDim] (and vOffset for V).
 */
export type KvWriter = (
  keys: KvPool,
  values: KvPool,
  qkv: Float32Array,
  numTokens: number,
  rowStride: number,
  kOffset: number,
  vOffset: number,
  slotMapping: Int32Array,
  numKvHeads: number,
  blockSize: number,
  headDim: number,
) => void;

/** The TypeScript KvWriter (bf16 pools get each value rounded to nearest, ties to even). */
export function writeKvRows(
  ...[
    kCache,
    vCache,
    qkv,
    numTokens,
    rowStride,
    kOffset,
    vOffset,
    slotMapping,
    numKvHeads,
    blockSize,
    headDim,
  ]: Parameters<KvWriter>
): void {
  if (kCache instanceof Uint16Array !== vCache instanceof Uint16Array) {
    throw new TypeError("writeKv: keys and values differ in type");
  }
  const headStride = blockSize * headDim;
  const blockStride = numKvHeads * headStride;
  for (let t = 0; t < numTokens; t++) {
    const slot = slotMapping[t]!;
    const block = (slot / blockSize) | 0;
    const slotBase = block * blockStride + (slot - block * blockSize) * headDim;
    const rowOff = t * rowStride;
    for (let g = 0; g < numKvHeads; g++) {
      const dst = slotBase + g * headStride;
      const kSrc = rowOff + kOffset + g * headDim;
      const vSrc = rowOff + vOffset + g * headDim;
      if (kCache instanceof Uint16Array) {
        for (let d = 0; d < headDim; d++) {
          kCache[dst + d] = f32ToBf16Bits(qkv[kSrc + d]!);
          vCache[dst + d] = f32ToBf16Bits(qkv[vSrc + d]!);
        }
        continue;
      }
      for (let d = 0; d < headDim; d++) {
        kCache[dst + d] = qkv[kSrc + d]!;
        vCache[dst + d] = qkv[vSrc + d]!;
      }
    }
  }
}

/**
 * Allocates one layer: inside a SIMD attention layer's memory when possible, else as plain
 * arrays. Either way one array per layer and tensor stays below V8's 4 GiB array limit.
 */
export function createKvLayer(shape: KvCacheShape, opts: KvCacheOptions): KvLayer {
  const isBf16 = opts.dtype === "bf16";
  const simd =
    (opts.useSimd ?? true) && !isBf16 ? SimdAttentionLayer.tryCreate({ ...shape, ...opts }) : null;
  if (simd !== null) return { keys: simd.keys, values: simd.values, simd };
  const layerLen = shape.numBlocks * shape.numKvHeads * shape.blockSize * shape.headDim;
  const elemBytes = isBf16 ? 2 : 4;
  if (layerLen * elemBytes > 2 ** 32) {
    throw new Error(
      `KV pool too large: ${shape.numBlocks} blocks need ${layerLen * elemBytes} bytes per layer, over 4 GiB`,
    );
  }
  // In huge pages where the addon loads: attention reads the pool's scattered blocks each step.
  const [keys, values] = [
    newLargeBuffer(layerLen * elemBytes),
    newLargeBuffer(layerLen * elemBytes),
  ];
  if (isBf16) return { keys: new Uint16Array(keys), values: new Uint16Array(values), simd: null };
  return { keys: new Float32Array(keys), values: new Float32Array(values), simd: null };
}

export class KvCache {
  readonly shape: KvCacheShape;
  /** [numLayers] */
  readonly layers: KvLayer[];
  /** Floats per block per layer: numKvHeads × blockSize × headDim. */
  readonly blockStride: number;
  private readonly writeKv: KvWriter;

  constructor(shape: KvCacheShape, opts: KvCacheOptions) {
    this.shape = shape;
    this.writeKv = opts.writeKv ?? writeKvRows;
    this.blockStride = shape.numKvHeads * shape.blockSize * shape.headDim;
    this.layers = [];
    for (let l = 0; l < shape.numLayers; l++) this.layers.push(createKvLayer(shape, opts));
  }

  /** Copies every layer's K and V of block `src` into block `dst` (copy-on-write). */
  copyBlock(src: number, dst: number): void {
    const stride = this.blockStride;
    for (let l = 0; l < this.shape.numLayers; l++) {
      const { keys, values } = this.layers[l]!;
      keys.copyWithin(dst * stride, src * stride, (src + 1) * stride);
      values.copyWithin(dst * stride, src * stride, (src + 1) * stride);
    }
  }

  /**
   * Writes K and V of `numTokens` tokens of `layer` into their slots (see KvWriter), so the
   * fused [numTokens, qDim + 2 × kvDim] projection output is consumed without a copy.
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
    const { keys, values } = this.layers[layer]!;
    this.writeKv(
      keys,
      values,
      qkv,
      numTokens,
      rowStride,
      kOffset,
      vOffset,
      slotMapping,
      numKvHeads,
      blockSize,
      headDim,
    );
  }
}

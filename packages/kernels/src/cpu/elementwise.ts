/**
 * The small row-wise operations of the Llama forward pass. Each reads and writes row-major
 * buffers; `out` may alias `x` where noted.
 */

/**
 * out[r, :] = x[r, :] / sqrt(mean(x[r, :]²) + eps) × weight, for `numRows` rows of `dim`
 * (HF LlamaRMSNorm). The sum of squares runs in float64. `out` may alias `x`.
 */
export function rmsNorm(
  out: Float32Array,
  x: Float32Array,
  weight: Float32Array,
  numRows: number,
  dim: number,
  eps: number,
): void {
  for (let r = 0; r < numRows; r++) {
    const off = r * dim;
    let sumSq = 0;
    for (let i = 0; i < dim; i++) {
      const v = x[off + i]!;
      sumSq += v * v;
    }
    // HF rounds the normalised activations to the weight dtype (f32) before scaling by weight.
    const invRms = 1 / Math.sqrt(sumSq / dim + eps);
    for (let i = 0; i < dim; i++) out[off + i] = Math.fround(x[off + i]! * invRms) * weight[i]!;
  }
}

/**
 * out[r, i] = silu(gateUp[r, i]) × gateUp[r, ffnLen + i]: gate and up projections are fused as
 * one [numRows, 2 × ffnLen] gemm output, gate first.
 */
export function siluMul(
  out: Float32Array,
  gateUp: Float32Array,
  numRows: number,
  ffnLen: number,
): void {
  for (let r = 0; r < numRows; r++) {
    const inOff = r * 2 * ffnLen;
    const outOff = r * ffnLen;
    for (let i = 0; i < ffnLen; i++) {
      const g = gateUp[inOff + i]!;
      out[outOff + i] = (g / (1 + Math.exp(-g))) * gateUp[inOff + ffnLen + i]!;
    }
  }
}

/** out[t, :] = table[tokenIds[t], :] for `numTokens` tokens; ids must already be validated. */
export function embed(
  out: Float32Array,
  table: Float32Array,
  tokenIds: Int32Array,
  numTokens: number,
  dim: number,
): void {
  for (let t = 0; t < numTokens; t++) {
    const src = tokenIds[t]! * dim;
    out.set(table.subarray(src, src + dim), t * dim);
  }
}

/** Adds bias[c] to columns c of `numRows` rows of width `rowLen`. */
export function addBias(
  buf: Float32Array,
  bias: Float32Array,
  numRows: number,
  rowLen: number,
): void {
  for (let r = 0; r < numRows; r++) {
    const off = r * rowLen;
    for (let c = 0; c < rowLen; c++) buf[off + c] = buf[off + c]! + bias[c]!;
  }
}

/**
 * Dense causal attention in float64, written for clarity: the yardstick paged attention is
 * tested against. No blocks, no scratch reuse, no unrolling.
 */
export interface DenseAttentionShape {
  readonly numHeads: number;
  readonly numKvHeads: number;
  readonly headDim: number;
}

/**
 * Attention of one sequence. `q` is [queryLen, numHeads × headDim] for the last `queryLen`
 * positions; `k` and `v` are [contextLen, numKvHeads × headDim] for positions 0..contextLen−1
 * (RoPE already applied). Query i (position contextLen − queryLen + i) attends to positions
 * 0..its own. Returns a new [queryLen, numHeads × headDim] array.
 */
export function referenceCausalAttention(
  q: ArrayLike<number>,
  k: ArrayLike<number>,
  v: ArrayLike<number>,
  queryLen: number,
  contextLen: number,
  shape: DenseAttentionShape,
): Float64Array {
  const { numHeads, numKvHeads, headDim } = shape;
  const qDim = numHeads * headDim;
  const kvDim = numKvHeads * headDim;
  const groupSize = numHeads / numKvHeads;
  const out = new Float64Array(queryLen * qDim); // [queryLen, numHeads × headDim]
  for (let i = 0; i < queryLen; i++) {
    const numKeys = contextLen - queryLen + i + 1;
    for (let h = 0; h < numHeads; h++) {
      const g = Math.floor(h / groupSize);
      const scores = new Float64Array(numKeys);
      for (let j = 0; j < numKeys; j++) {
        let dot = 0;
        for (let d = 0; d < headDim; d++) {
          dot += q[i * qDim + h * headDim + d]! * k[j * kvDim + g * headDim + d]!;
        }
        scores[j] = dot / Math.sqrt(headDim);
      }
      const max = Math.max(...scores);
      let sum = 0;
      for (let j = 0; j < numKeys; j++) {
        scores[j] = Math.exp(scores[j]! - max);
        sum += scores[j]!;
      }
      for (let d = 0; d < headDim; d++) {
        let acc = 0;
        for (let j = 0; j < numKeys; j++)
          acc += (scores[j]! / sum) * v[j * kvDim + g * headDim + d]!;
        out[i * qDim + h * headDim + d] = acc;
      }
    }
  }
  return out;
}

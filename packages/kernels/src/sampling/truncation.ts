import type { SamplingParams } from "../backend";
import { expNonPositive } from "./exp-non-positive";
import type { SamplingScratch } from "./scratch";
import { selectTopKTopP } from "./top-k-top-p";

/**
 * Random sampling from one row of processed logits (ADR 0006): divide by temperature, keep the
 * top-k, then the top-p nucleus, then drop tokens below min-p × the top probability, renormalise
 * and invert the CDF at a uniform draw `u` ∈ [0, 1).
 *
 * Without top-k / top-p there is no sort: min-p is a threshold on exp((x − max) / T), and the
 * CDF is walked in token-id order. With them, see top-k-top-p.ts.
 */

/** Greedy choice: the highest logit, ties to the lowest id; NaN never wins; 0 if all are −∞/NaN. */
export function argmax(row: Float32Array): number {
  let best = 0;
  let bestValue = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < row.length; i++) {
    const v = row[i]!;
    if (v > bestValue) {
      bestValue = v;
      best = i;
    }
  }
  return best;
}

/**
 * Draws a token id from `row` (length `scratch.vocabSize`, not mutated) with `params.temperature`
 * > 0. Uses `scratch.weights`, `candidates` and the buckets. Always returns a token: the most
 * likely one survives every truncation. A row with no finite maximum falls back to `argmax`.
 */
export function sampleTemperature(
  row: Float32Array,
  params: SamplingParams,
  u: number,
  scratch: SamplingScratch,
): number {
  const maxLogit = row[argmax(row)]!;
  if (!Number.isFinite(maxLogit)) return argmax(row);
  const vocabSize = row.length;
  const hasTopK = params.topK > 0 && params.topK < vocabSize;
  const hasTopP = params.topP < 1;
  if (!hasTopK && !hasTopP) return drawUnsorted(row, maxLogit, params, u, scratch);
  const { candidates, weights } = scratch;
  const invTemperature = 1 / params.temperature;
  let numKept = selectTopKTopP(row, maxLogit, invTemperature, params.topK, params.topP, scratch);
  // Min-p after top-k / top-p (vLLM v0 order). The top token is kept and weighs exactly 1, so
  // "minP × the top probability" is a threshold of minP on the weights.
  if (params.minP > 0) {
    let numPassing = 0;
    for (let j = 0; j < numKept; j++) {
      const id = candidates[j]!;
      if (weights[id]! >= params.minP) candidates[numPassing++] = id;
    }
    numKept = numPassing;
  }
  const list = candidates.subarray(0, numKept);
  let mass = 0;
  for (let j = 0; j < numKept; j++) mass += weights[list[j]!]!;
  const target = u * mass;
  let cum = 0;
  for (let j = 0; j < numKept; j++) {
    cum += weights[list[j]!]!;
    if (cum > target) return list[j]!;
  }
  return list[numKept - 1]!;
}

function drawUnsorted(
  row: Float32Array,
  maxLogit: number,
  params: SamplingParams,
  u: number,
  scratch: SamplingScratch,
): number {
  const { weights } = scratch;
  const { minP } = params;
  // Multiplying by 1/T instead of dividing saves ~20% of this exp-bound loop.
  const invTemperature = 1 / params.temperature;
  // The top token has weight exp(0) = 1, so min-p × top probability is just minP here.
  const exp = expNonPositive;
  let total = 0;
  for (let i = 0; i < row.length; i++) {
    let w = exp((row[i]! - maxLogit) * invTemperature); // 0 for NaN
    if (w < minP) w = 0;
    weights[i] = w;
    total += w;
  }
  const target = u * total;
  let cum = 0;
  let last = 0;
  for (let i = 0; i < row.length; i++) {
    const w = weights[i]!;
    if (w === 0) continue;
    cum += w;
    last = i;
    if (cum > target) return i;
  }
  // Only reachable when u × total rounds up to total.
  return last;
}

import type { SamplingParams } from "../backend";
import { BUCKET_RANGE_NATS, BUCKETS_PER_NAT, NUM_BUCKETS, type SamplingScratch } from "./scratch";

/**
 * Random sampling from one row of processed logits (ADR 0006): divide by temperature, keep the
 * top-k, then the top-p nucleus, then drop tokens below min-p × the top probability, renormalise
 * and invert the CDF at a uniform draw `u` ∈ [0, 1).
 *
 * Without top-k / top-p there is no sort: min-p is a threshold on exp((x − max) / T), and the
 * CDF is walked in token-id order. With them, a histogram of log-probabilities (buckets of
 * 1/BUCKETS_PER_NAT nats below the top logit) bounds which tokens can survive, and only those
 * are sorted: O(vocab + c log c) for c candidates, usually a few hundred at most.
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
  return drawSorted(row, maxLogit, params, hasTopK, u, scratch);
}

function drawUnsorted(
  row: Float32Array,
  maxLogit: number,
  params: SamplingParams,
  u: number,
  scratch: SamplingScratch,
): number {
  const { weights } = scratch;
  const { temperature, minP } = params;
  // The top token has weight exp(0) = 1, so min-p × top probability is just minP here.
  let total = 0;
  for (let i = 0; i < row.length; i++) {
    let w = Math.exp((row[i]! - maxLogit) / temperature);
    if (!(w >= minP)) w = 0; // also zeroes NaN
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

function drawSorted(
  row: Float32Array,
  maxLogit: number,
  params: SamplingParams,
  hasTopK: boolean,
  u: number,
  scratch: SamplingScratch,
): number {
  const { weights, candidates } = scratch;
  const total = fillWeightsAndBuckets(row, maxLogit, params.temperature, scratch);
  const bound = hasTopK
    ? bucketBoundByCount(scratch, params.topK)
    : bucketBoundByMass(scratch, params.topP * total);
  const numCandidates = collectCandidates(row, maxLogit, params.temperature, bound, scratch);
  const sorted = candidates.subarray(0, numCandidates);
  // Most likely first, ties to the lower id, so the kept set is deterministic.
  sorted.sort((a, b) => weights[b]! - weights[a]! || a - b);

  let numKept = hasTopK ? Math.min(params.topK, numCandidates) : numCandidates;
  const mass = hasTopK ? prefixMass(sorted, numKept, weights) : total;
  if (params.topP < 1) numKept = nucleusLen(sorted, numKept, weights, params.topP * mass);
  if (params.minP > 0) numKept = minPLen(sorted, numKept, weights, params.minP);

  const target = u * prefixMass(sorted, numKept, weights);
  let cum = 0;
  for (let j = 0; j < numKept; j++) {
    cum += weights[sorted[j]!]!;
    if (cum > target) return sorted[j]!;
  }
  return sorted[numKept - 1]!;
}

function bucketOf(z: number): number {
  const d = -z * BUCKETS_PER_NAT;
  // NaN and anything below BUCKET_RANGE_NATS nats land in the last bucket.
  return d < BUCKET_RANGE_NATS * BUCKETS_PER_NAT ? Math.floor(d) : NUM_BUCKETS - 1;
}

/** weights[i] = exp((x − max) / T) (NaN → 0), bucket histograms; returns the total weight. */
function fillWeightsAndBuckets(
  row: Float32Array,
  maxLogit: number,
  temperature: number,
  scratch: SamplingScratch,
): number {
  const { weights, bucketWeights, bucketCounts } = scratch;
  bucketWeights.fill(0);
  bucketCounts.fill(0);
  let total = 0;
  for (let i = 0; i < row.length; i++) {
    const z = (row[i]! - maxLogit) / temperature;
    let w = Math.exp(z);
    if (!(w >= 0)) w = 0;
    weights[i] = w;
    total += w;
    const b = bucketOf(z);
    bucketCounts[b]!++;
    bucketWeights[b]! += w;
  }
  return total;
}

/** The first bucket at which at least `k` tokens lie in buckets 0..b. */
function bucketBoundByCount(scratch: SamplingScratch, k: number): number {
  let count = 0;
  for (let b = 0; b < NUM_BUCKETS; b++) {
    count += scratch.bucketCounts[b]!;
    if (count >= k) return b;
  }
  return NUM_BUCKETS - 1;
}

/** The first bucket at which buckets 0..b hold at least `mass`; the nucleus lies within them. */
function bucketBoundByMass(scratch: SamplingScratch, mass: number): number {
  let cum = 0;
  for (let b = 0; b < NUM_BUCKETS; b++) {
    cum += scratch.bucketWeights[b]!;
    if (cum >= mass) return b;
  }
  return NUM_BUCKETS - 1;
}

function collectCandidates(
  row: Float32Array,
  maxLogit: number,
  temperature: number,
  bound: number,
  scratch: SamplingScratch,
): number {
  const { candidates } = scratch;
  let n = 0;
  for (let i = 0; i < row.length; i++) {
    // Same expression as fillWeightsAndBuckets, so every token lands in the same bucket.
    if (bucketOf((row[i]! - maxLogit) / temperature) <= bound) candidates[n++] = i;
  }
  return n;
}

function prefixMass(sorted: Int32Array, len: number, weights: Float64Array): number {
  let mass = 0;
  for (let j = 0; j < len; j++) mass += weights[sorted[j]!]!;
  return mass;
}

/** Length of the shortest prefix whose mass reaches `mass`; at least 1. */
function nucleusLen(sorted: Int32Array, len: number, weights: Float64Array, mass: number): number {
  let cum = 0;
  for (let j = 0; j < len; j++) {
    cum += weights[sorted[j]!]!;
    if (cum >= mass) return j + 1;
  }
  return len;
}

/** Length of the prefix whose weights are ≥ minP × the top weight; at least 1. */
function minPLen(sorted: Int32Array, len: number, weights: Float64Array, minP: number): number {
  const threshold = minP * weights[sorted[0]!]!;
  let j = 1;
  while (j < len && weights[sorted[j]!]! >= threshold) j++;
  return j;
}

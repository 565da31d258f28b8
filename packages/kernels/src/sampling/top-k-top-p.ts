import { expNonPositive } from "./exp-non-positive";
import type { SamplingScratch } from "./scratch";

/**
 * Top-k and top-p without sorting the vocabulary (ADR 0006). One pass puts every token in a
 * bucket of its log-probability below the top logit (1/BUCKETS_PER_NAT nats wide). The bucket
 * where the k-th token (or the p-th quantile of mass) falls is the only one that needs sorting:
 * tokens in buckets above it are all kept, tokens below it all dropped. Cost: O(vocab) plus a
 * sort of one bucket, typically tens to hundreds of tokens; near-uniform logits put everything
 * in one bucket and degrade to a full sort.
 *
 * Weights are exp((logit − max) / T), so the top token weighs exactly 1.
 */

// Kept local rather than imported: under tsx/vitest an imported binding is a getter call on
// every access, which made these loops 5× slower.
const BUCKETS_PER_NAT = 4;
const BUCKET_RANGE = 64 * BUCKETS_PER_NAT;
/** Buckets 0..BUCKET_RANGE-1 cover 64 nats below the top logit; the last one holds the rest. */
export const NUM_BUCKETS = BUCKET_RANGE + 1;

/**
 * Writes the tokens that survive top-k (when 0 < topK < vocab) then top-p (when topP < 1) into
 * `scratch.candidates[0, n)` and their weights into `scratch.weights`; returns n ≥ 1. The top
 * token always survives. The list is in a deterministic order (not necessarily by probability),
 * fit for drawing by inverse CDF. Other entries of `weights` are left unspecified.
 */
export function selectTopKTopP(
  row: Float32Array,
  maxLogit: number,
  invTemperature: number,
  topK: number,
  topP: number,
  scratch: SamplingScratch,
): number {
  if (topK > 0 && topK < row.length) {
    fillBuckets(row, maxLogit, invTemperature, scratch, false);
    const bound = boundByCount(scratch.bucketCounts, topK);
    const { numAbove, numAtBound } = splitAtBound(row, maxLogit, invTemperature, bound, scratch);
    const atBound = sortAtBound(scratch, numAtBound);
    let numKept = numAbove + takeInto(scratch, numAbove, atBound, topK - numAbove);
    if (topP < 1) {
      // Top-p runs over the renormalised top-k set, which must now be in probability order.
      const kept = scratch.candidates.subarray(0, numKept);
      sortByWeight(kept, scratch.weights);
      numKept = nucleusLen(kept, scratch.weights, 0, topP * listMass(kept, scratch.weights));
    }
    return numKept;
  }
  const total = fillBuckets(row, maxLogit, invTemperature, scratch, true);
  const target = topP * total;
  const bound = boundByMass(scratch.bucketWeights, target);
  let massAbove = 0;
  for (let b = 0; b < bound; b++) massAbove += scratch.bucketWeights[b]!;
  const { numAbove, numAtBound } = splitAtBound(row, maxLogit, invTemperature, bound, scratch);
  const atBound = sortAtBound(scratch, numAtBound);
  const numTaken = nucleusLen(atBound, scratch.weights, massAbove, target);
  return numAbove + takeInto(scratch, numAbove, atBound, numTaken);
}

function bucketOf(z: number): number {
  const d = -z * BUCKETS_PER_NAT;
  // NaN and anything more than 64 nats below the top land in the last bucket. `| 0` floors
  // d ≥ 0 and, unlike Math.floor, turns the top token's −0 into 0 (−0 indices deoptimise).
  return d < BUCKET_RANGE ? d | 0 : BUCKET_RANGE;
}

/**
 * Bucket of every token and the count per bucket; with `hasWeights`, also every weight and the
 * mass per bucket (top-p needs them; top-k alone spares the exp). Returns the total weight.
 */
function fillBuckets(
  row: Float32Array,
  maxLogit: number,
  invTemperature: number,
  scratch: SamplingScratch,
  hasWeights: boolean,
): number {
  const { weights, bucketIds, bucketWeights, bucketCounts } = scratch;
  bucketWeights.fill(0);
  bucketCounts.fill(0);
  const exp = expNonPositive;
  let total = 0;
  for (let i = 0; i < row.length; i++) {
    const z = (row[i]! - maxLogit) * invTemperature;
    const b = bucketOf(z);
    bucketIds[i] = b;
    bucketCounts[b]!++;
    if (hasWeights) {
      const w = exp(z); // 0 for NaN
      weights[i] = w;
      total += w;
      bucketWeights[b]! += w;
    }
  }
  return total;
}

function boundByCount(bucketCounts: Int32Array, k: number): number {
  let count = 0;
  for (let b = 0; b < BUCKET_RANGE; b++) {
    count += bucketCounts[b]!;
    if (count >= k) return b;
  }
  return BUCKET_RANGE;
}

function boundByMass(bucketWeights: Float64Array, mass: number): number {
  let cum = 0;
  for (let b = 0; b < BUCKET_RANGE; b++) {
    cum += bucketWeights[b]!;
    if (cum >= mass) return b;
  }
  return BUCKET_RANGE;
}

/**
 * Tokens above the bound bucket go to the front of `candidates` in id order, the bound bucket's
 * to the back; both get their weights (recomputed with the same expression as fillBuckets).
 */
function splitAtBound(
  row: Float32Array,
  maxLogit: number,
  invTemperature: number,
  bound: number,
  scratch: SamplingScratch,
): { numAbove: number; numAtBound: number } {
  const { candidates, weights, bucketIds } = scratch;
  const last = row.length - 1;
  const exp = expNonPositive;
  let numAbove = 0;
  let numAtBound = 0;
  for (let i = 0; i < row.length; i++) {
    const b = bucketIds[i]!;
    if (b > bound) continue;
    weights[i] = exp((row[i]! - maxLogit) * invTemperature);
    if (b < bound) candidates[numAbove++] = i;
    else candidates[last - numAtBound++] = i;
  }
  return { numAbove, numAtBound };
}

function sortAtBound(scratch: SamplingScratch, numAtBound: number): Int32Array {
  const atBound = scratch.candidates.subarray(scratch.vocabSize - numAtBound);
  sortByWeight(atBound, scratch.weights);
  return atBound;
}

/** Most likely first, ties to the lower id, so the kept set is deterministic. */
function sortByWeight(ids: Int32Array, weights: Float64Array): void {
  ids.sort((a, b) => weights[b]! - weights[a]! || a - b);
}

/** Moves the first `num` of `atBound` right after the `numAbove` front entries; returns num. */
function takeInto(
  scratch: SamplingScratch,
  numAbove: number,
  atBound: Int32Array,
  num: number,
): number {
  const numTaken = Math.min(Math.max(num, 0), atBound.length);
  scratch.candidates.set(atBound.subarray(0, numTaken), numAbove);
  return numTaken;
}

function listMass(ids: Int32Array, weights: Float64Array): number {
  let mass = 0;
  for (let j = 0; j < ids.length; j++) mass += weights[ids[j]!]!;
  return mass;
}

/** Shortest prefix of `sorted` lifting `start` to `target`; all of it if rounding falls short. */
function nucleusLen(
  sorted: Int32Array,
  weights: Float64Array,
  start: number,
  target: number,
): number {
  let cum = start;
  for (let j = 0; j < sorted.length; j++) {
    cum += weights[sorted[j]!]!;
    if (cum >= target) return j + 1;
  }
  return sorted.length;
}

import type { TokenLogprob } from "../backend";
import { expNonPositive } from "./exp-non-positive";

/**
 * Log-probabilities of the model's raw distribution, log_softmax(logits), computed in float64
 * (ADR 0006). NaN logits count as −∞: they get probability 0 and logprob −∞ instead of
 * poisoning the whole row.
 */

/** log Σ exp(row[i]), stably (max subtracted first). −∞ when every entry is −∞ or NaN. */
export function logSumExp(row: Float32Array): number {
  let max = Number.NEGATIVE_INFINITY;
  for (let i = 0; i < row.length; i++) {
    const v = row[i]!;
    if (v > max) max = v;
  }
  if (max === Number.NEGATIVE_INFINITY || max === Number.POSITIVE_INFINITY) return max;
  const exp = expNonPositive;
  let sum = 0;
  // exp gives 0 for −∞ and NaN.
  for (let i = 0; i < row.length; i++) sum += exp(row[i]! - max);
  return max + Math.log(sum);
}

/** log p(tokenId) given `lse = logSumExp(row)`. */
export function logprobOf(row: Float32Array, tokenId: number, lse: number): number {
  const v = row[tokenId]!;
  return Number.isNaN(v) ? Number.NEGATIVE_INFINITY : v - lse;
}

/**
 * The `numTop` most likely tokens of `row` (at most row.length), most likely first, ties by the
 * lower token id. One pass with an insertion-sorted list: O(vocab × numTop) in the worst case,
 * O(vocab) in practice, since few entries beat the current n-th best. Returns a new array.
 */
export function topLogprobs(row: Float32Array, numTop: number, lse: number): TokenLogprob[] {
  const n = Math.min(numTop, row.length);
  if (n <= 0) return [];
  const ids: number[] = [];
  const values: number[] = [];
  for (let i = 0; i < row.length; i++) {
    const raw = row[i]!;
    const v = Number.isNaN(raw) ? Number.NEGATIVE_INFINITY : raw;
    const count = ids.length;
    // Strict comparisons keep an earlier (lower) id ahead of a later one with the same value.
    if (count === n && !(v > values[n - 1]!)) continue;
    let j = count < n ? count : n - 1;
    while (j > 0 && values[j - 1]! < v) {
      ids[j] = ids[j - 1]!;
      values[j] = values[j - 1]!;
      j--;
    }
    ids[j] = i;
    values[j] = v;
  }
  const out: TokenLogprob[] = new Array(ids.length);
  for (let j = 0; j < ids.length; j++) out[j] = { tokenId: ids[j]!, logprob: values[j]! - lse };
  return out;
}

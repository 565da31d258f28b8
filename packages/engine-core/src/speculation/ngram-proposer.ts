/**
 * Prompt-lookup (n-gram) drafting on token ids, as vLLM's `ngram` method: find the most recent
 * earlier occurrence of the sequence's last n tokens (n from `maxN` down to `minN`) and propose
 * the tokens that followed it. Pure and allocation-light: O(len × maxN) per call.
 */
export interface NgramOptions {
  /** Tokens to propose at most (num_speculative_tokens). */
  readonly numSpeculativeTokens: number;
  /** Shortest suffix matched (prompt_lookup_min, ≥ 1). */
  readonly minN: number;
  /** Longest suffix matched (prompt_lookup_max, ≥ minN). */
  readonly maxN: number;
}

/**
 * Up to `maxDrafts` (≤ numSpeculativeTokens) tokens following the latest earlier match of the
 * longest matching suffix of `tokenIds`; empty when nothing matches. The returned array is new.
 */
export function proposeNgram(
  tokenIds: readonly number[],
  opts: NgramOptions,
  maxDrafts = opts.numSpeculativeTokens,
): number[] {
  const len = tokenIds.length;
  const k = Math.min(maxDrafts, opts.numSpeculativeTokens);
  if (k <= 0) return [];
  for (let n = Math.min(opts.maxN, len - 1); n >= opts.minN; n--) {
    const at = latestMatch(tokenIds, n);
    if (at === null) continue;
    // The match ends at at + n − 1; what followed it is the proposal.
    const from = at + n;
    return tokenIds.slice(from, Math.min(from + k, len)) as number[];
  }
  return [];
}

/** Start of the latest occurrence of the last n tokens that ends before the suffix itself. */
function latestMatch(tokenIds: readonly number[], n: number): number | null {
  const len = tokenIds.length;
  const suffixStart = len - n;
  for (let start = suffixStart - 1; start >= 0; start--) {
    let j = 0;
    while (j < n && tokenIds[start + j] === tokenIds[suffixStart + j]) j++;
    if (j === n) return start;
  }
  return null;
}

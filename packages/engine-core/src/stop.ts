/**
 * Stop conditions on token ids (stop strings are matched on text, in the gateway). Semantics are
 * vLLM's: a stop token ends a sequence only once at least `minTokens` tokens precede it, and
 * `ignoreEos` disables the EOS ids but not `stopTokenIds`.
 */
export interface StopCriteria {
  /** Generated tokens at most (the stop token included); null: until maxModelLen. */
  readonly maxTokens: number | null;
  /** Stop tokens are ignored (and banned, see `bannedTokenIds`) before this many tokens. */
  readonly minTokens: number;
  /** The model's end-of-sequence ids (one or several). */
  readonly eosTokenIds: readonly number[];
  readonly stopTokenIds: readonly number[];
  readonly ignoreEos: boolean;
}

/** Why a sequence stopped by itself (aborts and errors come from outside). */
export interface StopDecision {
  readonly reason: "stop" | "length";
  /** The id from `stopTokenIds` that matched (vLLM's stop_reason); null for EOS and length. */
  readonly stopTokenId: number | null;
}

/**
 * Decides whether a sequence stops after appending `lastTokenId`, which made its output
 * `numOutputTokens` long and its whole length `numTokens`. A stop token wins over a length cap
 * reached by the same token: the model chose to end there.
 */
export function checkStop(
  stop: StopCriteria,
  lastTokenId: number,
  numOutputTokens: number,
  numTokens: number,
  maxModelLen: number,
): StopDecision | null {
  if (numOutputTokens > stop.minTokens) {
    if (!stop.ignoreEos && stop.eosTokenIds.includes(lastTokenId)) {
      return { reason: "stop", stopTokenId: null };
    }
    if (stop.stopTokenIds.includes(lastTokenId)) {
      return { reason: "stop", stopTokenId: lastTokenId };
    }
  }
  if (stop.maxTokens !== null && numOutputTokens >= stop.maxTokens) {
    return { reason: "length", stopTokenId: null };
  }
  if (numTokens >= maxModelLen) return { reason: "length", stopTokenId: null };
  return null;
}

/** The ids that would stop a sequence: banned by the sampler while `minTokens` is not reached. */
export function stopTokenIdsOf(stop: StopCriteria): readonly number[] {
  const ids = stop.ignoreEos ? [...stop.stopTokenIds] : [...stop.eosTokenIds, ...stop.stopTokenIds];
  return [...new Set(ids)];
}

import { NUM_BUCKETS } from "./top-k-top-p";

/**
 * Work buffers for sampling one row of logits, allocated once per vocabulary size and reused for
 * every row and step. The sampler never keeps data in them between calls: each buffer is either
 * fully rewritten before it is read, or (counts, flags) restored to zero before the call returns.
 */
export interface SamplingScratch {
  readonly vocabSize: number;
  /** [vocabSize] logits after bias and penalties; sampling reads from here, not from the input. */
  readonly logits: Float32Array;
  /** [vocabSize] unnormalised probabilities exp((logit − max) / temperature). */
  readonly weights: Float64Array;
  /** [vocabSize] token ids that survive top-k / top-p (front), the boundary bucket (back). */
  readonly candidates: Int32Array;
  /** [vocabSize] occurrences of each token among the generated ones; all zero between calls. */
  readonly counts: Int32Array;
  /** [vocabSize] 1 once a token's penalties were applied in this call; all zero between calls. */
  readonly flags: Uint8Array;
  /** [vocabSize] log-probability bucket of each token (see top-k-top-p.ts). */
  readonly bucketIds: Uint16Array;
  /** [NUM_BUCKETS] probability mass per log-probability bucket. */
  readonly bucketWeights: Float64Array;
  /** [NUM_BUCKETS] tokens per log-probability bucket. */
  readonly bucketCounts: Int32Array;
}

/** Allocates about 27 bytes per vocabulary entry (870 KB for a 32000-token vocabulary). */
export function createSamplingScratch(vocabSize: number): SamplingScratch {
  if (!Number.isInteger(vocabSize) || vocabSize <= 0) {
    throw new RangeError(`vocabSize must be a positive integer, got ${vocabSize}`);
  }
  return {
    vocabSize,
    logits: new Float32Array(vocabSize),
    weights: new Float64Array(vocabSize),
    candidates: new Int32Array(vocabSize),
    bucketIds: new Uint16Array(vocabSize),
    counts: new Int32Array(vocabSize),
    flags: new Uint8Array(vocabSize),
    bucketWeights: new Float64Array(NUM_BUCKETS),
    bucketCounts: new Int32Array(NUM_BUCKETS),
  };
}

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
  /** [vocabSize] candidate token ids for top-k / top-p, sorted most likely first. */
  readonly candidates: Int32Array;
  /** [vocabSize] occurrences of each token among the generated ones; all zero between calls. */
  readonly counts: Int32Array;
  /** [vocabSize] 1 once a token's penalties were applied in this call; all zero between calls. */
  readonly flags: Uint8Array;
  /** [NUM_BUCKETS] probability mass per log-probability bucket (see truncation.ts). */
  readonly bucketWeights: Float64Array;
  /** [NUM_BUCKETS] tokens per log-probability bucket. */
  readonly bucketCounts: Int32Array;
}

/** Buckets of width 1/BUCKETS_PER_NAT nats below the top logit, plus one for everything lower. */
export const BUCKETS_PER_NAT = 4;
export const BUCKET_RANGE_NATS = 64;
export const NUM_BUCKETS = BUCKETS_PER_NAT * BUCKET_RANGE_NATS + 1;

/** Allocates about 25 bytes per vocabulary entry (800 KB for a 32000-token vocabulary). */
export function createSamplingScratch(vocabSize: number): SamplingScratch {
  if (!Number.isInteger(vocabSize) || vocabSize <= 0) {
    throw new RangeError(`vocabSize must be a positive integer, got ${vocabSize}`);
  }
  return {
    vocabSize,
    logits: new Float32Array(vocabSize),
    weights: new Float64Array(vocabSize),
    candidates: new Int32Array(vocabSize),
    counts: new Int32Array(vocabSize),
    flags: new Uint8Array(vocabSize),
    bucketWeights: new Float64Array(NUM_BUCKETS),
    bucketCounts: new Int32Array(NUM_BUCKETS),
  };
}

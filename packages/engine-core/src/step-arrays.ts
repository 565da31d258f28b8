/** The parts of a sequence's step that the flat arrays are built from (a `ScheduledSeq` has them). */
export interface FlatSeq {
  /** [queryLen] the token ids to compute. */
  readonly tokenIds: readonly number[];
  readonly queryLen: number;
  /** Tokens in the KV cache once the step ran. */
  readonly contextLen: number;
  /** Block ids covering positions 0..contextLen-1. */
  readonly blockTable: readonly number[];
}

/** The parts of a step the arrays are built from; a `StepPlan` is one. */
export interface FlatStep {
  readonly seqs: readonly FlatSeq[];
  /** Σ queryLen over `seqs`. */
  readonly numScheduledTokens: number;
  readonly blockCopies: readonly { readonly src: number; readonly dst: number }[];
}

/**
 * A plan flattened the way the backend's StepInput wants it (every field but `samples`, which the
 * router maps from `ScheduledSeq.sample`). Structurally identical to those StepInput fields, so
 * engine-core need not import the kernels package.
 */
export interface StepArrays {
  /** [numTokens] token ids, sequence after sequence. */
  readonly tokenIds: Int32Array;
  /** [numTokens] absolute position of each token. */
  readonly positions: Int32Array;
  /** [numSeqs] scheduled tokens per sequence. */
  readonly queryLens: Int32Array;
  /** [numSeqs] tokens in the KV cache once the step ran. */
  readonly contextLens: Int32Array;
  /** [numSeqs + 1] offsets into `blockTables`. */
  readonly blockTableOffsets: Int32Array;
  /** Concatenated block tables. */
  readonly blockTables: Int32Array;
  /** [numTokens] KV slot (blockId × blockSize + offset) receiving each token's K and V. */
  readonly slotMapping: Int32Array;
  /** [numCopies × 2] (src, dst) block pairs copied before the forward pass. */
  readonly blockCopies: Int32Array;
}

/**
 * Flattens a step (pure; allocates the arrays). The router's plans and the worker's rebuilt
 * steps both go through here. Every block table must cover its sequence's contextLen.
 */
export function buildStepArrays(plan: FlatStep, blockSize: number): StepArrays {
  const seqs = plan.seqs;
  const numTokens = plan.numScheduledTokens;
  let numTableEntries = 0;
  for (const seq of seqs) numTableEntries += seq.blockTable.length;
  const tokenIds = new Int32Array(numTokens); // [numTokens]
  const positions = new Int32Array(numTokens); // [numTokens]
  const slotMapping = new Int32Array(numTokens); // [numTokens]
  const queryLens = new Int32Array(seqs.length); // [numSeqs]
  const contextLens = new Int32Array(seqs.length); // [numSeqs]
  const blockTableOffsets = new Int32Array(seqs.length + 1); // [numSeqs + 1]
  const blockTables = new Int32Array(numTableEntries); // [Σ table lengths]
  let tokenAt = 0;
  let tableAt = 0;
  for (let i = 0; i < seqs.length; i++) {
    const seq = seqs[i]!;
    queryLens[i] = seq.queryLen;
    contextLens[i] = seq.contextLen;
    blockTableOffsets[i] = tableAt;
    blockTables.set(seq.blockTable, tableAt);
    tableAt += seq.blockTable.length;
    const start = seq.contextLen - seq.queryLen;
    for (let j = 0; j < seq.queryLen; j++) {
      const pos = start + j;
      tokenIds[tokenAt] = seq.tokenIds[j]!;
      positions[tokenAt] = pos;
      const block = seq.blockTable[Math.floor(pos / blockSize)]!;
      slotMapping[tokenAt] = block * blockSize + (pos % blockSize);
      tokenAt++;
    }
  }
  blockTableOffsets[seqs.length] = tableAt;
  const blockCopies = new Int32Array(plan.blockCopies.length * 2); // [numCopies × 2]
  plan.blockCopies.forEach((copy, i) => {
    blockCopies[2 * i] = copy.src;
    blockCopies[2 * i + 1] = copy.dst;
  });
  return {
    tokenIds,
    positions,
    queryLens,
    contextLens,
    blockTableOffsets,
    blockTables,
    slotMapping,
    blockCopies,
  };
}

import { ModelError } from "./errors";
import type { LlamaConfig } from "./types";

/**
 * Megatron-style tensor-parallel sharding of a Llama-family model over `size` ranks (ADR 0018).
 *
 * - q/k/v and gate/up are split by output rows (whole attention heads, KV heads, FFN columns);
 *   o_proj and down_proj by input columns, so each rank's partial output is summed by one
 *   all-reduce after o_proj and one after down_proj.
 * - KV heads that do not divide by `size` are replicated (vLLM): with `size` a multiple of
 *   numKvHeads, rank r holds KV head ⌊r · numKvHeads / size⌋, the one its query heads use.
 * - The embedding and final norm are replicated. lm_head is split by vocabulary rows
 *   (`vocabSlice`): each rank computes its slice of the logits and one all-reduce over
 *   zero-filled rows gathers them on every rank (exact: each logit is one rank's value plus
 *   zeros); rank 0 samples. With tied embeddings a rank's slice is rows of its embedding.
 */
export interface TensorShardPlan {
  readonly rank: number;
  readonly size: number;
  /** The rank's view: numHeads, numKvHeads and intermediateSize are per rank. */
  readonly config: LlamaConfig;
  /** First query head of this rank. */
  readonly headStart: number;
  /** First KV head of this rank. */
  readonly kvHeadStart: number;
  /** First FFN column of this rank. */
  readonly ffnStart: number;
  /** Whether this rank reads lm_head.weight (its `lmHeadRows`; untied checkpoints only). */
  readonly hasLmHead: boolean;
  /** The vocabulary rows of lm_head this rank computes logits for. */
  readonly lmHeadRows: VocabSlice;
}

/** A contiguous run of vocabulary rows. */
export interface VocabSlice {
  readonly start: number;
  readonly count: number;
}

/** Rank `rank`'s share of `vocabSize` rows over `size` ranks: ⌈V / size⌉ each, the last fewer. */
export function vocabSlice(vocabSize: number, rank: number, size: number): VocabSlice {
  const per = Math.ceil(vocabSize / size);
  const start = Math.min(vocabSize, rank * per);
  return { start, count: Math.min(per, vocabSize - start) };
}

/** The part of a stored [rows, cols] (or [rows]) tensor a rank reads. */
export interface TensorRegion {
  readonly rowStart: number;
  readonly numRows: number;
  readonly colStart: number;
  readonly numCols: number;
}

function unsplittable(message: string): ModelError {
  return new ModelError("INVALID_CONFIG", `tensor parallelism: ${message}`);
}

/**
 * The shard of rank `rank` of `size`. Throws ModelError("INVALID_CONFIG") naming the reason
 * when the model cannot be split that way (heads or FFN not divisible, KV heads neither
 * divisible by nor dividing `size`).
 */
export function planTensorShard(config: LlamaConfig, rank: number, size: number): TensorShardPlan {
  if (!Number.isInteger(size) || size < 1) throw unsplittable(`size ${size} is not ≥ 1`);
  if (!Number.isInteger(rank) || rank < 0 || rank >= size) {
    throw unsplittable(`rank ${rank} is outside 0..${size - 1}`);
  }
  const { numHeads, numKvHeads, intermediateSize } = config;
  if (numHeads % size !== 0) {
    throw unsplittable(`${numHeads} attention heads do not split over ${size} ranks`);
  }
  if (intermediateSize % size !== 0) {
    throw unsplittable(`intermediate size ${intermediateSize} does not split over ${size} ranks`);
  }
  const numLocalHeads = numHeads / size;
  let numLocalKvHeads: number;
  let kvHeadStart: number;
  if (numKvHeads % size === 0) {
    numLocalKvHeads = numKvHeads / size;
    kvHeadStart = rank * numLocalKvHeads;
  } else if (size % numKvHeads === 0) {
    numLocalKvHeads = 1; // replicated: size / numKvHeads ranks share each KV head
    kvHeadStart = Math.floor((rank * numKvHeads) / size);
  } else {
    throw unsplittable(
      `${numKvHeads} KV heads neither split over nor replicate onto ${size} ranks`,
    );
  }
  const ffnLen = intermediateSize / size;
  return {
    rank,
    size,
    config: {
      ...config,
      numHeads: numLocalHeads,
      numKvHeads: numLocalKvHeads,
      intermediateSize: ffnLen,
    },
    headStart: rank * numLocalHeads,
    kvHeadStart,
    ffnStart: rank * ffnLen,
    hasLmHead: !config.tieWordEmbeddings,
    lmHeadRows: vocabSlice(config.vocabSize, rank, size),
  };
}

/**
 * Which part of the stored tensor `name` (full shape `shape`) the rank reads, or null when it
 * reads none of it. Unsharded tensors come back whole.
 */
export function shardRegion(
  plan: TensorShardPlan,
  name: string,
  shape: readonly number[],
): TensorRegion | null {
  const whole: TensorRegion = {
    rowStart: 0,
    numRows: shape[0] ?? 1,
    colStart: 0,
    numCols: shape[1] ?? 1,
  };
  if (name === "lm_head.weight") {
    const { start, count } = plan.lmHeadRows;
    return plan.hasLmHead ? { ...whole, rowStart: start, numRows: count } : null;
  }
  const { headDim, numHeads, numKvHeads, intermediateSize } = plan.config;
  const rows = (start: number, len: number) => ({ ...whole, rowStart: start, numRows: len });
  const cols = (start: number, len: number) => ({ ...whole, colStart: start, numCols: len });
  const match = /\.(q_proj|k_proj|v_proj|o_proj|gate_proj|up_proj|down_proj)\.(weight|bias)$/.exec(
    name,
  );
  if (match === null) return whole;
  const qRange = [plan.headStart * headDim, numHeads * headDim] as const;
  const kvRange = [plan.kvHeadStart * headDim, numKvHeads * headDim] as const;
  const ffnRange = [plan.ffnStart, intermediateSize] as const;
  switch (match[1]) {
    case "q_proj":
      return rows(...qRange);
    case "k_proj":
    case "v_proj":
      return rows(...kvRange);
    case "o_proj":
      return cols(...qRange);
    case "gate_proj":
    case "up_proj":
      return rows(...ffnRange);
    default:
      return cols(...ffnRange); // down_proj
  }
}

/** The stored shape of a region: [numRows, numCols] for matrices, [numRows] for vectors. */
export function regionShape(region: TensorRegion, fullShape: readonly number[]): number[] {
  return fullShape.length === 1 ? [region.numRows] : [region.numRows, region.numCols];
}

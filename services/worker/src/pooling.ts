import type { PoolingKind } from "@kiln/kernels";
import { PoolingType, type StepRequest } from "@kiln/proto";

/** Most mean-pooling sums kept (sequences aborted mid-prompt never finish theirs). */
const MAX_NUM_SUMS = 4096;

interface MeanSum {
  readonly sum: Float64Array;
  /** Prompt positions 0 .. numTokens-1 are in `sum`. */
  numTokens: number;
}

/** What the backend is asked to pool in one step. */
export interface PoolingPlan {
  readonly pooling: (PoolingKind | null)[];
  readonly poolingFrom: number[];
}

/**
 * Embedding sequences across steps. The router marks every chunk of an embedding sequence with
 * its pooling type; the chunk with `do_sample` is the last one. Last-token pooling asks the
 * backend for that chunk's last hidden state; mean pooling asks for each chunk's sum and adds
 * them here (float64) until the last chunk, then divides by the prompt length.
 *
 * A preempted sequence keeps its sum (removal does not drop it): when it resumes, its cached
 * prefix is skipped by the scheduler and recomputed tokens it already pooled are skipped here
 * (`poolingFrom`), so the mean covers every prompt position exactly once.
 */
export class Pooler {
  private readonly seqIdToSum = new Map<number, MeanSum>();

  /** The backend's pooling arrays for `req`, or undefined when no sequence pools. */
  planFor(req: StepRequest): PoolingPlan | undefined {
    if (req.reset) this.seqIdToSum.clear();
    if (!req.sequences.some((s) => s.pooling !== PoolingType.POOLING_TYPE_NONE)) return undefined;
    const pooling: (PoolingKind | null)[] = [];
    const poolingFrom: number[] = [];
    for (const s of req.sequences) {
      const numPooled = this.seqIdToSum.get(s.seqId)?.numTokens ?? 0;
      poolingFrom.push(Math.max(0, numPooled - s.numComputedTokens));
      if (s.pooling === PoolingType.POOLING_TYPE_MEAN) pooling.push("sum");
      else if (s.pooling === PoolingType.POOLING_TYPE_LAST && s.doSample) pooling.push("last");
      else pooling.push(null);
    }
    return { pooling, poolingFrom };
  }

  /**
   * Folds the backend's pooled vectors into the running sums; returns the finished embedding
   * of each sequence whose last chunk this was (by index in `req.sequences`).
   */
  collect(
    req: StepRequest,
    plan: PoolingPlan,
    pooled: readonly (Float32Array | null)[],
  ): Map<number, number[]> {
    const out = new Map<number, number[]>();
    req.sequences.forEach((seq, i) => {
      const vector = pooled[i];
      if (!vector) return;
      if (plan.pooling[i] === "last") {
        out.set(i, Array.from(vector));
        return;
      }
      const acc = this.sumOf(seq.seqId, vector.length);
      for (let h = 0; h < vector.length; h++) acc.sum[h]! += vector[h]!;
      acc.numTokens = Math.max(acc.numTokens, seq.numComputedTokens + seq.tokenIds.length);
      if (!seq.doSample) return;
      this.seqIdToSum.delete(seq.seqId);
      out.set(
        i,
        Array.from(acc.sum, (x) => x / acc.numTokens),
      );
    });
    return out;
  }

  private sumOf(seqId: number, dim: number): MeanSum {
    let acc = this.seqIdToSum.get(seqId);
    if (!acc) {
      acc = { sum: new Float64Array(dim), numTokens: 0 };
      this.seqIdToSum.set(seqId, acc);
      for (const oldest of this.seqIdToSum.keys()) {
        if (this.seqIdToSum.size <= MAX_NUM_SUMS) break;
        this.seqIdToSum.delete(oldest);
      }
    }
    return acc;
  }
}

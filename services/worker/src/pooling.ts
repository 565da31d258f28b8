import type { PoolingKind } from "@kiln/kernels";
import { PoolingType, type StepRequest } from "@kiln/proto";

/**
 * Embedding sequences across steps. The router marks every chunk of an embedding sequence with
 * its pooling type; the chunk with `do_sample` is the last one. Last-token pooling asks the
 * backend for that chunk's last hidden state; mean pooling asks for each chunk's sum and adds
 * them here (float64) until the last chunk, then divides by the number of tokens pooled.
 */
export class Pooler {
  private readonly seqIdToSum = new Map<number, { sum: Float64Array; numTokens: number }>();

  /** The backend's `pooling` array for `req`, or undefined when no sequence pools. */
  kindsFor(req: StepRequest): (PoolingKind | null)[] | undefined {
    if (req.reset) this.seqIdToSum.clear();
    for (const id of req.removedSeqIds) this.seqIdToSum.delete(id);
    if (!req.sequences.some((s) => s.pooling !== PoolingType.POOLING_TYPE_NONE)) return undefined;
    return req.sequences.map((s) => {
      if (s.pooling === PoolingType.POOLING_TYPE_MEAN) return "sum";
      if (s.pooling === PoolingType.POOLING_TYPE_LAST && s.doSample) return "last";
      return null;
    });
  }

  /**
   * Folds the backend's pooled vectors into the running sums; returns the finished embedding
   * of each sequence whose last chunk this was (by index in `req.sequences`).
   */
  collect(req: StepRequest, pooled: readonly (Float32Array | null)[]): Map<number, number[]> {
    const out = new Map<number, number[]>();
    req.sequences.forEach((seq, i) => {
      const vector = pooled[i];
      if (!vector) return;
      if (seq.pooling === PoolingType.POOLING_TYPE_LAST) {
        out.set(i, Array.from(vector));
        return;
      }
      let acc = this.seqIdToSum.get(seq.seqId);
      if (!acc) {
        acc = { sum: new Float64Array(vector.length), numTokens: 0 };
        this.seqIdToSum.set(seq.seqId, acc);
      }
      for (let h = 0; h < vector.length; h++) acc.sum[h]! += vector[h]!;
      acc.numTokens += seq.tokenIds.length;
      if (!seq.doSample) return;
      this.seqIdToSum.delete(seq.seqId);
      out.set(
        i,
        Array.from(acc.sum, (x) => x / acc.numTokens),
      );
    });
    return out;
  }
}

import type { BlockId, ScheduledSeq, SeqId, StepPlan } from "../src/index";
import { expectedKv, type FakeToken, fakeNextToken, mixKv, seedKv } from "./fake-worker";

/**
 * A fake worker that verifies draft tokens (ADR 0017) over the chained-hash fake model of
 * fake-worker.ts: it rebuilds block tables from plan deltas (dropping released blocks as told),
 * writes every query token's K/V, checks the K/V of every verified position against the model,
 * and answers a speculative decode with the accepted drafts plus the model's next token.
 */
export class SpecFakeWorker {
  readonly tables = new Map<SeqId, BlockId[]>();
  private readonly kv: Int32Array; // [numBlocks × blockSize], 0 = unwritten

  constructor(
    private readonly blockSize: number,
    numBlocks: number,
    private readonly vocabSize: number,
    /** Prompt plus committed output of a scheduled sequence (before this step). */
    private readonly tokensOf: (seq: ScheduledSeq<unknown>) => readonly number[],
  ) {
    this.kv = new Int32Array(numBlocks * blockSize);
  }

  step(plan: StepPlan<unknown>): (FakeToken[] | null)[] {
    for (const id of [...plan.finishedSeqIds, ...plan.preemptedSeqIds]) {
      if (!this.tables.delete(id)) throw new Error(`drop of unknown seq ${id}`);
    }
    const bs = this.blockSize;
    for (const { src, dst } of plan.blockCopies) {
      this.kv.copyWithin(dst * bs, src * bs, (src + 1) * bs);
    }
    return plan.seqs.map((seq) => this.runSeq(seq));
  }

  private runSeq(seq: ScheduledSeq<unknown>): FakeToken[] | null {
    const table = this.applyDelta(seq);
    const bs = this.blockSize;
    const slotOf = (pos: number): number => table[Math.floor(pos / bs)]! * bs + (pos % bs);
    const start = seq.contextLen - seq.queryLen;
    const kvAfter: number[] = [];
    let previous = start === 0 ? seedKv("|") : this.kv[slotOf(start - 1)]!;
    if (previous === 0) throw new Error(`seq ${seq.seqId} reads unwritten slot ${start - 1}`);
    for (let j = 0; j < seq.queryLen; j++) {
      previous = mixKv(previous, seq.tokenIds[j]!);
      this.kv[slotOf(start + j)] = previous;
      kvAfter.push(previous);
    }
    const drafts = seq.sample?.draftTokenIds ?? [];
    this.checkContext(seq, table, seq.contextLen - drafts.length);
    if (seq.sample === null) return null;
    const out: FakeToken[] = [];
    for (let j = 0; j <= drafts.length; j++) {
      const kv = kvAfter[seq.queryLen - 1 - drafts.length + j]!;
      const banned = seq.sample.bannedTokenIds;
      const tokenId = fakeNextToken(kv, seq.seqIndex, this.vocabSize, banned);
      out.push({ tokenId, logprob: -1 });
      if (j === drafts.length || tokenId !== drafts[j]) break;
    }
    return out;
  }

  private applyDelta(seq: ScheduledSeq<unknown>): BlockId[] {
    const known = this.tables.get(seq.seqId);
    if (!seq.isNew && known === undefined) throw new Error(`seq ${seq.seqId} unknown to worker`);
    const kept = seq.isNew ? [] : known!.slice(0, known!.length - (seq.numDroppedBlocks ?? 0));
    const table = [...kept, ...seq.newBlockIds];
    if (table.join() !== seq.blockTable.join()) {
      throw new Error(`seq ${seq.seqId}: delta table ${table} != plan table ${seq.blockTable}`);
    }
    this.tables.set(seq.seqId, table);
    return table;
  }

  /** The first `numVerified` positions hold the K/V of the sequence's committed tokens. */
  private checkContext(seq: ScheduledSeq<unknown>, table: BlockId[], numVerified: number): void {
    const expected = expectedKv("|", this.tokensOf(seq).slice(0, numVerified));
    const bs = this.blockSize;
    for (let pos = 0; pos < numVerified; pos++) {
      const slot = table[Math.floor(pos / bs)]! * bs + (pos % bs);
      if (this.kv[slot] !== expected[pos]) {
        throw new Error(`seq ${seq.seqId}: wrong K/V at position ${pos}`);
      }
    }
  }
}

import type { BlockId, ScheduledSeq, SeqId, StepPlan } from "../src/index";

/**
 * The fake model's "K/V" of a position: a hash chained over every token up to it, seeded by the
 * namespace of the request, so a block computed for a different prefix or adapter never matches.
 */
export function mixKv(previous: number, tokenId: number): number {
  let h = Math.imul(previous ^ tokenId, 0x9e3779b1);
  h ^= h >>> 15;
  h = Math.imul(h, 0x85ebca6b);
  return (h ^ (h >>> 13)) | 1; // odd, so 0 means "never written"
}

export function seedKv(namespace: string): number {
  let h = 0x811c9dc5;
  for (let i = 0; i < namespace.length; i++) h = Math.imul(h ^ namespace.charCodeAt(i), 16777619);
  return h | 1;
}

/** The fake model's next token: a function of the last position's K/V and the sequence index. */
export function fakeNextToken(
  kv: number,
  seqIndex: number,
  vocabSize: number,
  banned: readonly number[],
): number {
  let token = (mixKv(kv, 7919 * (seqIndex + 1)) >>> 1) % vocabSize;
  while (banned.includes(token)) token = (token + 1) % vocabSize;
  return token;
}

/** Expected K/V of positions 0 … tokens.length − 1. */
export function expectedKv(namespace: string, tokenIds: readonly number[]): number[] {
  const values: number[] = [];
  let h = seedKv(namespace);
  for (const tokenId of tokenIds) {
    h = mixKv(h, tokenId);
    values.push(h);
  }
  return values;
}

export interface FakeWorkerOptions {
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly vocabSize: number;
  /** The namespace of a request (to seed its K/V chain). */
  readonly namespaceOf: (seq: ScheduledSeq<unknown>) => string;
  /**
   * Every token of the sequence known before this step's sample: checks its whole context.
   * Undefined for a sequence not to check (aborted before its tokens were committed).
   */
  readonly tokensOf?: (seq: ScheduledSeq<unknown>) => readonly number[] | undefined;
}

export interface FakeToken {
  readonly tokenId: number;
  readonly logprob: number;
}

/**
 * A worker that keeps only what the wire gives it: block tables rebuilt from plan deltas, and a
 * fake KV memory written slot by slot. It throws when a delta disagrees with the plan's full table,
 * when a step reads a slot never written, or (with `tokensOf`) when a context holds the wrong K/V.
 */
export class FakeWorker {
  readonly tables = new Map<SeqId, BlockId[]>();
  /** The last token sampled per sequence: the input of a step planned ahead (isInputPending). */
  private readonly lastSampled = new Map<SeqId, number>();
  private readonly kv: Int32Array; // [numBlocks × blockSize] fake K/V per slot, 0 = unwritten
  private readonly options: FakeWorkerOptions;

  constructor(options: FakeWorkerOptions) {
    this.options = options;
    this.kv = new Int32Array(options.numBlocks * options.blockSize);
  }

  /**
   * Runs `plan`. `blockTables` (aligned with `plan.seqs`): the tables as planned, when the plan's
   * live views may have grown since (a step planned ahead of this one's run took a slot).
   */
  step(
    plan: StepPlan<unknown>,
    blockTables: readonly (readonly BlockId[])[] = plan.seqs.map((seq) => seq.blockTable),
  ): (FakeToken | FakeToken[] | null)[] {
    for (const id of [...plan.finishedSeqIds, ...plan.preemptedSeqIds]) {
      if (!this.tables.delete(id)) throw new Error(`drop of unknown seq ${id}`);
      this.lastSampled.delete(id);
    }
    const bs = this.options.blockSize;
    for (const { src, dst } of plan.blockCopies) {
      this.kv.copyWithin(dst * bs, src * bs, (src + 1) * bs);
    }
    const written = new Map<number, SeqId>();
    const results = plan.seqs.map((seq, i) => this.runSeq(seq, blockTables[i]!, written));
    for (const seq of plan.seqs) this.checkContext(seq);
    return results;
  }

  private runSeq(
    seq: ScheduledSeq<unknown>,
    planned: readonly BlockId[],
    written: Map<number, SeqId>,
  ): FakeToken | FakeToken[] | null {
    const table = this.applyDelta(seq, planned);
    const bs = this.options.blockSize;
    const slotOf = (pos: number): number => table[Math.floor(pos / bs)]! * bs + (pos % bs);
    const start = seq.contextLen - seq.queryLen;
    let previous =
      start === 0 ? seedKv(this.options.namespaceOf(seq)) : this.kv[slotOf(start - 1)]!;
    if (previous === 0) throw new Error(`seq ${seq.seqId} reads unwritten slot ${start - 1}`);
    const tokenIds = seq.isInputPending ? [this.lastSampledOf(seq.seqId)] : seq.tokenIds;
    for (let j = 0; j < seq.queryLen; j++) {
      const slot = slotOf(start + j);
      const writer = written.get(slot);
      if (writer !== undefined)
        throw new Error(`slot ${slot} written by ${writer} and ${seq.seqId}`);
      written.set(slot, seq.seqId);
      previous = mixKv(previous, tokenIds[j]!);
      this.kv[slot] = previous;
    }
    if (seq.sample === null) return null;
    const banned = seq.sample.bannedTokenIds;
    let tokenId = fakeNextToken(previous, seq.seqIndex, this.options.vocabSize, banned);
    const numSteps = seq.numSteps ?? 1;
    const tokens: FakeToken[] = [{ tokenId, logprob: -1 }];
    // Multi-step decode: each further step computes the token the one before sampled.
    for (let j = 1; j < numSteps && !seq.stopTokenIds?.includes(tokenId); j++) {
      const slot = slotOf(seq.contextLen - 1 + j);
      if (written.has(slot)) throw new Error(`slot ${slot} written twice by a burst`);
      written.set(slot, seq.seqId);
      previous = mixKv(previous, tokenId);
      this.kv[slot] = previous;
      tokenId = fakeNextToken(previous, seq.seqIndex, this.options.vocabSize, banned);
      tokens.push({ tokenId, logprob: -1 });
    }
    this.lastSampled.set(seq.seqId, tokenId);
    return numSteps > 1 ? tokens : tokens[0]!;
  }

  private lastSampledOf(seqId: SeqId): number {
    const tokenId = this.lastSampled.get(seqId);
    if (tokenId === undefined) throw new Error(`seq ${seqId} has no sampled token to continue`);
    return tokenId;
  }

  private applyDelta(seq: ScheduledSeq<unknown>, planned: readonly BlockId[]): BlockId[] {
    const known = this.tables.get(seq.seqId);
    if (!seq.isNew && known === undefined) throw new Error(`seq ${seq.seqId} unknown to worker`);
    const table = seq.isNew ? [...seq.newBlockIds] : [...known!, ...seq.newBlockIds];
    if (table.join() !== planned.join()) {
      throw new Error(`seq ${seq.seqId}: delta table ${table} != plan table ${planned}`);
    }
    this.tables.set(seq.seqId, table);
    return table;
  }

  private checkContext(seq: ScheduledSeq<unknown>): void {
    const tokens = this.options.tokensOf?.(seq);
    if (tokens === undefined) return;
    const expected = expectedKv(this.options.namespaceOf(seq), tokens.slice(0, seq.contextLen));
    const table = this.tables.get(seq.seqId)!;
    const bs = this.options.blockSize;
    for (let pos = 0; pos < seq.contextLen; pos++) {
      const slot = table[Math.floor(pos / bs)]! * bs + (pos % bs);
      if (this.kv[slot] !== expected[pos]) {
        throw new Error(
          `seq ${seq.seqId}: wrong K/V at position ${pos} (block ${table[pos / bs]})`,
        );
      }
    }
  }
}

import type { AdapterId, BlockId, RequestId, SeqId } from "./ids";
import type { BlockCopy, KvSeq } from "./kv-cache-manager";
import type { CacheNode } from "./prefix-cache";
import type { StopCriteria } from "./stop";

/** waiting → running → finished; running → waiting again when preempted (recompute). */
export type SeqStatus = "waiting" | "running" | "finished";

/** A sequence's share of the step being planned; cancelled if it is preempted later that step. */
export interface StepDraft<S> {
  readonly seq: Sequence<S>;
  /** 1 + specTokenIds.length for a speculative decode (set by planSpeculation). */
  queryLen: number;
  readonly copy: BlockCopy | null;
  isCancelled: boolean;
  /** Draft tokens verified after the last token this step (speculation/plan-drafts.ts). */
  specTokenIds?: readonly number[];
}

export interface RequestInit<S> {
  readonly id: RequestId;
  readonly sampling: S;
  readonly promptTokenIds: readonly number[];
  readonly n: number;
  readonly priority: number;
  readonly arrivalTime: number;
  /** Insertion order: breaks arrival-time ties deterministically. */
  readonly arrivalSeq: number;
  readonly stop: StopCriteria;
  readonly adapterId: AdapterId | null;
  readonly namespace: string;
  readonly tenant: string;
  readonly tenantWeight: number;
  /** False when the request opted out of speculative decoding. */
  readonly isSpeculative: boolean;
}

/** A request and its sequences. Owned by the scheduler; never handed out. */
export class RequestState<S> {
  readonly id: RequestId;
  readonly sampling: S;
  readonly promptTokenIds: readonly number[];
  readonly n: number;
  readonly priority: number;
  readonly arrivalTime: number;
  readonly arrivalSeq: number;
  readonly stop: StopCriteria;
  readonly adapterId: AdapterId | null;
  readonly namespace: string;
  readonly tenant: string;
  readonly tenantWeight: number;
  readonly isSpeculative: boolean;
  /** Stop ids the sampler bans while minTokens is not reached. */
  readonly bannedTokenIds: readonly number[];
  readonly seqs: Sequence<S>[] = [];
  numUnfinishedSeqs = 0;
  numPreemptions = 0;
  /** Prompt tokens the prefix cache served at the first admission (OpenAI's cached_tokens). */
  numCachedPromptTokens: number | null = null;
  /**
   * False while a parallel-sampling request (n > 1) prefills its single parent sequence, which
   * stops one token short of the prompt and forks there (see `Sequence.targetLen`).
   */
  isForked: boolean;
  firstScheduledTime: number | null = null;
  firstTokenTime: number | null = null;

  constructor(init: RequestInit<S>, bannedTokenIds: readonly number[]) {
    this.id = init.id;
    this.sampling = init.sampling;
    this.promptTokenIds = init.promptTokenIds;
    this.n = init.n;
    this.priority = init.priority;
    this.arrivalTime = init.arrivalTime;
    this.arrivalSeq = init.arrivalSeq;
    this.stop = init.stop;
    this.adapterId = init.adapterId;
    this.namespace = init.namespace;
    this.tenant = init.tenant;
    this.tenantWeight = init.tenantWeight;
    this.isSpeculative = init.isSpeculative;
    this.bannedTokenIds = bannedTokenIds;
    // A one-token prompt has no prefix to share: its n sequences start independently.
    this.isForked = init.n === 1 || init.promptTokenIds.length === 1;
  }

  /** Sequence slots (of maxNumSeqs) a waiting sequence of this request needs to be admitted. */
  get numSlotsToAdmit(): number {
    return this.isForked ? 1 : this.n;
  }
}

/** One sampled continuation of a request: its tokens, KV block table and worker-side status. */
export class Sequence<S> implements KvSeq {
  readonly id: SeqId;
  readonly request: RequestState<S>;
  /** 0 … n−1 within the request. */
  readonly index: number;
  /** Prompt then generated tokens. */
  readonly tokenIds: number[];
  readonly outputTokenIds: number[];
  status: SeqStatus = "waiting";
  numComputedTokens = 0;
  blockIds: BlockId[] = [];
  numCachedBlocks = 0;
  cacheNode: CacheNode | null = null;
  /** The worker holds this sequence's block table (it was in a plan since it last resumed). */
  isOnWorker = false;
  /** Length of the block table the worker holds. */
  numBlocksOnWorker = 0;
  /** A known block was replaced (copy on write): resend the whole table. */
  hasRewrittenTable = false;
  /** Trailing blocks the worker must drop from its table (released after a verification). */
  numBlocksToDrop = 0;
  draft: StepDraft<S> | null = null;
  /**
   * Slots held beyond the known tokens: 1 between a plan made ahead (plan-ahead.ts) and the
   * commit of the step before it, which appends the token that fills the slot; 0 otherwise.
   */
  numAheadTokens = 0;

  constructor(
    id: SeqId,
    request: RequestState<S>,
    index: number,
    tokenIds: number[],
    outputTokenIds: number[],
  ) {
    this.id = id;
    this.request = request;
    this.index = index;
    this.tokenIds = tokenIds;
    this.outputTokenIds = outputTokenIds;
  }

  get namespace(): string {
    return this.request.namespace;
  }

  /**
   * Tokens to have computed before the next sample: all of them, except for an unforked
   * parallel-sampling parent, which stops one short of its prompt so its n sequences each compute
   * (and sample from) the last prompt token.
   */
  get targetLen(): number {
    return this.request.isForked ? this.tokenIds.length : this.tokenIds.length - 1;
  }
}

/**
 * Scheduling order: priority (lower first), then arrival, then insertion; within a request the
 * forked children before their parent, so the parent (the only one the worker may already know)
 * writes its shared last block in place after every child has copied it.
 */
export function compareSeqs<S>(a: Sequence<S>, b: Sequence<S>): number {
  const ra = a.request;
  const rb = b.request;
  return (
    ra.priority - rb.priority ||
    ra.arrivalTime - rb.arrivalTime ||
    ra.arrivalSeq - rb.arrivalSeq ||
    b.index - a.index
  );
}

/** Inserts into an array sorted by `compareSeqs`, after any equal element. */
export function insertSorted<S>(seqs: Sequence<S>[], seq: Sequence<S>): void {
  let lo = 0;
  let hi = seqs.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareSeqs(seqs[mid]!, seq) <= 0) lo = mid + 1;
    else hi = mid;
  }
  seqs.splice(lo, 0, seq);
}

/** Removes `seq` from `seqs`; false when absent. */
export function removeSeq<S>(seqs: Sequence<S>[], seq: Sequence<S>): boolean {
  const at = seqs.lastIndexOf(seq);
  if (at < 0) return false;
  seqs.splice(at, 1);
  return true;
}

import type { AdapterId, BlockId, RequestId, SeqId } from "./ids";
import type { BlockCopy } from "./kv-cache-manager";
import type { LoraLoad } from "./lora-slots";
import type { SpeculationConfig } from "./speculation/spec-config";
import type { DraftProposer } from "./speculation/spec-state";

export interface SchedulerConfig {
  /** KV blocks the worker has (it reports them when it registers). */
  readonly numBlocks: number;
  /** Tokens per KV block. */
  readonly blockSize: number;
  /** Token budget of one step, prefill chunks and decodes together; at least maxNumSeqs. */
  readonly maxNumBatchedTokens: number;
  /** Sequences running at once (and so at most in one step). */
  readonly maxNumSeqs: number;
  /**
   * Context length: prompt plus generated tokens of a sequence never exceed it. At most
   * numBlocks × blockSize, so one sequence alone always fits (otherwise it could never finish).
   */
  readonly maxModelLen: number;
  /** Injected clock (ms, monotonic); read for arrival and request timings only. */
  readonly clock: () => number;
  /** Speculative decoding (ADR 0017); absent or null: none. */
  readonly speculation?: SpeculationConfig | null;
  /** Drafts from outside (draft-model speculation); absent: the config's own (n-gram) proposer. */
  readonly draftProposer?: DraftProposer;
  /**
   * LoRA slots of the worker (ADR 0015): at most this many distinct adapters per step, each
   * scheduled sequence gets its adapter's slot. Absent: adapters are not slotted (loraSlot -1).
   * 0: requests with an adapter are rejected.
   */
  readonly maxLoras?: number;
  /** Steps a waiting request may be passed over for its adapter (DEFAULT_LORA_MAX_SKIPS). */
  readonly loraMaxSkips?: number;
  /**
   * Requests with at least this priority are batch work: their prefill yields to better
   * priorities' (batch-yield.ts). Absent: no yielding.
   */
  readonly batchPriority?: number;
  /** Steps in a row batch prefill may be held back (DEFAULT_MAX_BATCH_HOLD_STEPS). */
  readonly maxBatchHoldSteps?: number;
}

/** A generation request, as the router hands it over. Token ids only: text stays in the gateway. */
export interface NewRequest<S> {
  readonly requestId: RequestId;
  /** Prompt token ids, BOS included. Not copied: the caller must not mutate it afterwards. */
  readonly promptTokenIds: readonly number[];
  /** Sampling parameters, passed through untouched to each planned sample. */
  readonly sampling: S;
  /** Parallel sampling: n sequences share the prompt's KV. Default 1; at most maxNumSeqs. */
  readonly n?: number;
  /** Lower runs first and is preempted last. Default 0. */
  readonly priority?: number;
  /** Orders requests of equal priority (FCFS). Default: the injected clock at `addRequest`. */
  readonly arrivalTime?: number;
  /** Generated tokens at most per sequence; null or absent: until maxModelLen. */
  readonly maxTokens?: number | null;
  /** Stop tokens are ignored (and banned) before this many generated tokens. Default 0. */
  readonly minTokens?: number;
  /** The model's EOS ids. Default none. */
  readonly eosTokenIds?: readonly number[];
  readonly stopTokenIds?: readonly number[];
  readonly ignoreEos?: boolean;
  /** LoRA adapter; its prefixes are cached apart from the base model's and other adapters'. */
  readonly adapterId?: AdapterId | null;
  /** Tenant salt: prefixes are shared only between requests with the same salt. */
  readonly cacheSalt?: string | null;
  /** Who sent it, for weighted fair queuing across tenants (see fair-queue.ts). Default "". */
  readonly tenant?: string | null;
  /** The tenant's share weight, finite and > 0. Default 1. */
  readonly tenantWeight?: number | null;
  /** False opts out of speculative decoding (the `"speculative": false` body field). Default true. */
  readonly isSpeculative?: boolean;
}

export type RejectReason =
  | "DUPLICATE_REQUEST"
  | "EMPTY_PROMPT"
  | "PROMPT_TOO_LONG"
  | "INVALID_PARAMS";

export type AddResult =
  | { readonly isAccepted: true }
  | { readonly isAccepted: false; readonly reason: RejectReason; readonly message: string };

/** What `abortSeq` did: whether finishing that sequence finished its whole request. */
export interface SeqAbortResult {
  readonly isRequestDone: boolean;
}

/** What the worker samples for a sequence; shaped like the backend's `SampleRequest`. */
export interface PlannedSample<S> {
  /** The request's sampling params, untouched. */
  readonly params: S;
  /**
   * Which of the request's n sequences samples (0 … n−1). Sequences of one request share params:
   * the router derives a per-sequence seed from this (vLLM uses seed + seqIndex).
   */
  readonly seqIndex: number;
  /** Tokens generated so far by this sequence: the index of the token being sampled. */
  readonly outputIndex: number;
  /** The prompt (immutable). */
  readonly promptTokenIds: readonly number[];
  /** Live view of the generated tokens; `commit` appends to it, so read it before. */
  readonly outputTokenIds: readonly number[];
  /** Stop ids the sampler must not pick (minTokens not reached yet); empty otherwise. */
  readonly bannedTokenIds: readonly number[];
  /**
   * Speculative decoding (ADR 0017): draft tokens that follow the last token in the query (the
   * query's last draftTokenIds.length tokens). The worker verifies them and returns 1 …
   * draftTokenIds.length + 1 tokens: the accepted drafts, then one it sampled. Absent or empty:
   * one token, as without speculation.
   */
  readonly draftTokenIds?: readonly number[];
}

/**
 * One sequence's part of a step: `queryLen` tokens at positions contextLen − queryLen …
 * contextLen − 1 (a prefill chunk, or 1 for a decode).
 */
export interface ScheduledSeq<S> {
  readonly seqId: SeqId;
  readonly requestId: RequestId;
  readonly seqIndex: number;
  readonly adapterId: AdapterId | null;
  /** The worker LoRA slot of `adapterId` this step; -1 for the base model or without slots. */
  readonly loraSlot: number;
  /**
   * The worker has no state for this sequence (first time scheduled, resumed after preemption):
   * it builds the block table from `newBlockIds`, which then holds the whole table.
   */
  readonly isNew: boolean;
  /** [queryLen] the token ids to compute; empty when `isInputPending`. */
  readonly tokenIds: readonly number[];
  /**
   * Planned ahead (`Scheduler.scheduleAhead`, overlapped steps): a decode whose one input token
   * is the token this sequence samples in the step before, which the worker fills in.
   */
  readonly isInputPending?: boolean;
  readonly queryLen: number;
  /** Tokens in the KV cache once this step ran (cached + computed before + this query). */
  readonly contextLen: number;
  /**
   * [ceil(contextLen / blockSize)] the whole block table after this step's allocations. A live
   * view, valid until the next `schedule()`: copy it to keep it longer.
   */
  readonly blockTable: readonly BlockId[];
  /** Blocks appended since the sequence was last scheduled; the whole table when `isNew`. */
  readonly newBlockIds: readonly BlockId[];
  /**
   * Trailing blocks the worker drops from its table before appending `newBlockIds`: blocks the
   * router released after rejected drafts (speculation/rollback.ts). 0 (or absent) otherwise.
   */
  readonly numDroppedBlocks?: number;
  /** Set when the last scheduled token yields the next token; null for a mid-prompt chunk. */
  readonly sample: PlannedSample<S> | null;
  /**
   * Multi-step decode (plan-burst.ts, ADR 0028): a decode the worker runs this many times back to
   * back, each step's input the token the step before sampled; it answers 1 … numSteps tokens.
   * `blockTable` holds the slots of every step (contextLen − 1 + numSteps). Absent or 1: one.
   */
  readonly numSteps?: number;
  /** With numSteps > 1: ids that end the sequence; the worker stops its steps after one. */
  readonly stopTokenIds?: readonly number[];
}

/**
 * One engine step: everything a worker needs to build the backend's StepInput, and the deltas the
 * router sends over the wire. Apply in this order: drop `finishedSeqIds` and `preemptedSeqIds`,
 * run `blockCopies`, then compute `seqs` in order.
 */
export interface StepPlan<S> {
  /** Increases by one per plan. */
  readonly stepId: number;
  /** In StepInput order: decodes first, then prefill chunks of running, then newly admitted. */
  readonly seqs: readonly ScheduledSeq<S>[];
  /** Σ queryLen ≤ maxNumBatchedTokens. */
  readonly numScheduledTokens: number;
  /** Copy-on-write pairs, executed before the forward pass. */
  readonly blockCopies: readonly BlockCopy[];
  /** Sequences the worker knows that finished or were aborted since the previous plan. */
  readonly finishedSeqIds: readonly SeqId[];
  /** Sequences the worker knows that were preempted while planning this step. */
  readonly preemptedSeqIds: readonly SeqId[];
  /** Adapters to load into LoRA slots before this step runs (ADR 0015). */
  readonly loraLoads: readonly LoraLoad[];
}

/** The part of a sampled token engine-core reads; the rest (logprobs) passes through opaquely. */
export interface SampledTokenLike {
  readonly tokenId: number;
}

/**
 * A step's results: aligned with `plan.seqs` (null where no sample was planned, like the backend's
 * `StepOutput.sampled`), or keyed by sequence id (like a worker's reply over the wire).
 */
export type StepResults<T> = readonly (StepResult<T> | null)[] | ReadonlyMap<SeqId, StepResult<T>>;

/**
 * One sequence's result: its sampled token, or for a speculative decode (ADR 0017) the tokens
 * its verification emitted in order: the accepted drafts, then the one the worker sampled.
 */
export type StepResult<T> = T | readonly T[];

export type FinishReason = "stop" | "length" | "abort" | "error";

/** A token appended to a sequence's output. */
export interface TokenEvent<T> {
  readonly kind: "token";
  readonly requestId: RequestId;
  readonly seqId: SeqId;
  readonly seqIndex: number;
  /** Position of the token in the sequence's output (0 for the first). */
  readonly outputIndex: number;
  /** The worker's result for this token, untouched (token id, logprobs). */
  readonly sampled: T;
}

/** Timings of a finished request, read from the injected clock. */
export interface RequestSummary {
  readonly arrivalTime: number;
  readonly firstScheduledTime: number | null;
  readonly firstTokenTime: number | null;
  readonly finishedTime: number;
  /** Times any of its sequences was preempted. */
  readonly numPreemptions: number;
  /** Prompt tokens found in the prefix cache when it was first admitted (usage.cached_tokens). */
  readonly numCachedTokens: number;
}

/** A sequence stopped; follows the token event of its last token. */
export interface FinishedEvent {
  readonly kind: "finished";
  readonly requestId: RequestId;
  readonly seqId: SeqId;
  readonly seqIndex: number;
  readonly reason: "stop" | "length";
  /** The matched id from `stopTokenIds` (vLLM's stop_reason); null for EOS and length. */
  readonly stopTokenId: number | null;
  readonly numOutputTokens: number;
  /** Set on the event that finishes the request's last sequence, exactly once per request. */
  readonly requestDone: RequestSummary | null;
}

/** A sequence lost its KV while this step was planned; it resumes later by recomputation. */
export interface PreemptedEvent {
  readonly kind: "preempted";
  readonly requestId: RequestId;
  readonly seqId: SeqId;
  readonly seqIndex: number;
}

export type EngineEvent<T> = TokenEvent<T> | FinishedEvent | PreemptedEvent;

export interface SchedulerStats {
  readonly numRunningSeqs: number;
  readonly numWaitingSeqs: number;
  /** Requests with at least one running sequence. */
  readonly numRunningRequests: number;
  /** Unfinished requests with no running sequence. */
  readonly numWaitingRequests: number;
  /** KV usage: blocks referenced by sequences, out of numBlocks. */
  readonly numUsedBlocks: number;
  readonly numBlocks: number;
  /** Blocks whose content is in the prefix cache (used or evictable). */
  readonly numCachedBlocks: number;
  /** Prompt tokens looked up in / found in the prefix cache at admission. */
  readonly prefixCacheQueryTokens: number;
  readonly prefixCacheHitTokens: number;
  /** Sequences preempted since the scheduler was created. */
  readonly numPreemptions: number;
  /** LoRA: adapters in slots, of running and of waiting sequences; max slots (0 without). */
  readonly residentAdapters: readonly AdapterId[];
  readonly runningAdapters: readonly AdapterId[];
  readonly waitingAdapters: readonly AdapterId[];
  readonly maxLoras: number;
}

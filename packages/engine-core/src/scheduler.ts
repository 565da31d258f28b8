import { assertPending, commitStep } from "./committer";
import { type EngineState, finishSeq, newSequence } from "./engine-state";
import { InvariantError, invariant } from "./errors";
import { DEFAULT_TENANT, FairQueue } from "./fair-queue";
import type { AdapterId, RequestId } from "./ids";
import { checkEngineInvariants } from "./invariants";
import { KvCacheManager } from "./kv-cache-manager";
import { LoraSlots } from "./lora-slots";
import { planAhead } from "./plan-ahead";
import { planBurst } from "./plan-burst";
import { type PlannedStep, planStep } from "./planner";
import { cacheNamespace } from "./prefix-cache";
import { insertSorted, RequestState, type Sequence } from "./sequence";
import { type DraftRequest, draftRequests } from "./speculation/plan-drafts";
import { type SpecOutcome, SpecState } from "./speculation/spec-state";
import { type StopCriteria, stopTokenIdsOf } from "./stop";
import type {
  AddResult,
  EngineEvent,
  NewRequest,
  SampledTokenLike,
  SchedulerConfig,
  SchedulerStats,
  SeqAbortResult,
  StepPlan,
  StepResults,
} from "./types";
import { reject, tryRejectRequest } from "./validate-request";

/**
 * Continuous batching over a paged KV cache, for one replica (one worker group). Pure and
 * synchronous: no I/O, no timers; time comes from `config.clock`. Deterministic for a given
 * sequence of calls.
 *
 * The step contract: `schedule()` returns a plan, the router runs it on the worker, then calls
 * `commit(plan, sampled)` before the next `schedule()`. With overlapped steps, `scheduleAhead()`
 * plans the next step while one is pending, and the two are committed in order. `addRequest` and
 * `abortRequest` may be called at any time, including between a plan and its commit.
 *
 * `S` is the sampling-params type (opaque, passed through); `T` the worker's per-token result
 * (token id plus logprobs, passed through in token events).
 */
export interface StepScheduler<S, T extends SampledTokenLike> {
  /**
   * Queues a request (its sequences wait until admitted). Returns a rejection, changing nothing,
   * for a duplicate unfinished id or parameters this scheduler can never serve.
   */
  addRequest(request: NewRequest<S>): AddResult;
  /**
   * Finishes every live sequence of the request, in any state, and frees its blocks at once; the
   * next plan lists the ids the worker must drop. Results for it in a pending plan are ignored at
   * commit. No events are emitted: the caller decided, and reports "abort" or "error" itself.
   * False when the request is unknown or already finished.
   */
  abortRequest(requestId: RequestId): boolean;
  /**
   * Finishes one sequence (`index` of the request's n) and frees its blocks, like abortRequest
   * for that sequence alone; the others keep running. Null, changing nothing, for an unknown or
   * finished request or sequence, for n = 1 (abort the request instead), and before the request
   * forked into its n sequences (no sequence has produced a token yet). No events are emitted.
   */
  abortSeq(requestId: RequestId, index: number): SeqAbortResult | null;
  /**
   * Plans the next step. Throws InvariantError while the previous plan awaits its commit. A plan
   * without sequences needs no commit (it may still carry ids to drop). The plan does not change
   * afterwards, except through two views it holds: `blockTable` (valid until the next
   * `schedule()`) and `sample.outputTokenIds` (which grows at commit). `options.maxDecodeSteps`
   * > 1 lets a plan of decodes run several steps on the worker at once (multi-step decode,
   * plan-burst.ts).
   */
  schedule(options?: ScheduleOptions): StepPlan<S>;
  /**
   * Overlapped steps (ADR 0021): plans the step after the pending one before that one is
   * committed, for the sequences it samples, each decoding the token it samples there (the
   * worker fills it in: `ScheduledSeq.isInputPending`). Null, changing nothing, when no plan is
   * pending, one is already planned ahead, or the next step depends on the pending one's outcome
   * (see plan-ahead.ts); plan normally after the commit then. `canRunAhead` may veto a request
   * (the router's: one with a grammar). Commit the pending plan first, then this one: after the
   * first commit it is the pending plan, and another may be planned ahead of it.
   */
  scheduleAhead(canRunAhead?: (requestId: RequestId) => boolean): StepPlan<S> | null;
  /**
   * Applies the worker's results, given either aligned with `plan.seqs` (`sampled[i]` for
   * `plan.seqs[i]`, null where no sample was planned) or keyed by sequence id. Returns events in
   * order: preemptions (of this step and of uncommitted empty plans before it), then per sequence
   * its token and, when it stopped, its finish. Throws InvariantError for a plan other than the
   * last one, a second commit, or a result missing where a sample was planned.
   */
  commit(plan: StepPlan<S>, sampled: StepResults<T>): EngineEvent<T>[];
  /**
   * Read-only routing probe: prompt tokens a request with this prompt, adapter and salt would
   * find in this replica's prefix cache now. Counts no statistics, changes no LRU order.
   */
  prefixMatchLen(
    promptTokenIds: readonly number[],
    adapterId: AdapterId | null,
    cacheSalt: string | null,
  ): number;
  /**
   * Whether a plan would have something to do: an unfinished request, or ids the worker must drop.
   * The router keeps stepping while true.
   */
  hasPendingWork(): boolean;
  /** Counters for metrics and routing; a fresh object per call. */
  stats(): SchedulerStats;
  /** Throws InvariantError if any internal invariant is broken. O(blocks + sequences). */
  checkInvariants(): void;
}

/** How `schedule()` may shape the plan. */
export interface ScheduleOptions {
  /**
   * Multi-step decode (ADR 0028): decode steps one plan may run on the worker, or a function of
   * the plan's number of sequences giving them. Default 1.
   */
  readonly maxDecodeSteps?: number | ((numSeqs: number) => number);
  /** Whether a request's decodes may run as a multi-step burst (the router's say). Default yes. */
  readonly canBurst?: (requestId: RequestId) => boolean;
}

export class Scheduler<S, T extends SampledTokenLike = SampledTokenLike>
  implements StepScheduler<S, T>
{
  private readonly state: EngineState<S>;
  private pending: PlannedStep<S> | null = null;
  /** Planned while `pending` runs (scheduleAhead); pending once that one is committed. */
  private ahead: PlannedStep<S> | null = null;
  private lastPlan: StepPlan<S> | null = null;
  /** Preempted by plans without sequences (never committed): reported at the next commit. */
  private readonly deferredPreempted: Sequence<S>[] = [];
  private nextStepId = 0;
  private nextArrivalSeq = 0;

  /** Throws InvariantError for an inconsistent configuration. */
  constructor(config: SchedulerConfig) {
    validateConfig(config);
    this.state = {
      config,
      kv: new KvCacheManager(config.numBlocks, config.blockSize),
      requests: new Map(),
      running: [],
      waiting: [],
      numReservedSeqs: 0,
      numPreemptions: 0,
      batchYield: { numHeldSteps: 0 },
      nextSeqId: 0,
      droppedSeqIds: [],
      fairQueue: new FairQueue(),
      lora:
        config.maxLoras === undefined ? null : new LoraSlots(config.maxLoras, config.loraMaxSkips),
      spec: config.speculation ? new SpecState(config.speculation, config.draftProposer) : null,
    };
  }

  addRequest(request: NewRequest<S>): AddResult {
    const state = this.state;
    if (state.requests.has(request.requestId)) {
      return reject("DUPLICATE_REQUEST", `request ${request.requestId} is already running`);
    }
    const rejection = tryRejectRequest(request, state.config);
    if (rejection !== null) return rejection;
    const stop: StopCriteria = {
      maxTokens: request.maxTokens ?? null,
      minTokens: request.minTokens ?? 0,
      eosTokenIds: request.eosTokenIds ?? [],
      stopTokenIds: request.stopTokenIds ?? [],
      ignoreEos: request.ignoreEos ?? false,
    };
    const adapterId = request.adapterId ?? null;
    if (adapterId !== null && state.config.maxLoras === 0) {
      return reject("INVALID_PARAMS", `adapter ${adapterId}: this replica serves no LoRA adapters`);
    }
    const init = {
      id: request.requestId,
      sampling: request.sampling,
      promptTokenIds: request.promptTokenIds,
      n: request.n ?? 1,
      priority: request.priority ?? 0,
      arrivalTime: request.arrivalTime ?? state.config.clock(),
      arrivalSeq: this.nextArrivalSeq++,
      stop,
      adapterId,
      namespace: cacheNamespace(adapterId, request.cacheSalt ?? null),
      tenant: request.tenant ?? DEFAULT_TENANT,
      tenantWeight: request.tenantWeight ?? 1,
      isSpeculative: request.isSpeculative ?? true,
    };
    const requestState = new RequestState(init, stopTokenIdsOf(stop));
    state.requests.set(requestState.id, requestState);
    state.fairQueue.onRequestAdded(requestState.tenant);
    // An unforked request starts as its one parent; the others fork from it (see forkSeq).
    const numSeqs = requestState.isForked ? requestState.n : 1;
    for (let index = 0; index < numSeqs; index++) {
      const seq = newSequence(state, requestState, index, [...request.promptTokenIds], []);
      insertSorted(state.waiting, seq);
    }
    return { isAccepted: true };
  }

  abortRequest(requestId: RequestId): boolean {
    const request = this.state.requests.get(requestId);
    if (request === undefined) return false;
    for (const seq of request.seqs) {
      if (seq.status !== "finished") finishSeq(this.state, seq);
    }
    return true;
  }

  abortSeq(requestId: RequestId, index: number): SeqAbortResult | null {
    const request = this.state.requests.get(requestId);
    if (request === undefined || !request.isForked || request.n === 1) return null;
    const seq = request.seqs.find((s) => s.index === index);
    if (seq === undefined || seq.status === "finished") return null;
    return { isRequestDone: finishSeq(this.state, seq) };
  }

  schedule(options: ScheduleOptions = {}): StepPlan<S> {
    if (this.pending !== null) throw new InvariantError("one plan at a time: commit it first");
    const { maxDecodeSteps = 1, canBurst = () => true } = options;
    const planned = planBurst(
      this.state,
      planStep(this.state, this.nextStepId++),
      maxDecodeSteps,
      canBurst,
    );
    this.lastPlan = planned.plan;
    if (planned.seqs.length > 0) this.pending = planned;
    else this.deferredPreempted.push(...planned.preempted);
    return planned.plan;
  }

  scheduleAhead(canRunAhead: (requestId: RequestId) => boolean = () => true): StepPlan<S> | null {
    if (this.pending === null || this.ahead !== null) return null;
    const planned = planAhead(this.state, this.pending, this.nextStepId, canRunAhead);
    if (planned === null) return null;
    this.nextStepId++;
    this.ahead = planned;
    return planned.plan;
  }

  commit(plan: StepPlan<S>, sampled: StepResults<T>): EngineEvent<T>[] {
    if (this.pending === null && plan === this.lastPlan && plan.seqs.length === 0) {
      const preempted = this.deferredPreempted.splice(0);
      return commitStep(this.state, { plan, seqs: [], preempted }, []);
    }
    const pending = assertPending(this.pending, plan, sampled);
    const preempted = [...this.deferredPreempted, ...pending.preempted];
    // commitStep validates before it mutates: when it throws, the plan stays pending.
    const events = commitStep(this.state, { ...pending, preempted }, sampled);
    this.deferredPreempted.length = 0;
    // The token that fills each ahead slot was appended above (or its sequence finished).
    for (const seq of this.ahead?.seqs ?? []) seq.numAheadTokens = 0;
    this.pending = this.ahead;
    this.ahead = null;
    return events;
  }

  prefixMatchLen(
    promptTokenIds: readonly number[],
    adapterId: AdapterId | null,
    cacheSalt: string | null,
  ): number {
    return this.state.kv.prefixMatchLen(promptTokenIds, cacheNamespace(adapterId, cacheSalt));
  }

  hasPendingWork(): boolean {
    return this.state.requests.size > 0 || this.state.droppedSeqIds.length > 0;
  }

  stats(): SchedulerStats {
    const { running, waiting, requests, kv, config } = this.state;
    const runningRequests = new Set(running.map((seq) => seq.request));
    const cacheStats = kv.stats;
    return {
      numRunningSeqs: running.length,
      numWaitingSeqs: waiting.length,
      numRunningRequests: runningRequests.size,
      numWaitingRequests: requests.size - runningRequests.size,
      numUsedBlocks: kv.pool.numUsed,
      numBlocks: config.numBlocks,
      numCachedBlocks: kv.cache.numCachedBlocks,
      prefixCacheQueryTokens: cacheStats.numQueryTokens,
      prefixCacheHitTokens: cacheStats.numHitTokens,
      numPreemptions: this.state.numPreemptions,
      ...loraStats(this.state),
    };
  }

  checkInvariants(): void {
    checkEngineInvariants(this.state);
  }

  /**
   * Speculative decoding: feeds the step-time model (the router measured `ms` for a step of
   * `numTokens` scheduled tokens). No-op without speculation.
   */
  observeStepTime(numTokens: number, ms: number, numSampled = 0): void {
    this.state.spec?.observeStep(numTokens, ms, numSampled);
  }

  /**
   * Draft-model speculation: the decodes to propose drafts for before the next `schedule()`
   * (plan-drafts.ts). [] without speculation. Read-only.
   */
  draftRequests(): DraftRequest[] {
    return draftRequests(this.state, this.nextStepId);
  }

  /**
   * Draft-model speculation: the router measured a draft round of `numPositions` draft-model
   * steps taking `ms` (the adaptive policy weighs it against the drafts' gain). No-op without.
   */
  observeDraftRound(numPositions: number, ms: number): void {
    this.state.spec?.observeDraftRound(numPositions, ms);
  }

  /** Ids of the running sequences (a draft model drops its state for the others). */
  runningSeqIds(): number[] {
    return this.state.running.map((seq) => seq.id as number);
  }

  /** Verifications committed since the last call (for the spec-decode metrics); [] without. */
  takeSpecOutcomes(): SpecOutcome[] {
    return this.state.spec?.takeOutcomes() ?? [];
  }
}

function loraStats<S>(state: EngineState<S>) {
  const adapters = (seqs: readonly Sequence<S>[]) => [
    ...new Set(
      seqs.flatMap((seq) => (seq.request.adapterId === null ? [] : [seq.request.adapterId])),
    ),
  ];
  return {
    residentAdapters: state.lora?.resident() ?? [],
    runningAdapters: adapters(state.running),
    waitingAdapters: adapters(state.waiting),
    maxLoras: state.config.maxLoras ?? 0,
  };
}

function validateConfig(config: SchedulerConfig): void {
  const { numBlocks, blockSize, maxNumBatchedTokens, maxNumSeqs, maxModelLen } = config;
  for (const [name, value] of Object.entries({
    numBlocks,
    blockSize,
    maxNumBatchedTokens,
    maxNumSeqs,
    maxModelLen,
  })) {
    invariant(Number.isInteger(value) && value >= 1, "config counts are positive integers", name);
  }
  // Every running sequence gets its decode token each step; otherwise some would starve.
  invariant(maxNumBatchedTokens >= maxNumSeqs, "maxNumBatchedTokens ≥ maxNumSeqs");
  // One sequence alone must fit in the pool, or preempting all others would not let it finish.
  invariant(maxModelLen <= numBlocks * blockSize, "maxModelLen ≤ numBlocks × blockSize");
}

import {
  asAdapterId,
  asRequestId,
  type NewRequest,
  type RequestId,
  Scheduler,
  type SchedulerStats,
  type SeqAbortResult,
  type SpeculationConfig,
  type StepPlan,
  type StepResult,
} from "@kiln/engine-core";
import {
  ErrorCode,
  type GrammarSpec,
  PoolingType,
  type SampledToken,
  type SamplingParams,
  type SequenceFailure,
  type StepRequest,
  type StepResponse,
  type WorkerInfo,
} from "@kiln/proto";
import { type Context, isTracingEnabled, type ReplicaLabels, ROOT_CONTEXT } from "@kiln/telemetry";
import type { DraftWorker } from "./draft-worker";
import { DEFAULT_MULTI_STEP, type MultiStepConfig, MultiStepPolicy } from "./multi-step";
import { planToWire } from "./plan-to-wire";
import { batchYieldConfig } from "./priority-class";
import { finishedEvent, type RequestRecord } from "./request-record";
import { checkStepResponse } from "./rpc/check-step-response";
import { localFacts, type ScheduleAheadMode, shouldScheduleAhead } from "./schedule-ahead";
import { afterIo, collectEmits, emitAll, type PendingEmits } from "./step-emits";
import { defaultRouterTelemetry, type RouterTelemetry } from "./telemetry/router-telemetry";
import type { StepObserver } from "./telemetry/step-observer";
import { describeGrpcError, type WorkerConnection } from "./worker-connection";

/**
 * KILN_STEP_PROFILE=1 prints one JSON line per engine step on stdout (bench/src/compare reads
 * them to split a step into scheduling, gRPC and worker compute). Off by default.
 */
const IS_STEP_PROFILE = process.env.KILN_STEP_PROFILE === "1";

function printStepProfile(
  plan: StepPlan<unknown>,
  ms: { readonly schedule: number; readonly rpc: number },
  computeSeconds: number,
  commitMs: number,
): void {
  const line = {
    event: "step-profile",
    stepId: plan.stepId,
    numSeqs: plan.seqs.length,
    numTokens: plan.numScheduledTokens,
    scheduleMs: ms.schedule,
    rpcMs: ms.rpc,
    computeMs: computeSeconds * 1000,
    commitMs,
  };
  process.stdout.write(`${JSON.stringify(line)}\n`);
}

export interface ReplicaLimits {
  readonly maxNumSeqs: number;
  readonly maxNumBatchedTokens: number;
  /** A step that takes longer than this fails the replica (its requests end with WORKER_LOST). */
  readonly stepTimeoutMs: number;
  /**
   * Steps in a row batch-class prefill may wait for interactive prefill (engine-core
   * batch-yield.ts; KILN_BATCH_MAX_HOLD_STEPS). 0 or absent: batch prefill never waits.
   */
  readonly maxBatchHoldSteps?: number;
  /**
   * Overlapped steps (KILN_ASYNC_SCHEDULING, --async-scheduling; on by default; ADR 0021): a
   * committed step's token events are streamed and recorded in telemetry while the worker
   * computes the next step, instead of before it is planned. Off: stream, then plan.
   */
  readonly isAsyncScheduling?: boolean;
  /** Speculative decoding (--speculative-config, ADR 0017); absent or null: none. */
  readonly speculation?: SpeculationConfig | null;
  /**
   * Planning step N + 1 while the worker computes step N (KILN_SCHEDULE_AHEAD,
   * --schedule-ahead; schedule-ahead.ts); absent: auto. Only with async scheduling on.
   */
  readonly scheduleAhead?: ScheduleAheadMode;
  /**
   * Multi-step decode (ADR 0028, multi-step.ts): the most decode steps the worker runs for one
   * plan when every scheduled sequence decodes and nothing waits, and the compute time a burst
   * may take. Absent: DEFAULT_MULTI_STEP.
   */
  readonly multiStep?: MultiStepConfig;
}

/** A step sent to the worker and not committed yet. */
interface SentStep {
  readonly plan: StepPlan<SamplingParams>;
  readonly request: StepRequest;
  readonly step: StepObserver;
  /** Clock readings: planning began, the Step left. */
  readonly scheduledAt: number;
  readonly sentAt: number;
  /** The worker's answer. */
  readonly settled: Promise<StepResponse>;
}

export interface ReplicaCounters {
  numRequestsRouted: number;
  /** Steps planned and sent while the step before them computed (ADR 0021). */
  numStepsPlannedAhead: number;
}

/**
 * One worker group (a data-parallel replica): a scheduler over the worker's KV capacity and the
 * engine loop that drives it. The loop steps back to back while there is work and idles
 * otherwise; a request added between steps joins the next one (continuous batching).
 *
 * When a step fails or the worker disappears, every request on the replica ends with a
 * WORKER_LOST error event and the scheduler starts afresh (so no block stays owned); the
 * replica is unhealthy until `connect` succeeds again.
 */
export class Replica {
  private scheduler: Scheduler<SamplingParams, SampledToken> | null = null;
  private readonly idToRecord = new Map<string, RequestRecord>();
  /**
   * Bumped whenever the scheduler is replaced or dropped (connect, fail). A loop and its step
   * belong to the generation they started in: a stale loop stops at its next check, and a stale
   * step's late result or rejection touches nothing.
   */
  private generation = 0;
  /** The generation whose loop is running, or null when idle. */
  private loopGeneration: number | null = null;
  /** The Step call in flight (of any generation): the next one waits for it to settle. */
  private inFlightStep: Promise<unknown> | null = null;
  /** A committed step's events not yet streamed (overlapped steps); see flushEmits. */
  private pendingEmits: PendingEmits | null = null;
  private needsReset = true;
  private vocabLen = 0;
  private instanceId: string | null = null;
  private eosTokenIds: readonly number[] = [];
  /** Metric labels: the worker's model and this replica's id. */
  private labels: ReplicaLabels = { model: "", replica: "" };
  readonly counters: ReplicaCounters = { numRequestsRouted: 0, numStepsPlannedAhead: 0 };
  /** The worker reported draining (drain.ts): no new request is routed here. */
  isDraining = false;
  /** Draft-model speculation (ADR 0017): the replica's draft worker, when one is attached. */
  private draft: DraftWorker | null = null;
  /** KILN_SCHEDULE_AHEAD decided for the connected worker (schedule-ahead.ts). */
  private isAheadAllowed = false;
  /** Multi-step decode: the steps of the next burst, from the decode step time (ADR 0028). */
  private readonly multiStep: MultiStepPolicy;
  private readonly stepsPerBurst = (numSeqs: number): number => this.multiStep.stepsFor(numSeqs);

  constructor(
    readonly replicaId: string,
    private currentConnection: WorkerConnection,
    private readonly limits: ReplicaLimits,
    private readonly clock: () => number,
    private readonly telemetry: RouterTelemetry = defaultRouterTelemetry(),
  ) {
    this.multiStep = new MultiStepPolicy(limits.multiStep ?? DEFAULT_MULTI_STEP);
  }

  /** The model the connected worker serves ("" before the first connection). */
  get model(): string {
    return this.labels.model;
  }

  get isHealthy(): boolean {
    return this.scheduler !== null;
  }

  get connection(): WorkerConnection {
    return this.currentConnection;
  }

  /** Vocabulary size of the connected worker's model (0 before the first connection). */
  get vocabSize(): number {
    return this.vocabLen;
  }

  get address(): string {
    return this.currentConnection.address;
  }

  isConnectedTo(address: string, instanceId: string): boolean {
    return this.isHealthy && this.address === address && this.instanceId === instanceId;
  }

  hasRequest(requestId: string): boolean {
    return this.idToRecord.has(requestId);
  }

  get numRequests(): number {
    return this.idToRecord.size;
  }

  /**
   * Adopts the worker's reported capacity. A worker that restarted (new instance id) or a
   * replica that was unhealthy starts with an empty scheduler and a reset step.
   */
  connect(info: WorkerInfo, connection: WorkerConnection): void {
    if (connection !== this.currentConnection) {
      this.currentConnection.close();
      this.currentConnection = connection;
    }
    if (this.scheduler && info.instanceId === this.instanceId) return;
    if (this.scheduler) this.fail("the worker restarted");
    this.instanceId = info.instanceId;
    this.isDraining = false;
    const mode = this.limits.scheduleAhead ?? "auto";
    const facts = localFacts(connection.address, info.numComputeThreads);
    this.isAheadAllowed = shouldScheduleAhead(mode, facts);
    if (mode === "auto" && !this.isAheadAllowed) {
      process.stderr.write(
        `kiln router: replica ${this.replicaId}: not scheduling ahead: the worker shares this ` +
          `machine and computes on ${facts.numComputeThreads} threads of its ${facts.numCores} ` +
          "cores (KILN_SCHEDULE_AHEAD=on overrides)\n",
      );
    }
    this.eosTokenIds = info.eosTokenIds;
    this.vocabLen = info.vocabSize;
    this.generation++;
    this.labels = { model: info.model, replica: this.replicaId };
    this.telemetry.replicaConnected(this.labels);
    if (this.limits.speculation) this.telemetry.specDecode.initialize(this.labels);
    this.needsReset = true;
    this.draft?.reset(); // the new scheduler numbers its sequences afresh
    this.multiStep.reset();
    const speculation = this.limits.speculation ?? null;
    const maxNumSeqs = Math.min(this.limits.maxNumSeqs, info.numBlocks);
    this.scheduler = new Scheduler<SamplingParams, SampledToken>({
      numBlocks: info.numBlocks,
      blockSize: info.blockSize,
      maxModelLen: Math.min(info.maxModelLen, info.numBlocks * info.blockSize),
      maxNumSeqs,
      maxNumBatchedTokens: Math.max(this.limits.maxNumBatchedTokens, maxNumSeqs),
      clock: this.clock,
      maxLoras: info.maxLoras,
      ...batchYieldConfig(this.limits.maxBatchHoldSteps ?? 0),
      speculation,
      ...(speculation?.method === "draft_model"
        ? {
            draftProposer: (tokenIds: readonly number[], maxDrafts: number, seqId: number) =>
              this.draft?.draftsFor(seqId, tokenIds, maxDrafts) ?? [],
          }
        : {}),
    });
  }

  /** The attached draft worker, if any. */
  get draftWorker(): DraftWorker | null {
    return this.draft;
  }

  /**
   * Attaches the replica's draft worker (draft-model speculation, ADR 0017), or detaches it
   * with null. Returns an error message instead when its vocabulary differs from the target's.
   */
  attachDraft(draft: DraftWorker | null): string | null {
    if (draft !== null && this.vocabLen !== 0 && draft.info.vocabSize !== this.vocabLen) {
      return (
        `the draft model's vocabulary (${draft.info.vocabSize} tokens, ${draft.info.model}) ` +
        `differs from the target's (${this.vocabLen} tokens, ${this.labels.model})`
      );
    }
    if (draft !== this.draft) this.draft?.connection.close();
    this.draft = draft;
    draft?.reset();
    return null;
  }

  stats(): SchedulerStats | null {
    return this.scheduler?.stats() ?? null;
  }

  /** Prompt tokens a new request would find in this replica's prefix cache. */
  prefixMatchLen(
    tokenIds: readonly number[],
    cacheSalt: string | null,
    adapter: string | null = null,
  ): number {
    const adapterId = adapter === null ? null : asAdapterId(adapter);
    return this.scheduler?.prefixMatchLen(tokenIds, adapterId, cacheSalt) ?? 0;
  }

  /** Whether the worker holds `adapter` in a LoRA slot (or a running request uses it). */
  hasResidentAdapter(adapter: string): boolean {
    return this.scheduler?.stats().residentAdapters.includes(asAdapterId(adapter)) ?? false;
  }

  /**
   * Compiles a request's grammar on the worker before the request is added (ADR 0016), so that
   * no step waits for a compile. Resolves with the worker's message when it cannot be compiled,
   * else null; also null when the worker does not answer (unreachable, or a build without
   * PrepareGrammar): the step that first runs the sequence then compiles it.
   */
  async prepareGrammar(grammar: GrammarSpec): Promise<string | null> {
    try {
      return await this.currentConnection.prepareGrammar(grammar, this.limits.stepTimeoutMs);
    } catch {
      return null;
    }
  }

  /**
   * Adds a request; returns an error message when the scheduler rejects it. `parent` is the
   * caller's trace context (the request's span is its child).
   */
  tryAdd(
    request: NewRequest<SamplingParams>,
    record: RequestRecord,
    parent: Context = ROOT_CONTEXT,
  ): string | null {
    if (!this.scheduler) return "the replica is not connected to a worker";
    const result = this.scheduler.addRequest({ ...request, eosTokenIds: this.eosTokenIds });
    if (!result.isAccepted) return result.message;
    this.idToRecord.set(record.requestId, record);
    this.counters.numRequestsRouted++;
    this.telemetry.requestAdded(
      this.labels,
      record.requestId,
      request.promptTokenIds.length,
      parent,
    );
    this.wake();
    return null;
  }

  /** Aborts a request in any state; its blocks are free before the next step is planned. */
  abort(requestId: string): boolean {
    this.flushEmits(); // its committed tokens go out before its end
    const record = this.idToRecord.get(requestId);
    if (!record) return false;
    this.idToRecord.delete(requestId);
    this.scheduler?.abortRequest(asRequestId(requestId));
    this.telemetry.requestAborted(requestId);
    record.end();
    this.wake();
    return true;
  }

  /**
   * Aborts one choice (`index`) of a request, e.g. one the gateway finished on a stop string
   * (`isStop`); the others keep generating. Its stream gets a finished event with reason "stop"
   * or "abort" (with the usage when it was the last choice), and the success metric counts the
   * request's end with that reason. For n = 1, index 0 ends the request. False when the
   * request or the choice is unknown or done, or a request with n > 1 has not forked yet.
   */
  abortChoice(requestId: string, index: number, isStop = false): boolean {
    this.flushEmits();
    const record = this.idToRecord.get(requestId);
    const scheduler = this.scheduler;
    if (!record || !scheduler) return false;
    const id = asRequestId(requestId);
    let result: SeqAbortResult | null;
    if (record.outputTokenIds.length > 1) result = scheduler.abortSeq(id, index);
    else result = index === 0 && scheduler.abortRequest(id) ? { isRequestDone: true } : null;
    if (!result) return false;
    const reason = isStop ? "stop" : "abort";
    record.emit(finishedEvent(record, index, reason, 0, result.isRequestDone));
    if (result.isRequestDone) {
      this.idToRecord.delete(requestId);
      this.telemetry.requestAborted(requestId, reason);
      record.end();
    }
    this.wake();
    return true;
  }

  /** Ends every request with WORKER_LOST and drops the scheduler until the worker reconnects. */
  fail(reason: string): void {
    this.flushEmits(); // committed tokens reach the client (and a retry continues after them)
    this.scheduler = null;
    this.generation++;
    const records = [...this.idToRecord.values()];
    this.idToRecord.clear();
    for (const record of records) {
      this.telemetry.requestFailed(record.requestId, "WORKER_LOST", reason);
      if (record.onLost?.(reason)) continue; // retried on a healthy replica (retry.ts)
      record.emit({ error: { code: ErrorCode.WORKER_LOST, message: `worker lost: ${reason}` } });
      record.end();
    }
  }

  close(): void {
    this.fail("the router is shutting down");
    this.currentConnection.close();
  }

  private wake(): void {
    if (this.loopGeneration === this.generation) return;
    const generation = this.generation;
    this.loopGeneration = generation;
    // Start on a fresh tick so requests arriving together join the same first step.
    setImmediate(() => {
      this.loop(generation)
        .catch((err: unknown) => {
          // A stale step's late rejection belongs to a scheduler that is gone already.
          if (generation === this.generation) this.fail(describeGrpcError(err));
        })
        .finally(() => {
          if (this.loopGeneration === generation) this.loopGeneration = null;
        });
    });
  }

  private async loop(generation: number): Promise<void> {
    // A step planned ahead of the one in flight (overlapped steps): it runs next.
    let next: SentStep | null = null;
    /** When the last answer arrived (the step profile's round trip of a step sent ahead). */
    let lastReceivedAt = Number.NEGATIVE_INFINITY;
    for (;;) {
      if (next === null) {
        // A step of an older generation may still run on the worker: never overlap Steps.
        if (this.inFlightStep) await this.inFlightStep.catch(() => {});
        const scheduler = this.scheduler;
        if (!scheduler || generation !== this.generation) return;
        // Only with a draft worker: otherwise planning follows the commit in the same turn.
        if (this.draft !== null) {
          await this.proposeDrafts(scheduler);
          if (generation !== this.generation) return;
        }
        const step = this.telemetry.startStep(this.labels, this.clock);
        const scheduledAt = this.clock();
        const plan = scheduler.schedule({
          maxDecodeSteps: this.stepsPerBurst,
          canBurst: this.canBurst,
        });
        if (
          plan.seqs.length === 0 &&
          plan.finishedSeqIds.length + plan.preemptedSeqIds.length === 0
        ) {
          scheduler.commit(plan, []);
          this.flushEmits();
          return; // idle until a request is added or aborted
        }
        next = this.send(plan, step, scheduledAt);
      }
      const current: SentStep = next;
      next = null;
      const scheduler = this.scheduler!;
      // Overlap: the step after this one is planned and sent while the worker computes this one
      // (ADR 0021), when it does not depend on this one's outcome.
      if (this.isPlanningAhead()) {
        const step = this.telemetry.startStep(this.labels, this.clock);
        const scheduledAt = this.clock();
        const ahead = scheduler.scheduleAhead(this.canRunAhead);
        if (ahead !== null) next = this.send(ahead, step, scheduledAt, true);
      }
      // The previous step's events stream meanwhile. One turn of the event loop first, so the
      // Step has left before the emits take the thread.
      if (this.pendingEmits) await afterIo().then(() => this.flushEmits());
      const response = await current.settled;
      const receivedAt = this.clock();
      if (generation !== this.generation) return; // failed or reconnected meanwhile
      this.commitStep(scheduler, current, response);
      if (IS_STEP_PROFILE) {
        // A step sent ahead waited behind the one before it: its round trip starts when that
        // one's answer arrived.
        const startedAt = Math.max(current.sentAt, lastReceivedAt);
        const ms = { schedule: current.sentAt - current.scheduledAt, rpc: receivedAt - startedAt };
        printStepProfile(current.plan, ms, response.computeSeconds, this.clock() - receivedAt);
      }
      lastReceivedAt = receivedAt;
    }
  }

  /** Sends a plan to the worker; the returned step settles with its answer. */
  private send(
    plan: StepPlan<SamplingParams>,
    step: StepObserver,
    scheduledAt: number,
    isAhead = false,
  ): SentStep {
    const request = planToWire(plan, this.idToRecord, this.needsReset, this.instanceId ?? "");
    this.needsReset = false;
    step.planned(plan, isAhead); // counts it in kiln_steps_planned_ahead_total
    if (isAhead) this.counters.numStepsPlannedAhead++;
    const sentAt = this.clock();
    const stepCall = step.execute((metadata) =>
      this.currentConnection.step(request, this.limits.stepTimeoutMs, metadata),
    );
    this.inFlightStep = stepCall;
    const settled = stepCall.finally(() => {
      if (this.inFlightStep === stepCall) this.inFlightStep = null;
    });
    settled.catch(() => {}); // awaited by the loop, unless an earlier step failed first
    return { plan, request, step, scheduledAt, sentAt, settled };
  }

  /** Checks the worker's answer to `sent` and commits it; its events stream later (flushEmits). */
  private commitStep(
    scheduler: Scheduler<SamplingParams, SampledToken>,
    sent: SentStep,
    response: StepResponse,
  ): void {
    const { plan, request } = sent;
    const invalid = checkStepResponse(request, response, this.vocabLen);
    if (invalid) throw new Error(`the worker sent an invalid step answer: ${invalid}`);
    this.failRefusedSequences(plan, response.failures);
    const seqIdToToken = new Map<number, StepResult<SampledToken>>();
    for (const result of response.results) {
      if (!result.token) continue;
      // A verification's run of tokens (speculative decoding, ADR 0017), or the one token.
      const tokens = result.nextTokens.length > 0 ? [result.token, ...result.nextTokens] : null;
      seqIdToToken.set(result.seqId, tokens ?? result.token);
    }
    const sampled = plan.seqs.map((seq) => seqIdToToken.get(seq.seqId) ?? null);
    const events = scheduler.commit(plan, sampled);
    const numDecodeSteps = this.observeDecodeSteps(plan, response);
    const numSampled = plan.seqs.reduce((n, seq) => n + (seq.sample !== null ? 1 : 0), 0);
    scheduler.observeStepTime(plan.numScheduledTokens, this.clock() - sent.scheduledAt, numSampled);
    this.telemetry.specDecode.record(this.labels, scheduler.takeSpecOutcomes());
    this.pendingEmits = { events, emits: collectEmits(events, this.idToRecord) };
    if (!this.isOverlapped(plan)) this.flushEmits();
    sent.step.committed(numDecodeSteps);
  }

  /**
   * Whether the next step may be planned before the running one returns (ADR 0021): with async
   * scheduling on and KILN_SCHEDULE_AHEAD allowing it for this worker, unless a step is traced
   * (a traced step is a unary call, which cannot queue behind another) or a draft worker
   * proposes (its drafts need the last token).
   */
  private isPlanningAhead(): boolean {
    return (
      this.isAheadAllowed &&
      this.limits.isAsyncScheduling !== false &&
      this.draft === null &&
      !isTracingEnabled()
    );
  }

  /**
   * Requests whose next step may be planned ahead: not one with a grammar (the worker's matcher
   * may have ended on the pending token) or an embedding request.
   */
  private readonly canRunAhead = (requestId: RequestId): boolean => {
    const record = this.idToRecord.get(requestId);
    if (record === undefined) return false;
    const isPooling =
      (record.pooling ?? PoolingType.POOLING_TYPE_NONE) !== PoolingType.POOLING_TYPE_NONE;
    return record.grammar === undefined && !isPooling;
  };

  /**
   * Feeds the multi-step policy the compute time per step of a plan of decodes only, and returns
   * the decode steps the worker ran for it (1 for any other plan).
   */
  private observeDecodeSteps(plan: StepPlan<SamplingParams>, response: StepResponse): number {
    const isDecodes = plan.seqs.every(
      (seq) => seq.queryLen === 1 && seq.sample !== null && !seq.sample.draftTokenIds?.length,
    );
    if (!isDecodes || plan.seqs.length === 0) return 1;
    const numSteps = response.results.reduce((n, r) => Math.max(n, 1 + r.nextTokens.length), 1);
    this.multiStep.observe(plan.seqs.length, numSteps, response.computeSeconds * 1000);
    return numSteps;
  }

  /** Requests whose decodes may run several steps per plan (ADR 0028): not an embedding. */
  private readonly canBurst = (requestId: RequestId): boolean => {
    const pooling = this.idToRecord.get(requestId)?.pooling ?? PoolingType.POOLING_TYPE_NONE;
    return pooling === PoolingType.POOLING_TYPE_NONE;
  };

  /**
   * Draft-model speculation: runs the draft worker for the decodes the scheduler would have it
   * propose for, before the step is planned (the previous step's events stream meanwhile). A
   * failing draft worker is detached, and the replica decodes without drafts until it registers
   * again; the target's requests never fail for it.
   */
  private async proposeDrafts(scheduler: Scheduler<SamplingParams, SampledToken>): Promise<void> {
    const draft = this.draft;
    if (draft === null) return;
    const requests = scheduler.draftRequests();
    if (requests.length === 0) {
      // Nothing to propose: still free the draft blocks of sequences that ended.
      if (draft.numSequences > 0) draft.dropExcept(new Set(scheduler.runningSeqIds()));
      return;
    }
    const startedAt = this.clock();
    const proposing = draft.propose(requests, scheduler.runningSeqIds());
    this.flushEmits();
    try {
      const numSteps = await proposing;
      scheduler.observeDraftRound(numSteps, this.clock() - startedAt);
    } catch (err) {
      if (this.draft !== draft) return;
      process.stderr.write(
        `kiln router: replica ${this.replicaId}: draft worker ${draft.connection.address} ` +
          `failed (${describeGrpcError(err)}); decoding without it until it registers again\n`,
      );
      this.attachDraft(null);
    }
  }

  /**
   * Ends the requests of sequences the worker refused (input it could not use) with
   * INVALID_REQUEST; the rest of the step commits. Their results are ignored at commit.
   */
  private failRefusedSequences(
    plan: StepPlan<SamplingParams>,
    failures: readonly SequenceFailure[],
  ): void {
    for (const failure of failures) {
      const requestId = plan.seqs.find((seq) => seq.seqId === failure.seqId)?.requestId;
      const record = requestId === undefined ? undefined : this.idToRecord.get(requestId);
      if (!record) continue;
      this.idToRecord.delete(record.requestId);
      this.scheduler?.abortRequest(asRequestId(record.requestId));
      this.telemetry.requestFailed(record.requestId, "INVALID_REQUEST", failure.message);
      const message = `the worker refused the request: ${failure.message}`;
      record.emit({ error: { code: ErrorCode.INVALID_REQUEST, message } });
      record.end();
    }
  }

  /**
   * Whether `plan`'s events may stream while the next step computes (ADR 0021). The one place
   * that decides: a step kind that must be settled before the next is planned (for example
   * speculative decoding's verified drafts) returns false here.
   */
  private isOverlapped(_plan: StepPlan<SamplingParams>): boolean {
    return this.limits.isAsyncScheduling !== false;
  }

  /** Streams the committed step's events not yet streamed, and counts them in telemetry. */
  private flushEmits(): void {
    const pending = this.pendingEmits;
    if (pending === null) return;
    this.pendingEmits = null;
    this.telemetry.eventsCommitted(this, pending.events, this.clock());
    emitAll(pending.emits);
  }
}

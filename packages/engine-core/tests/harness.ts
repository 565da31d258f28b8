import { expect } from "vitest";
import {
  type AdapterId,
  asRequestId,
  type EngineEvent,
  type NewRequest,
  type RequestId,
  type ScheduledSeq,
  Scheduler,
  type SchedulerConfig,
  type StepPlan,
} from "../src/index";
import { expectedKv, type FakeToken, FakeWorker, fakeNextToken } from "./fake-worker";

export type Sampling = { readonly seed: number };

export interface HarnessRequest {
  readonly request: NewRequest<Sampling>;
  readonly outputs: number[][];
  numFinishes: number;
  isAborted: boolean;
}

/**
 * Drives a Scheduler against a FakeWorker like the router would, recording every event, and
 * checks after each call what the properties demand (invariants, budgets, exact K/V contents).
 */
export class Harness {
  readonly scheduler: Scheduler<Sampling, FakeToken>;
  readonly worker: FakeWorker;
  readonly requests = new Map<RequestId, HarnessRequest>();
  readonly events: EngineEvent<FakeToken>[] = [];
  readonly config: SchedulerConfig;
  readonly vocabSize: number;
  numSteps = 0;
  numPreemptedEvents = 0;
  /** Steps planned ahead (`isAhead`), counted when they run. */
  numAheadSteps = 0;
  /**
   * Overlapped steps: each step plans the next one ahead (scheduleAhead) before the worker runs
   * it, and that plan runs after this one's commit, as the router's engine loop does.
   */
  isAhead = false;
  /** Multi-step decode: the most decode steps one plan may run (schedule's maxDecodeSteps). */
  maxDecodeSteps = 1;
  /** Plans with a multi-step decode (numSteps > 1), counted when they run. */
  numBurstSteps = 0;
  /** The plan made ahead during the last step; the next step runs it. */
  private aheadPlan: StepPlan<Sampling> | null = null;
  private nextId = 0;

  constructor(config: Omit<SchedulerConfig, "clock">, vocabSize = 64) {
    let now = 0;
    this.config = { ...config, clock: () => now++ };
    this.vocabSize = vocabSize;
    this.scheduler = new Scheduler<Sampling, FakeToken>(this.config);
    this.worker = new FakeWorker({
      numBlocks: config.numBlocks,
      blockSize: config.blockSize,
      vocabSize,
      namespaceOf: (seq) => this.namespaceOf(seq.requestId),
      tokensOf: (seq) => this.tokensOf(seq),
    });
  }

  add(fields: Omit<NewRequest<Sampling>, "requestId" | "sampling">): RequestId {
    const requestId = asRequestId(`r${this.nextId++}`);
    const request: NewRequest<Sampling> = { ...fields, requestId, sampling: { seed: 0 } };
    const result = this.scheduler.addRequest(request);
    expect(result).toEqual({ isAccepted: true });
    const n = request.n ?? 1;
    const outputs = Array.from({ length: n }, () => [] as number[]);
    this.requests.set(requestId, { request, outputs, numFinishes: 0, isAborted: false });
    return requestId;
  }

  abort(requestId: RequestId): boolean {
    const isAborted = this.scheduler.abortRequest(requestId);
    const record = this.requests.get(requestId)!;
    if (isAborted) {
      record.numFinishes++;
      record.isAborted = true;
    }
    return isAborted;
  }

  /** The next plan: the one made ahead, if any, else a fresh `schedule()`. */
  plan(): StepPlan<Sampling> {
    const ahead = this.aheadPlan;
    this.aheadPlan = null;
    if (ahead !== null) this.numAheadSteps++;
    const plan = ahead ?? this.scheduler.schedule({ maxDecodeSteps: this.maxDecodeSteps });
    expect(plan.numScheduledTokens).toBeLessThanOrEqual(this.config.maxNumBatchedTokens);
    expect(plan.seqs.length).toBeLessThanOrEqual(this.config.maxNumSeqs);
    const sum = plan.seqs.reduce((n, seq) => n + seq.queryLen, 0);
    expect(sum).toBe(plan.numScheduledTokens);
    for (const seq of plan.seqs) {
      const numSteps = seq.numSteps ?? 1;
      expect(seq.contextLen - 1 + numSteps).toBeLessThanOrEqual(this.config.maxModelLen);
      expect(numSteps).toBeLessThanOrEqual(this.maxDecodeSteps);
    }
    if (plan.seqs.some((seq) => (seq.numSteps ?? 1) > 1)) this.numBurstSteps++;
    return plan;
  }

  /** Runs the plan on the fake worker and commits; `between` runs in the gap (aborts). */
  execute(plan: StepPlan<Sampling>, between?: () => void): EngineEvent<FakeToken>[] {
    // Tables as sent: planning ahead may append a slot's block to the live views.
    const blockTables = plan.seqs.map((seq) => [...seq.blockTable]);
    if (this.isAhead) this.aheadPlan = this.scheduler.scheduleAhead();
    const results = this.worker.step(plan, blockTables);
    between?.();
    const events = this.scheduler.commit(plan, results);
    this.record(events);
    this.numSteps++;
    return events;
  }

  step(between?: () => void): EngineEvent<FakeToken>[] {
    return this.execute(this.plan(), between);
  }

  /** Steps until nothing is left; fails after `maxSteps`. */
  drain(maxSteps: number, check = true): void {
    for (let i = 0; this.scheduler.hasPendingWork() || this.aheadPlan !== null; i++) {
      if (i >= maxSteps) throw new Error(`not drained after ${maxSteps} steps`);
      this.step();
      if (check) this.scheduler.checkInvariants();
    }
  }

  /** The fake model's greedy continuation of a sequence, as the scheduler should reproduce it. */
  expectedOutput(requestId: RequestId, seqIndex: number, numTokens: number): number[] {
    const { request } = this.requests.get(requestId)!;
    const tokens = [...request.promptTokenIds];
    const outputs: number[] = [];
    const stopIds = [
      ...(request.ignoreEos ? [] : (request.eosTokenIds ?? [])),
      ...(request.stopTokenIds ?? []),
    ];
    while (outputs.length < numTokens) {
      const kv = expectedKv(this.namespaceOf(requestId), tokens);
      const banned = outputs.length < (request.minTokens ?? 0) ? stopIds : [];
      const tokenId = fakeNextToken(kv[kv.length - 1]!, seqIndex, this.vocabSize, banned);
      tokens.push(tokenId);
      outputs.push(tokenId);
    }
    return outputs;
  }

  namespaceOf(requestId: RequestId): string {
    const { request } = this.requests.get(requestId)!;
    return `${request.adapterId ?? ""}|${request.cacheSalt ?? ""}`;
  }

  private tokensOf(seq: ScheduledSeq<unknown>): number[] | undefined {
    const record = this.requests.get(seq.requestId)!;
    // Aborted while a step planned ahead was in flight: that step ran without its committed token.
    if (record.isAborted) return undefined;
    return [...record.request.promptTokenIds, ...record.outputs[seq.seqIndex]!];
  }

  private record(events: EngineEvent<FakeToken>[]): void {
    for (const event of events) {
      this.events.push(event);
      const record = this.requests.get(event.requestId)!;
      if (event.kind === "token") {
        const outputs = record.outputs[event.seqIndex]!;
        expect(event.outputIndex).toBe(outputs.length);
        outputs.push(event.sampled.tokenId);
      } else if (event.kind === "finished") {
        if (event.requestDone !== null) record.numFinishes++;
      } else {
        this.numPreemptedEvents++;
      }
    }
  }
}

export const adapter = (name: string): AdapterId => name as AdapterId;

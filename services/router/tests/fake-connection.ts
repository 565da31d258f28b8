import type { GenerateEvent } from "@kiln/proto";
import {
  type SampledToken,
  SamplingParams,
  type StepRequest,
  type StepResponse,
  WorkerInfo,
} from "@kiln/proto";
import type { RequestRecord } from "../src/request-record";
import type { WorkerConnection } from "../src/worker-connection";

/**
 * A stand-in for the worker's gRPC channel, for in-process Replica tests: every Step answers
 * each sampled sequence with `tokenId` at once, unless the test queued a `hold` (a Step that
 * waits until the test settles it) or a `refuse` (a sequence the worker drops with a failure).
 */
export interface Deferred<T> {
  readonly promise: Promise<T>;
  resolve(value: T): void;
  reject(reason: unknown): void;
}

export function deferred<T>(): Deferred<T> {
  let resolve!: (value: T) => void;
  let reject!: (reason: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

export class FakeConnection {
  readonly address = "127.0.0.1:1";
  readonly steps: StepRequest[] = [];
  private readonly stepToGate = new Map<number, Deferred<void>>();
  readonly refusedSeqIds = new Set<number>();
  /** Rewrites every answer before it is returned (a broken worker). */
  corrupt: (res: StepResponse) => StepResponse = (res) => res;

  constructor(readonly tokenId = 5) {}

  /**
   * Step number `atStep` (0-based, counting every Step call) waits for the returned gate: it
   * answers once the gate resolves, and fails with the gate's error when it rejects.
   */
  hold(atStep = this.steps.length): Deferred<void> {
    const gate = deferred<void>();
    this.stepToGate.set(atStep, gate);
    return gate;
  }

  /**
   * The Step still unanswered, if any. Like the worker's StepStream, a Step sent behind another
   * (planned ahead) runs after it, and fails when it fails (the stream ends).
   */
  private unanswered: Promise<void> | null = null;

  async step(req: StepRequest): Promise<StepResponse> {
    const gate = this.stepToGate.get(this.steps.length);
    this.steps.push(req);
    const before = this.unanswered;
    const answered = (async () => {
      if (before) await before;
      if (gate) await gate.promise;
    })();
    this.unanswered = answered;
    answered.then(
      () => this.forget(answered),
      () => this.forget(answered),
    );
    await answered;
    const token: SampledToken = {
      tokenId: this.tokenId,
      logprob: -1,
      topLogprobs: [],
      embedding: [],
    };
    const refused = req.sequences.filter((s) => this.refusedSeqIds.has(s.seqId));
    return this.corrupt({
      stepId: req.stepId,
      results: req.sequences
        .filter((s) => s.doSample && !this.refusedSeqIds.has(s.seqId))
        .map((s) => ({ seqId: s.seqId, token, nextTokens: [] })),
      computeSeconds: 0,
      failures: refused.map((s) => ({ seqId: s.seqId, message: "token id out of range" })),
    });
  }

  private forget(answered: Promise<void>): void {
    if (this.unanswered === answered) this.unanswered = null;
  }

  info(): Promise<WorkerInfo> {
    return Promise.resolve(workerInfo("instance-1"));
  }

  health(): Promise<boolean> {
    return Promise.resolve(true);
  }

  close(): void {}

  asConnection(): WorkerConnection {
    return this as unknown as WorkerConnection;
  }
}

export function workerInfo(instanceId: string): WorkerInfo {
  return WorkerInfo.fromPartial({
    model: "fake",
    numBlocks: 32,
    blockSize: 4,
    vocabSize: 64,
    maxModelLen: 128,
    instanceId,
  });
}

/** A request record that collects its events; `ended` resolves with them when it ends. */
export function collectingRecord(requestId: string, promptTokenIds: number[], n = 1) {
  const events: GenerateEvent[] = [];
  const ended = deferred<GenerateEvent[]>();
  const record: RequestRecord = {
    requestId,
    replicaId: "r",
    promptTokenIds,
    sampling: SamplingParams.fromPartial({}),
    outputTokenIds: Array.from({ length: n }, () => []),
    emit: (event) => events.push(event),
    end: () => ended.resolve(events),
  };
  return { record, events, ended: ended.promise };
}

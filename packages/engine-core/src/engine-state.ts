import { InvariantError } from "./errors";
import type { FairQueue } from "./fair-queue";
import { asSeqId, type RequestId, type SeqId } from "./ids";
import type { KvCacheManager } from "./kv-cache-manager";
import type { LoraSlots } from "./lora-slots";
import { insertSorted, type RequestState, removeSeq, Sequence } from "./sequence";
import type { SpecState } from "./speculation/spec-state";
import type { SchedulerConfig } from "./types";

/** Everything the scheduler mutates; shared by the planning and commit helpers. */
export interface EngineState<S> {
  readonly config: SchedulerConfig;
  readonly kv: KvCacheManager;
  /** Unfinished requests. */
  readonly requests: Map<RequestId, RequestState<S>>;
  /** Sorted by `compareSeqs`: iteration order when planning; the last one is preempted first. */
  readonly running: Sequence<S>[];
  /** Sorted by `compareSeqs`: admission order. */
  readonly waiting: Sequence<S>[];
  /** Slots held for the future children of running, unforked parallel-sampling parents. */
  numReservedSeqs: number;
  numPreemptions: number;
  nextSeqId: number;
  /** Sequences the worker knows that finished or were aborted since the last plan. */
  readonly droppedSeqIds: SeqId[];
  /** Tenants' virtual times: which tenant's waiting head is admitted next. */
  readonly fairQueue: FairQueue;
  /** LoRA slot bookkeeping; null when the config has no maxLoras. */
  readonly lora: LoraSlots | null;
  /** Steps in a row that held batch prefill back (batch-yield.ts). */
  readonly batchYield: { numHeldSteps: number };
  /** Speculative decoding (ADR 0017); null when the config has none. */
  readonly spec: SpecState | null;
}

/** A new sequence of `request`, waiting, not yet in any queue. */
export function newSequence<S>(
  state: EngineState<S>,
  request: RequestState<S>,
  index: number,
  tokenIds: number[],
  outputTokenIds: number[],
): Sequence<S> {
  const seq = new Sequence(asSeqId(state.nextSeqId++), request, index, tokenIds, outputTokenIds);
  request.seqs.push(seq);
  request.numUnfinishedSeqs++;
  return seq;
}

/** waiting → running. Its blocks were allocated by `KvCacheManager.tryAdmit`. */
export function admitSeq<S>(state: EngineState<S>, seq: Sequence<S>): void {
  if (!removeSeq(state.waiting, seq)) throw new InvariantError("admitted sequences were waiting");
  seq.status = "running";
  insertSorted(state.running, seq);
  const request = seq.request;
  if (!request.isForked) state.numReservedSeqs += request.n - 1;
  request.firstScheduledTime ??= state.config.clock();
}

/**
 * running → waiting, by recompute: frees its blocks (full ones stay cached for its return).
 * Returns whether the worker held it (and so must be told to drop it).
 */
export function preemptSeq<S>(state: EngineState<S>, seq: Sequence<S>): boolean {
  if (!removeSeq(state.running, seq)) throw new InvariantError("preempted sequences were running");
  state.kv.free(seq);
  seq.status = "waiting";
  insertSorted(state.waiting, seq);
  const request = seq.request;
  if (!request.isForked) state.numReservedSeqs -= request.n - 1;
  request.numPreemptions++;
  state.numPreemptions++;
  return forgetOnWorker(seq);
}

/**
 * → finished, from any live state: frees its blocks at once and, when the worker held it, queues
 * its id for the next plan. Returns whether this finished the request.
 */
export function finishSeq<S>(state: EngineState<S>, seq: Sequence<S>): boolean {
  const request = seq.request;
  if (seq.status === "running") {
    removeSeq(state.running, seq);
    if (!request.isForked) state.numReservedSeqs -= request.n - 1;
  } else if (seq.status === "waiting") {
    removeSeq(state.waiting, seq);
  } else {
    throw new InvariantError("a sequence finishes once", `seq ${seq.id}`);
  }
  state.kv.free(seq);
  seq.status = "finished";
  if (forgetOnWorker(seq)) state.droppedSeqIds.push(seq.id);
  request.numUnfinishedSeqs--;
  if (request.numUnfinishedSeqs > 0) return false;
  state.requests.delete(request.id);
  state.fairQueue.onRequestFinished(request.tenant);
  return true;
}

/**
 * Splits a running parent that computed all but its last prompt token into n sequences sharing
 * its blocks. The children are new to the worker; each copies the partial last block on its
 * first write, and the parent, ordered after them, finds it unshared and writes in place.
 */
export function forkSeq<S>(state: EngineState<S>, parent: Sequence<S>): void {
  const request = parent.request;
  if (request.isForked || parent.status !== "running") {
    throw new InvariantError("only running, unforked parents fork", `seq ${parent.id}`);
  }
  request.isForked = true;
  state.numReservedSeqs -= request.n - 1;
  for (let index = 1; index < request.n; index++) {
    const child = newSequence(state, request, index, parent.tokenIds.slice(), []);
    state.kv.fork(parent, child);
    child.status = "running";
    insertSorted(state.running, child);
  }
}

function forgetOnWorker<S>(seq: Sequence<S>): boolean {
  const wasOnWorker = seq.isOnWorker;
  seq.isOnWorker = false;
  seq.numBlocksOnWorker = 0;
  seq.hasRewrittenTable = false;
  seq.numBlocksToDrop = 0;
  return wasOnWorker;
}

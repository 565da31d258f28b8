import { type EngineState, finishSeq, forkSeq } from "./engine-state";
import { InvariantError } from "./errors";
import type { SeqId } from "./ids";
import type { PlannedStep } from "./planner";
import type { RequestState, Sequence } from "./sequence";
import { checkStop } from "./stop";
import type {
  EngineEvent,
  RequestSummary,
  SampledTokenLike,
  ScheduledSeq,
  StepPlan,
  StepResults,
} from "./types";

/**
 * Applies a step's results: advances each sequence's computed tokens, registers newly full
 * blocks in the prefix cache, appends sampled tokens, checks stop conditions, forks parents that
 * reached their last prompt token. Sequences finished (aborted) since planning are skipped.
 */
export function commitStep<S, T extends SampledTokenLike>(
  state: EngineState<S>,
  planned: PlannedStep<S>,
  sampled: StepResults<T>,
): EngineEvent<T>[] {
  const { plan, seqs } = planned;
  const isAligned = Array.isArray(sampled);
  const events: EngineEvent<T>[] = preemptionEvents(planned);
  for (let i = 0; i < seqs.length; i++) {
    const seq = seqs[i]!;
    if (seq.status !== "running") continue;
    const result = isAligned
      ? ((sampled as readonly (T | null)[])[i] ?? null)
      : ((sampled as ReadonlyMap<SeqId, T>).get(seq.id) ?? null);
    commitSeq(state, seq, plan.seqs[i]!, result, events);
  }
  return events;
}

function commitSeq<S, T extends SampledTokenLike>(
  state: EngineState<S>,
  seq: Sequence<S>,
  entry: ScheduledSeq<S>,
  result: T | null,
  events: EngineEvent<T>[],
): void {
  if (seq.numComputedTokens !== entry.contextLen - entry.queryLen) {
    throw new InvariantError("a sequence is committed once per plan", `seq ${seq.id}`);
  }
  seq.numComputedTokens = entry.contextLen;
  state.kv.registerComputed(seq);
  if (entry.sample === null) {
    if (result !== null) throw new InvariantError("no result without a sample", `seq ${seq.id}`);
    const request = seq.request;
    if (!request.isForked && seq.numComputedTokens === seq.targetLen) forkSeq(state, seq);
    return;
  }
  if (result === null) throw new InvariantError("a planned sample has a result", `seq ${seq.id}`);
  appendToken(state, seq, result, events);
}

function appendToken<S, T extends SampledTokenLike>(
  state: EngineState<S>,
  seq: Sequence<S>,
  result: T,
  events: EngineEvent<T>[],
): void {
  const request = seq.request;
  const outputIndex = seq.outputTokenIds.length;
  seq.tokenIds.push(result.tokenId);
  seq.outputTokenIds.push(result.tokenId);
  request.firstTokenTime ??= state.config.clock();
  events.push({
    kind: "token",
    requestId: request.id,
    seqId: seq.id,
    seqIndex: seq.index,
    outputIndex,
    sampled: result,
  });
  const decision = checkStop(
    request.stop,
    result.tokenId,
    seq.outputTokenIds.length,
    seq.tokenIds.length,
    state.config.maxModelLen,
  );
  if (decision === null) return;
  const isRequestDone = finishSeq(state, seq);
  events.push({
    kind: "finished",
    requestId: request.id,
    seqId: seq.id,
    seqIndex: seq.index,
    reason: decision.reason,
    stopTokenId: decision.stopTokenId,
    numOutputTokens: seq.outputTokenIds.length,
    requestDone: isRequestDone ? summarize(request, state.config.clock()) : null,
  });
}

function preemptionEvents<S, T>(planned: PlannedStep<S>): EngineEvent<T>[] {
  const events: EngineEvent<T>[] = [];
  for (const seq of planned.preempted) {
    // Aborted after planning: the router already knows the request is gone.
    if (seq.status === "finished") continue;
    events.push({
      kind: "preempted",
      requestId: seq.request.id,
      seqId: seq.id,
      seqIndex: seq.index,
    });
  }
  return events;
}

export function summarize<S>(request: RequestState<S>, finishedTime: number): RequestSummary {
  return {
    arrivalTime: request.arrivalTime,
    firstScheduledTime: request.firstScheduledTime,
    firstTokenTime: request.firstTokenTime,
    finishedTime,
    numPreemptions: request.numPreemptions,
    numCachedTokens: request.numCachedPromptTokens ?? 0,
  };
}

/** Throws, changing nothing, unless `plan` awaits commit and `sampled` can belong to it. */
export function assertPending<S, T>(
  pending: PlannedStep<S> | null,
  plan: StepPlan<S>,
  sampled: StepResults<T>,
): PlannedStep<S> {
  if (pending === null || pending.plan !== plan) {
    throw new InvariantError("commit takes the last plan, once");
  }
  if (Array.isArray(sampled) && sampled.length !== plan.seqs.length) {
    throw new InvariantError("one result per scheduled sequence", `${sampled.length}`);
  }
  return pending;
}

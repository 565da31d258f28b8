import { type EngineState, finishSeq, forkSeq } from "./engine-state";
import { InvariantError } from "./errors";
import type { SeqId } from "./ids";
import type { PlannedStep } from "./planner";
import type { RequestState, Sequence } from "./sequence";
import { releaseRejectedSlots } from "./speculation/rollback";
import { checkStop } from "./stop";
import type {
  EngineEvent,
  RequestSummary,
  SampledTokenLike,
  ScheduledSeq,
  StepPlan,
  StepResult,
  StepResults,
} from "./types";

/**
 * Applies a step's results: advances each sequence's computed tokens, registers newly full
 * blocks in the prefix cache, appends sampled tokens, checks stop conditions, forks parents that
 * reached their last prompt token. Sequences finished (aborted) since planning are skipped.
 * Every result is validated before anything changes: on InvariantError the state is untouched.
 */
export function commitStep<S, T extends SampledTokenLike>(
  state: EngineState<S>,
  planned: PlannedStep<S>,
  sampled: StepResults<T>,
): EngineEvent<T>[] {
  const { plan, seqs } = planned;
  const results = seqs.map((seq, i) => resultOf(seq, i, sampled));
  // Validate every sequence before mutating any: a bad result leaves the scheduler as it was.
  for (let i = 0; i < seqs.length; i++) {
    if (seqs[i]!.status === "running") checkResult(seqs[i]!, plan.seqs[i]!, results[i]!);
  }
  const events: EngineEvent<T>[] = preemptionEvents(planned);
  for (let i = 0; i < seqs.length; i++) {
    const seq = seqs[i]!;
    if (seq.status !== "running") continue;
    commitSeq(state, seq, plan.seqs[i]!, results[i]!, events);
  }
  return events;
}

/** A sequence's tokens of this step, in order (one, or a verification's 1 … k + 1); null: none. */
function resultOf<S, T>(seq: Sequence<S>, i: number, sampled: StepResults<T>): readonly T[] | null {
  const result = Array.isArray(sampled)
    ? ((sampled as readonly (StepResult<T> | null)[])[i] ?? null)
    : ((sampled as ReadonlyMap<SeqId, StepResult<T>>).get(seq.id) ?? null);
  if (result === null) return null;
  return Array.isArray(result) ? (result as readonly T[]) : [result as T];
}

/** Throws, changing nothing, unless `result` can be committed for `seq` planned as `entry`. */
function checkResult<S, T extends SampledTokenLike>(
  seq: Sequence<S>,
  entry: ScheduledSeq<S>,
  result: readonly T[] | null,
): void {
  if (seq.numComputedTokens !== entry.contextLen - entry.queryLen) {
    throw new InvariantError("a sequence is committed once per plan", `seq ${seq.id}`);
  }
  if (entry.sample === null && result !== null) {
    throw new InvariantError("no result without a sample", `seq ${seq.id}`);
  }
  if (entry.sample !== null && result === null) {
    throw new InvariantError("a planned sample has a result", `seq ${seq.id}`);
  }
  if (result === null) return;
  const drafts = entry.sample?.draftTokenIds ?? [];
  const numSteps = entry.numSteps ?? 1;
  if (numSteps > 1) {
    if (result.length < 1 || result.length > numSteps) {
      throw new InvariantError("a multi-step decode emits 1 … numSteps tokens", `seq ${seq.id}`);
    }
  } else if (result.length < 1 || result.length > drafts.length + 1) {
    throw new InvariantError("a verification emits 1 … drafts + 1 tokens", `seq ${seq.id}`);
  }
  result.forEach((token, j) => {
    if (!(Number.isInteger(token.tokenId) && token.tokenId >= 0)) {
      throw new InvariantError("a sampled token id is a non-negative integer", `seq ${seq.id}`);
    }
    if (numSteps === 1 && j < result.length - 1 && token.tokenId !== drafts[j]) {
      throw new InvariantError("accepted tokens are the drafts, in order", `seq ${seq.id}`);
    }
  });
}

/** Applies one validated result (see checkResult). */
function commitSeq<S, T extends SampledTokenLike>(
  state: EngineState<S>,
  seq: Sequence<S>,
  entry: ScheduledSeq<S>,
  result: readonly T[] | null,
  events: EngineEvent<T>[],
): void {
  const numDrafts = entry.sample?.draftTokenIds?.length ?? 0;
  if (numDrafts > 0 && result !== null) {
    commitVerifiedTokens(state, seq, entry, result, events);
    return;
  }
  if ((entry.numSteps ?? 1) > 1 && result !== null) {
    commitBurstTokens(state, seq, entry, result, events);
    return;
  }
  seq.numComputedTokens = entry.contextLen;
  state.kv.registerComputed(seq);
  if (entry.sample === null || result === null) {
    const request = seq.request;
    if (!request.isForked && seq.numComputedTokens === seq.targetLen) forkSeq(state, seq);
    return;
  }
  appendToken(state, seq, result[0]!, events);
}

/**
 * THE commit point of speculative decoding (ADR 0017): a verification's accepted drafts and the
 * token sampled after them are appended here, one at a time, in order, each checked against the
 * stop conditions (a stop token, max_tokens or the context length ends the sequence there, and
 * the tokens after it are dropped). Then the KV of rejected drafts is rolled back: the sequence
 * has computed its last token plus the accepted drafts, and the blocks allocated beyond that go
 * back to the pool at once (the worker drops them from its table at the next step).
 * Anything that tracks a sequence token by token (a grammar matcher) advances here, per appended
 * token; rejected drafts were never appended, so it has nothing to roll back.
 */
function commitVerifiedTokens<S, T extends SampledTokenLike>(
  state: EngineState<S>,
  seq: Sequence<S>,
  entry: ScheduledSeq<S>,
  tokens: readonly T[],
  events: EngineEvent<T>[],
): void {
  const numDrafts = entry.sample!.draftTokenIds!.length;
  const numAccepted = tokens.length - 1;
  state.spec?.recordVerification(seq.request, {
    numDraftTokens: numDrafts,
    numAcceptedTokens: numAccepted,
  });
  // K/V is valid for the last token and the accepted drafts; the rest is overwritten later.
  seq.numComputedTokens = entry.contextLen - numDrafts + numAccepted;
  appendRun(state, seq, tokens, events);
}

/**
 * Multi-step decode (plan-burst.ts, ADR 0028): the tokens of a burst's steps, appended like a
 * verification's, one at a time against the stop conditions. Each step but the last computed the
 * K/V of the token the step before sampled; slots of steps the worker did not run (it stopped on
 * a stop token) go back to the pool.
 */
function commitBurstTokens<S, T extends SampledTokenLike>(
  state: EngineState<S>,
  seq: Sequence<S>,
  entry: ScheduledSeq<S>,
  tokens: readonly T[],
  events: EngineEvent<T>[],
): void {
  seq.numAheadTokens = 0;
  seq.numComputedTokens = entry.contextLen + tokens.length - 1;
  appendRun(state, seq, tokens, events);
}

/**
 * Appends a run of tokens (a verification's or a burst's) until one stops the sequence, then
 * releases the slots beyond its computed tokens.
 */
function appendRun<S, T extends SampledTokenLike>(
  state: EngineState<S>,
  seq: Sequence<S>,
  tokens: readonly T[],
  events: EngineEvent<T>[],
): void {
  for (const token of tokens) {
    appendToken(state, seq, token, events);
    if (seq.status !== "running") return; // finished: its blocks are free already
  }
  const numReleased = releaseRejectedSlots(state.kv, seq);
  if (numReleased > 0 && seq.isOnWorker) {
    const numDropped = Math.max(0, seq.numBlocksOnWorker - seq.blockIds.length);
    seq.numBlocksToDrop += numDropped;
    seq.numBlocksOnWorker -= numDropped;
  }
  state.kv.registerComputed(seq);
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

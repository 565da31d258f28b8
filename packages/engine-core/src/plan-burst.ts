import type { EngineState } from "./engine-state";
import { InvariantError } from "./errors";
import type { RequestId } from "./ids";
import type { PlannedStep } from "./planner";
import type { Sequence } from "./sequence";
import type { ScheduledSeq } from "./types";

/**
 * Multi-step decode (ADR 0028; vLLM's `--num-scheduler-steps`): turns a plan of decodes into one
 * the worker runs up to `maxDecodeSteps` times back to back (a number, or a function of the
 * plan's number of sequences), each step's input the token the step
 * before sampled, answering every token at once. The router's planning, the commit and the two
 * gRPC hops then happen once per burst instead of once per token.
 *
 * Returns `planned` unchanged unless every scheduled sequence is a plain decode that samples
 * (no prefill chunk, no drafts), nothing waits for admission, nothing was preempted, every
 * request passes `canBurst` (the router's say: no grammar, no pooling), and the pool holds the
 * extra slots of every sequence (a burst never preempts). Each sequence gets
 * min(maxSteps, tokens left to max_tokens, tokens left to the context length) steps; one whose
 * min_tokens is not reached yet gets one (its banned ids change as it grows).
 *
 * The extra slots are held like a step planned ahead's (`Sequence.numAheadTokens`) until the
 * commit, which appends the tokens one by one, checking each against the stop conditions, and
 * releases the slots of steps a stop made unnecessary (committer.ts).
 */
export function planBurst<S>(
  state: EngineState<S>,
  planned: PlannedStep<S>,
  maxDecodeSteps: number | ((numSeqs: number) => number),
  canBurst: (requestId: RequestId) => boolean,
): PlannedStep<S> {
  const { plan, seqs } = planned;
  if (seqs.length === 0 || state.spec !== null || state.waiting.length > 0) return planned;
  if (planned.preempted.length > 0) return planned;
  const maxSteps =
    typeof maxDecodeSteps === "number" ? maxDecodeSteps : maxDecodeSteps(seqs.length);
  if (maxSteps <= 1) return planned;
  const numStepsOf: number[] = [];
  let numNewBlocks = 0;
  for (let i = 0; i < seqs.length; i++) {
    const entry = plan.seqs[i]!;
    const seq = seqs[i]!;
    if (!isPlainDecode(entry) || !canBurst(entry.requestId)) return planned;
    const numSteps = burstLength(state, seq, maxSteps);
    numStepsOf.push(numSteps);
    numNewBlocks += extraBlocks(state, entry, numSteps);
  }
  if (numStepsOf.every((n) => n === 1) || numNewBlocks > state.kv.pool.numFree) return planned;
  const entries = plan.seqs.map((entry, i) => {
    const numSteps = numStepsOf[i]!;
    return numSteps === 1 ? entry : extendEntry(state, seqs[i]!, entry, numSteps);
  });
  // numScheduledTokens stays the tokens of one forward pass (each step of the burst has as many).
  return { ...planned, plan: { ...plan, seqs: entries } };
}

function isPlainDecode<S>(entry: ScheduledSeq<S>): boolean {
  return (
    entry.queryLen === 1 &&
    entry.sample !== null &&
    (entry.sample.draftTokenIds?.length ?? 0) === 0 &&
    entry.isInputPending !== true
  );
}

/** Steps for `seq`: its last step samples the token that reaches max_tokens or the context. */
function burstLength<S>(state: EngineState<S>, seq: Sequence<S>, maxSteps: number): number {
  const stop = seq.request.stop;
  const numOutputs = seq.outputTokenIds.length;
  if (numOutputs < stop.minTokens) return 1;
  const toMaxTokens = stop.maxTokens === null ? maxSteps : stop.maxTokens - numOutputs;
  const toContext = state.config.maxModelLen - seq.tokenIds.length;
  return Math.max(1, Math.min(maxSteps, toMaxTokens, toContext));
}

/** Blocks a burst of `numSteps` needs beyond those of its first step. */
function extraBlocks<S>(state: EngineState<S>, entry: ScheduledSeq<S>, numSteps: number): number {
  const numSlots = entry.contextLen - 1 + numSteps;
  return Math.max(0, Math.ceil(numSlots / state.kv.blockSize) - entry.blockTable.length);
}

/** Takes the extra slots and records the blocks the worker learns of with this step. */
function extendEntry<S>(
  state: EngineState<S>,
  seq: Sequence<S>,
  entry: ScheduledSeq<S>,
  numSteps: number,
): ScheduledSeq<S> {
  // The first step's slot is allocated (and private): the extra ones follow it.
  const allocation = state.kv.tryAllocateSlots(seq, numSteps);
  if (allocation === null || allocation.copy !== null) {
    throw new InvariantError("burst slots are counted before any is taken", `seq ${seq.id}`);
  }
  seq.numAheadTokens = numSteps - 1;
  const extra = seq.blockIds.slice(seq.numBlocksOnWorker);
  seq.numBlocksOnWorker = seq.blockIds.length;
  state.fairQueue.charge(seq.request.tenant, seq.request.tenantWeight, numSteps - 1);
  return {
    ...entry,
    newBlockIds: entry.isNew ? seq.blockIds.slice() : entry.newBlockIds.concat(extra),
    numSteps,
    stopTokenIds: seq.request.bannedTokenIds,
  };
}

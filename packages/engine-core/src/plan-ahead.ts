import type { EngineState } from "./engine-state";
import { InvariantError } from "./errors";
import type { RequestId } from "./ids";
import { assignLoraSlots, type PlannedStep, plannedSample } from "./planner";
import type { Sequence } from "./sequence";
import type { ScheduledSeq, StepPlan } from "./types";

const NO_TOKENS: readonly number[] = Object.freeze([]);

/**
 * Plans step N + 1 while step N (`pending`) runs (overlapped steps, ADR 0021 addendum of
 * 4 December 2026): every sequence that samples in N decodes once more, its input the token N
 * samples, which the scheduler does not know yet and the worker fills in (`isInputPending`).
 *
 * Null, changing nothing, whenever N + 1 could differ from the step planned after N's commit:
 * speculative decoding (drafts need the token), a multi-step decode pending, a waiting
 * sequence (admission), a running
 * sequence N does not sample (a prefill chunk), a sequence `canRunAhead` rejects (the router's
 * say: a grammar), a write to a shared block (copy on write), or too few free blocks (the normal
 * plan preempts; this one never does). Sequences certain to finish in N (max_tokens, the context
 * length) are left out; null when that leaves none.
 *
 * A sequence that N finishes on a stop token or an abort is computed once for nothing: its result
 * is ignored at commit, and its blocks (the slot taken here included) are freed when it finishes.
 */
export function planAhead<S>(
  state: EngineState<S>,
  pending: PlannedStep<S>,
  stepId: number,
  canRunAhead: (requestId: RequestId) => boolean,
): PlannedStep<S> | null {
  if (state.spec !== null || state.waiting.length > 0) return null;
  // A multi-step decode's last token is the input: the ahead slot would follow its burst.
  if (pending.plan.seqs.some((entry) => (entry.numSteps ?? 1) > 1)) return null;
  const live = pending.seqs.filter((seq) => seq.status === "running");
  if (live.length !== state.running.length) return null;
  let numNewBlocks = 0;
  for (let i = 0; i < pending.seqs.length; i++) {
    const seq = pending.seqs[i]!;
    if (seq.status !== "running") continue;
    const sample = pending.plan.seqs[i]!.sample;
    if (sample === null || (sample.draftTokenIds?.length ?? 0) > 0) return null;
    if (!canRunAhead(seq.request.id)) return null;
    const numNeeded = aheadSlotBlocks(state, seq);
    if (numNeeded === null) return null;
    numNewBlocks += numNeeded;
  }
  if (numNewBlocks > state.kv.pool.numFree) return null;
  const seqs: Sequence<S>[] = [];
  const entries: ScheduledSeq<S>[] = [];
  for (const seq of pending.seqs) {
    if (seq.status !== "running" || isCertainToFinish(state, seq)) continue;
    // One more slot than the known tokens: position targetLen, the token step N samples.
    const allocation = state.kv.tryAllocateSlots(seq, seq.targetLen + 1 - seq.numComputedTokens);
    if (allocation === null || allocation.copy !== null) {
      throw new InvariantError("ahead slots are counted before any is taken", `seq ${seq.id}`);
    }
    seq.numAheadTokens = 1;
    seqs.push(seq);
    entries.push(aheadEntry(seq));
    state.fairQueue.charge(seq.request.tenant, seq.request.tenantWeight, 1);
  }
  if (seqs.length === 0) return null;
  // The adapters are those of step N, resident since: this only marks them used, as a plan does.
  if (assignLoraSlots(state, entries).length > 0) {
    throw new InvariantError("the adapters of a step planned ahead are resident");
  }
  const plan: StepPlan<S> = {
    stepId,
    seqs: entries,
    loraLoads: [],
    numScheduledTokens: entries.length,
    blockCopies: [],
    finishedSeqIds: state.droppedSeqIds.splice(0),
    preemptedSeqIds: [],
  };
  return { plan, seqs, preempted: [] };
}

/**
 * Blocks the ahead slot (position targetLen) needs: 0 or 1; null when the block it falls in is
 * shared (a fork's partial block: the normal plan copies it first).
 */
function aheadSlotBlocks<S>(state: EngineState<S>, seq: Sequence<S>): number | null {
  const blockIndex = Math.floor(seq.targetLen / state.kv.blockSize);
  const block = seq.blockIds[blockIndex];
  if (block === undefined) return 1;
  return state.kv.pool.refCount(block) > 1 ? null : 0;
}

/** Whether the token step N samples ends the sequence whatever it is. */
function isCertainToFinish<S>(state: EngineState<S>, seq: Sequence<S>): boolean {
  const maxTokens = seq.request.stop.maxTokens;
  const numOutputs = seq.outputTokenIds.length + 1;
  return (
    (maxTokens !== null && numOutputs >= maxTokens) ||
    seq.tokenIds.length + 1 >= state.config.maxModelLen
  );
}

/** The entry of a sequence decoding the token its previous step samples (see ScheduledSeq). */
function aheadEntry<S>(seq: Sequence<S>): ScheduledSeq<S> {
  const request = seq.request;
  const newBlockIds = seq.blockIds.slice(seq.numBlocksOnWorker);
  seq.numBlocksOnWorker = seq.blockIds.length;
  return {
    seqId: seq.id,
    requestId: request.id,
    seqIndex: seq.index,
    adapterId: request.adapterId,
    loraSlot: -1, // set by assignLoraSlots
    isNew: false,
    tokenIds: NO_TOKENS,
    isInputPending: true,
    queryLen: 1,
    contextLen: seq.targetLen + 1,
    numDroppedBlocks: 0,
    blockTable: seq.blockIds,
    newBlockIds,
    sample: plannedSample(seq, NO_TOKENS, seq.outputTokenIds.length + 1),
  };
}

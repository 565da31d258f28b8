import { holdsBatchPrefill, isBatchSeq } from "./batch-yield";
import { admitSeq, type EngineState, preemptSeq } from "./engine-state";
import type { FairCandidate } from "./fair-queue";
import type { AdapterId, BlockId, SeqId } from "./ids";
import type { BlockCopy } from "./kv-cache-manager";
import type { LoraLoad } from "./lora-slots";
import type { Sequence, StepDraft } from "./sequence";
import { planSpeculation } from "./speculation/plan-drafts";
import type { PlannedSample, ScheduledSeq, StepPlan } from "./types";

const NO_BLOCKS: readonly BlockId[] = Object.freeze([]);
const NO_TOKENS: readonly number[] = Object.freeze([]);

/** A plan plus the internal references `commit` needs. */
export interface PlannedStep<S> {
  readonly plan: StepPlan<S>;
  /** Aligned with `plan.seqs`. */
  readonly seqs: readonly Sequence<S>[];
  /** Preempted while planning, in order (for the events `commit` returns). */
  readonly preempted: readonly Sequence<S>[];
}

/** The step being planned. */
interface StepWork<S> {
  numBudgetTokens: number;
  readonly drafts: StepDraft<S>[];
  readonly preempted: Sequence<S>[];
  readonly preemptedSeqIds: SeqId[];
  /** Batch sequences get no prefill this step (batch-yield.ts). */
  readonly isBatchHeld: boolean;
}

/**
 * Plans one step under one token budget (vLLM v1's model, no prefill/decode phases):
 * 1. running sequences with one token left (decodes), in scheduling order;
 * 2. running sequences with more left (prefill chunks, also recomputation after preemption);
 * 3. waiting sequences, unless this step preempted: best priority first, across tenants by
 *    weighted fair share of tokens served (fair-queue.ts), first come first served within one.
 * When blocks run out, the last running sequence (lowest priority, latest arrival) is preempted
 * until the allocation fits or the sequence being scheduled is itself the one preempted.
 * Batch sequences (config.batchPriority) get no prefill in a step where interactive work is
 * waiting or prefilling (batch-yield.ts).
 */
export function planStep<S>(state: EngineState<S>, stepId: number): PlannedStep<S> {
  const work: StepWork<S> = {
    numBudgetTokens: state.config.maxNumBatchedTokens,
    drafts: [],
    preempted: [],
    preemptedSeqIds: [],
    isBatchHeld: holdsBatchPrefill(state),
  };
  scheduleRunning(state, work, true);
  planSpeculation(state, work, stepId);
  scheduleRunning(state, work, false);
  // Admitting in a step that preempted would hand just-freed blocks to newer work (as vLLM v1).
  if (work.preempted.length === 0) scheduleWaiting(state, work);
  return buildPlan(state, work, stepId);
}

// ---- planning passes ----

function scheduleRunning<S>(state: EngineState<S>, work: StepWork<S>, isDecodePass: boolean): void {
  const running = state.running;
  // Preemption removes from the end of `running` only, so indices before `i` stay valid.
  for (let i = 0; i < running.length && work.numBudgetTokens > 0; i++) {
    const seq = running[i]!;
    const numLeft = seq.targetLen - seq.numComputedTokens;
    if (seq.draft !== null || (numLeft === 1) !== isDecodePass) continue;
    if (!isDecodePass && work.isBatchHeld && isBatchSeq(state, seq)) continue;
    scheduleOrPreempt(state, work, seq, Math.min(numLeft, work.numBudgetTokens));
  }
}

/** Allocates slots for `seq`, preempting from the back of `running` until they fit. */
function scheduleOrPreempt<S>(
  state: EngineState<S>,
  work: StepWork<S>,
  seq: Sequence<S>,
  numNewTokens: number,
): void {
  for (;;) {
    const allocation = state.kv.tryAllocateSlots(seq, numNewTokens);
    if (allocation !== null) {
      if (allocation.copy !== null && seq.isOnWorker) seq.hasRewrittenTable = true;
      addDraft(work, seq, numNewTokens, allocation.copy);
      return;
    }
    const victim = state.running[state.running.length - 1]!;
    preemptInStep(state, work, victim);
    if (victim === seq) return;
  }
}

function preemptInStep<S>(state: EngineState<S>, work: StepWork<S>, victim: Sequence<S>): void {
  const draft = victim.draft;
  if (draft !== null) {
    // Scheduled earlier in this step (a decode, when a prefill chunk needs its blocks).
    draft.isCancelled = true;
    victim.draft = null;
    work.numBudgetTokens += draft.queryLen;
  }
  if (preemptSeq(state, victim)) work.preemptedSeqIds.push(victim.id);
  work.preempted.push(victim);
}

/**
 * Admits the fair queue's pick while slots, budget and blocks last; stops at the first miss.
 * A sequence whose LoRA adapter finds no slot is passed over (see LoraSlots) until it has
 * waited too long; then admission stops behind it.
 */
function scheduleWaiting<S>(state: EngineState<S>, work: StepWork<S>): void {
  const { waiting, running, config, lora } = state;
  const runningAdapters = lora === null ? null : adaptersOf(running);
  // Passed over this step for want of a LoRA slot; the fair queue picks among the rest.
  const passed = new Set<Sequence<S>>();
  while (work.numBudgetTokens > 0) {
    const candidates = passed.size === 0 ? waiting : waiting.filter((s) => !passed.has(s));
    if (candidates.length === 0) return;
    const seq = candidates[state.fairQueue.pickNext(candidates, fairCandidateOf)!]!;
    if (work.isBatchHeld && isBatchSeq(state, seq)) return; // better priorities go first
    const adapterId = seq.request.adapterId;
    if (lora !== null && runningAdapters !== null && !lora.canAdmit(adapterId, runningAdapters)) {
      if (!lora.skip(seq)) return;
      passed.add(seq);
      continue;
    }
    const numSlots = seq.request.numSlotsToAdmit;
    if (running.length + state.numReservedSeqs + numSlots > config.maxNumSeqs) return;
    const admission = state.kv.tryAdmit(seq, seq.targetLen, work.numBudgetTokens);
    // Head-of-line blocking: nothing overtakes the pick, so no tenant's head starves.
    if (admission === null) return;
    seq.request.numCachedPromptTokens ??= admission.numCachedTokens;
    admitSeq(state, seq);
    lora?.admitted(seq);
    if (adapterId !== null) runningAdapters?.add(adapterId);
    addDraft(work, seq, admission.numNewTokens, null);
  }
}

function fairCandidateOf<S>(seq: Sequence<S>): FairCandidate {
  const { tenant, tenantWeight: weight, priority } = seq.request;
  return { tenant, weight, priority };
}

function addDraft<S>(
  work: StepWork<S>,
  seq: Sequence<S>,
  queryLen: number,
  copy: BlockCopy | null,
): void {
  const draft: StepDraft<S> = { seq, queryLen, copy, isCancelled: false };
  seq.draft = draft;
  work.drafts.push(draft);
  work.numBudgetTokens -= queryLen;
}

function adaptersOf<S>(seqs: readonly Sequence<S>[]): Set<AdapterId> {
  const out = new Set<AdapterId>();
  for (const seq of seqs) if (seq.request.adapterId !== null) out.add(seq.request.adapterId);
  return out;
}

// ---- the plan ----

function buildPlan<S>(state: EngineState<S>, work: StepWork<S>, stepId: number): PlannedStep<S> {
  const seqs: Sequence<S>[] = [];
  const entries: ScheduledSeq<S>[] = [];
  const blockCopies: BlockCopy[] = [];
  let numScheduledTokens = 0;
  for (const draft of work.drafts) {
    if (draft.isCancelled) continue;
    const seq = draft.seq;
    seq.draft = null;
    seqs.push(seq);
    entries.push(toScheduledSeq(seq, draft.queryLen, -1, draft.specTokenIds ?? NO_TOKENS));
    if (draft.copy !== null) blockCopies.push(draft.copy);
    numScheduledTokens += draft.queryLen;
    state.fairQueue.charge(seq.request.tenant, seq.request.tenantWeight, draft.queryLen);
  }
  const loraLoads = assignLoraSlots(state, entries);
  const plan: StepPlan<S> = {
    stepId,
    seqs: entries,
    loraLoads,
    numScheduledTokens,
    blockCopies,
    finishedSeqIds: state.droppedSeqIds.splice(0),
    preemptedSeqIds: work.preemptedSeqIds,
  };
  return { plan, seqs, preempted: work.preempted };
}

/** Gives each entry its adapter's LoRA slot (in place) and returns the loads this needs. */
export function assignLoraSlots<S>(state: EngineState<S>, entries: ScheduledSeq<S>[]): LoraLoad[] {
  if (state.lora === null) return [];
  const adapters = new Set<AdapterId>();
  for (const e of entries) if (e.adapterId !== null) adapters.add(e.adapterId);
  if (adapters.size === 0) return [];
  const { slotOf, loads } = state.lora.assign(adapters, adaptersOf(state.running));
  entries.forEach((e, i) => {
    if (e.adapterId !== null) entries[i] = { ...e, loraSlot: slotOf.get(e.adapterId)! };
  });
  return loads;
}

/** Snapshots a drafted sequence and records what the worker will hold after this step. */
function toScheduledSeq<S>(
  seq: Sequence<S>,
  queryLen: number,
  loraSlot: number,
  specTokenIds: readonly number[],
): ScheduledSeq<S> {
  const start = seq.numComputedTokens;
  const contextLen = start + queryLen;
  const isNew = !seq.isOnWorker || seq.hasRewrittenTable;
  const numDroppedBlocks = isNew ? 0 : seq.numBlocksToDrop;
  seq.numBlocksToDrop = 0;
  const newBlockIds = isNew
    ? seq.blockIds.slice()
    : seq.numBlocksOnWorker === seq.blockIds.length
      ? NO_BLOCKS
      : seq.blockIds.slice(seq.numBlocksOnWorker);
  seq.isOnWorker = true;
  seq.numBlocksOnWorker = seq.blockIds.length;
  seq.hasRewrittenTable = false;
  const request = seq.request;
  return {
    seqId: seq.id,
    requestId: request.id,
    seqIndex: seq.index,
    adapterId: request.adapterId,
    loraSlot,
    isNew,
    tokenIds:
      specTokenIds.length === 0
        ? seq.tokenIds.slice(start, contextLen)
        : seq.tokenIds.slice(start).concat(specTokenIds),
    queryLen,
    contextLen,
    numDroppedBlocks,
    // A view, not a copy: tables are only mutated while planning, and a copy per sequence per
    // step is most of what a decode step would allocate.
    blockTable: seq.blockIds,
    newBlockIds,
    sample:
      contextLen - specTokenIds.length === seq.tokenIds.length
        ? plannedSample(seq, specTokenIds)
        : null,
  };
}

/**
 * The sample of `seq`'s next token: output index `outputIndex` (the next one by default; one
 * further for a step planned ahead, whose input is not known yet).
 */
export function plannedSample<S>(
  seq: Sequence<S>,
  draftTokenIds: readonly number[],
  outputIndex = seq.outputTokenIds.length,
): PlannedSample<S> {
  const request = seq.request;
  return {
    params: request.sampling,
    seqIndex: seq.index,
    outputIndex,
    promptTokenIds: request.promptTokenIds,
    outputTokenIds: seq.outputTokenIds,
    bannedTokenIds: outputIndex < request.stop.minTokens ? request.bannedTokenIds : [],
    draftTokenIds,
  };
}

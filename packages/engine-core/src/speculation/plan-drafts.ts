import type { EngineState } from "../engine-state";
import type { Sequence, StepDraft } from "../sequence";
import { bestDraftDepth, chooseDraftLens } from "./spec-policy";

/** The part of the planner's step work that speculation reads and extends. */
export interface DraftWork<S> {
  numBudgetTokens: number;
  readonly drafts: readonly StepDraft<S>[];
}

/**
 * The speculation pass of planning, run right after the decode pass: proposes draft tokens for
 * the decodes that may speculate, lets the policy (spec-policy.ts) keep those that pay, and
 * extends each kept decode's query to its last token plus its drafts, allocating their KV slots.
 * Under the adaptive policy the measured gate (draft-gate.ts) may turn a whole step off.
 * A sequence whose slots do not fit simply decodes one token: speculation never preempts. Draft
 * tokens come out of the step's token budget. No-op without a speculation config.
 */
export function planSpeculation<S>(
  state: EngineState<S>,
  work: DraftWork<S>,
  stepId: number,
): void {
  const spec = state.spec;
  if (spec === null || work.numBudgetTokens <= 0 || !spec.isDraftingAllowed(stepId)) return;
  const decodes: StepDraft<S>[] = [];
  const proposals: number[][] = [];
  for (const draft of work.drafts) {
    if (draft.isCancelled || draft.queryLen !== 1) continue;
    const maxDrafts = maxDraftsOf(state, draft.seq);
    if (maxDrafts <= 0) continue;
    const proposal = spec.propose(draft.seq.tokenIds, maxDrafts, draft.seq.id);
    if (proposal.length === 0) continue;
    decodes.push(draft);
    proposals.push(proposal.slice(0, maxDrafts));
  }
  if (decodes.length === 0) return;
  const numScheduled = state.config.maxNumBatchedTokens - work.numBudgetTokens;
  const lens = spec.config.isAdaptive
    ? chooseDraftLens(
        proposals.map((p, i) => ({
          numProposed: p.length,
          acceptanceRate: spec.acceptanceRateOf(decodes[i]!.seq.request),
        })),
        numScheduled,
        work.drafts.length,
        spec.stepTime.fit(),
      )
    : proposals.map((p) => p.length);
  decodes.forEach((draft, i) => {
    const len = Math.min(lens[i]!, work.numBudgetTokens);
    if (len <= 0) return;
    // Slots for the last token are allocated already; this adds the drafts' (all or nothing).
    if (state.kv.tryAllocateSlots(draft.seq, 1 + len) === null) return;
    draft.queryLen = 1 + len;
    draft.specTokenIds = proposals[i]!.slice(0, len);
    work.numBudgetTokens -= len;
  });
}

/** A running decode a draft model should propose for before the next step is planned. */
export interface DraftRequest {
  readonly seqId: number;
  /** The whole sequence (prompt then output), as the proposer will be asked about it. */
  readonly tokenIds: readonly number[];
  /** Drafts worth proposing (≥ 1): the eligibility limits, capped by the adaptive policy. */
  readonly maxDrafts: number;
}

/**
 * Draft-model speculation runs its (asynchronous) proposer before `schedule()`: the running
 * sequences that will decode one token next step and may speculate, each with how many drafts
 * to propose. With the adaptive policy on, that is what the policy would keep were every draft
 * proposed, so a compute-bound batch costs the draft model nothing. Read-only.
 */
export function draftRequests<S>(state: EngineState<S>, stepId: number): DraftRequest[] {
  const spec = state.spec;
  if (spec === null || !spec.isDraftingAllowed(stepId)) return [];
  const decodes = state.running.filter((seq) => seq.numComputedTokens === seq.tokenIds.length - 1);
  const eligible: Sequence<S>[] = [];
  const maxDrafts: number[] = [];
  for (const seq of decodes) {
    const max = maxDraftsOf(state, seq);
    if (max <= 0) continue;
    eligible.push(seq);
    maxDrafts.push(max);
  }
  let lens = maxDrafts;
  const fit = spec.stepTime.fit();
  if (spec.config.isAdaptive) {
    const candidates = eligible.map((seq, i) => ({
      numProposed: maxDrafts[i]!,
      acceptanceRate: spec.acceptanceRateOf(seq.request),
    }));
    const n = decodes.length;
    lens = chooseDraftLens(candidates, n, n, fit);
    // The draft model's own steps count too (once measured): cut the depth to what pays.
    const draftMs = spec.draftCostMs;
    if (fit !== null && draftMs !== null) {
      const depth = bestDraftDepth(candidates, lens, n, n, fit, draftMs);
      lens = lens.map((len) => Math.min(len, depth));
    }
  }
  return eligible
    .map((seq, i) => ({ seqId: seq.id as number, tokenIds: seq.tokenIds, maxDrafts: lens[i]! }))
    .filter((request) => request.maxDrafts > 0);
}

/**
 * Drafts a decode may carry: none for a request that opted out, before min_tokens (the sampler
 * bans stop ids there), and never past max_tokens or the context length (the last verified
 * position yields one more token).
 */
function maxDraftsOf<S>(state: EngineState<S>, seq: Sequence<S>): number {
  const request = seq.request;
  if (!request.isSpeculative || !request.isForked) return 0;
  if (seq.numComputedTokens !== seq.tokenIds.length - 1) return 0;
  const numOutput = seq.outputTokenIds.length;
  if (numOutput < request.stop.minTokens) return 0;
  let max = state.spec!.config.numSpeculativeTokens;
  if (request.stop.maxTokens !== null) max = Math.min(max, request.stop.maxTokens - numOutput - 1);
  return Math.min(max, state.config.maxModelLen - seq.tokenIds.length - 1);
}

import type { EngineState } from "../engine-state";
import type { Sequence, StepDraft } from "../sequence";
import { chooseDraftLens } from "./spec-policy";

/** The part of the planner's step work that speculation reads and extends. */
export interface DraftWork<S> {
  numBudgetTokens: number;
  readonly drafts: readonly StepDraft<S>[];
}

/**
 * The speculation pass of planning, run right after the decode pass: proposes draft tokens for
 * the decodes that may speculate, lets the policy (spec-policy.ts) keep those that pay, and
 * extends each kept decode's query to its last token plus its drafts, allocating their KV slots.
 * A sequence whose slots do not fit simply decodes one token: speculation never preempts. Draft
 * tokens come out of the step's token budget. No-op without a speculation config.
 */
export function planSpeculation<S>(state: EngineState<S>, work: DraftWork<S>): void {
  const spec = state.spec;
  if (spec === null || work.numBudgetTokens <= 0) return;
  const decodes: StepDraft<S>[] = [];
  const proposals: number[][] = [];
  for (const draft of work.drafts) {
    if (draft.isCancelled || draft.queryLen !== 1) continue;
    const maxDrafts = maxDraftsOf(state, draft.seq);
    if (maxDrafts <= 0) continue;
    const proposal = spec.propose(draft.seq.tokenIds, maxDrafts);
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

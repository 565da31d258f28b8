import type { StepTimeFit } from "./step-time-model";

/**
 * Kiln's load-adaptive speculation policy (docs/adr/0017-speculative-decoding.md). Given each
 * candidate's proposal and running acceptance rate α, and the step-time model t(n) = a + b·n,
 * it keeps the draft tokens that raise the step's expected output rate (tokens per ms):
 *
 *   the j-th draft of a sequence yields α^j expected extra tokens and costs b ms. Draft tokens are
 *   taken in decreasing α^j while  α^j · t(N) > T · b,  where T is the step's expected tokens and
 *   N its scheduled tokens so far (both updated as drafts are taken).
 *
 * When the batch is compute-bound (b·N ≫ a), T · b approaches t(N) and only drafts with α^j ≈ 1
 * survive; when nothing pays, no sequence drafts and the step is exactly a plain decode step.
 * Pure: no clock, no state.
 */
export interface DraftCandidate {
  /** Proposed draft tokens (≥ 1). */
  readonly numProposed: number;
  /** Running acceptance rate in [0, 1]. */
  readonly acceptanceRate: number;
}

/**
 * How many of each candidate's drafts to verify (aligned with `candidates`, each ≤ numProposed).
 * `numBaseTokens` are the step's tokens without drafts (each decode yields one output token).
 * A null `fit` (model not learned yet) keeps every proposal, so the model gets observations.
 */
export function chooseDraftLens(
  candidates: readonly DraftCandidate[],
  numBaseTokens: number,
  numBaseOutputs: number,
  fit: StepTimeFit | null,
): number[] {
  const lens = candidates.map(() => 0);
  if (fit === null) return candidates.map((c) => c.numProposed);
  // Every (candidate, position) with its marginal gain α^j, best first.
  const options: { index: number; gain: number }[] = [];
  candidates.forEach((c, index) => {
    let gain = 1;
    for (let j = 1; j <= c.numProposed; j++) {
      gain *= c.acceptanceRate;
      options.push({ index, gain });
    }
  });
  options.sort((x, y) => y.gain - x.gain);
  let numTokens = numBaseTokens;
  let expectedOutputs = Math.max(1, numBaseOutputs);
  for (const { index, gain } of options) {
    const stepMs = fit.fixedMs + fit.perTokenMs * numTokens;
    if (gain * stepMs <= expectedOutputs * fit.perTokenMs) break;
    // Within one candidate gains decrease with j, so positions are taken in order.
    lens[index]!++;
    numTokens++;
    expectedOutputs += gain;
  }
  return lens;
}

/**
 * Draft-model speculation pays for its drafts before the target step: one draft-model step per
 * draft position, shared by every sequence drafting that deep. Given the lengths
 * `chooseDraftLens` kept (which weighs only the target step's cost), the depth that maximizes
 * the expected output rate once those draft steps are counted:
 *
 *   rate(D) = Σ_i Σ_{j=0..min(len_i, D)} α_i^j  /  ( t(N + Σ_i min(len_i, D)) + D · draftMs )
 *
 * D = 0 is plain decoding. Lengths above the returned depth should be cut to it. Pure.
 */
export function bestDraftDepth(
  candidates: readonly DraftCandidate[],
  lens: readonly number[],
  numBaseTokens: number,
  numBaseOutputs: number,
  fit: StepTimeFit,
  draftMsPerPosition: number,
): number {
  const maxDepth = Math.max(0, ...lens);
  let best = 0;
  let bestRate = -1;
  for (let depth = 0; depth <= maxDepth; depth++) {
    let numTokens = numBaseTokens;
    let expectedOutputs = Math.max(1, numBaseOutputs);
    candidates.forEach((c, i) => {
      const len = Math.min(lens[i]!, depth);
      numTokens += len;
      for (let j = 1; j <= len; j++) expectedOutputs += c.acceptanceRate ** j;
    });
    const ms = fit.fixedMs + fit.perTokenMs * numTokens + depth * draftMsPerPosition;
    const rate = expectedOutputs / ms;
    if (rate > bestRate) {
      best = depth;
      bestRate = rate;
    }
  }
  return best;
}

/** Acceptance statistics of one request, decayed so the rate follows the text being written. */
export class AcceptanceTracker {
  private numDrafts = 0;
  private numAccepted = 0;

  /** Records one verification: `numAccepted` of `numDrafts` draft tokens were accepted. */
  record(numDrafts: number, numAccepted: number): void {
    this.numDrafts = this.numDrafts * 0.9 + numDrafts;
    this.numAccepted = this.numAccepted * 0.9 + numAccepted;
  }

  /** Laplace-smoothed rate: 0.5 before any verification. */
  get rate(): number {
    return (this.numAccepted + 1) / (this.numDrafts + 2);
  }
}

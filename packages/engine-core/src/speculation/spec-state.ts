import { DraftGate } from "./draft-gate";
import { proposeNgram } from "./ngram-proposer";
import type { SpeculationConfig } from "./spec-config";
import { AcceptanceTracker } from "./spec-policy";
import { StepTimeModel } from "./step-time-model";

/** One verified sequence of a committed step (for metrics): drafts sent, drafts accepted. */
export interface SpecOutcome {
  readonly numDraftTokens: number;
  /** Leading drafts the target agreed with (0 … numDraftTokens). */
  readonly numAcceptedTokens: number;
}

/**
 * Proposes draft tokens for a sequence; empty when it has none. `tokenIds` is the whole
 * sequence (prompt then output); the result is a new array of at most `maxDrafts` ids.
 * `seqId` names the sequence (a draft model keeps per-sequence state; n-gram ignores it).
 */
export type DraftProposer = (
  tokenIds: readonly number[],
  maxDrafts: number,
  seqId: number,
) => number[];

/** What the scheduler keeps for speculative decoding (EngineState.spec). */
export class SpecState {
  readonly config: SpeculationConfig;
  readonly propose: DraftProposer;
  readonly stepTime = new StepTimeModel();
  /** Measured on/off comparison that stops speculation where it does not pay (adaptive only). */
  readonly gate = new DraftGate();
  /** Drafts accepted since the last `observeStep`. */
  private numAcceptedSinceStep = 0;
  /** Per request (keyed by its RequestState), its running acceptance. */
  private readonly acceptance = new WeakMap<object, AcceptanceTracker>();
  /**
   * Draft-model speculation: ms one draft position costs (one draft-model step), a running
   * average of the rounds the router measured; null before the first.
   */
  private draftMsPerPosition: number | null = null;
  /** Outcomes of commits since the last `takeOutcomes`. */
  private outcomes: SpecOutcome[] = [];

  /**
   * `proposer` replaces the config's own (n-gram) proposer; draft-model speculation must pass
   * one, since its drafts come from another process.
   */
  constructor(config: SpeculationConfig, proposer?: DraftProposer) {
    this.config = config;
    if (proposer !== undefined) this.propose = proposer;
    else if (config.method === "ngram") {
      const opts = {
        numSpeculativeTokens: config.numSpeculativeTokens,
        minN: config.promptLookupMin,
        maxN: config.promptLookupMax,
      };
      this.propose = (tokenIds, maxDrafts) => proposeNgram(tokenIds, opts, maxDrafts);
    } else {
      throw new Error("draft_model speculation needs a proposer from the router");
    }
  }

  /**
   * Records a committed step: `numTokens` scheduled tokens took `ms`, and `numSampled`
   * sequences sampled (each gained one token plus the drafts accepted at its commit).
   */
  observeStep(numTokens: number, ms: number, numSampled: number): void {
    this.stepTime.observe(numTokens, ms);
    this.gate.observe(numSampled, numSampled + this.numAcceptedSinceStep, ms);
    this.numAcceptedSinceStep = 0;
  }

  /** Whether step `stepId` may draft: always without the adaptive policy. */
  isDraftingAllowed(stepId: number): boolean {
    return !this.config.isAdaptive || this.gate.isDraftingAllowed(stepId);
  }

  /** Records one draft round: `numPositions` draft steps took `ms` in all. */
  observeDraftRound(numPositions: number, ms: number): void {
    if (!(numPositions > 0 && ms > 0 && Number.isFinite(ms))) return;
    const perPosition = ms / numPositions;
    this.draftMsPerPosition =
      this.draftMsPerPosition === null
        ? perPosition
        : 0.9 * this.draftMsPerPosition + 0.1 * perPosition;
  }

  get draftCostMs(): number | null {
    return this.draftMsPerPosition;
  }

  acceptanceRateOf(request: object): number {
    return this.acceptance.get(request)?.rate ?? 0.5;
  }

  /** Called at commit for each verified sequence. */
  recordVerification(request: object, outcome: SpecOutcome): void {
    let tracker = this.acceptance.get(request);
    if (tracker === undefined) {
      tracker = new AcceptanceTracker();
      this.acceptance.set(request, tracker);
    }
    tracker.record(outcome.numDraftTokens, outcome.numAcceptedTokens);
    this.numAcceptedSinceStep += outcome.numAcceptedTokens;
    this.outcomes.push(outcome);
  }

  /** Hands over (and forgets) the outcomes recorded since the last call. */
  takeOutcomes(): SpecOutcome[] {
    const out = this.outcomes;
    this.outcomes = [];
    return out;
  }
}

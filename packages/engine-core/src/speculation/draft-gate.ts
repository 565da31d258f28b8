/**
 * The adaptive policy's safety net (docs/adr/0017): whatever the step-time model predicts, keep
 * speculating only while it measurably pays. Steps alternate between two arms, drafting allowed
 * and drafting off; each arm keeps a decayed average of the tokens each decoding sequence gained
 * per ms of step (1 / effective TPOT). The better arm runs most steps and the other is probed a
 * few steps every period, so a change of load (a batch turning compute-bound, acceptance
 * dropping) flips the choice within a few periods. Pure: times are given, never read.
 */

/** Steps in one period: EXPLORE_STEPS in the other arm, the rest in the better one. */
const PERIOD_STEPS = 40;
const EXPLORE_STEPS = 8;
/** Weight kept by an arm's average per new observation. */
const DECAY = 0.9;

type Arm = "on" | "off";

export class DraftGate {
  private readonly rate: Record<Arm, number | null> = { on: null, off: null };
  /** The step the arm was last chosen for, and that arm (what the next observation is about). */
  private lastStepId = -1;
  private lastArm: Arm = "on";

  /** Whether step `stepId` may draft; the same answer for every call about one step. */
  isDraftingAllowed(stepId: number): boolean {
    if (stepId !== this.lastStepId) {
      this.lastStepId = stepId;
      const isExploring = stepId % PERIOD_STEPS >= PERIOD_STEPS - EXPLORE_STEPS;
      const best = this.betterArm();
      this.lastArm = isExploring ? (best === "on" ? "off" : "on") : best;
    }
    return this.lastArm === "on";
  }

  /**
   * Records the last planned step: `numSampled` decoding sequences gained `numTokens` tokens in
   * all (accepted drafts included) in `ms`. Steps that sampled nothing are ignored.
   */
  observe(numSampled: number, numTokens: number, ms: number): void {
    if (!(numSampled > 0 && ms > 0 && Number.isFinite(ms))) return;
    const perSeqRate = numTokens / numSampled / ms;
    const old = this.rate[this.lastArm];
    this.rate[this.lastArm] = old === null ? perSeqRate : DECAY * old + (1 - DECAY) * perSeqRate;
  }

  /** Drafting until both arms are measured; then whichever gains more tokens per ms. */
  private betterArm(): Arm {
    const { on, off } = this.rate;
    if (on === null || off === null) return "on";
    return on >= off ? "on" : "off";
  }
}

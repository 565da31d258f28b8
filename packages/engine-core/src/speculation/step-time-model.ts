/**
 * The per-batch step-time model of the adaptive speculation policy: step time ≈ a + b × tokens,
 * fitted by exponentially weighted least squares over the steps the router measured. `a` is the
 * fixed cost of a step (weights streamed once, gRPC, scheduling); `b` the cost of one more token.
 * A memory-bound step has a ≫ b × tokens, so extra draft tokens are nearly free; a compute-bound
 * one does not. Pure: times are given, never read.
 */
export interface StepTimeFit {
  /** ms per step regardless of its size (≥ 0). */
  readonly fixedMs: number;
  /** ms per scheduled token (≥ 0). */
  readonly perTokenMs: number;
}

/** Weight kept by older observations per new one: ~50 steps of memory. */
const DECAY = 0.98;

export class StepTimeModel {
  private sw = 0;
  private sx = 0;
  private sy = 0;
  private sxx = 0;
  private sxy = 0;

  /** Records one step: `numTokens` scheduled tokens took `ms`. Non-finite or ≤ 0 values are ignored. */
  observe(numTokens: number, ms: number): void {
    if (!(numTokens > 0 && ms > 0 && Number.isFinite(ms))) return;
    this.sw = this.sw * DECAY + 1;
    this.sx = this.sx * DECAY + numTokens;
    this.sy = this.sy * DECAY + ms;
    this.sxx = this.sxx * DECAY + numTokens * numTokens;
    this.sxy = this.sxy * DECAY + numTokens * ms;
  }

  /**
   * The current fit, or null until steps of at least two sizes were seen (a single size cannot
   * separate the fixed cost from the per-token cost).
   */
  fit(): StepTimeFit | null {
    if (this.sw < 2) return null;
    const meanX = this.sx / this.sw;
    const meanY = this.sy / this.sw;
    const varX = this.sxx / this.sw - meanX * meanX;
    if (varX < 1e-6 * Math.max(1, meanX * meanX)) return null;
    const slope = (this.sxy / this.sw - meanX * meanY) / varX;
    const perTokenMs = Math.max(0, slope);
    const fixedMs = Math.max(0, meanY - perTokenMs * meanX);
    return { fixedMs, perTokenMs };
  }
}

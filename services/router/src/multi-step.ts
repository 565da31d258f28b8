/**
 * Multi-step decode (ADR 0028; vLLM's `--num-scheduler-steps`): how many decode steps the worker
 * runs for one plan. A plan of decodes pays the router's planning and commit and two gRPC hops
 * once per burst instead of once per token; in exchange its tokens stream in bursts, and a request
 * that arrives meanwhile waits for the burst to end before its prefill is planned. So a burst is
 * bounded twice: at most `maxSteps` steps (KILN_NUM_SCHEDULER_STEPS, --num-scheduler-steps) and,
 * by the decode step time measured last, at most `maxBurstMs` of compute
 * (KILN_MULTI_STEP_MAX_MS, --multi-step-max-ms). A single stream's steps are short and get long
 * bursts; a full batch's take long enough that the overhead matters little, and get one step.
 */
export interface MultiStepConfig {
  readonly maxSteps: number;
  readonly maxBurstMs: number;
}

export const DEFAULT_MULTI_STEP: MultiStepConfig = { maxSteps: 8, maxBurstMs: 50 };

/** What the last decode-only plan measured: its batch and compute time per step. */
interface DecodeStepSample {
  readonly numSeqs: number;
  readonly msPerStep: number;
}

export class MultiStepPolicy {
  private last: DecodeStepSample | null = null;

  constructor(private readonly config: MultiStepConfig) {}

  /** Records a committed plan of `numSeqs` decodes that ran `numSteps` steps in `computeMs`. */
  observe(numSeqs: number, numSteps: number, computeMs: number): void {
    if (numSeqs < 1 || numSteps < 1 || !(computeMs >= 0)) return;
    this.last = { numSeqs, msPerStep: computeMs / numSteps };
  }

  /**
   * Steps for a plan of `numSeqs` decodes: the measured step time, scaled up when the batch grew
   * since (a step takes less than proportionally longer, so the estimate errs on the short
   * side), fills the time budget. One step before any decode step was measured.
   */
  stepsFor(numSeqs: number): number {
    const { maxSteps, maxBurstMs } = this.config;
    if (maxSteps <= 1 || this.last === null) return 1;
    const msPerStep = this.last.msPerStep * Math.max(1, numSeqs / this.last.numSeqs);
    if (msPerStep <= 0) return maxSteps;
    return Math.max(1, Math.min(maxSteps, Math.floor(maxBurstMs / msPerStep)));
  }

  /** Forgets the measurement (a new worker). */
  reset(): void {
    this.last = null;
  }
}

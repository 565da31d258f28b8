// Per-phase timing of CpuModelRunner steps for bench/src/forward.ts (--profile or
// KILN_FORWARD_PROFILE=1): where a decode step's milliseconds go, summed over layers.
import type { StepPhase, StepProfiler } from "@kiln/kernels";

const PHASE_ORDER: readonly StepPhase[] = [
  "embed",
  "norm",
  "qkv",
  "rope",
  "kv-write",
  "attention",
  "o-proj",
  "gate-up",
  "silu",
  "down",
  "lm-head",
  "sampling",
];

/** Sums the time between phase boundaries; `done` closes a step. */
export class PhaseProfiler implements StepProfiler {
  private totals = new Map<StepPhase, number>();
  private current: StepPhase | null = null;
  private since = 0;
  private numSteps = 0;

  enter(phase: StepPhase): void {
    const now = performance.now();
    if (this.current !== null) {
      this.totals.set(this.current, (this.totals.get(this.current) ?? 0) + now - this.since);
    }
    if (phase === "done") {
      this.current = null;
      this.numSteps++;
      return;
    }
    this.current = phase;
    this.since = now;
  }

  reset(): void {
    this.totals = new Map();
    this.current = null;
    this.numSteps = 0;
  }

  /** One line: mean ms per step of each phase, and its share of the profiled total. */
  summary(label: string): string {
    const perStep = (p: StepPhase) => (this.totals.get(p) ?? 0) / Math.max(1, this.numSteps);
    const total = PHASE_ORDER.reduce((sum, p) => sum + perStep(p), 0);
    const cells = PHASE_ORDER.filter((p) => perStep(p) >= 0.05).map(
      (p) => `${p} ${perStep(p).toFixed(1)} (${((100 * perStep(p)) / total).toFixed(0)}%)`,
    );
    return `${label} [${this.numSteps} steps, ${total.toFixed(1)} ms/step]: ${cells.join(", ")}`;
  }
}

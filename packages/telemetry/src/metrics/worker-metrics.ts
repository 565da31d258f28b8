import { Counter, Histogram, type Registry } from "prom-client";
import { ITL_BUCKETS_S } from "./buckets";
import type { ReplicaLabels } from "./scheduler-metrics";

type L = "model" | "replica";

/**
 * A worker's own view of its steps: `kiln_worker_step_duration_seconds` (applying the step
 * delta, the forward pass and sampling, as the worker measures it) and
 * `kiln_worker_step_failures_total`. The router's `kiln_step_duration_seconds{phase="execute"}`
 * adds the network round trip on top.
 */
export class WorkerMetrics {
  readonly stepDuration: Histogram<L>;
  readonly stepFailures: Counter<L>;

  constructor(
    registry: Registry,
    private readonly labels: ReplicaLabels,
  ) {
    const registers = [registry];
    const labelNames = ["model", "replica"] as const;
    this.stepDuration = new Histogram({
      name: "kiln_worker_step_duration_seconds",
      help: "Worker step time: step delta, forward pass and sampling.",
      labelNames,
      buckets: ITL_BUCKETS_S,
      registers,
    });
    this.stepFailures = new Counter({
      name: "kiln_worker_step_failures_total",
      help: "Steps the worker refused or failed.",
      labelNames,
      registers,
    });
    this.stepDuration.zero({ ...labels });
    this.stepFailures.inc({ ...labels }, 0);
  }

  observeStep(durationS: number): void {
    this.stepDuration.observe({ ...this.labels }, durationS);
  }

  countFailure(): void {
    this.stepFailures.inc({ ...this.labels });
  }
}

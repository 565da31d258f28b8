import { Counter, Gauge, Histogram, type Registry } from "prom-client";
import { ITL_BUCKETS_S } from "./buckets";
import type { ReplicaLabels } from "./scheduler-metrics";

type L = "model" | "replica";

/**
 * A worker's own view of its steps: `kiln_worker_step_duration_seconds` (applying the step
 * delta, the forward pass and sampling, as the worker measures it) and
 * `kiln_worker_step_failures_total`, and `kiln_worker_num_sequences` (sequences whose state the
 * worker holds, read at scrape time from `trackSequences`'s source). The router's `kiln_step_duration_seconds{phase="execute"}`
 * adds the network round trip on top.
 */
export class WorkerMetrics {
  readonly stepDuration: Histogram<L>;
  readonly stepFailures: Counter<L>;
  readonly numSequences: Gauge<L>;
  private readSequences: () => number = () => 0;

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
    const metrics = this;
    this.numSequences = new Gauge({
      name: "kiln_worker_num_sequences",
      help: "Sequences whose tokens and block table the worker holds (0 once all ended).",
      labelNames,
      registers,
      collect() {
        this.set({ ...labels }, metrics.readSequences());
      },
    });
    this.stepDuration.zero({ ...labels });
    this.stepFailures.inc({ ...labels }, 0);
  }

  /** Where `kiln_worker_num_sequences` reads its value at each scrape. */
  trackSequences(read: () => number): void {
    this.readSequences = read;
  }

  observeStep(durationS: number): void {
    this.stepDuration.observe({ ...this.labels }, durationS);
  }

  countFailure(): void {
    this.stepFailures.inc({ ...this.labels });
  }
}

import { Counter, Histogram, type Registry } from "prom-client";
import {
  ITERATION_TOKENS_BUCKETS,
  ITL_BUCKETS_S,
  MULTI_STEP_BUCKETS,
  REQUEST_BUCKETS_S,
  TTFT_BUCKETS_S,
} from "./buckets";
import type { ReplicaLabels } from "./scheduler-metrics";

type L = "model" | "replica";

/** vLLM's `finished_reason` values; "abort" covers client cancellations. */
export const FINISHED_REASONS = ["stop", "length", "abort"] as const;
export type FinishedReason = (typeof FINISHED_REASONS)[number];

/** Where an engine step's time goes (label `phase` of `kiln_step_duration_seconds`). */
export const STEP_PHASES = ["schedule", "execute", "commit"] as const;
export type StepPhase = (typeof STEP_PHASES)[number];

/** One finished request's intervals in seconds, from the engine's clock. */
export interface RequestTimings {
  readonly queueS: number;
  readonly ttftS: number;
  readonly prefillS: number;
  readonly decodeS: number;
  readonly e2eS: number;
}

/**
 * The engine's request and step metrics, recorded by the router where the scheduler runs.
 * Names and meanings follow vLLM (`vllm:time_to_first_token_seconds` →
 * `kiln_time_to_first_token_seconds`, …; docs/operations.md has the whole table). All series
 * carry `model` and `replica`. The caller owns the registry; this only registers into it.
 */
export class EngineMetrics {
  readonly promptTokens: Counter<L>;
  readonly generationTokens: Counter<L>;
  readonly requestSuccess: Counter<L | "finished_reason">;
  readonly timeToFirstToken: Histogram<L>;
  readonly interTokenLatency: Histogram<L>;
  readonly e2eRequestLatency: Histogram<L>;
  readonly requestQueueTime: Histogram<L>;
  readonly requestPrefillTime: Histogram<L>;
  readonly requestDecodeTime: Histogram<L>;
  readonly iterationTokens: Histogram<L>;
  readonly stepDuration: Histogram<L | "phase">;
  readonly stepsPlannedAhead: Counter<L>;
  readonly multiStepDecodeSteps: Histogram<L>;
  private readonly initialized = new Set<string>();

  constructor(registry: Registry) {
    const labelNames = ["model", "replica"] as const;
    const registers = [registry];
    const counter = (name: string, help: string) =>
      new Counter({ name, help, labelNames, registers });
    const histogram = (name: string, help: string, buckets: number[]) =>
      new Histogram({ name, help, labelNames, buckets, registers });
    this.promptTokens = counter("kiln_prompt_tokens_total", "Prefill tokens processed.");
    this.generationTokens = counter("kiln_generation_tokens_total", "Generated tokens.");
    this.requestSuccess = new Counter({
      name: "kiln_request_success_total",
      help: "Finished requests, by finished_reason (stop, length, abort).",
      labelNames: [...labelNames, "finished_reason"],
      registers,
    });
    this.timeToFirstToken = histogram(
      "kiln_time_to_first_token_seconds",
      "Arrival at the router to the first generated token.",
      TTFT_BUCKETS_S,
    );
    this.interTokenLatency = histogram(
      "kiln_inter_token_latency_seconds",
      "Time between consecutive tokens of a sequence.",
      ITL_BUCKETS_S,
    );
    this.e2eRequestLatency = histogram(
      "kiln_e2e_request_latency_seconds",
      "Arrival at the router to the last token.",
      REQUEST_BUCKETS_S,
    );
    this.requestQueueTime = histogram(
      "kiln_request_queue_time_seconds",
      "Arrival to the first scheduled step (time spent waiting).",
      REQUEST_BUCKETS_S,
    );
    this.requestPrefillTime = histogram(
      "kiln_request_prefill_time_seconds",
      "First scheduled step to the first token.",
      REQUEST_BUCKETS_S,
    );
    this.requestDecodeTime = histogram(
      "kiln_request_decode_time_seconds",
      "First token to the last token.",
      REQUEST_BUCKETS_S,
    );
    this.iterationTokens = histogram(
      "kiln_iteration_tokens",
      "Tokens (prefill and decode) computed per engine step.",
      ITERATION_TOKENS_BUCKETS,
    );
    this.stepDuration = new Histogram({
      name: "kiln_step_duration_seconds",
      help: "Engine step time by phase: schedule (plan), execute (worker round trip), commit.",
      labelNames: [...labelNames, "phase"],
      buckets: ITL_BUCKETS_S,
      registers,
    });
    this.stepsPlannedAhead = counter(
      "kiln_steps_planned_ahead_total",
      "Engine steps planned and sent while the step before them computed (async scheduling).",
    );
    this.multiStepDecodeSteps = histogram(
      "kiln_multi_step_decode_steps",
      "Decode steps the worker ran for one multi-step plan (plans of one step are not observed).",
      MULTI_STEP_BUCKETS,
    );
  }

  /**
   * Creates every series of a replica at zero, so rates and ratios read 0 rather than "no
   * data" before the first event. Idempotent.
   */
  initialize(labels: ReplicaLabels): void {
    const key = `${labels.model}\u0000${labels.replica}`;
    if (this.initialized.has(key)) return;
    this.initialized.add(key);
    this.promptTokens.inc(labels, 0);
    this.generationTokens.inc(labels, 0);
    this.stepsPlannedAhead.inc(labels, 0);
    for (const reason of FINISHED_REASONS) {
      this.requestSuccess.inc({ ...labels, finished_reason: reason }, 0);
    }
    for (const h of [
      this.timeToFirstToken,
      this.interTokenLatency,
      this.e2eRequestLatency,
      this.requestQueueTime,
      this.requestPrefillTime,
      this.requestDecodeTime,
      this.iterationTokens,
      this.multiStepDecodeSteps,
    ]) {
      h.zero(labels);
    }
    for (const phase of STEP_PHASES) this.stepDuration.zero({ ...labels, phase });
  }

  /** Counts a request that finished normally and observes its intervals. */
  observeFinished(labels: ReplicaLabels, reason: FinishedReason, timings: RequestTimings): void {
    this.requestSuccess.inc({ ...labels, finished_reason: reason });
    this.requestQueueTime.observe(labels, timings.queueS);
    this.timeToFirstToken.observe(labels, timings.ttftS);
    this.requestPrefillTime.observe(labels, timings.prefillS);
    this.requestDecodeTime.observe(labels, timings.decodeS);
    this.e2eRequestLatency.observe(labels, timings.e2eS);
  }
}

import { Metadata } from "@grpc/grpc-js";
import type { StepPlan } from "@kiln/engine-core";
import {
  type EngineMetrics,
  encodeSpanLinks,
  getTracer,
  injectTraceContext,
  isTracingEnabled,
  type ReplicaLabels,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  TRACE_LINKS_KEY,
  trace,
} from "@kiln/telemetry";
import type { RequestTracker } from "./request-tracker";

const tracer = getTracer("kiln-router");

/**
 * One engine step as telemetry sees it: `planned` after `schedule()`, `execute` around the
 * worker call, `committed` after `commit()`. Records `kiln_step_duration_seconds{phase}` and
 * `kiln_iteration_tokens`; while tracing, a `router.step` span linked to every request the
 * step serves, whose context (and those links) travel to the worker in the Step metadata.
 */
export class StepObserver {
  private span: Span | null = null;
  private linkContexts: SpanContext[] = [];
  private phaseStartMs: number;

  constructor(
    private readonly metrics: EngineMetrics,
    private readonly requests: RequestTracker,
    private readonly labels: ReplicaLabels,
    private readonly clock: () => number,
  ) {
    this.phaseStartMs = clock();
  }

  /**
   * The plan is about to be sent (an idle plan is never reported); `isAhead`: planned while the
   * step before it computes (Scheduler.scheduleAhead).
   */
  planned(plan: StepPlan<unknown>, isAhead = false): void {
    this.endPhase("schedule");
    if (isAhead) this.metrics.stepsPlannedAhead.inc(this.labels);
    // A step that only drops aborted sequences computes nothing: not an iteration.
    if (plan.numScheduledTokens > 0) {
      this.metrics.iterationTokens.observe(this.labels, plan.numScheduledTokens);
    }
    if (!isTracingEnabled()) return;
    const requestIds = new Set(plan.seqs.map((seq) => seq.requestId as string));
    this.linkContexts = this.requests.spanContexts(requestIds);
    const links = this.linkContexts.map((context) => ({ context }));
    this.span = tracer.startSpan("router.step", {
      kind: SpanKind.CLIENT,
      root: true,
      links,
      attributes: {
        "kiln.replica": this.labels.replica,
        "kiln.step_id": plan.stepId,
        "kiln.num_seqs": plan.seqs.length,
        "kiln.num_scheduled_tokens": plan.numScheduledTokens,
      },
    });
  }

  /**
   * Runs the worker call with metadata carrying the step's trace context (empty while tracing
   * is off), and ends the step span whether it succeeds or throws.
   */
  async execute<T>(call: (metadata: Metadata) => Promise<T>): Promise<T> {
    const metadata = new Metadata();
    if (this.span) {
      injectTraceContext(metadata, trace.setSpan(ROOT_CONTEXT, this.span));
      // A worker step span links to the requests too; they cannot ride in traceparent.
      if (this.linkContexts.length > 0) {
        metadata.set(TRACE_LINKS_KEY, encodeSpanLinks(this.linkContexts));
      }
    }
    try {
      return await call(metadata);
    } catch (err) {
      this.span?.setStatus({ code: SpanStatusCode.ERROR, message: String(err) });
      throw err;
    } finally {
      this.endPhase("execute");
      this.span?.end();
    }
  }

  /**
   * The step's results were committed and dispatched; `numDecodeSteps`: the decode steps the
   * worker ran for it (more than one in a multi-step plan, ADR 0028).
   */
  committed(numDecodeSteps = 1): void {
    this.endPhase("commit");
    if (numDecodeSteps > 1) this.metrics.multiStepDecodeSteps.observe(this.labels, numDecodeSteps);
  }

  private endPhase(phase: "schedule" | "execute" | "commit"): void {
    const nowMs = this.clock();
    this.metrics.stepDuration.observe(
      { ...this.labels, phase },
      (nowMs - this.phaseStartMs) / 1000,
    );
    this.phaseStartMs = nowMs;
  }
}

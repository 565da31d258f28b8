import {
  decodeSpanLinks,
  extractTraceContext,
  getTracer,
  isTracingEnabled,
  type MetadataLike,
  type Registry,
  type ReplicaLabels,
  SpanKind,
  SpanStatusCode,
  TRACE_LINKS_KEY,
  WorkerMetrics,
} from "@kiln/telemetry";

const tracer = getTracer("kiln-worker");

/** What a step span records about the step. */
export interface StepShape {
  readonly stepId: number;
  readonly numSeqs: number;
  readonly numNewSeqs: number;
}

/**
 * The worker's metrics and spans: every Step is timed into
 * `kiln_worker_step_duration_seconds` (failures into `kiln_worker_step_failures_total`) and,
 * while tracing, runs in a `kiln.v1.Worker/Step` span that is a child of the router's step
 * span (from the call's `traceparent`) and links to each request the step served.
 */
export class WorkerTelemetry {
  private readonly metrics: WorkerMetrics;

  constructor(registry: Registry, labels: ReplicaLabels) {
    this.metrics = new WorkerMetrics(registry, labels);
  }

  /** Runs one step, timing it; rethrows what `run` throws. */
  async observeStep<T>(
    metadata: MetadataLike,
    shape: StepShape,
    run: () => Promise<T>,
  ): Promise<T> {
    const startedAt = performance.now();
    const span = isTracingEnabled() ? startStepSpan(metadata, shape) : null;
    try {
      const result = await run();
      this.metrics.observeStep((performance.now() - startedAt) / 1000);
      return result;
    } catch (err) {
      this.metrics.countFailure();
      span?.setStatus({ code: SpanStatusCode.ERROR, message: String(err) });
      throw err;
    } finally {
      span?.end();
    }
  }

  /** Exposes the worker's live sequence count as `kiln_worker_num_sequences`. */
  trackSequences(read: () => number): void {
    this.metrics.trackSequences(read);
  }

  /** A step refused before it ran (another one was running). */
  countRefusedStep(): void {
    this.metrics.countFailure();
  }
}

function startStepSpan(metadata: MetadataLike, shape: StepShape) {
  const linksValue = metadata.get(TRACE_LINKS_KEY)[0];
  return tracer.startSpan(
    "kiln.v1.Worker/Step",
    {
      kind: SpanKind.SERVER,
      links: typeof linksValue === "string" ? decodeSpanLinks(linksValue) : [],
      attributes: {
        "rpc.system": "grpc",
        "rpc.service": "kiln.v1.Worker",
        "rpc.method": "Step",
        "kiln.step_id": shape.stepId,
        "kiln.num_seqs": shape.numSeqs,
        "kiln.num_new_seqs": shape.numNewSeqs,
      },
    },
    extractTraceContext(metadata),
  );
}

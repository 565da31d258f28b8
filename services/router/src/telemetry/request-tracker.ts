import type { EngineEvent, RequestSummary } from "@kiln/engine-core";
import {
  type Context,
  type EngineMetrics,
  epochMsFromPerf,
  getTracer,
  isTracingEnabled,
  type ReplicaLabels,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@kiln/telemetry";

const tracer = getTracer("kiln-router");

/** What the router remembers about a running request for its metrics and its span. */
interface TrackedRequest {
  readonly labels: ReplicaLabels;
  readonly numPromptTokens: number;
  /** The request's span; null while tracing is off. */
  readonly span: Span | null;
  /** [n] clock time of each sequence's latest token (for inter-token latency). */
  readonly seqIndexToLastTokenMs: number[];
  hasFirstToken: boolean;
  numOutputTokens: number;
}

/**
 * Per-request metrics and spans. A request is tracked from `add` until it finishes, is
 * aborted or fails; events for requests it does not track are ignored. Times are the
 * engine's clock (`performance.now()` milliseconds in the router).
 */
export class RequestTracker {
  private readonly idToRequest = new Map<string, TrackedRequest>();

  constructor(private readonly metrics: EngineMetrics) {}

  get numTracked(): number {
    return this.idToRequest.size;
  }

  /** Starts tracking; the span (when tracing) is a child of `parent`, the caller's context. */
  add(labels: ReplicaLabels, requestId: string, numPromptTokens: number, parent: Context): void {
    const span = isTracingEnabled()
      ? tracer.startSpan(
          "kiln.v1.Router/Generate",
          {
            kind: SpanKind.SERVER,
            attributes: {
              "rpc.system": "grpc",
              "rpc.service": "kiln.v1.Router",
              "rpc.method": "Generate",
              "kiln.request_id": requestId,
              "kiln.model": labels.model,
              "kiln.replica": labels.replica,
              "kiln.num_prompt_tokens": numPromptTokens,
            },
          },
          parent,
        )
      : null;
    this.idToRequest.set(requestId, {
      labels,
      numPromptTokens,
      span,
      seqIndexToLastTokenMs: [],
      hasFirstToken: false,
      numOutputTokens: 0,
    });
  }

  /** The span contexts of these requests (for a step span's links); empty while tracing is off. */
  spanContexts(requestIds: Iterable<string>): SpanContext[] {
    const contexts: SpanContext[] = [];
    for (const id of requestIds) {
      const span = this.idToRequest.get(id)?.span;
      if (span) contexts.push(span.spanContext());
    }
    return contexts;
  }

  /** Records a committed step's events: tokens, first tokens, preemptions and finishes. */
  onEvents(events: readonly EngineEvent<unknown>[], nowMs: number): void {
    for (const event of events) {
      const request = this.idToRequest.get(event.requestId);
      if (!request) continue;
      if (event.kind === "token") {
        this.onToken(request, event.seqIndex, nowMs);
      } else if (event.kind === "preempted") {
        request.span?.addEvent("preempted", { "kiln.seq_index": event.seqIndex });
      } else if (event.requestDone) {
        this.idToRequest.delete(event.requestId);
        this.onFinished(request, event.reason, event.requestDone);
      }
    }
  }

  /**
   * The client went away (finished_reason "abort"), or the gateway stopped the request's last
   * choice on a stop string (`reason` "stop").
   */
  abort(requestId: string, reason: "abort" | "stop" = "abort"): void {
    const request = this.idToRequest.get(requestId);
    if (!request) return;
    this.idToRequest.delete(requestId);
    this.metrics.requestSuccess.inc({ ...request.labels, finished_reason: reason });
    request.span?.setAttribute("kiln.finish_reason", reason);
    request.span?.setAttribute("kiln.num_output_tokens", request.numOutputTokens);
    request.span?.end();
  }

  /** The request ended with an error (its worker was lost); the span records it. */
  fail(requestId: string, code: string, message: string): void {
    const request = this.idToRequest.get(requestId);
    if (!request) return;
    this.idToRequest.delete(requestId);
    request.span?.setAttribute("kiln.error_code", code);
    request.span?.setStatus({ code: SpanStatusCode.ERROR, message });
    request.span?.end();
  }

  private onToken(request: TrackedRequest, seqIndex: number, nowMs: number): void {
    const { labels } = request;
    if (!request.hasFirstToken) {
      // vLLM counts a request's prompt tokens once, when its prefill produced the first token.
      request.hasFirstToken = true;
      this.metrics.promptTokens.inc(labels, request.numPromptTokens);
      request.span?.addEvent("first_token");
    }
    const lastMs = request.seqIndexToLastTokenMs[seqIndex];
    if (lastMs !== undefined)
      this.metrics.interTokenLatency.observe(labels, (nowMs - lastMs) / 1000);
    request.seqIndexToLastTokenMs[seqIndex] = nowMs;
    request.numOutputTokens++;
    this.metrics.generationTokens.inc(labels);
  }

  private onFinished(request: TrackedRequest, reason: "stop" | "length", s: RequestSummary): void {
    const scheduledMs = s.firstScheduledTime ?? s.finishedTime;
    const firstTokenMs = s.firstTokenTime ?? s.finishedTime;
    this.metrics.observeFinished(request.labels, reason, {
      queueS: (scheduledMs - s.arrivalTime) / 1000,
      ttftS: (firstTokenMs - s.arrivalTime) / 1000,
      prefillS: (firstTokenMs - scheduledMs) / 1000,
      decodeS: (s.finishedTime - firstTokenMs) / 1000,
      e2eS: (s.finishedTime - s.arrivalTime) / 1000,
    });
    const span = request.span;
    if (!span) return;
    // The request's phases as child spans, timed by the engine's own clock.
    const parent = trace.setSpan(ROOT_CONTEXT, span);
    const phases: [string, number, number][] = [
      ["router.queue", s.arrivalTime, scheduledMs],
      ["router.prefill", scheduledMs, firstTokenMs],
      ["router.decode", firstTokenMs, s.finishedTime],
    ];
    for (const [name, startMs, endMs] of phases) {
      tracer
        .startSpan(name, { startTime: epochMsFromPerf(startMs) }, parent)
        .end(epochMsFromPerf(endMs));
    }
    span.setAttributes({
      "kiln.finish_reason": reason,
      "kiln.num_output_tokens": request.numOutputTokens,
      "kiln.num_preemptions": s.numPreemptions,
    });
    span.end();
  }
}

// The OpenTelemetry API surface services use, so they depend on this package alone.
export {
  type Context,
  context,
  type Link,
  ROOT_CONTEXT,
  type Span,
  type SpanContext,
  SpanKind,
  SpanStatusCode,
  trace,
} from "@opentelemetry/api";
export { Counter, Gauge, type Registry } from "prom-client";
export {
  ITERATION_TOKENS_BUCKETS,
  ITL_BUCKETS_S,
  REQUEST_BUCKETS_S,
  TTFT_BUCKETS_S,
} from "./metrics/buckets";
export {
  EngineMetrics,
  FINISHED_REASONS,
  type FinishedReason,
  type RequestTimings,
  STEP_PHASES,
  type StepPhase,
} from "./metrics/engine-metrics";
export { HttpMetrics } from "./metrics/http-metrics";
export { LoraMetrics, type LoraSnapshot, type LoraSources } from "./metrics/lora-metrics";
export {
  type MetricsPortOption,
  type MetricsServer,
  startMetricsServer,
  takeMetricsPortOption,
} from "./metrics/metrics-server";
export { createMetricsRegistry, type RegistryOptions } from "./metrics/registry";
export {
  type ReplicaLabels,
  type ReplicaSnapshot,
  SchedulerMetrics,
  type SnapshotSource,
} from "./metrics/scheduler-metrics";
export { SupervisorMetrics } from "./metrics/supervisor-metrics";
export { WorkerMetrics } from "./metrics/worker-metrics";
export {
  decodeSpanLinks,
  encodeSpanLinks,
  epochMsFromPerf,
  extractHttpTraceContext,
  extractTraceContext,
  injectTraceContext,
  type MetadataLike,
  TRACE_LINKS_KEY,
} from "./tracing/propagation";
export {
  getTracer,
  isTracingEnabled,
  startTracing,
  type Tracing,
  type TracingOptions,
} from "./tracing/tracing";

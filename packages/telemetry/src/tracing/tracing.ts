import { type ProxyTracerProvider, type Tracer, trace } from "@opentelemetry/api";
import type { SpanExporter } from "@opentelemetry/sdk-trace-base";

export interface TracingOptions {
  /** `service.name` of every span this process exports (`kiln-gateway`, `kiln-router`, …). */
  readonly serviceName: string;
  readonly env?: NodeJS.ProcessEnv;
  /**
   * Export here instead of OTLP, span by span (tests pass an InMemorySpanExporter). Tracing
   * starts even without an OTLP endpoint when this is given.
   */
  readonly exporter?: SpanExporter;
}

/** The process's tracing, started once at startup. */
export interface Tracing {
  readonly isEnabled: boolean;
  /** Exports every ended span now (spans are otherwise exported in batches). */
  flush(): Promise<void>;
  /** Flushes spans not yet exported and stops the SDK. Call before the process exits. */
  shutdown(): Promise<void>;
}

let isEnabled = false;

/** True once `startTracing` started the SDK: callers skip work that only feeds spans. */
export function isTracingEnabled(): boolean {
  return isEnabled;
}

/**
 * The tracer for `name`. Until the SDK is started (and always when tracing is off) it is the
 * OpenTelemetry API's no-op tracer: spans cost an object allocation and export nothing.
 */
export function getTracer(name: string): Tracer {
  return trace.getTracer(name);
}

/**
 * Starts the OpenTelemetry Node SDK when `OTEL_EXPORTER_OTLP_ENDPOINT` (or
 * `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`) is set and `OTEL_SDK_DISABLED` is not "true": spans go
 * over OTLP/HTTP (JSON) in batches (`OTEL_BSP_*`), sampled per `OTEL_TRACES_SAMPLER`, with W3C
 * trace context propagation. Otherwise nothing is loaded and the API stays a no-op. The SDK
 * is imported lazily so a process without tracing never pays for loading it.
 */
export async function startTracing(opts: TracingOptions): Promise<Tracing> {
  const env = opts.env ?? process.env;
  const endpoint = env.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT || env.OTEL_EXPORTER_OTLP_ENDPOINT;
  const isDisabled = env.OTEL_SDK_DISABLED?.trim().toLowerCase() === "true";
  if (isEnabled || isDisabled || (!endpoint && !opts.exporter)) {
    return { isEnabled: false, flush: async () => {}, shutdown: async () => {} };
  }
  const [{ NodeSDK }, { SimpleSpanProcessor }] = await Promise.all([
    import("@opentelemetry/sdk-node"),
    import("@opentelemetry/sdk-trace-base"),
  ]);
  const config = opts.exporter
    ? { spanProcessors: [new SimpleSpanProcessor(opts.exporter)] }
    : { traceExporter: await createOtlpExporter() };
  const sdk = new NodeSDK({
    serviceName: opts.serviceName,
    ...config,
    instrumentations: [],
    // Only traces: Prometheus owns metrics, and empty lists keep the SDK from starting OTLP
    // metric and log exporters by default.
    metricReaders: [],
    logRecordProcessors: [],
  });
  sdk.start();
  isEnabled = true;
  return {
    isEnabled: true,
    flush: async () => {
      const provider = trace.getTracerProvider() as ProxyTracerProvider;
      const delegate = provider.getDelegate() as { forceFlush?: () => Promise<void> };
      await delegate.forceFlush?.();
    },
    shutdown: async () => {
      isEnabled = false;
      await sdk.shutdown().catch(() => {});
    },
  };
}

async function createOtlpExporter(): Promise<SpanExporter> {
  const { OTLPTraceExporter } = await import("@opentelemetry/exporter-trace-otlp-http");
  // Reads OTEL_EXPORTER_OTLP_(TRACES_)ENDPOINT, _HEADERS and _TIMEOUT itself.
  return new OTLPTraceExporter();
}

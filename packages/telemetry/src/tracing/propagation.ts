import {
  type Context,
  context,
  isSpanContextValid,
  type Link,
  propagation,
  ROOT_CONTEXT,
  type SpanContext,
  type TextMapGetter,
  type TextMapSetter,
  TraceFlags,
} from "@opentelemetry/api";
import { isTracingEnabled } from "./tracing";

/** The part of grpc-js `Metadata` trace propagation uses (so this package needs no gRPC). */
export interface MetadataLike {
  get(key: string): unknown[];
  set(key: string, value: string): void;
}

/** Metadata key carrying the span contexts a worker step should link to. */
export const TRACE_LINKS_KEY = "kiln-trace-links";

const metadataSetter: TextMapSetter<MetadataLike> = {
  set: (carrier, key, value) => carrier.set(key, value),
};

const metadataGetter: TextMapGetter<MetadataLike> = {
  get: (carrier, key) => {
    const value = carrier.get(key)[0];
    return typeof value === "string" ? value : undefined;
  },
  keys: () => ["traceparent", "tracestate", "baggage"],
};

/**
 * Writes `ctx`'s trace context (W3C `traceparent`/`tracestate`) into gRPC metadata. Does
 * nothing while tracing is off. Returns `metadata` for chaining.
 */
export function injectTraceContext<M extends MetadataLike>(
  metadata: M,
  ctx: Context = context.active(),
): M {
  if (isTracingEnabled()) propagation.inject(ctx, metadata, metadataSetter);
  return metadata;
}

/** The caller's trace context from gRPC metadata; ROOT_CONTEXT when absent or tracing is off. */
export function extractTraceContext(metadata: MetadataLike): Context {
  if (!isTracingEnabled()) return ROOT_CONTEXT;
  return propagation.extract(ROOT_CONTEXT, metadata, metadataGetter);
}

/** The caller's trace context from HTTP request headers (`traceparent` from a client). */
export function extractHttpTraceContext(
  headers: Readonly<Record<string, string | string[] | undefined>>,
): Context {
  if (!isTracingEnabled()) return ROOT_CONTEXT;
  return propagation.extract(ROOT_CONTEXT, headers, {
    get: (carrier, key) => {
      const value = carrier[key];
      return Array.isArray(value) ? value[0] : value;
    },
    keys: (carrier) => Object.keys(carrier),
  });
}

/**
 * Span contexts as one metadata value: `traceId-spanId-flags` joined by commas (what a step
 * span links to: the requests it served).
 */
export function encodeSpanLinks(spanContexts: readonly SpanContext[]): string {
  return spanContexts
    .map((sc) => `${sc.traceId}-${sc.spanId}-${sc.traceFlags.toString(16).padStart(2, "0")}`)
    .join(",");
}

/** The inverse of `encodeSpanLinks`; malformed entries are skipped. */
export function decodeSpanLinks(text: string): Link[] {
  const links: Link[] = [];
  for (const item of text.split(",")) {
    const [traceId, spanId, flags] = item.trim().split("-");
    if (!traceId || !spanId) continue;
    const traceFlags = Number.parseInt(flags ?? "1", 16) & TraceFlags.SAMPLED;
    const spanContext: SpanContext = { traceId, spanId, traceFlags, isRemote: true };
    if (isSpanContextValid(spanContext)) links.push({ context: spanContext });
  }
  return links;
}

/** A `performance.now()` reading (ms) as epoch milliseconds, for explicit span times. */
export function epochMsFromPerf(perfMs: number): number {
  return performance.timeOrigin + perfMs;
}

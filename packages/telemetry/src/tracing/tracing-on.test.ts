import { context, SpanKind, trace } from "@opentelemetry/api";
import { InMemorySpanExporter } from "@opentelemetry/sdk-trace-base";
import { afterAll, describe, expect, it } from "vitest";
import {
  decodeSpanLinks,
  encodeSpanLinks,
  extractHttpTraceContext,
  extractTraceContext,
  injectTraceContext,
} from "./propagation";
import { startTracing, type Tracing } from "./tracing";

class FakeMetadata {
  readonly map = new Map<string, string>();
  get(key: string): unknown[] {
    const v = this.map.get(key);
    return v === undefined ? [] : [v];
  }
  set(key: string, value: string): void {
    this.map.set(key, value);
  }
}

describe("tracing with an in-memory exporter", () => {
  const exporter = new InMemorySpanExporter();
  let tracing: Tracing;
  afterAll(() => tracing?.shutdown());

  it("carries the parent through metadata and links step spans to requests", async () => {
    tracing = await startTracing({ serviceName: "test", env: {}, exporter });
    expect(tracing.isEnabled).toBe(true);
    const tracer = trace.getTracer("t");
    const http = tracer.startSpan("http", { kind: SpanKind.SERVER });
    const md = injectTraceContext(new FakeMetadata(), trace.setSpan(context.active(), http));
    expect(md.map.get("traceparent")).toMatch(/^00-[0-9a-f]{32}-[0-9a-f]{16}-01$/);
    const request = tracer.startSpan("request", {}, extractTraceContext(md));
    const links = decodeSpanLinks(encodeSpanLinks([request.spanContext()]));
    const step = tracer.startSpan("step", { root: true, links });
    for (const s of [step, request, http]) s.end();
    await tracing.flush();

    const spans = new Map(exporter.getFinishedSpans().map((s) => [s.name, s]));
    const httpId = spans.get("http")!.spanContext().spanId;
    expect(spans.get("request")!.parentSpanContext?.spanId).toBe(httpId);
    expect(spans.get("request")!.spanContext().traceId).toBe(http.spanContext().traceId);
    expect(spans.get("step")!.parentSpanContext).toBeUndefined();
    expect(spans.get("step")!.links[0]?.context.spanId).toBe(request.spanContext().spanId);
  });

  it("continues a client's traceparent header", () => {
    const traceId = "0af7651916cd43dd8448eb211c80319c";
    const ctx = extractHttpTraceContext({ traceparent: `00-${traceId}-b7ad6b7169203331-01` });
    expect(trace.getSpanContext(ctx)?.traceId).toBe(traceId);
  });

  it("skips malformed links", () => {
    expect(decodeSpanLinks("nonsense,,00-11")).toEqual([]);
  });
});

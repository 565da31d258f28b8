import { context, trace } from "@opentelemetry/api";
import { describe, expect, it } from "vitest";
import { extractTraceContext, injectTraceContext } from "./propagation";
import { isTracingEnabled, startTracing } from "./tracing";

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

describe("tracing without an OTLP endpoint", () => {
  it("starts nothing, and the API stays a no-op", async () => {
    const tracing = await startTracing({ serviceName: "test", env: {} });
    expect(tracing.isEnabled).toBe(false);
    expect(isTracingEnabled()).toBe(false);
    const span = trace.getTracer("t").startSpan("s");
    expect(span.isRecording()).toBe(false);
    const md = injectTraceContext(new FakeMetadata(), trace.setSpan(context.active(), span));
    expect(md.map.size).toBe(0);
    expect(trace.getSpan(extractTraceContext(md))).toBeUndefined();
    await tracing.shutdown();
  });

  it("stays off when OTEL_SDK_DISABLED is true", async () => {
    const env = { OTEL_EXPORTER_OTLP_ENDPOINT: "http://127.0.0.1:1", OTEL_SDK_DISABLED: "true" };
    expect((await startTracing({ serviceName: "test", env })).isEnabled).toBe(false);
  });
});

import { Counter } from "prom-client";
import { describe, expect, it } from "vitest";
import { startMetricsServer, takeMetricsPortOption } from "./metrics-server";
import { createMetricsRegistry } from "./registry";

describe("startMetricsServer", () => {
  it("serves the registry at /metrics and 404s elsewhere", async () => {
    const registry = createMetricsRegistry();
    new Counter({ name: "kiln_test_total", help: "test", registers: [registry] }).inc(2);
    const server = await startMetricsServer(registry, { host: "127.0.0.1", port: 0 });
    try {
      const res = await fetch(`http://127.0.0.1:${server.port}/metrics`);
      expect(res.status).toBe(200);
      expect(res.headers.get("content-type")).toContain("text/plain");
      const text = await res.text();
      expect(text).toContain("kiln_test_total 2");
      expect(text).toContain("process_cpu_seconds_total");
      expect((await fetch(`http://127.0.0.1:${server.port}/other`)).status).toBe(404);
    } finally {
      await server.close();
    }
  });
});

describe("takeMetricsPortOption", () => {
  it("takes the flag out of argv, in either spelling", () => {
    expect(takeMetricsPortOption(["--a", "1", "--metrics-port", "9400", "--b"], {})).toEqual({
      metricsPort: 9400,
      argv: ["--a", "1", "--b"],
    });
    expect(takeMetricsPortOption(["--metrics-port=0"], {}).metricsPort).toBe(0);
  });

  it("falls back to KILN_METRICS_PORT, and is off without either", () => {
    expect(takeMetricsPortOption([], { KILN_METRICS_PORT: "9401" }).metricsPort).toBe(9401);
    expect(takeMetricsPortOption([], {}).metricsPort).toBeNull();
    const env = { KILN_METRICS_PORT: "9401", KILN_WORKER_METRICS_PORT: "9402" };
    expect(takeMetricsPortOption([], env, "KILN_WORKER_METRICS_PORT").metricsPort).toBe(9402);
    expect(takeMetricsPortOption([], env, "KILN_ROUTER_METRICS_PORT").metricsPort).toBe(9401);
  });

  it("rejects a value that is not a port", () => {
    expect(() => takeMetricsPortOption(["--metrics-port", "x"], {})).toThrow(/--metrics-port/);
    expect(() => takeMetricsPortOption(["--metrics-port"], {})).toThrow(/--metrics-port/);
  });
});

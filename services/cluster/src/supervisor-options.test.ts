import { describe, expect, it } from "vitest";
import { DEFAULT_RESTART_POLICY } from "./restart-policy";
import { parseSupervisorOptions } from "./supervisor-options";

describe("parseSupervisorOptions", () => {
  it("defaults, then environment variables, then flags win", () => {
    expect(parseSupervisorOptions([], {})).toEqual({
      restartPolicy: DEFAULT_RESTART_POLICY,
      metricsPort: null,
      tensorParallelSize: 1,
      dataParallelSize: 1,
    });
    const env = {
      KILN_SUPERVISOR_MAX_RESTARTS: "2",
      KILN_SUPERVISOR_RESTART_WINDOW_S: "30",
      KILN_SUPERVISOR_BACKOFF_MS: "100",
      KILN_SUPERVISOR_BACKOFF_MAX_MS: "800",
      KILN_SUPERVISOR_METRICS_PORT: "0",
    };
    expect(parseSupervisorOptions([], env)).toEqual({
      restartPolicy: { maxRestarts: 2, windowMs: 30_000, backoffInitialMs: 100, backoffMaxMs: 800 },
      metricsPort: 0,
      tensorParallelSize: 1,
      dataParallelSize: 1,
    });
    const argv = ["--max-restarts", "7", "--restart-window=5", "--supervisor-metrics-port", "9500"];
    expect(parseSupervisorOptions(argv, env)).toMatchObject({
      restartPolicy: { maxRestarts: 7, windowMs: 5000 },
      metricsPort: 9500,
    });
  });

  it("names the flag on a bad value", () => {
    expect(() => parseSupervisorOptions(["--max-restarts", "-1"], {})).toThrow(/--max-restarts/);
    expect(() => parseSupervisorOptions(["--restart-window", "0"], {})).toThrow(/--restart-window/);
    expect(() => parseSupervisorOptions([], { KILN_SUPERVISOR_METRICS_PORT: "70000" })).toThrow(
      /--supervisor-metrics-port/,
    );
  });
});

import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { WorkerMetrics } from "./worker-metrics";

describe("WorkerMetrics", () => {
  it("reads kiln_worker_num_sequences from its source at every scrape", async () => {
    const registry = new Registry();
    const metrics = new WorkerMetrics(registry, { model: "m", replica: "r0" });
    expect(await registry.metrics()).toContain(
      'kiln_worker_num_sequences{model="m",replica="r0"} 0',
    );
    let numSequences = 5;
    metrics.trackSequences(() => numSequences);
    expect(await registry.metrics()).toContain(
      'kiln_worker_num_sequences{model="m",replica="r0"} 5',
    );
    numSequences = 0;
    expect(await registry.metrics()).toContain(
      'kiln_worker_num_sequences{model="m",replica="r0"} 0',
    );
  });
});

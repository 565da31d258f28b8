import { Registry } from "prom-client";
import { describe, expect, it } from "vitest";
import { type ReplicaSnapshot, SchedulerMetrics } from "./scheduler-metrics";

function snapshot(overrides: Partial<ReplicaSnapshot> = {}): ReplicaSnapshot {
  return {
    model: "m",
    replica: "r0",
    isHealthy: true,
    numRunningRequests: 0,
    numWaitingRequests: 0,
    numUsedBlocks: 0,
    numBlocks: 8,
    prefixCacheQueryTokens: 0,
    prefixCacheHitTokens: 0,
    numPreemptions: 0,
    ...overrides,
  };
}

async function seriesValue(registry: Registry, name: string): Promise<number | undefined> {
  const metric = await registry.getSingleMetric(name)?.get();
  return metric?.values.find((v) => v.labels.replica === "r0")?.value;
}

describe("SchedulerMetrics", () => {
  it("reads gauges from the source at every scrape", async () => {
    const registry = new Registry();
    let current = snapshot({ numRunningRequests: 3, numWaitingRequests: 2, numUsedBlocks: 6 });
    new SchedulerMetrics(registry, async () => [current]);
    const text = await registry.metrics();
    expect(text).toContain('kiln_num_requests_running{model="m",replica="r0"} 3');
    expect(text).toContain('kiln_num_requests_waiting{model="m",replica="r0"} 2');
    expect(text).toContain('kiln_kv_cache_usage_ratio{model="m",replica="r0"} 0.75');
    expect(text).toContain('kiln_replica_healthy{model="m",replica="r0"} 1');
    current = snapshot();
    expect(await registry.metrics()).toContain(
      'kiln_kv_cache_usage_ratio{model="m",replica="r0"} 0',
    );
  });

  it("keeps counters monotonic across a scheduler restart", async () => {
    const registry = new Registry();
    const metrics = new SchedulerMetrics(registry, () => []);
    metrics.update([snapshot({ prefixCacheQueryTokens: 10, prefixCacheHitTokens: 4 })]);
    metrics.update([snapshot({ prefixCacheQueryTokens: 25, prefixCacheHitTokens: 4 })]);
    expect(await seriesValue(registry, "kiln_prefix_cache_queries_total")).toBe(25);
    // A new scheduler counts from zero again: its 3 tokens are added, nothing is subtracted.
    metrics.update([snapshot({ prefixCacheQueryTokens: 3, numPreemptions: 1 })]);
    expect(await seriesValue(registry, "kiln_prefix_cache_queries_total")).toBe(28);
    expect(await seriesValue(registry, "kiln_prefix_cache_hits_total")).toBe(4);
    expect(await seriesValue(registry, "kiln_num_preemptions_total")).toBe(1);
  });

  it("reports an unhealthy replica as idle, and survives a failing source", async () => {
    const registry = new Registry();
    let isFailing = false;
    new SchedulerMetrics(registry, () => {
      if (isFailing) throw new Error("router unreachable");
      return [snapshot({ isHealthy: false, numRunningRequests: 5, numUsedBlocks: 8 })];
    });
    expect(await seriesValue(registry, "kiln_num_requests_running")).toBe(0);
    expect(await seriesValue(registry, "kiln_kv_cache_usage_ratio")).toBe(0);
    expect(await seriesValue(registry, "kiln_replica_healthy")).toBe(0);
    isFailing = true;
    expect(await registry.metrics()).toContain("kiln_replica_healthy");
  });
});

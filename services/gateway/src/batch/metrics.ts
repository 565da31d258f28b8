import { Gauge, type Registry } from "@kiln/telemetry";
import type { Queue } from "bullmq";
import type { BatchStore } from "./batch-store";

/**
 * Batch gauges, read from Redis at each scrape: `kiln_batch_lines{state}` (queued, running,
 * completed, failed; completed/failed count answered lines over all batches) and
 * `kiln_batch_oldest_queued_age_seconds` (0 when nothing waits).
 */
export function registerBatchMetrics(registry: Registry, queue: Queue, store: BatchStore): void {
  new Gauge({
    name: "kiln_batch_lines",
    help: "Batch lines by state: queued, running, completed, failed.",
    labelNames: ["state"],
    registers: [registry],
    async collect() {
      const counts = await queue.getJobCounts("waiting", "prioritized", "delayed", "active");
      const answered = await store.stats();
      this.set(
        { state: "queued" },
        (counts.waiting ?? 0) + (counts.prioritized ?? 0) + (counts.delayed ?? 0),
      );
      this.set({ state: "running" }, counts.active ?? 0);
      this.set({ state: "completed" }, answered.completed);
      this.set({ state: "failed" }, answered.failed);
    },
  });
  new Gauge({
    name: "kiln_batch_oldest_queued_age_seconds",
    help: "Age of the oldest batch line still waiting to run.",
    registers: [registry],
    async collect() {
      const [oldest] = await queue.getJobs(["waiting", "prioritized", "delayed"], 0, 0, true);
      this.set(oldest ? Math.max(0, (Date.now() - oldest.timestamp) / 1000) : 0);
    },
  });
}

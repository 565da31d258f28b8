import { collectDefaultMetrics, Registry } from "prom-client";

export interface RegistryOptions {
  /**
   * Node process metrics (`process_cpu_seconds_total`, `process_resident_memory_bytes`,
   * `nodejs_eventloop_lag_seconds`, `nodejs_heap_size_used_bytes`, …) under prom-client's
   * standard names, so stock Node.js dashboards work. Default true.
   */
  readonly processMetrics?: boolean;
}

/**
 * A fresh registry for one service. Each service owns its own (never prom-client's global
 * one) so tests can build several side by side; Prometheus adds `job` and `instance`.
 */
export function createMetricsRegistry(opts: RegistryOptions = {}): Registry {
  const registry = new Registry();
  if (opts.processMetrics ?? true) collectDefaultMetrics({ register: registry });
  return registry;
}

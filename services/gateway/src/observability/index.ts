import { createMetricsRegistry, type Registry, startTracing } from "@kiln/telemetry";
import type { FastifyInstance } from "fastify";
import { installLoraMetrics } from "../lora/metrics";
import type { LoraRegistry } from "../lora/registry";
import { observabilityPlugin } from "./metrics-plugin";
import { createRouterStatsSource } from "./router-stats";

export { observabilityPlugin, recordStreamError } from "./metrics-plugin";
export { createRouterStatsSource } from "./router-stats";
export { mergeExpositions, parseExposition } from "./upstream-metrics";

export interface GatewayObservability {
  /** Closes the Stats channel and flushes spans not yet exported. Call after `app.close()`. */
  close(): Promise<void>;
}

/**
 * Everything the gateway process needs, in one call before `listen`: starts tracing (only
 * when `OTEL_EXPORTER_OTLP_ENDPOINT` is set), and registers the metrics plugin with the
 * router's scheduler state read over Stats at each scrape, labelled with `model`.
 */
export async function installObservability(
  app: FastifyInstance,
  opts: {
    readonly routerAddress: string;
    readonly model: string;
    readonly metricsUpstreams?: readonly string[];
    readonly registry?: Registry;
    readonly lora?: LoraRegistry;
  },
): Promise<GatewayObservability> {
  const tracing = await startTracing({ serviceName: "kiln-gateway" });
  const stats = createRouterStatsSource(opts.routerAddress, opts.model);
  const registry = opts.registry ?? createMetricsRegistry();
  const closeLora = opts.lora ? installLoraMetrics(registry, opts.routerAddress, opts.lora) : null;
  await app.register(
    observabilityPlugin({
      registry,
      readRouterStats: stats.read,
      metricsUpstreams: opts.metricsUpstreams ?? [],
    }),
  );
  return {
    close: async () => {
      stats.close();
      closeLora?.();
      await tracing.shutdown();
    },
  };
}

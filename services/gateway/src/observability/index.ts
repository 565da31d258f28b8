import { type Registry, startTracing } from "@kiln/telemetry";
import type { FastifyInstance } from "fastify";
import { observabilityPlugin } from "./metrics-plugin";
import { createRouterStatsSource } from "./router-stats";

export { observabilityPlugin, recordStreamError } from "./metrics-plugin";
export { createRouterStatsSource } from "./router-stats";

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
  opts: { readonly routerAddress: string; readonly model: string; readonly registry?: Registry },
): Promise<GatewayObservability> {
  const tracing = await startTracing({ serviceName: "kiln-gateway" });
  const stats = createRouterStatsSource(opts.routerAddress, opts.model);
  await app.register(
    observabilityPlugin({
      readRouterStats: stats.read,
      ...(opts.registry ? { registry: opts.registry } : {}),
    }),
  );
  return {
    close: async () => {
      stats.close();
      await tracing.shutdown();
    },
  };
}

import { credentials, Metadata } from "@grpc/grpc-js";
import { RouterClient, type StatsResponse } from "@kiln/proto";
import { LoraMetrics, type LoraSnapshot, type Registry } from "@kiln/telemetry";
import type { LoraRegistry } from "./registry";

const STATS_DEADLINE_MS = 1000;

/**
 * Registers kiln_lora_requests_info (from the router's Stats at each scrape) and
 * kiln_lora_requests_total (the gateway's per-adapter counts). Returns a close function.
 */
export function installLoraMetrics(
  registry: Registry,
  routerAddress: string,
  lora: LoraRegistry,
): () => void {
  const client = new RouterClient(routerAddress, credentials.createInsecure());
  const replicas = () =>
    new Promise<LoraSnapshot[]>((resolve, reject) => {
      const deadline = Date.now() + STATS_DEADLINE_MS;
      client.stats({}, new Metadata(), { deadline }, (err, res: StatsResponse) =>
        err
          ? reject(err)
          : resolve(
              res.replicas.map((r) => ({
                replica: r.replicaId,
                runningAdapters: r.runningAdapters,
                waitingAdapters: r.waitingAdapters,
                maxLoras: r.maxLoras,
              })),
            ),
      );
    });
  new LoraMetrics(registry, { replicas, requestCounts: () => lora.requestCounts });
  return () => client.close();
}

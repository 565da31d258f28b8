import { credentials, Metadata } from "@grpc/grpc-js";
import { RouterClient, type StatsResponse } from "@kiln/proto";
import type { ReplicaSnapshot } from "@kiln/telemetry";

/** A Stats reader the metrics plugin calls at each scrape; `close` releases its channel. */
export interface RouterStatsSource {
  read(): Promise<readonly ReplicaSnapshot[]>;
  close(): void;
}

const STATS_DEADLINE_MS = 1000;

/**
 * Reads the router's per-replica scheduler state over the Router `Stats` RPC, labelled with
 * the model name the gateway serves. Rejects when the router does not answer within a second
 * (the scrape then keeps the last values).
 */
export function createRouterStatsSource(address: string, model: string): RouterStatsSource {
  const client = new RouterClient(address, credentials.createInsecure());
  return {
    read: () =>
      new Promise((resolve, reject) => {
        const deadline = Date.now() + STATS_DEADLINE_MS;
        client.stats({}, new Metadata(), { deadline }, (err, res) =>
          err ? reject(err) : resolve(snapshotsOf(res, model)),
        );
      }),
    close: () => client.close(),
  };
}

/** Stats as snapshots; exported for tests. */
export function snapshotsOf(res: StatsResponse, model: string): ReplicaSnapshot[] {
  return res.replicas.map((r) => ({
    model,
    replica: r.replicaId,
    isHealthy: r.healthy,
    numRunningRequests: r.numRunning,
    numWaitingRequests: r.numWaiting,
    numUsedBlocks: r.numUsedBlocks,
    numBlocks: r.numBlocks,
    prefixCacheQueryTokens: Number(r.prefixCacheQueries),
    prefixCacheHitTokens: Number(r.prefixCacheHits),
    numPreemptions: Number(r.numPreemptions),
  }));
}

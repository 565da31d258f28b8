import type { ReplicaSet } from "./replica-set";

const DRAIN_PROBE_TIMEOUT_MS = 1000;
const SHUTDOWN_TIMEOUT_MS = 2000;

/**
 * Worker drain, the router's half (the worker's is services/worker/src/drain.ts). Called once a
 * second: a replica whose worker reports `draining` gets no new requests; once its last request
 * has ended (finished, aborted or lost) the replica is removed from the set and the worker is
 * told to shut down. Replicas that do not answer are left to the health probe.
 */
export async function probeDrains(replicas: ReplicaSet, log: (line: string) => void) {
  await Promise.all(
    replicas.healthyReplicas.map(async (replica) => {
      if (!replica.isDraining) {
        const health = await replica.connection.healthState(DRAIN_PROBE_TIMEOUT_MS);
        if (!health?.draining || !replica.isHealthy) return;
        replica.isDraining = true;
        log(`replica ${replica.replicaId} is draining (${replica.numRequests} request(s) left)`);
      }
      if (replica.numRequests > 0) return;
      // Best effort: the worker's own drain timeout stops it if this does not arrive.
      await replica.connection.shutdown(SHUTDOWN_TIMEOUT_MS);
      replicas.remove(replica.replicaId);
      log(`replica ${replica.replicaId} drained: removed`);
    }),
  );
}

import { Replica, type ReplicaLimits } from "./replica";
import { WorkerConnection } from "./worker-connection";

const INFO_TIMEOUT_MS = 2000;
/** Routing weight of a resident adapter, in prompt tokens: more than any prefix match. */
const RESIDENT_ADAPTER_BONUS = 1 << 30;

/**
 * Every worker group the router knows, keyed by replica id. Workers announce themselves with
 * RegisterWorker (on start and every second after); the set dials back, reads the worker's
 * capacity and (re)connects the replica. HealthProber (health-prober.ts) notices a worker that
 * died or wedged between steps.
 */
export class ReplicaSet {
  private readonly idToReplica = new Map<string, Replica>();
  private readonly probing = new Set<string>();

  constructor(
    private readonly limits: ReplicaLimits,
    private readonly clock: () => number,
  ) {}

  get replicas(): readonly Replica[] {
    return [...this.idToReplica.values()].sort((a, b) => a.replicaId.localeCompare(b.replicaId));
  }

  get healthyReplicas(): readonly Replica[] {
    return this.replicas.filter((r) => r.isHealthy);
  }

  /**
   * Handles one RegisterWorker call; resolves to whether the worker is now connected. A call
   * from the instance already connected at the same address is a no-op heartbeat.
   */
  async register(address: string, replicaId: string, instanceId: string): Promise<boolean> {
    const existing = this.idToReplica.get(replicaId);
    if (existing?.isConnectedTo(address, instanceId)) return true;
    if (this.probing.has(replicaId)) return false;
    this.probing.add(replicaId);
    const isSameAddress = existing?.address === address;
    let connection: WorkerConnection | null = null;
    try {
      // Inside the try: grpc-js throws synchronously for an address it cannot parse.
      connection = isSameAddress ? existing!.connection : new WorkerConnection(address);
      const info = await connection.info(INFO_TIMEOUT_MS);
      const replica = existing ?? new Replica(replicaId, connection, this.limits, this.clock);
      replica.connect(info, connection);
      this.idToReplica.set(replicaId, replica);
      return true;
    } catch {
      if (!isSameAddress) connection?.close();
      return false;
    } finally {
      this.probing.delete(replicaId);
    }
  }

  /**
   * Picks the replica for a new request: one where its LoRA adapter is resident first (ADR
   * 0015), then the longest prefix-cache match (under that adapter), ties broken by fewer
   * requests, then by replica id. Null when no replica is healthy (draining ones are skipped).
   */
  route(
    promptTokenIds: readonly number[],
    cacheSalt: string | null,
    adapter: string | null = null,
  ): Replica | null {
    let best: Replica | null = null;
    let bestMatchLen = -1;
    for (const replica of this.healthyReplicas) {
      if (replica.isDraining) continue;
      const matchLen =
        replica.prefixMatchLen(promptTokenIds, cacheSalt, adapter) +
        (adapter !== null && replica.hasResidentAdapter(adapter) ? RESIDENT_ADAPTER_BONUS : 0);
      if (
        matchLen > bestMatchLen ||
        (matchLen === bestMatchLen && best !== null && replica.numRequests < best.numRequests)
      ) {
        best = replica;
        bestMatchLen = matchLen;
      }
    }
    return best;
  }

  /** Requests waiting for their first step, over all replicas (the bounded queue). */
  numWaitingRequests(): number {
    return this.healthyReplicas.reduce((n, r) => n + (r.stats()?.numWaitingRequests ?? 0), 0);
  }

  /** Forgets a replica (a drained worker leaving) and closes its channel; no request may remain. */
  remove(replicaId: string): void {
    const replica = this.idToReplica.get(replicaId);
    if (!replica) return;
    this.idToReplica.delete(replicaId);
    replica.close();
  }

  findRequest(requestId: string): Replica | null {
    return this.replicas.find((r) => r.hasRequest(requestId)) ?? null;
  }

  close(): void {
    for (const replica of this.idToReplica.values()) replica.close();
  }
}

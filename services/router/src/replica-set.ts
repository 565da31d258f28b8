import { DraftWorker } from "./draft-worker";
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
  /** Draft workers (role "draft") by the replica they draft for (ADR 0017). */
  private readonly idToDraft = new Map<string, DraftWorker>();
  private readonly probing = new Set<string>();
  /** Draft worker instances already refused, so a heartbeat does not log the refusal again. */
  private readonly refusedDrafts = new Set<string>();

  constructor(
    private readonly limits: ReplicaLimits,
    private readonly clock: () => number,
    private readonly log: (line: string) => void = (line) =>
      process.stderr.write(`kiln router: ${line}\n`),
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
  async register(
    address: string,
    replicaId: string,
    instanceId: string,
    role = "",
  ): Promise<boolean> {
    if (role === "draft") return this.registerDraft(address, replicaId, instanceId);
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
      const draft = this.idToDraft.get(replicaId);
      if (draft !== undefined && replica.draftWorker !== draft) this.attachDraft(replica, draft);
      return true;
    } catch {
      if (!isSameAddress) connection?.close();
      return false;
    } finally {
      this.probing.delete(replicaId);
    }
  }

  /**
   * A draft worker's RegisterWorker (draft-model speculation, ADR 0017): dials it, reads its
   * capacity and attaches it to its replica (now, or when the replica's target registers). Refused
   * without a draft_model speculation config, or when its vocabulary differs from the target's.
   */
  private async registerDraft(
    address: string,
    replicaId: string,
    instanceId: string,
  ): Promise<boolean> {
    const refuse = (why: string) => {
      if (!this.refusedDrafts.has(instanceId))
        this.log(`refusing the draft worker at ${address}: ${why}`);
      this.refusedDrafts.add(instanceId);
      return false;
    };
    if (this.limits.speculation?.method !== "draft_model") {
      return refuse("the router's --speculative-config has no draft_model method");
    }
    const existing = this.idToDraft.get(replicaId);
    const replica = this.idToReplica.get(replicaId);
    const isAttached = replica === undefined || replica.draftWorker === existing;
    if (
      existing?.connection.address === address &&
      existing.info.instanceId === instanceId &&
      isAttached
    ) {
      return true;
    }
    const key = `draft:${replicaId}`;
    if (this.probing.has(key)) return false;
    this.probing.add(key);
    let connection: WorkerConnection | null = null;
    try {
      connection = new WorkerConnection(address);
      const info = await connection.info(INFO_TIMEOUT_MS);
      const draft = new DraftWorker(connection, info, this.limits.stepTimeoutMs);
      if (replica !== undefined && !this.attachDraft(replica, draft)) {
        connection.close();
        return false;
      }
      if (existing !== undefined && existing !== draft) existing.connection.close();
      this.idToDraft.set(replicaId, draft);
      return true;
    } catch {
      connection?.close();
      return false;
    } finally {
      this.probing.delete(key);
    }
  }

  private attachDraft(replica: Replica, draft: DraftWorker): boolean {
    const refusal = replica.attachDraft(draft);
    if (refusal !== null) {
      if (!this.refusedDrafts.has(draft.info.instanceId)) {
        this.log(`refusing the draft worker at ${draft.connection.address}: ${refusal}`);
      }
      this.refusedDrafts.add(draft.info.instanceId);
      return false;
    }
    this.log(
      `replica ${replica.replicaId} drafts with ${draft.info.model} at ${draft.connection.address}`,
    );
    return true;
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
    this.idToDraft.get(replicaId)?.connection.close();
    this.idToDraft.delete(replicaId);
  }

  findRequest(requestId: string): Replica | null {
    return this.replicas.find((r) => r.hasRequest(requestId)) ?? null;
  }

  close(): void {
    for (const replica of this.idToReplica.values()) replica.close();
    for (const draft of this.idToDraft.values()) draft.connection.close();
  }
}

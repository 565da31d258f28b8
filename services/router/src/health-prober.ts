/** What the prober needs of a replica (Replica implements it). */
export interface ProbedReplica {
  readonly replicaId: string;
  readonly isHealthy: boolean;
  readonly connection: { health(timeoutMs: number): Promise<boolean> };
  fail(reason: string): void;
}

export interface HealthProbeOptions {
  /** Pause between the end of one probe round and the start of the next. */
  readonly intervalMs: number;
  /** Deadline of one Health call. */
  readonly timeoutMs: number;
  /** Consecutive failed probes after which a replica is failed. */
  readonly maxMisses: number;
}

export const DEFAULT_HEALTH_PROBE: HealthProbeOptions = {
  intervalMs: 1000,
  timeoutMs: 2000,
  maxMisses: 3,
};

/**
 * Probes every healthy replica's worker and fails a replica only after `maxMisses` consecutive
 * misses (a slow answer on a loaded machine is not a dead worker). Rounds never overlap: the
 * next starts `intervalMs` after the previous one ended, and `probeOnce` during a round is a
 * no-op. A replica that answers, or reconnects, starts counting from zero.
 */
export class HealthProber {
  private readonly replicaToMisses = new Map<ProbedReplica, number>();
  private isProbing = false;
  private timer: NodeJS.Timeout | null = null;
  private isStopped = false;

  constructor(
    private readonly replicas: () => readonly ProbedReplica[],
    private readonly options: HealthProbeOptions = DEFAULT_HEALTH_PROBE,
  ) {}

  /** Consecutive misses of `replica` so far. */
  missesOf(replica: ProbedReplica): number {
    return this.replicaToMisses.get(replica) ?? 0;
  }

  /** One round over the healthy replicas; resolves when every probe answered or timed out. */
  async probeOnce(): Promise<void> {
    if (this.isProbing) return;
    this.isProbing = true;
    try {
      const healthy = this.replicas().filter((r) => r.isHealthy);
      for (const replica of this.replicaToMisses.keys()) {
        if (!healthy.includes(replica)) this.replicaToMisses.delete(replica);
      }
      await Promise.all(healthy.map((replica) => this.probe(replica)));
    } finally {
      this.isProbing = false;
    }
  }

  /** Probes forever, one round at a time, until `stop()`. */
  start(): void {
    const next = () => {
      if (this.isStopped) return;
      this.timer = setTimeout(() => void this.probeOnce().finally(next), this.options.intervalMs);
    };
    next();
  }

  stop(): void {
    this.isStopped = true;
    if (this.timer) clearTimeout(this.timer);
  }

  private async probe(replica: ProbedReplica): Promise<void> {
    const isServing = await replica.connection.health(this.options.timeoutMs);
    if (isServing) {
      this.replicaToMisses.delete(replica);
      return;
    }
    const misses = this.missesOf(replica) + 1;
    if (misses < this.options.maxMisses) {
      this.replicaToMisses.set(replica, misses);
      return;
    }
    this.replicaToMisses.delete(replica);
    if (replica.isHealthy) replica.fail(`${misses} consecutive health checks failed`);
  }
}

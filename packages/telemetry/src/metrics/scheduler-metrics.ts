import { Counter, Gauge, type Registry } from "prom-client";

/** The labels of every per-replica series. */
export interface ReplicaLabels {
  /** The model's name (vLLM's `model_name`). */
  readonly model: string;
  /** The worker group (data-parallel replica) id. */
  readonly replica: string;
}

/**
 * One replica's scheduler state as a scrape sees it. The three token/preemption fields are
 * cumulative since that replica's scheduler was created: a value below the previous one means
 * the scheduler restarted (a new worker), and counting restarts from it.
 */
export interface ReplicaSnapshot extends ReplicaLabels {
  readonly isHealthy: boolean;
  readonly numRunningRequests: number;
  readonly numWaitingRequests: number;
  readonly numUsedBlocks: number;
  readonly numBlocks: number;
  readonly prefixCacheQueryTokens: number;
  readonly prefixCacheHitTokens: number;
  readonly numPreemptions: number;
}

/** Where snapshots come from: the router's replicas, or (in the gateway) the router's Stats RPC. */
export type SnapshotSource = () => readonly ReplicaSnapshot[] | Promise<readonly ReplicaSnapshot[]>;

type CumulativeField = "prefixCacheQueryTokens" | "prefixCacheHitTokens" | "numPreemptions";
const LABELS = ["model", "replica"] as const;

/**
 * vLLM's scheduler gauges and counters, per replica:
 * `kiln_num_requests_running`, `kiln_num_requests_waiting`, `kiln_kv_cache_usage_ratio` (0..1),
 * `kiln_replica_healthy` (1/0), and the counters `kiln_prefix_cache_queries_total`,
 * `kiln_prefix_cache_hits_total` (tokens) and `kiln_num_preemptions_total`.
 *
 * Every scrape pulls fresh snapshots from the source; `update` may also be called between
 * scrapes (after each engine step) so no increment is lost when a scheduler restarts.
 */
export class SchedulerMetrics {
  private readonly running: Gauge<"model" | "replica">;
  private readonly waiting: Gauge<"model" | "replica">;
  private readonly kvUsage: Gauge<"model" | "replica">;
  private readonly healthy: Gauge<"model" | "replica">;
  private readonly counters: ReadonlyMap<CumulativeField, Counter<"model" | "replica">>;
  /** Last cumulative values seen per replica, keyed by `model \0 replica`. */
  private readonly keyToLast = new Map<string, Record<CumulativeField, number>>();
  private refreshing: Promise<void> | null = null;

  constructor(
    registry: Registry,
    private readonly source: SnapshotSource,
  ) {
    const collect = () => this.refresh();
    const gauge = (name: string, help: string) =>
      new Gauge({ name, help, labelNames: LABELS, registers: [registry], collect });
    const counter = (name: string, help: string) =>
      new Counter({ name, help, labelNames: LABELS, registers: [registry], collect });
    this.running = gauge("kiln_num_requests_running", "Requests in the engine's running batch.");
    this.waiting = gauge("kiln_num_requests_waiting", "Requests waiting to be scheduled.");
    this.kvUsage = gauge("kiln_kv_cache_usage_ratio", "KV-cache blocks in use, 0 to 1.");
    this.healthy = gauge("kiln_replica_healthy", "1 while the replica has a connected worker.");
    this.counters = new Map([
      [
        "prefixCacheQueryTokens",
        counter("kiln_prefix_cache_queries_total", "Prompt tokens looked up in the prefix cache."),
      ],
      [
        "prefixCacheHitTokens",
        counter("kiln_prefix_cache_hits_total", "Prompt tokens found in the prefix cache."),
      ],
      ["numPreemptions", counter("kiln_num_preemptions_total", "Sequences preempted.")],
    ]);
  }

  /** Sets the gauges and advances the counters from `snapshots`. */
  update(snapshots: readonly ReplicaSnapshot[]): void {
    for (const s of snapshots) {
      const labels = { model: s.model, replica: s.replica };
      this.running.set(labels, s.isHealthy ? s.numRunningRequests : 0);
      this.waiting.set(labels, s.isHealthy ? s.numWaitingRequests : 0);
      this.kvUsage.set(labels, s.isHealthy && s.numBlocks > 0 ? s.numUsedBlocks / s.numBlocks : 0);
      this.healthy.set(labels, s.isHealthy ? 1 : 0);
      this.advanceCounters(labels, s);
    }
  }

  private advanceCounters(labels: ReplicaLabels, s: ReplicaSnapshot): void {
    const key = `${labels.model}\u0000${labels.replica}`;
    const last = this.keyToLast.get(key);
    const next = {} as Record<CumulativeField, number>;
    for (const [field, counter] of this.counters) {
      const value = s[field];
      const previous = last?.[field] ?? 0;
      // A smaller total means a new scheduler that started from zero.
      counter.inc(labels, value >= previous ? value - previous : value);
      next[field] = value;
    }
    this.keyToLast.set(key, next);
  }

  /** One source read per scrape, shared by every metric's collect. */
  private refresh(): Promise<void> {
    this.refreshing ??= Promise.resolve()
      .then(() => this.source())
      .then((snapshots) => this.update(snapshots))
      .catch(() => {
        // An unreachable source keeps the last values; the scrape itself must not fail.
      })
      .finally(() => {
        this.refreshing = null;
      });
    return this.refreshing;
  }
}

import type { EngineEvent, SchedulerStats } from "@kiln/engine-core";
import {
  type Context,
  createMetricsRegistry,
  EngineMetrics,
  type Registry,
  type ReplicaLabels,
  type ReplicaSnapshot,
  SchedulerMetrics,
} from "@kiln/telemetry";
import { RequestTracker } from "./request-tracker";
import { SpecDecodeMetrics } from "./spec-metrics";
import { StepObserver } from "./step-observer";

/** What the router's scrape reads of a replica (Replica implements it). */
export interface ReplicaView {
  readonly replicaId: string;
  readonly model: string;
  readonly isHealthy: boolean;
  stats(): SchedulerStats | null;
}

/**
 * The router's metrics and spans. Replicas report what happens (requests added, steps,
 * committed events, aborts, failures); scrapes read every replica's scheduler through
 * `trackReplicas`. The registry belongs to this object; main serves it on `/metrics`.
 */
export class RouterTelemetry {
  readonly registry: Registry;
  private readonly engine: EngineMetrics;
  private readonly scheduler: SchedulerMetrics;
  private readonly requests: RequestTracker;
  /** Speculative decoding's counters (ADR 0017). */
  readonly specDecode: SpecDecodeMetrics;
  private replicaSource: () => readonly ReplicaView[] = () => [];

  constructor(registry: Registry = createMetricsRegistry()) {
    this.registry = registry;
    this.engine = new EngineMetrics(registry);
    this.scheduler = new SchedulerMetrics(registry, () =>
      this.replicaSource().map((r) => snapshotOf(r)),
    );
    this.requests = new RequestTracker(this.engine);
    this.specDecode = new SpecDecodeMetrics(registry);
  }

  /** Scrapes read the scheduler gauges of these replicas. */
  trackReplicas(source: () => readonly ReplicaView[]): void {
    this.replicaSource = source;
  }

  /** A replica connected to a worker: its series exist (at zero) from now on. */
  replicaConnected(labels: ReplicaLabels): void {
    this.engine.initialize(labels);
  }

  /** A request entered a replica's scheduler; `parent` is the caller's trace context. */
  requestAdded(labels: ReplicaLabels, requestId: string, numPromptTokens: number, parent: Context) {
    this.requests.add(labels, requestId, numPromptTokens, parent);
  }

  /** Starts observing one engine step; call before `schedule()`. */
  startStep(labels: ReplicaLabels, clock: () => number): StepObserver {
    return new StepObserver(this.engine, this.requests, labels, clock);
  }

  /** A step's events, right after `commit()`; `stats` brings the counters up to date. */
  eventsCommitted(view: ReplicaView, events: readonly EngineEvent<unknown>[], nowMs: number): void {
    this.requests.onEvents(events, nowMs);
    this.scheduler.update([snapshotOf(view)]);
  }

  /** `reason` "stop": the gateway ended it on a stop string; "abort": the client left. */
  requestAborted(requestId: string, reason: "abort" | "stop" = "abort"): void {
    this.requests.abort(requestId, reason);
  }

  requestFailed(requestId: string, code: string, message: string): void {
    this.requests.fail(requestId, code, message);
  }
}

function snapshotOf(view: ReplicaView): ReplicaSnapshot {
  const s = view.stats();
  return {
    model: view.model,
    replica: view.replicaId,
    isHealthy: view.isHealthy && s !== null,
    numRunningRequests: s?.numRunningRequests ?? 0,
    numWaitingRequests: s?.numWaitingRequests ?? 0,
    numUsedBlocks: s?.numUsedBlocks ?? 0,
    numBlocks: s?.numBlocks ?? 0,
    prefixCacheQueryTokens: s?.prefixCacheQueryTokens ?? 0,
    prefixCacheHitTokens: s?.prefixCacheHitTokens ?? 0,
    numPreemptions: s?.numPreemptions ?? 0,
  };
}

let defaultTelemetry: RouterTelemetry | null = null;

/** The process's telemetry (one registry per router process), created on first use. */
export function defaultRouterTelemetry(): RouterTelemetry {
  defaultTelemetry ??= new RouterTelemetry();
  return defaultTelemetry;
}

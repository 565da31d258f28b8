import { Counter, Gauge, type Registry } from "prom-client";

/** One replica's LoRA state as a scrape sees it (ADR 0015). */
export interface LoraSnapshot {
  readonly replica: string;
  readonly runningAdapters: readonly string[];
  readonly waitingAdapters: readonly string[];
  readonly maxLoras: number;
}

export interface LoraSources {
  /** Per-replica adapter state (the router's Stats RPC in the gateway). */
  readonly replicas: () => Promise<readonly LoraSnapshot[]>;
  /** Requests accepted per adapter since start (the gateway's counts). */
  readonly requestCounts: () => ReadonlyMap<string, number>;
}

/**
 * vLLM's `lora_requests_info` as `kiln_lora_requests_info{replica, running_lora_adapters,
 * waiting_lora_adapters, max_lora}` (value 1; adapter names comma-separated, sorted) and
 * `kiln_lora_requests_total{lora_name}`, both refreshed at each scrape.
 */
export class LoraMetrics {
  constructor(registry: Registry, sources: LoraSources) {
    new Gauge({
      name: "kiln_lora_requests_info",
      help: "Running and waiting LoRA adapters and the slot count, per replica (value 1)",
      labelNames: ["replica", "running_lora_adapters", "waiting_lora_adapters", "max_lora"],
      registers: [registry],
      async collect() {
        const snapshots = await sources.replicas().catch(() => null);
        if (snapshots === null) return;
        this.reset();
        for (const s of snapshots) {
          this.set(
            {
              replica: s.replica,
              running_lora_adapters: [...s.runningAdapters].sort().join(","),
              waiting_lora_adapters: [...s.waitingAdapters].sort().join(","),
              max_lora: String(s.maxLoras),
            },
            1,
          );
        }
      },
    });
    new Counter({
      name: "kiln_lora_requests_total",
      help: "Requests accepted per LoRA adapter",
      labelNames: ["lora_name"],
      registers: [registry],
      collect() {
        this.reset();
        for (const [name, n] of sources.requestCounts()) this.inc({ lora_name: name }, n);
      },
    });
  }
}

/**
 * Samples the gateway's own /metrics (prom-client's process metrics) while a stage runs: peak
 * resident memory and the worst event-loop lag p99 seen.
 */
export class GatewaySampler {
  private timer: NodeJS.Timeout | undefined;
  peakRssBytes = 0;
  peakLagP99S = 0;

  constructor(private readonly metricsUrl: string) {}

  start(intervalMs = 500): void {
    this.peakRssBytes = 0;
    this.peakLagP99S = 0;
    this.timer = setInterval(() => void this.sample(), intervalMs);
  }

  async stop(): Promise<void> {
    clearInterval(this.timer);
    await this.sample();
  }

  private async sample(): Promise<void> {
    const text = await fetch(this.metricsUrl)
      .then((r) => r.text())
      .catch(() => "");
    const rss = metricValue(text, "process_resident_memory_bytes");
    const lag = metricValue(text, "nodejs_eventloop_lag_p99_seconds");
    if (rss !== null) this.peakRssBytes = Math.max(this.peakRssBytes, rss);
    if (lag !== null) this.peakLagP99S = Math.max(this.peakLagP99S, lag);
  }
}

/** The value of an unlabelled sample `name value` in Prometheus text, or null. */
export function metricValue(text: string, name: string): number | null {
  const line = text.split("\n").find((l) => l.startsWith(`${name} `));
  return line ? Number(line.slice(name.length + 1)) : null;
}

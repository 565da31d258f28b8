import type { RequestOutput } from "./client";

/**
 * Serving metrics over one run, as vLLM's `benchmark_serving` defines them:
 *   TTFT  time to first token (first streamed chunk)
 *   TPOT  per request (latency − TTFT) / (output tokens − 1), requests with > 1 token
 *   ITL   every gap between streamed chunks, pooled over all requests
 *   E2EL  end-to-end latency of a request
 * Throughputs divide by the wall-clock duration of the whole run. Goodput counts only
 * requests that meet every SLO given (in milliseconds).
 */

export interface Stats {
  readonly mean: number;
  readonly median: number;
  readonly p99: number;
  /** Every percentile asked for, keyed "p50", "p90"… */
  readonly percentiles: Readonly<Record<string, number>>;
}

export interface Slos {
  readonly ttftMs?: number;
  readonly tpotMs?: number;
  readonly e2elMs?: number;
}

export interface BenchMetrics {
  readonly numCompleted: number;
  readonly numFailed: number;
  readonly durationS: number;
  readonly totalInputTokens: number;
  readonly totalOutputTokens: number;
  readonly requestThroughput: number;
  readonly outputThroughput: number;
  readonly totalTokenThroughput: number;
  /** Good requests per second; null when no SLO was given. */
  readonly goodput: number | null;
  readonly ttftMs: Stats;
  readonly tpotMs: Stats;
  readonly itlMs: Stats;
  readonly e2elMs: Stats;
  /** The highest number of requests in flight at once. */
  readonly maxConcurrency: number;
}

/** Percentile with linear interpolation between closest ranks (numpy's default). */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return Number.NaN;
  const rank = (p / 100) * (sorted.length - 1);
  const lo = Math.floor(rank);
  const hi = Math.ceil(rank);
  return sorted[lo]! + (sorted[hi]! - sorted[lo]!) * (rank - lo);
}

export function stats(values: readonly number[], percentiles: readonly number[] = [99]): Stats {
  const sorted = [...values].sort((a, b) => a - b);
  const mean = sorted.length ? sorted.reduce((a, b) => a + b, 0) / sorted.length : Number.NaN;
  const byName: Record<string, number> = {};
  for (const p of percentiles) byName[`p${p}`] = percentile(sorted, p);
  return { mean, median: percentile(sorted, 50), p99: percentile(sorted, 99), percentiles: byName };
}

export function tpotOf(out: RequestOutput): number | null {
  return out.outputLen > 1 ? (out.latencyMs - out.ttftMs) / (out.outputLen - 1) : null;
}

function meetsSlos(out: RequestOutput, slos: Slos): boolean {
  const tpot = tpotOf(out) ?? 0;
  return (
    (slos.ttftMs === undefined || out.ttftMs <= slos.ttftMs) &&
    (slos.tpotMs === undefined || tpot <= slos.tpotMs) &&
    (slos.e2elMs === undefined || out.latencyMs <= slos.e2elMs)
  );
}

/** Peak overlap of [startMs, startMs + latencyMs) intervals. */
function peakConcurrency(outputs: readonly RequestOutput[]): number {
  const edges = outputs.flatMap((o) => [
    [o.startMs, 1] as const,
    [o.startMs + o.latencyMs, -1] as const,
  ]);
  edges.sort((a, b) => a[0] - b[0] || a[1] - b[1]);
  let now = 0;
  let peak = 0;
  for (const [, delta] of edges) {
    now += delta;
    peak = Math.max(peak, now);
  }
  return peak;
}

/** Summarises a run that took `durationS` seconds of wall clock. */
export function computeMetrics(
  outputs: readonly RequestOutput[],
  durationS: number,
  slos: Slos | null,
  percentiles: readonly number[] = [99],
): BenchMetrics {
  const ok = outputs.filter((o) => o.isSuccess);
  const totalInputTokens = ok.reduce((a, o) => a + o.promptLen, 0);
  const totalOutputTokens = ok.reduce((a, o) => a + o.outputLen, 0);
  const tpots = ok.map(tpotOf).filter((t): t is number => t !== null);
  const numGood = slos ? ok.filter((o) => meetsSlos(o, slos)).length : 0;
  return {
    numCompleted: ok.length,
    numFailed: outputs.length - ok.length,
    durationS,
    totalInputTokens,
    totalOutputTokens,
    requestThroughput: ok.length / durationS,
    outputThroughput: totalOutputTokens / durationS,
    totalTokenThroughput: (totalInputTokens + totalOutputTokens) / durationS,
    goodput: slos ? numGood / durationS : null,
    ttftMs: stats(
      ok.map((o) => o.ttftMs),
      percentiles,
    ),
    tpotMs: stats(tpots, percentiles),
    itlMs: stats(
      ok.flatMap((o) => o.itlMs),
      percentiles,
    ),
    e2elMs: stats(
      ok.map((o) => o.latencyMs),
      percentiles,
    ),
    maxConcurrency: peakConcurrency(ok),
  };
}

/** "ttft:500 tpot:50 e2el:10000" (ms) → Slos; throws naming the bad item. */
export function parseSlos(items: readonly string[]): Slos | null {
  if (items.length === 0) return null;
  const slos: { ttftMs?: number; tpotMs?: number; e2elMs?: number } = {};
  for (const item of items.flatMap((s) => s.split(/[\s,]+/)).filter(Boolean)) {
    const [name, value] = item.split(":");
    const ms = Number(value);
    if (!Number.isFinite(ms) || ms <= 0) throw new Error(`--goodput ${item}: expected NAME:MS`);
    if (name === "ttft") slos.ttftMs = ms;
    else if (name === "tpot") slos.tpotMs = ms;
    else if (name === "e2el") slos.e2elMs = ms;
    else throw new Error(`--goodput ${item}: the SLO names are ttft, tpot and e2el`);
  }
  return slos;
}

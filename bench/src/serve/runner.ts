import { type Prompt, type RequestOutput, sendRequest, type Target } from "./client";
import { type BenchMetrics, computeMetrics, type Slos } from "./metrics";
import { Rng } from "./rng";

/**
 * Drives one workload against one target, as vLLM's `benchmark_serving` does: requests
 * arrive on a schedule (all at once, or Poisson at `requestRate`) and a semaphore caps how
 * many are in flight (`maxConcurrency`). Infinite rate + a cap is a closed loop: a new
 * request starts the moment one finishes.
 */

export interface WorkItem {
  readonly prompt: Prompt;
  readonly promptLen: number;
  readonly outputLen: number;
}

export interface LoadOptions {
  /** Requests per second; Infinity sends every request at t = 0. */
  readonly requestRate: number;
  /** At most this many requests in flight; null for no cap. */
  readonly maxConcurrency: number | null;
  /** Seeds the Poisson arrival times. */
  readonly seed: number;
  /** Unmeasured requests sent one at a time before the run (JIT, caches, connections). */
  readonly numWarmups: number;
  readonly slos: Slos | null;
  readonly percentiles: readonly number[];
  /** Called after each measured request completes. */
  readonly onProgress?: (output: RequestOutput) => void;
}

export interface RunResult {
  readonly outputs: readonly RequestOutput[];
  readonly metrics: BenchMetrics;
}

/** A counting semaphore; `acquire` resolves in FIFO order. */
class Semaphore {
  private readonly waiters: (() => void)[] = [];
  constructor(private numFree: number) {}

  async acquire(): Promise<void> {
    if (this.numFree > 0) {
      this.numFree--;
      return;
    }
    await new Promise<void>((resolve) => this.waiters.push(resolve));
  }

  release(): void {
    const next = this.waiters.shift();
    if (next) next();
    else this.numFree++;
  }
}

/** Arrival offsets in ms: all zero at infinite rate, else cumulative exponential gaps. */
export function arrivalTimesMs(numRequests: number, requestRate: number, seed: number): number[] {
  if (!Number.isFinite(requestRate)) return new Array<number>(numRequests).fill(0);
  const rng = new Rng(seed ^ 0x5eed);
  let t = 0;
  return Array.from({ length: numRequests }, (_, i) => {
    if (i > 0) t += rng.exponential(requestRate) * 1000;
    return t;
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** Runs the warmups, then the measured workload; never throws for failed requests. */
export async function runLoad(
  target: Target,
  items: readonly WorkItem[],
  opts: LoadOptions,
): Promise<RunResult> {
  for (let i = 0; i < opts.numWarmups && items.length > 0; i++) {
    const item = items[i % items.length]!;
    const out = await sendRequest(target, item.prompt, item.promptLen, item.outputLen, 0);
    if (!out.isSuccess) throw new Error(`warmup request failed: ${out.error}`);
  }
  const arrivals = arrivalTimesMs(items.length, opts.requestRate, opts.seed);
  const semaphore = new Semaphore(opts.maxConcurrency ?? Number.POSITIVE_INFINITY);
  const runStart = performance.now();
  const outputs = await Promise.all(
    items.map(async (item, i) => {
      const wait = runStart + arrivals[i]! - performance.now();
      if (wait > 0) await sleep(wait);
      await semaphore.acquire();
      try {
        const out = await sendRequest(
          target,
          item.prompt,
          item.promptLen,
          item.outputLen,
          runStart,
        );
        opts.onProgress?.(out);
        return out;
      } finally {
        semaphore.release();
      }
    }),
  );
  const durationS = (performance.now() - runStart) / 1000;
  return { outputs, metrics: computeMetrics(outputs, durationS, opts.slos, opts.percentiles) };
}

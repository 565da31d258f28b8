import { resolve } from "node:path";
import { startCluster } from "@kiln/cluster";
import { freePort, mulberry32, sleep, waitFor } from "@kiln/test-support";
import OpenAI from "openai";
import { type RssGrowth, type RssSample, readRssBytes, rssGrowth } from "./rss";
import { runOne, type SoakCounts } from "./workload";

export interface SoakOptions {
  readonly modelDir: string;
  readonly durationS: number;
  /** Samples up to here are warm-up; growth is measured after it. */
  readonly warmS: number;
  readonly numClients: number;
  /** Worker KV pool (small, so that the scheduler preempts). */
  readonly kvCacheMemory: string;
  readonly sampleIntervalMs?: number;
  readonly seed?: number;
  readonly log?: (line: string) => void;
}

export interface SoakReport {
  readonly samples: readonly RssSample[];
  readonly growth: readonly RssGrowth[];
  readonly counts: SoakCounts;
  /** Router metrics once the load stopped and every request ended. */
  readonly kvUsageRatioAtEnd: number;
  readonly numPreemptions: number;
}

const REPO_ROOT = resolve(import.meta.dirname, "../../..");
const MIB = 1024 * 1024;

/**
 * A soak run against real router, worker and gateway processes (the supervisor's code path):
 * `numClients` clients loop over the mixed workload (workload.ts) for `durationS` while every
 * process's RSS is sampled. Afterwards it waits for the router to report no running request
 * and reads the KV usage and preemption count from the router's /metrics. Stops the cluster.
 */
export async function runSoak(opts: SoakOptions): Promise<SoakReport> {
  const log = opts.log ?? (() => {});
  const routerMetricsPort = await freePort();
  const logs: string[] = [];
  const cluster = await startCluster({
    repoRoot: REPO_ROOT,
    modelDir: opts.modelDir,
    servedName: "soak",
    host: "127.0.0.1",
    port: 0,
    routerPort: 0,
    drainTimeoutS: 5,
    startTimeoutMs: 120_000,
    env: {
      ...process.env,
      KILN_KV_CACHE_MEMORY: opts.kvCacheMemory,
      KILN_ROUTER_METRICS_PORT: String(routerMetricsPort),
      KILN_WORKER_METRICS_PORT: "",
      KILN_METRICS_PORT: "",
    },
    log: (line) => logs.push(line),
  });
  const metricsUrl = `http://127.0.0.1:${routerMetricsPort}/metrics`;
  try {
    const baseURL = `http://127.0.0.1:${cluster.gatewayPort}/v1`;
    const client = new OpenAI({ baseURL, apiKey: "unused", maxRetries: 0, timeout: 60_000 });
    const counts: SoakCounts = {
      completed: { stream: 0, abort: 0, "n>1": 0, chat: 0 },
      errors: [],
    };
    const samples: RssSample[] = [];
    const startedAt = Date.now();
    const endAt = startedAt + opts.durationS * 1000;
    const sample = () => {
      // The cluster's processes; this (load-generating) process is not part of the system.
      const mib: Record<string, number> = {};
      for (const [name, pid] of Object.entries(cluster.pids)) {
        mib[name] = pid ? (readRssBytes(pid) ?? 0) / MIB : 0;
      }
      samples.push({ atS: (Date.now() - startedAt) / 1000, mib });
    };
    sample();
    const sampler = setInterval(() => {
      sample();
      const last = samples.at(-1)!;
      log(`${last.atS.toFixed(0)} s ${JSON.stringify(roundAll(last.mib))}`);
    }, opts.sampleIntervalMs ?? 1000);
    const clients = Array.from({ length: opts.numClients }, async (_, i) => {
      const rand = mulberry32((opts.seed ?? 1) + i);
      while (Date.now() < endAt) await runOne(client, "soak", rand, counts);
    });
    await Promise.all(clients);
    clearInterval(sampler);
    sample();
    await waitFor(
      async () => metricSum(await scrape(metricsUrl), "kiln_num_requests_running") === 0,
      "every request to end",
      { timeoutMs: 10_000 },
    );
    await sleep(200); // the step that frees the last blocks
    const text = await scrape(metricsUrl);
    return {
      samples,
      growth: rssGrowth(samples, opts.warmS),
      counts,
      kvUsageRatioAtEnd: metricSum(text, "kiln_kv_cache_usage_ratio"),
      numPreemptions: metricSum(text, "kiln_num_preemptions_total"),
    };
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${logs.slice(-40).join("\n")}`);
  } finally {
    await cluster.stop("soak done");
  }
}

function roundAll(mib: Readonly<Record<string, number>>): Record<string, number> {
  return Object.fromEntries(Object.entries(mib).map(([k, v]) => [k, Math.round(v)]));
}

async function scrape(url: string): Promise<string> {
  return (await fetch(url)).text();
}

/** Sum of every series of `name` in a Prometheus text exposition. */
export function metricSum(text: string, name: string): number {
  let sum = 0;
  for (const line of text.split("\n")) {
    if (!line.startsWith(`${name}{`) && !line.startsWith(`${name} `)) continue;
    sum += Number(line.slice(line.lastIndexOf(" ") + 1));
  }
  return sum;
}

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { type RunningCluster, type RunningRedis, startCluster, startRedis } from "@kiln/cluster";
import OpenAI from "openai";

export const REPO_ROOT = resolve(import.meta.dirname, "../../..");
export const MODEL_DIR = join(REPO_ROOT, "../shared/models/stories260K");
export const MODEL = "stories260K";

export interface BenchStack {
  readonly client: OpenAI;
  readonly cluster: RunningCluster;
  stop(): Promise<void>;
}

/**
 * Router, worker and gateway (the supervisor's code path) with a Redis this script starts, on
 * a temporary data directory; `env` adds gateway settings (KILN_BATCH_CONCURRENCY, ...).
 */
export async function startBenchStack(env: NodeJS.ProcessEnv = {}): Promise<BenchStack> {
  const dataDir = mkdtempSync(join(tmpdir(), "kiln-bench-batch-"));
  const logs: string[] = [];
  const redis: RunningRedis = await startRedis(dataDir, (l) => logs.push(l));
  const cluster = await startCluster({
    repoRoot: REPO_ROOT,
    modelDir: process.env.KILN_MODEL ?? MODEL_DIR,
    servedName: MODEL,
    host: "127.0.0.1",
    port: 0,
    routerPort: 0,
    drainTimeoutS: 2,
    startTimeoutMs: 120_000,
    env: { ...process.env, KILN_REDIS_URL: redis.url, KILN_DATA_DIR: dataDir, ...env },
    log: (l) => logs.push(l),
  });
  const client = new OpenAI({
    baseURL: `http://127.0.0.1:${cluster.gatewayPort}/v1`,
    apiKey: "unused",
    maxRetries: 0,
    timeout: 600_000,
  });
  return {
    client,
    cluster,
    stop: async () => {
      await cluster.stop("bench done");
      for (const line of logs) if (/batch/i.test(line)) process.stderr.write(`${line}\n`);
      await redis.stop();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}

/** A batch input file of `numLines` completion lines, built as a stream of text. */
export function batchLines(numLines: number, maxTokens: number): string {
  const lines: string[] = [];
  for (let i = 0; i < numLines; i++) {
    const body = {
      model: MODEL,
      prompt: `Once upon a time ${i}`,
      max_tokens: maxTokens,
      temperature: 0,
    };
    lines.push(
      JSON.stringify({ custom_id: `l${i}`, method: "POST", url: "/v1/completions", body }),
    );
  }
  return `${lines.join("\n")}\n`;
}

export function percentile(values: readonly number[], p: number): number {
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] ?? Number.NaN;
}

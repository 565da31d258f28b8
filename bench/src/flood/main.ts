/**
 * `npm run bench:flood`: ramps concurrent streaming requests against a real Kiln stack
 * (router, worker, gateway as processes, stories260K) and reports, per stage: outcomes by kind,
 * the gateway's peak RSS and event-loop lag p99, and duration. Then the gateway's added latency:
 * TTFT of N concurrent streams through the gateway against N concurrent Generate calls
 * straight to the router, in the same run. Writes JSON to bench/results/.
 *
 *   npm run bench:flood -- [--stages 1000,2500,5000,10000] [--max-tokens 16]
 *                          [--slow-share 0.05] [--latency-streams 1000]
 */

import { mkdir, writeFile } from "node:fs/promises";
import http from "node:http";
import { resolve } from "node:path";
import { parseArgs } from "node:util";
import { loadGoldenCases, STORIES_DIR } from "@kiln/test-support";
import { REPO_ROOT } from "../compare/processes";
import { startKilnStack } from "../compare/stacks";
import { GatewaySampler } from "./gateway-sampler";
import { countOutcomes, runStream, type StreamResult, sampleDetails } from "./http-streams";
import { routerClient, routerTtft } from "./router-direct";

interface StageReport {
  readonly numStreams: number;
  readonly seconds: number;
  readonly outcomes: Record<string, number>;
  /** One example error body per outcome other than ok. */
  readonly samples: Record<string, string>;
  readonly gatewayPeakRssMiB: number;
  readonly gatewayEventLoopLagP99Ms: number;
}

const { values } = parseArgs({
  options: {
    stages: { type: "string", default: "1000,2500,5000,10000" },
    "max-tokens": { type: "string", default: "16" },
    "slow-share": { type: "string", default: "0.05" },
    "latency-streams": { type: "string", default: "1000" },
  },
});
const stages = values.stages.split(",").map(Number);
const maxTokens = Number(values["max-tokens"]);
const slowEvery = Math.max(1, Math.round(1 / Number(values["slow-share"])));
const numLatencyStreams = Number(values["latency-streams"]);
const prompt = loadGoldenCases()[0]!;

const body = JSON.stringify({
  model: "stories260K",
  prompt: prompt.prompt,
  max_tokens: maxTokens,
  ignore_eos: true,
  stream: true,
});

// Room for the largest stage everywhere, so what is measured is holding it, not refusing it.
const maxStreams = String(Math.max(...stages, numLatencyStreams) + 1000);
const stack = await startKilnStack({
  modelDir: STORIES_DIR,
  numThreads: 2,
  kvCacheMemory: "256MiB",
  maxNumSeqs: 256,
  env: { ...process.env, KILN_MAX_WAITING: maxStreams, KILN_MAX_CONCURRENT_REQUESTS: maxStreams },
});
const port = Number(new URL(stack.baseUrl).port);
const routerPort = stack.processes[0]!.port;
const agent = new http.Agent({ keepAlive: false, maxSockets: Number.POSITIVE_INFINITY });
const sampler = new GatewaySampler(`${stack.baseUrl}/metrics`);

async function runStage(numStreams: number): Promise<StageReport> {
  sampler.start();
  const startedAt = performance.now();
  const results = await Promise.all(
    Array.from({ length: numStreams }, (_, i) =>
      runStream({ port, body, isSlow: i % slowEvery === 0, slowPauseMs: 3000 }, agent),
    ),
  );
  const seconds = (performance.now() - startedAt) / 1000;
  await sampler.stop();
  return {
    numStreams,
    seconds: round(seconds),
    outcomes: countOutcomes(results),
    samples: sampleDetails(results),
    gatewayPeakRssMiB: round(sampler.peakRssBytes / 2 ** 20),
    gatewayEventLoopLagP99Ms: round(sampler.peakLagP99S * 1000),
  };
}

/** TTFT medians and p90s through the gateway and straight to the router, same load. */
async function addedLatency(numStreams: number) {
  const viaGateway: StreamResult[] = await Promise.all(
    Array.from({ length: numStreams }, () =>
      runStream({ port, body, isSlow: false, slowPauseMs: 0 }, agent),
    ),
  );
  const client = routerClient(`127.0.0.1:${routerPort}`);
  const direct = await Promise.all(
    Array.from({ length: numStreams }, (_, i) =>
      routerTtft(client, `bench-flood-${i}`, prompt.prompt_ids, maxTokens),
    ),
  );
  client.close();
  const gw = quantiles(viaGateway.flatMap((r) => (r.ttftMs === null ? [] : [r.ttftMs])));
  const rt = quantiles(direct.flatMap((t) => (t === null ? [] : [t])));
  return {
    numStreams,
    gatewayTtftMs: gw,
    routerTtftMs: rt,
    addedP50Ms: round(gw.p50 - rt.p50),
    addedP90Ms: round(gw.p90 - rt.p90),
  };
}

function quantiles(values: number[]) {
  const sorted = [...values].sort((a, b) => a - b);
  const at = (q: number) =>
    sorted[Math.min(sorted.length - 1, Math.floor(q * sorted.length))] ?? NaN;
  return { n: sorted.length, p50: round(at(0.5)), p90: round(at(0.9)), p99: round(at(0.99)) };
}

function round(x: number): number {
  return Math.round(x * 10) / 10;
}

try {
  const reports: StageReport[] = [];
  for (const n of stages) {
    const report = await runStage(n);
    reports.push(report);
    console.log(JSON.stringify(report));
  }
  const latency = await addedLatency(numLatencyStreams);
  console.log(JSON.stringify(latency));
  console.log(
    "\n| streams | seconds | ok | 429 | 503 | cut off | 500 | reset | gateway RSS MiB | loop lag p99 ms |",
  );
  console.log("|---|---|---|---|---|---|---|---|---|---|");
  for (const r of reports) {
    const o = (k: string) => r.outcomes[k] ?? 0;
    console.log(
      `| ${r.numStreams} | ${r.seconds} | ${o("ok")} | ${o("429")} | ${o("503")} | ${o("cut off")} | ${o("500")} | ${o("reset")} | ${r.gatewayPeakRssMiB} | ${r.gatewayEventLoopLagP99Ms} |`,
    );
  }
  console.log(
    `\nTTFT at ${latency.numStreams} streams: gateway p50 ${latency.gatewayTtftMs.p50} ms, router alone p50 ${latency.routerTtftMs.p50} ms: added p50 ${latency.addedP50Ms} ms, p90 ${latency.addedP90Ms} ms`,
  );
  const dir = resolve(REPO_ROOT, "bench/results");
  await mkdir(dir, { recursive: true });
  const file = resolve(dir, `flood-${new Date().toISOString().replace(/[:.]/g, "-")}.json`);
  await writeFile(file, JSON.stringify({ stages: reports, latency }, null, 2));
  console.log(`\nwrote ${file}`);
} finally {
  await stack.stop();
}

/**
 * Observability end to end: router, worker and gateway as real processes exporting spans to an
 * in-memory OTLP receiver, scraped by a real Prometheus (Debian package `prometheus`) with
 * deploy/prometheus's config and rules. Checks the trace tree across the processes, that every
 * PromQL expression of the Grafana dashboards and alert rules parses and returns data, and that
 * the KV cache usage returns to 0 once every request finished.
 */
import { readFileSync } from "node:fs";
import { resolve } from "node:path";
import { freePort, REPO_ROOT, requireAvailable, STORIES_DIR, waitFor } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { OtlpReceiver, type ReceivedSpan } from "./observability-otlp";
import { hasPrometheus, startPrometheus, type TestPrometheus } from "./observability-prometheus";
import {
  dashboardQueries,
  metricNames,
  substituteVariables,
  withBoolComparisons,
} from "./observability-promql";
import { type ServiceProcess, startService } from "./processes";

const MODEL = "stories260K";
const TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736";
const CLIENT_SPAN_ID = "00f067aa0ba902b7";
const PROMPT = "Once upon a time, there was a little girl named Lily. She loved to play outside";
/** Under CI=true a missing binary fails the suite instead of skipping the Prometheus checks. */
const isPrometheusInstalled = requireAvailable(
  "the `prometheus` binary",
  hasPrometheus(),
  "apt-get install prometheus",
);
/** API requests sent so far (Prometheus must have scraped them all before the checks). */
let numApiRequests = 0;

interface Stack {
  readonly router: ServiceProcess;
  readonly worker: ServiceProcess;
  readonly gateway: ServiceProcess;
  readonly routerMetricsPort: number;
  readonly workerMetricsPort: number;
}

let stack: Stack | null = null;
let prometheus: TestPrometheus | null = null;
const receiver = new OtlpReceiver();
const processes: ServiceProcess[] = [];
let maxKvUsageSeen = 0;

async function startStack(): Promise<Stack> {
  const [routerMetricsPort, workerMetricsPort] = [await freePort(), await freePort()];
  const start = async (...args: Parameters<typeof startService>) => {
    const p = await startService(...args);
    processes.push(p);
    return p;
  };
  // Two running sequences at most, so concurrent requests queue (kiln_num_requests_waiting).
  const router = await start("router", [
    ...["--port", "0", "--metrics-port", `${routerMetricsPort}`, "--max-num-seqs", "2"],
  ]);
  const routerAddress = `127.0.0.1:${router.port}`;
  const worker = await start("worker", [
    ...["--model", STORIES_DIR, "--router", routerAddress, "--kv-cache-memory", "8MiB"],
    ...["--metrics-port", `${workerMetricsPort}`],
  ]);
  const gateway = await start("gateway", [
    ...["--model", STORIES_DIR, "--router", routerAddress, "--port", "0"],
  ]);
  const health = `http://127.0.0.1:${gateway.port}/health`;
  await waitFor(
    () =>
      fetch(health).then(
        (r) => r.ok,
        () => false,
      ),
    "a healthy gateway",
    { timeoutMs: 30_000 },
  );
  return { router, worker, gateway, routerMetricsPort, workerMetricsPort };
}

async function complete(body: Record<string, unknown>, headers: Record<string, string> = {}) {
  numApiRequests++;
  const res = await fetch(`http://127.0.0.1:${stack!.gateway.port}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json", ...headers },
    body: JSON.stringify({ model: MODEL, max_tokens: 48, ignore_eos: true, ...body }),
  });
  return { status: res.status, text: await res.text() };
}

async function gatewayKvUsage(): Promise<number[]> {
  const text = await (await fetch(`http://127.0.0.1:${stack!.gateway.port}/metrics`)).text();
  return [...text.matchAll(/^kiln_kv_cache_usage_ratio\{[^}]*\} (\S+)$/gm)].map((m) =>
    Number(m[1]),
  );
}

/** A short load: waves of requests sharing a prompt prefix, streams, an error and an abort. */
async function sendLoad(): Promise<void> {
  let isLoading = true;
  const poll = (async () => {
    while (isLoading) {
      maxKvUsageSeen = Math.max(maxKvUsageSeen, ...(await gatewayKvUsage()));
      await new Promise((r) => setTimeout(r, 20));
    }
  })();
  const traceparent = `00-${TRACE_ID}-${CLIENT_SPAN_ID}-01`;
  expect((await complete({ prompt: PROMPT, max_tokens: 8 }, { traceparent })).status).toBe(200);
  for (let wave = 0; wave < 3; wave++) {
    const results = await Promise.all(
      Array.from({ length: 8 }, (_, i) =>
        complete({ prompt: `${PROMPT} with her dog number ${i}`, stream: i % 2 === 0 }),
      ),
    );
    for (const r of results) expect(r.status).toBe(200);
  }
  expect((await complete({ prompt: PROMPT, model: "nope" })).status).toBe(404);
  // Long streams until Prometheus saw the KV cache in use and requests queued behind the two
  // running ones (a 1 s scrape can miss short bursts).
  const deadline = Date.now() + 30_000;
  const sawBoth = async () =>
    (await prometheusSawKvInUse()) &&
    (await prometheus!.query("max_over_time(kiln_num_requests_waiting[5m]) > 0")).length > 0;
  while (prometheus && !(await sawBoth()) && Date.now() < deadline) {
    await Promise.all(
      Array.from({ length: 4 }, (_, i) => complete({ prompt: `${PROMPT} ${i}`, max_tokens: 200 })),
    );
  }
  numApiRequests++;
  const aborted = new AbortController();
  const res = await fetch(`http://127.0.0.1:${stack!.gateway.port}/v1/completions`, {
    method: "POST",
    headers: { "content-type": "application/json" },
    body: JSON.stringify({ model: MODEL, prompt: PROMPT, max_tokens: 400, stream: true }),
    signal: aborted.signal,
  });
  await res.body?.getReader().read();
  aborted.abort();
  isLoading = false;
  await poll;
}

async function prometheusSawKvInUse(): Promise<boolean> {
  const expr = 'max_over_time(kiln_kv_cache_usage_ratio{job="kiln-router"}[5m]) > 0';
  return (await prometheus!.query(expr)).length > 0;
}

beforeAll(async () => {
  const otlpUrl = await receiver.start();
  // Inherited by the service processes: spans go to the receiver, exported every 100 ms.
  process.env.OTEL_EXPORTER_OTLP_ENDPOINT = otlpUrl;
  process.env.OTEL_BSP_SCHEDULE_DELAY = "100";
  stack = await startStack();
  if (isPrometheusInstalled) {
    prometheus = await startPrometheus(resolve(REPO_ROOT, "deploy/prometheus"), {
      gateway: `127.0.0.1:${stack.gateway.port}`,
      router: `127.0.0.1:${stack.routerMetricsPort}`,
      worker: `127.0.0.1:${stack.workerMetricsPort}`,
    });
    await waitFor(
      async () => (await prometheus!.query("up == 1")).length === 3,
      "Prometheus scraping all three services",
      { timeoutMs: 30_000 },
    );
  }
  await sendLoad();
  if (prometheus) await waitForScrapesAfterLoad(prometheus);
}, 120_000);

/**
 * Waits until Prometheus holds the final HTTP counters and two samples of each: `rate()` needs
 * two, and some series (the 404, the abort) first appear at the end of the load.
 */
async function waitForScrapesAfterLoad(p: TestPrometheus): Promise<void> {
  const value = async (expr: string) => {
    const [sample] = (await p.query(expr)) as { value: [number, string] }[];
    return sample ? Number(sample.value[1]) : 0;
  };
  const selector = 'kiln_http_requests_total{route=~"/v1/.*"}';
  await waitFor(
    async () =>
      (await value(`sum(${selector})`)) === numApiRequests &&
      (await value(`min(count_over_time(${selector}[1m]))`)) >= 2,
    "Prometheus scraping the end of the load twice",
    { timeoutMs: 15_000 },
  );
}

afterAll(async () => {
  await prometheus?.stop();
  await Promise.all(processes.map((p) => p.stop()));
  await receiver.stop();
  delete process.env.OTEL_EXPORTER_OTLP_ENDPOINT;
  delete process.env.OTEL_BSP_SCHEDULE_DELAY;
}, 30_000);

describe("metrics", () => {
  it("the gateway's kiln_kv_cache_usage_ratio rose under load and is back at 0", async () => {
    expect(maxKvUsageSeen).toBeGreaterThan(0);
    await waitFor(
      async () => (await gatewayKvUsage()).every((v) => v === 0),
      "KV usage back at 0",
      { timeoutMs: 10_000 },
    );
    expect(await gatewayKvUsage()).toEqual([0]);
  });
});

describe("traces", () => {
  const find = (pred: (s: ReceivedSpan) => boolean) => receiver.spans.find(pred);

  it("link gateway, router and worker spans into one request's trace", async () => {
    await waitFor(
      () => receiver.spans.some((s) => s.traceId === TRACE_ID && s.name === "router.decode"),
      "the traced request's spans",
      { timeoutMs: 10_000 },
    );
    const http = find((s) => s.traceId === TRACE_ID && s.service === "kiln-gateway");
    expect(http?.name).toBe("POST /v1/completions");
    expect(http?.parentSpanId).toBe(CLIENT_SPAN_ID);
    const request = find(
      (s) =>
        s.traceId === TRACE_ID &&
        s.service === "kiln-router" &&
        s.name === "kiln.v1.Router/Generate",
    );
    expect(request?.parentSpanId).toBe(http!.spanId);
    for (const phase of ["router.queue", "router.prefill", "router.decode"]) {
      expect(find((s) => s.name === phase && s.parentSpanId === request!.spanId)).toBeDefined();
    }
    const linksRequest = (s: ReceivedSpan) =>
      s.links.some((l) => l.traceId === TRACE_ID && l.spanId === request!.spanId);
    await waitFor(
      () => receiver.spans.some((s) => s.service === "kiln-worker" && linksRequest(s)),
      "a worker step span linked to the request",
      { timeoutMs: 10_000 },
    );
    const routerStep = find((s) => s.name === "router.step" && linksRequest(s));
    expect(routerStep?.parentSpanId).toBe("");
    const workerStep = find((s) => s.service === "kiln-worker" && linksRequest(s));
    expect(workerStep?.name).toBe("kiln.v1.Worker/Step");
    const workerSteps = receiver.spans.filter((s) => s.name === "kiln.v1.Worker/Step");
    expect(workerSteps.some((s) => s.parentSpanId === routerStep!.spanId)).toBe(true);
  });
});

if (!isPrometheusInstalled) {
  console.warn("observability: skipping the Prometheus checks: no `prometheus` binary on PATH");
}

/**
 * Series a dashboard reads that this load leaves flat, each with the reason. Every other one
 * must have changed while Prometheus scraped the load: a series created at zero and never
 * touched would satisfy "returns data" with the feature behind it broken.
 */
const FLAT_UNDER_THIS_LOAD = new Map([
  ["kiln_replica_healthy", "1 from the worker's registration on"],
  ["kiln_worker_step_failures_total", "no step fails"],
  ["kiln_num_preemptions_total", "8 MiB of KV holds the whole load"],
]);

const dashboardFileQueries = () =>
  ["kiln-overview.json", "kiln-replica.json"].flatMap((file) =>
    dashboardQueries(JSON.parse(readFileSync(resolve(REPO_ROOT, "deploy/grafana", file), "utf8"))),
  );

describe.skipIf(!isPrometheusInstalled)("Prometheus (Debian package `prometheus`)", () => {
  it("every series the dashboards read moved under load, not only zero-initialised", async () => {
    const names = metricNames(dashboardFileQueries());
    expect(names.length).toBeGreaterThan(15);
    const flat: string[] = [];
    for (const name of names) {
      if (FLAT_UNDER_THIS_LOAD.has(name)) continue;
      if ((await prometheus!.query(`changes(${name}[10m]) > 0`)).length === 0) flat.push(name);
    }
    expect(flat).toEqual([]);
  });

  it("every dashboard expression parses and returns data", async () => {
    const queries = dashboardFileQueries();
    expect(queries.length).toBeGreaterThan(40);
    const empty: string[] = [];
    for (const q of queries) {
      const result = await prometheus!.query(substituteVariables(q.expr));
      if (result.length === 0) empty.push(`${q.where}: ${q.expr}`);
    }
    expect(empty).toEqual([]);
  });

  it("every alert rule evaluates without error and its signals return data", async () => {
    await waitFor(
      async () => (await prometheus!.rules()).every((r) => r.health === "ok"),
      "every rule evaluated",
      { timeoutMs: 10_000 },
    );
    const rules = await prometheus!.rules();
    expect(rules.map((r) => r.name)).toEqual(
      expect.arrayContaining([
        "KilnQueueGrowing",
        "KilnKvCacheNearlyFull",
        "KilnHighErrorRatio",
        "KilnWorkerDown",
      ]),
    );
    const empty: string[] = [];
    for (const rule of rules) {
      const result = await prometheus!.query(withBoolComparisons(rule.query));
      if (result.length === 0) empty.push(`${rule.name}: ${withBoolComparisons(rule.query)}`);
    }
    expect(empty).toEqual([]);
  });

  it("scraped the KV cache usage rising under load and back at 0", async () => {
    expect(await prometheusSawKvInUse()).toBe(true);
    await waitFor(
      async () => {
        const now = await prometheus!.query('kiln_kv_cache_usage_ratio{job="kiln-router"}');
        return now.length === 1 && (now[0] as { value: [number, string] }).value[1] === "0";
      },
      "the router's KV usage back at 0 in Prometheus",
      { timeoutMs: 10_000 },
    );
  });
});

import { KilnError } from "@kiln/proto";
import { createMetricsRegistry } from "@kiln/telemetry";
import { describe, expect, it } from "vitest";
import { observabilityPlugin } from "../src/observability/metrics-plugin";
import { snapshotsOf } from "../src/observability/router-stats";
import { makeApp } from "./helpers/app";

const chat = { model: "toy", messages: [{ role: "user", content: "hi" }] };

async function appWithMetrics(opts: Parameters<typeof makeApp>[0] = {}) {
  const testApp = makeApp(opts);
  const registry = createMetricsRegistry({ processMetrics: false });
  const snapshots = snapshotsOf(
    {
      replicas: [
        {
          replicaId: "replica-0",
          healthy: true,
          numRunning: 1,
          numWaiting: 2,
          numBlocks: 8,
          numUsedBlocks: 2,
          prefixCacheQueries: 40,
          prefixCacheHits: 16,
          numPreemptions: 1,
          numRequestsRouted: 3,
          numStepsPlannedAhead: 0,
          residentAdapters: [],
          runningAdapters: [],
          waitingAdapters: [],
          maxLoras: 0,
        },
      ],
    },
    "toy",
  );
  await testApp.app.register(
    observabilityPlugin({ registry, readRouterStats: async () => snapshots }),
  );
  return testApp;
}

async function scrape(app: Awaited<ReturnType<typeof appWithMetrics>>["app"]): Promise<string> {
  const res = await app.inject({ method: "GET", url: "/metrics" });
  expect(res.statusCode).toBe(200);
  expect(res.headers["content-type"]).toContain("text/plain");
  return res.body;
}

describe("observability plugin", () => {
  it("counts requests by route template and status, streams included", async () => {
    const { app } = await appWithMetrics();
    await app.inject({ method: "POST", url: "/v1/chat/completions", payload: chat });
    await app.inject({
      method: "POST",
      url: "/v1/chat/completions",
      payload: { ...chat, stream: true },
    });
    await app.inject({ method: "GET", url: "/v1/models/toy" });
    const text = await scrape(app);
    expect(text).toContain(
      'kiln_http_requests_total{method="POST",route="/v1/chat/completions",status_code="200"} 2',
    );
    expect(text).toContain(
      'kiln_http_requests_total{method="GET",route="/v1/models/:model",status_code="200"} 1',
    );
    expect(text).toContain("kiln_http_requests_in_flight 0");
    expect(text).not.toContain('route="/metrics"');
  });

  it("counts errors by Kiln code, with every code present from the start", async () => {
    const { app } = await appWithMetrics({
      script: { failWith: new KilnError("OVERLOADED", "queue full") },
    });
    expect(await scrape(app)).toContain('kiln_request_errors_total{code="WORKER_LOST"} 0');
    await app.inject({ method: "POST", url: "/v1/chat/completions", payload: chat });
    await app.inject({
      method: "POST",
      url: "/v1/chat/completions",
      payload: { ...chat, model: "nope" },
    });
    await app.inject({ method: "GET", url: "/nowhere" });
    const text = await scrape(app);
    expect(text).toContain('kiln_request_errors_total{code="OVERLOADED"} 1');
    expect(text).toContain('kiln_request_errors_total{code="MODEL_NOT_FOUND"} 1');
    expect(text).toContain('kiln_request_errors_total{code="NOT_FOUND"} 1');
    expect(text).toContain('route="unmatched",status_code="404"');
  });

  it("counts requests refused before its hooks ran (authentication)", async () => {
    const { app } = await appWithMetrics({ apiKeys: ["secret"] });
    const res = await app.inject({ method: "POST", url: "/v1/chat/completions", payload: chat });
    expect(res.statusCode).toBe(401);
    const text = await scrape(app);
    expect(text).toContain('kiln_request_errors_total{code="UNAUTHORIZED"} 1');
    expect(text).toContain('route="/v1/chat/completions",status_code="401"} 1');
    expect(text).toContain("kiln_http_requests_in_flight 0");
  });

  it("exposes the router's scheduler state", async () => {
    const { app } = await appWithMetrics();
    const text = await scrape(app);
    expect(text).toContain('kiln_kv_cache_usage_ratio{model="toy",replica="replica-0"} 0.25');
    expect(text).toContain('kiln_num_requests_waiting{model="toy",replica="replica-0"} 2');
    expect(text).toContain('kiln_prefix_cache_hits_total{model="toy",replica="replica-0"} 16');
  });
});

import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { join } from "node:path";
import { credentials } from "@grpc/grpc-js";
import { GrpcHealthClient, GrpcServingStatus } from "@kiln/proto";
import { freePort, loadGolden, REPO_ROOT, STORIES_NAME } from "@kiln/test-support";
import OpenAI from "openai";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Child } from "../src/child";
import { render } from "./deploy/render";

/**
 * The production path: `npm run build` output alone. The compiled supervisor
 * (services/cluster/dist/main.js, run by plain Node without tsx) starts the compiled router,
 * worker and gateway, which serve the golden greedy completions; the gateway's /metrics relays
 * the router's and worker's series; router and worker answer grpc.health.v1 as Kubernetes'
 * probes ask it.
 */
const SERVICES = ["gateway", "router", "worker", "cluster"] as const;
const GOLDEN = loadGolden();

let cluster: Child | undefined;
const logs: string[] = [];
let gatewayPort = 0;
let routerPort = 0;
let workerPort = 0;

beforeAll(async () => {
  // Build now so the test runs the current sources (esbuild takes well under a second each).
  for (const name of SERVICES) {
    execFileSync(process.execPath, [join(REPO_ROOT, "scripts/build-service.mjs")], {
      cwd: join(REPO_ROOT, "services", name),
      stdio: "pipe",
    });
  }
  routerPort = await freePort();
  workerPort = await freePort();
  cluster = new Child(
    {
      name: "kiln",
      command: process.execPath,
      args: ["services/cluster/dist/main.js"],
      cwd: REPO_ROOT,
      // No NODE_OPTIONS from vitest: nothing may load tsx into the compiled processes.
      env: {
        PATH: process.env.PATH,
        PORT: "0",
        KILN_ROUTER_PORT: String(routerPort),
        KILN_WORKER_PORT: String(workerPort),
        KILN_KV_CACHE_MEMORY: "64MiB",
        KILN_DRAIN_TIMEOUT_S: "2",
      },
    },
    (line) => logs.push(line),
  );
  try {
    gatewayPort = Number((await cluster.waitForEvent("ready", 60_000)).port);
  } catch (err) {
    throw new Error(`${(err as Error).message}\n${logs.slice(-30).join("\n")}`);
  }
});

afterAll(async () => {
  await cluster?.stop("SIGTERM", 15_000);
});

describe("compiled services (dist/)", () => {
  it("has every entry point after the build", () => {
    for (const name of SERVICES) {
      expect(existsSync(join(REPO_ROOT, "services", name, "dist/main.js")), name).toBe(true);
    }
    expect(existsSync(join(REPO_ROOT, "services/worker/dist/cpu-worker.js"))).toBe(true);
  });

  it("runs every child from dist/ with plain node", () => {
    // The supervisor relays each child's lines as "[kiln] [<child>] ...".
    const started = logs.flatMap((l) => /\[(\w+)\] \{"event":"listening"/.exec(l)?.[1] ?? []);
    expect(started).toEqual(["router", "worker", "gateway"]);
    expect(logs.join("\n")).not.toMatch(/tsx|\.ts:\d/);
  });

  it("serves the golden greedy completions", async () => {
    const client = new OpenAI({
      baseURL: `http://127.0.0.1:${gatewayPort}/v1`,
      apiKey: "unused",
      maxRetries: 0,
      timeout: 30_000,
    });
    for (const c of GOLDEN.cases) {
      const res = await client.completions.create({
        model: STORIES_NAME,
        prompt: c.prompt_ids as number[],
        max_tokens: GOLDEN.max_new_tokens,
        temperature: 0,
      });
      expect(res.choices[0]!.text).toBe(c.greedy_text);
      expect(res.usage?.completion_tokens).toBe(c.greedy_ids.length);
    }
  }, 60_000);

  it("relays router and worker kiln_* series on the gateway's /metrics, each family once", async () => {
    const text = await (await fetch(`http://127.0.0.1:${gatewayPort}/metrics`)).text();
    /** The sum over every sample line that starts with `series`. */
    const value = (series: string) => {
      const lines = text.split("\n").filter((l) => l.startsWith(series));
      if (lines.length === 0) return Number.NaN;
      return lines.reduce((sum, l) => sum + Number(l.slice(l.lastIndexOf(" ") + 1)), 0);
    };
    // Router (engine) series and worker series, counted by the golden requests above.
    const numCases = GOLDEN.cases.length;
    expect(value("kiln_time_to_first_token_seconds_count")).toBe(numCases);
    expect(value("kiln_generation_tokens_total")).toBe(numCases * GOLDEN.max_new_tokens);
    // A worker Step runs up to 8 decode steps (multi-step decode's default, ADR 0028).
    expect(value("kiln_worker_step_duration_seconds_count")).toBeGreaterThanOrEqual(
      Math.ceil(GOLDEN.max_new_tokens / 8),
    );
    expect(text).toMatch(/^kiln_worker_step_duration_seconds_count\{relayed_by="gateway",/m);
    // The gateway's own series are still there, and both upstreams answered.
    expect(value('kiln_http_requests_total{method="POST",route="/v1/completions"')).toBe(numCases);
    expect(text.match(/^kiln_metrics_upstream_up\{.*\} 1$/gm)).toHaveLength(2);
    const types = text.split("\n").filter((l) => l.startsWith("# TYPE "));
    expect(new Set(types).size).toBe(types.length);
  });

  it("answers the chart's gateway probes (the paths Kubernetes will ask)", async () => {
    const gateway = render("").find(
      (o) => o.kind === "Deployment" && o.metadata.name === "kiln-gateway",
    )!;
    const container = gateway.spec.template.spec.containers[0];
    const paths = ["startupProbe", "readinessProbe", "livenessProbe"].map(
      (probe) => container[probe].httpGet.path as string,
    );
    expect(new Set(paths)).toEqual(new Set(["/health", "/metrics"]));
    for (const path of paths) {
      expect((await fetch(`http://127.0.0.1:${gatewayPort}${path}`)).status, path).toBe(200);
    }
  });

  it("answers grpc.health.v1 Check on the router and the worker", async () => {
    for (const [port, service] of [
      [routerPort, "kiln.v1.Router"],
      [workerPort, "kiln.v1.Worker"],
    ] as const) {
      const client = new GrpcHealthClient(`127.0.0.1:${port}`, credentials.createInsecure());
      const check = (name: string) =>
        new Promise<{ status: number } | { code: number }>((resolve) => {
          client.check({ service: name }, (err, res) => resolve(err ? { code: err.code } : res));
        });
      expect(await check("")).toEqual({ status: GrpcServingStatus.SERVING });
      expect(await check(service)).toEqual({ status: GrpcServingStatus.SERVING });
      expect(await check("no.such.Service")).toEqual({ code: 5 }); // NOT_FOUND
      client.close();
    }
  });
});

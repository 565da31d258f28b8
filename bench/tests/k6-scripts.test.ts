import { beforeEach, describe, expect, it, vi } from "vitest";

/**
 * k6 cannot be installed here, so the scripts run under vitest with k6's modules replaced by
 * recorders: this checks their options (executors, thresholds, env overrides) and the
 * request/metric logic of one iteration against a canned SSE body.
 */

const posts: { url: string; body: string; params: { headers: Record<string, string> } }[] = [];
const metricValues = new Map<string, number[]>();
let nextResponse: { status: number; body: string; timings: { waiting: number; duration: number } };

vi.mock("k6", () => ({
  check: (value: unknown, checks: Record<string, (v: unknown) => boolean>) =>
    Object.values(checks).every((fn) => fn(value)),
}));
vi.mock("k6/http", () => ({
  default: {
    post: (url: string, body: string, params: { headers: Record<string, string> }) => {
      posts.push({ url, body, params });
      return nextResponse;
    },
  },
}));
vi.mock("k6/metrics", () => {
  class Metric {
    constructor(readonly name: string) {
      metricValues.set(name, []);
    }
    add(value: number | boolean) {
      metricValues.get(this.name)!.push(Number(value));
    }
  }
  return { Counter: Metric, Rate: Metric, Trend: Metric };
});

/** What a k6 script module exports; the fields the tests read. */
interface K6Script {
  readonly options: {
    readonly scenarios: Record<string, Record<string, unknown> & { stages?: { target: number }[] }>;
    readonly thresholds: Record<string, unknown>;
  };
  readonly default: () => void;
}

/** Imports a script fresh (after vi.resetModules), so it reads the current __ENV. */
const loadScript = (name: string): Promise<K6Script> => import(/* @vite-ignore */ `../k6/${name}`);

const env = () => (globalThis as unknown as { __ENV: Record<string, string> }).__ENV;

const sse = (...chunks: unknown[]) =>
  `${chunks.map((c) => `data: ${JSON.stringify(c)}\n\n`).join("")}data: [DONE]\n\n`;

beforeEach(() => {
  posts.length = 0;
  vi.resetModules();
  (globalThis as Record<string, unknown>).__ENV = {
    KILN_URL: "http://127.0.0.1:9999/",
    KILN_API_KEY: "sk-k6",
    RATE: "5",
    TTFT_P95_MS: "750",
  };
});

describe("k6 scripts", () => {
  it("constant-rate: open-loop executor at RATE with the four thresholds", async () => {
    const script = await loadScript("chat-constant-rate.js");
    expect(script.options.scenarios.constant!).toMatchObject({
      executor: "constant-arrival-rate",
      rate: 5,
      timeUnit: "1s",
    });
    expect(script.options.thresholds.ttft).toEqual(["p(95)<750"]);
    expect(Object.keys(script.options.thresholds).sort()).toEqual([
      "errors",
      "http_req_duration",
      "tpot",
      "ttft",
    ]);
  });

  it("ramping: ramps to PEAK_RATE, holds, and comes down", async () => {
    env().PEAK_RATE = "10";
    const script = await loadScript("chat-ramping.js");
    const stages = script.options.scenarios.ramping!.stages!.map((s) => s.target);
    expect(stages).toEqual([5, 10, 10, 0]);
  });

  it("one iteration posts a streaming chat with the key and records TTFT and TPOT", async () => {
    nextResponse = {
      status: 200,
      timings: { waiting: 120, duration: 420 },
      body: sse(
        { choices: [{ index: 0, delta: { role: "assistant", content: "" } }] },
        { choices: [{ index: 0, delta: { content: "Once" } }] },
        { choices: [{ index: 0, delta: { content: " upon" } }] },
        { choices: [{ index: 0, delta: { content: " a" } }] },
        { choices: [{ index: 0, delta: {}, finish_reason: "length" }] },
      ),
    };
    const script = await loadScript("chat-constant-rate.js");
    script.default();
    expect(posts[0]!.url).toBe("http://127.0.0.1:9999/v1/chat/completions");
    expect(posts[0]!.params.headers.Authorization).toBe("Bearer sk-k6");
    expect(JSON.parse(posts[0]!.body)).toMatchObject({ stream: true, max_tokens: 64 });
    expect(metricValues.get("ttft")).toEqual([120]);
    expect(metricValues.get("tpot")).toEqual([150]); // (420 − 120) / (3 − 1)
    expect(metricValues.get("output_chunks")).toEqual([3]);
    expect(metricValues.get("errors")).toEqual([0]);
  });

  it("counts an HTTP error or an error event as a failed request", async () => {
    const script = await loadScript("chat-constant-rate.js");
    nextResponse = { status: 429, body: '{"error":{}}', timings: { waiting: 5, duration: 5 } };
    script.default();
    nextResponse = {
      status: 200,
      body: sse({ error: { message: "worker lost" } }),
      timings: { waiting: 5, duration: 5 },
    };
    script.default();
    expect(metricValues.get("errors")).toEqual([1, 1]);
    expect(metricValues.get("ttft")).toEqual([]);
  });
});

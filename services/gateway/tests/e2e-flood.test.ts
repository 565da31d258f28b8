import http from "node:http";
import { waitFor } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { MODEL, type Stack, startStack, stopStack } from "./helpers/stack";

// Issue 23: a burst of 5,000 concurrent streams, 5% of them slow readers, against the real
// processes. Before the gRPC session limits were set, a few thousand streams tore down the
// gateway↔router HTTP/2 session and hundreds of healthy requests got 500s.
const NUM_STREAMS = 5000;
const SLOW_EVERY = 20;

let stack: Stack;
beforeAll(async () => {
  // A small stream buffer so that slow readers really are cut off during the test.
  stack = await startStack({ KILN_MAX_STREAM_BUFFER_BYTES: "2048" });
}, 90_000);
afterAll(() => stopStack(stack), 30_000);

type Outcome = "ok" | "429" | "503" | "cut off" | `bad: ${string}`;

const body = JSON.stringify({
  model: MODEL,
  prompt: "Once upon a time",
  max_tokens: 48,
  ignore_eos: true,
  stream: true,
});

/** One streaming request; a slow reader reads nothing for 3 s, then drains. */
function stream(port: number, agent: http.Agent, isSlow: boolean): Promise<Outcome> {
  return new Promise((resolve) => {
    const req = http.request(
      { host: "127.0.0.1", port, path: "/v1/completions", method: "POST", agent },
      (res) => {
        let text = "";
        res.setEncoding("utf8");
        if (isSlow) {
          res.pause();
          setTimeout(() => res.resume(), 3000);
        }
        res.on("data", (d: string) => {
          text += d;
        });
        res.on("error", () => resolve(isSlow ? "cut off" : "bad: reset"));
        res.on("end", () => resolve(classify(res.statusCode ?? 0, text, isSlow)));
      },
    );
    req.on("error", (err: NodeJS.ErrnoException) =>
      resolve(isSlow ? "cut off" : `bad: ${err.code ?? err.message}`),
    );
    req.setHeader("content-type", "application/json");
    req.end(body);
  });
}

function classify(status: number, text: string, isSlow: boolean): Outcome {
  if (status === 429 || status === 503) {
    return JSON.parse(text).error?.code ? (String(status) as "429" | "503") : `bad: ${text}`;
  }
  if (status !== 200) return `bad: ${status} ${text.slice(0, 200)}`;
  if (text.trimEnd().endsWith("data: [DONE]") && !text.includes('"error"')) return "ok";
  return isSlow ? "cut off" : `bad: stream ${text.slice(-200)}`;
}

describe("a flood of streams", () => {
  it(`ends all ${NUM_STREAMS} with tokens or 429/503, never a 500 or a reset`, async () => {
    const agent = new http.Agent({ keepAlive: false, maxSockets: Number.POSITIVE_INFINITY });
    const port = stack.cluster.gatewayPort;
    const outcomes = await Promise.all(
      Array.from({ length: NUM_STREAMS }, (_, i) => stream(port, agent, i % SLOW_EVERY === 0)),
    );
    const counts: Record<string, number> = {};
    for (const o of outcomes) counts[o] = (counts[o] ?? 0) + 1;
    const bad = Object.keys(counts).filter((k) => k.startsWith("bad"));
    expect(bad, JSON.stringify(counts)).toEqual([]);
    expect(counts.ok ?? 0, JSON.stringify(counts)).toBeGreaterThan(500);

    // The cluster is healthy and every KV block is back.
    const metrics = `http://127.0.0.1:${port}/metrics`;
    const read = async (name: string) => {
      const text = await (await fetch(metrics)).text();
      const line = text.split("\n").find((l) => l.startsWith(`${name}{`));
      return Number(line?.split(" ").at(-1));
    };
    await waitFor(
      async () =>
        (await read("kiln_kv_cache_usage_ratio")) === 0 &&
        (await read("kiln_num_requests_running")) === 0,
      "KV usage back at 0",
      { timeoutMs: 30_000 },
    );
    expect((await fetch(`http://127.0.0.1:${port}/health`)).status).toBe(200);
    const after = await stack.client.completions.create({
      model: MODEL,
      prompt: "Once",
      max_tokens: 4,
    });
    expect(after.choices[0]?.finish_reason).toBe("length");
  }, 180_000);
});

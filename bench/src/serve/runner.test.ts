import { once } from "node:events";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Target } from "./client";
import { arrivalTimesMs, runLoad, type WorkItem } from "./runner";

/**
 * A fake OpenAI streaming server: one chunk per token every 2 ms, usage at the end, and a
 * count of requests in flight so the test can check the concurrency cap.
 */
let server: Server;
let numInFlight = 0;
let peakInFlight = 0;
const bodies: Record<string, unknown>[] = [];

beforeAll(async () => {
  server = createServer(async (req, res) => {
    let text = "";
    for await (const chunk of req) text += chunk;
    const body = JSON.parse(text) as { max_tokens: number; prompt: number[] };
    bodies.push(body);
    if (body.prompt[1] === 666) {
      res.writeHead(429, { "content-type": "application/json" }).end('{"error":{}}');
      return;
    }
    numInFlight++;
    peakInFlight = Math.max(peakInFlight, numInFlight);
    res.writeHead(200, { "content-type": "text/event-stream" });
    for (let i = 0; i < body.max_tokens; i++) {
      await new Promise((r) => setTimeout(r, 2));
      res.write(`data: ${JSON.stringify({ choices: [{ index: 0, text: "x" }] })}\n\n`);
    }
    const usage = { prompt_tokens: body.prompt.length, completion_tokens: body.max_tokens };
    res.write(`data: ${JSON.stringify({ choices: [], usage })}\n\n`);
    res.end("data: [DONE]\n\n");
    numInFlight--;
  });
  server.listen(0, "127.0.0.1");
  await once(server, "listening");
});

afterAll(() => {
  server.closeAllConnections();
  server.close();
});

function target(): Target {
  const { port } = server.address() as AddressInfo;
  return {
    baseUrl: `http://127.0.0.1:${port}`,
    endpoint: "/v1/completions",
    model: "fake",
    apiKey: null,
    ignoreEos: true,
  };
}

const items: WorkItem[] = Array.from({ length: 12 }, (_, i) => ({
  prompt: { ids: [1, 100 + i, 200] },
  promptLen: 3,
  outputLen: 5,
}));

describe("runLoad", () => {
  it("caps requests in flight and times every chunk", async () => {
    peakInFlight = 0;
    const result = await runLoad(target(), items, {
      requestRate: Number.POSITIVE_INFINITY,
      maxConcurrency: 3,
      seed: 0,
      numWarmups: 1,
      slos: null,
      percentiles: [99],
    });
    expect(peakInFlight).toBe(3);
    expect(result.metrics.numCompleted).toBe(12);
    expect(result.metrics.totalOutputTokens).toBe(60);
    expect(result.metrics.maxConcurrency).toBeLessThanOrEqual(3);
    for (const out of result.outputs) {
      expect(out.itlMs).toHaveLength(4);
      expect(out.ttftMs).toBeGreaterThan(0);
      expect(out.latencyMs).toBeGreaterThanOrEqual(out.ttftMs);
    }
    const last = bodies.at(-1)!;
    expect(last).toMatchObject({ temperature: 0, stream: true, ignore_eos: true, max_tokens: 5 });
    expect(last.stream_options).toEqual({ include_usage: true });
  });

  it("reports HTTP errors as failed requests", async () => {
    const bad: WorkItem[] = [{ prompt: { ids: [1, 666] }, promptLen: 2, outputLen: 3 }];
    const result = await runLoad(target(), [...items.slice(0, 2), ...bad], {
      requestRate: Number.POSITIVE_INFINITY,
      maxConcurrency: null,
      seed: 0,
      numWarmups: 0,
      slos: { ttftMs: 10_000 },
      percentiles: [99],
    });
    expect(result.metrics.numFailed).toBe(1);
    expect(result.outputs[2]!.error).toMatch(/HTTP 429/);
    expect(result.metrics.goodput).toBeGreaterThan(0);
  });
});

describe("arrivalTimesMs", () => {
  it("sends everything at once at an infinite rate", () => {
    expect(arrivalTimesMs(3, Number.POSITIVE_INFINITY, 0)).toEqual([0, 0, 0]);
  });

  it("spaces Poisson arrivals by 1/rate on average, reproducibly", () => {
    const times = arrivalTimesMs(2001, 10, 42);
    expect(times[0]).toBe(0);
    expect(times[2000]! / 2000).toBeGreaterThan(90);
    expect(times[2000]! / 2000).toBeLessThan(110);
    expect(arrivalTimesMs(50, 10, 42)).toEqual(times.slice(0, 50));
  });
});

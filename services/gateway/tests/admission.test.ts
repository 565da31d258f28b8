import http from "node:http";
import { waitFor } from "@kiln/test-support";
import { afterEach, describe, expect, it } from "vitest";
import { makeApp, type TestApp } from "./helpers/app";

// Admission and slow readers, in-process against the scripted router: what the gateway does
// before any work (429 at the bound) and while streaming (a client that stops reading is cut
// off, and its router stream cancelled, instead of buffering without bound).

let running: TestApp | undefined;
afterEach(async () => {
  await running?.app.close();
  running = undefined;
});

async function listen(t: TestApp): Promise<string> {
  running = t;
  await t.app.listen({ host: "127.0.0.1", port: 0 });
  const address = t.app.server.address();
  if (address === null || typeof address === "string") throw new Error("no address");
  return `http://127.0.0.1:${address.port}`;
}

const streamBody = (extra: object = {}) =>
  JSON.stringify({ model: "toy", prompt: "hi", max_tokens: 16, stream: true, ...extra });

/** Opens a streaming request and resolves with the response once its headers arrived. */
function openStream(
  base: string,
  body: string,
): Promise<{ res: http.IncomingMessage; req: http.ClientRequest }> {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
    });
    req.on("response", (res) => resolve({ res, req }));
    req.on("error", reject);
    req.end(body);
  });
}

describe("admission (KILN_MAX_CONCURRENT_REQUESTS)", () => {
  it("answers 429 with Retry-After before the router is called, and admits again once a slot frees", async () => {
    const t = makeApp({ script: { isEndless: true }, maxConcurrentRequests: 2 });
    const base = await listen(t);
    const open = [await openStream(base, streamBody()), await openStream(base, streamBody())];
    await waitFor(() => t.router.numOpen === 2, "two streams at the router");

    const refused = await fetch(`${base}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: streamBody(),
    });
    expect(refused.status).toBe(429);
    expect(refused.headers.get("retry-after")).toBe("1");
    expect(((await refused.json()) as { error: unknown }).error).toMatchObject({
      type: "rate_limit_error",
      code: "overloaded",
    });
    expect(t.router.requests).toHaveLength(2);

    // Non-generation routes are not counted.
    expect((await fetch(`${base}/v1/models`)).status).toBe(200);

    open[0]!.req.destroy();
    await waitFor(() => t.router.numOpen === 1, "the closed stream released at the router");
    const admitted = await openStream(base, streamBody());
    expect(admitted.res.statusCode).toBe(200);
    for (const s of [open[1]!, admitted]) s.req.destroy();
    await waitFor(() => t.router.numOpen === 0, "every router stream released");
  });
});

describe("slow readers (KILN_MAX_STREAM_BUFFER_BYTES)", () => {
  it("cuts off a client that stops reading, cancels its router stream, and keeps serving others", async () => {
    const t = makeApp({
      script: { isEndless: true, endlessIntervalMs: 0 },
      maxStreamBufferBytes: 64 * 1024,
    });
    const base = await listen(t);
    // Big chunks (20 top logprobs each) fill the socket buffers within a second or so.
    const slow = await openStream(base, streamBody({ logprobs: 5, echo: false }));
    slow.res.pause();
    const ended = new Promise<string>((resolve) => {
      slow.res.on("error", () => resolve("reset"));
      slow.res.on("close", () => resolve("closed"));
    });
    await waitFor(() => t.router.numCancelled === 1, "the slow reader's stream cancelled", {
      timeoutMs: 20_000,
    });
    expect(t.app.kilnStreamLimits.numSlowReadersCutOff).toBe(1);
    expect(t.router.numOpen).toBe(0);
    slow.res.resume();
    await ended;

    // A well-behaved client is unaffected.
    t.router.script = {};
    const ok = await fetch(`${base}/v1/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: streamBody(),
    });
    expect(ok.status).toBe(200);
    expect((await ok.text()).trimEnd().endsWith("data: [DONE]")).toBe(true);
  }, 30_000);
});

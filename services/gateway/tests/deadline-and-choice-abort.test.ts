import { afterEach, describe, expect, it } from "vitest";
import { makeApp, parseSse, type TestApp } from "./helpers/app";

let t: TestApp;
afterEach(async () => {
  await t?.app.close();
});

const post = (url: string, body: object) => t.app.inject({ method: "POST", url, payload: body });

describe("a request timeout (KILN_REQUEST_TIMEOUT_S)", () => {
  it("ends a non-streamed request with 504 deadline_exceeded and releases the router call", async () => {
    t = makeApp({ script: { isEndless: true }, requestTimeoutMs: 150 });
    const startedAt = Date.now();
    const res = await post("/v1/completions", { model: "toy", prompt: "hi", max_tokens: 50 });
    expect(res.statusCode).toBe(504);
    expect(res.json().error).toMatchObject({ type: "timeout", code: "deadline_exceeded" });
    expect(Date.now() - startedAt).toBeLessThan(5000);
    expect(t.router.numOpen).toBe(0);
    expect(t.router.numCancelled).toBe(1);
    expect(t.inFlight.numActive).toBe(0);
  });

  it("ends a stream that already sent tokens with an error event", async () => {
    t = makeApp({ script: { isEndless: true }, requestTimeoutMs: 150 });
    const res = await post("/v1/chat/completions", {
      model: "toy",
      messages: [{ role: "user", content: "hi" }],
      max_tokens: 20,
      stream: true,
    });
    expect(res.statusCode, res.body).toBe(200);
    const events = parseSse(res.body) as { error?: { code: string } }[];
    expect(events.length).toBeGreaterThan(2);
    expect(events.find((e) => e.error)).toMatchObject({ error: { code: "deadline_exceeded" } });
    expect(t.router.numOpen).toBe(0);
  });

  it("does not fire for a request that finishes in time", async () => {
    t = makeApp({ requestTimeoutMs: 5000 });
    const res = await post("/v1/completions", { model: "toy", prompt: "hi", max_tokens: 5 });
    expect(res.statusCode).toBe(200);
  });
});

describe("n > 1 with a stop string", () => {
  it("stops the choice that matched in the router while the others keep generating", async () => {
    // Choice 0 writes "Hello world. The end." and stops at ". "; choice 1 has no ". ".
    t = makeApp({
      script: { text: (_r, i) => (i === 0 ? "Hello world. The end." : "abcdefghijklmnop") },
    });
    const res = await post("/v1/completions", {
      model: "toy",
      prompt: "hi",
      n: 2,
      stop: ". ",
      max_tokens: 14,
    });
    expect(res.statusCode).toBe(200);
    const choices = res.json().choices as { index: number; text: string; finish_reason: string }[];
    expect(choices.map((c) => [c.text, c.finish_reason])).toEqual([
      ["Hello world", "stop"],
      ["abcdefghijklmn", "length"],
    ]);
    expect(t.router.stoppedChoices).toEqual([{ requestId: expect.any(String), index: 0 }]);
    expect(t.router.requests[0]!.requestId).toBe(t.router.stoppedChoices[0]!.requestId);
  });

  it("tells the router that an n = 1 request ended on a stop string", async () => {
    t = makeApp({ script: { text: () => "Hello world. The end." } });
    const body = { model: "toy", prompt: "hi", stop: ". ", max_tokens: 20 };
    const res = await post("/v1/completions", body);
    expect(res.json().choices[0].finish_reason).toBe("stop");
    expect(t.router.stoppedChoices).toEqual([{ requestId: expect.any(String), index: 0 }]);
  });
});

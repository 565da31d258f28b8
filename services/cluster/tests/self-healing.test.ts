import { waitFor } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { type SupervisorProcess, startSupervisor } from "./supervisor-process";

/**
 * The done-when cases against the real `npm start` supervisor: kill -9 of each child
 * mid-stream ends every open stream with an error within 5 s, and a new request succeeds within
 * 30 s with nobody stepping in. The supervisor restarts the child (counted in its metric); the
 * worker re-registers with a restarted router and the gateway's channel reconnects.
 */

let sup: SupervisorProcess;

beforeAll(async () => {
  // A 2 s first backoff leaves a window in which no router is up (the 503 case below); two
  // restarts per service within the window, so the third worker crash makes it give up.
  sup = await startSupervisor({
    KILN_SUPERVISOR_BACKOFF_MS: "2000",
    KILN_SUPERVISOR_MAX_RESTARTS: "2",
  });
}, 120_000);

afterAll(async () => {
  await sup?.stop();
}, 30_000);

const PROMPT = "Once upon a time";

/** Opens `numStreams` long streams and resolves once each has delivered a first token. */
async function openStreams(numStreams: number, maxTokens = 480) {
  const streams = await Promise.all(
    Array.from({ length: numStreams }, () => {
      // ignore_eos is a vLLM extension the gateway accepts; the openai types lack it.
      const body = {
        model: "stories260K",
        prompt: PROMPT,
        max_tokens: maxTokens,
        ignore_eos: true,
      };
      return sup.client.completions.create({ ...body, stream: true as const });
    }),
  );
  const iterators = streams.map((s) => s[Symbol.asyncIterator]());
  await Promise.all(iterators.map((it) => it.next()));
  /** Resolves with how each stream ended: "error" or "completed". */
  const ends = iterators.map(async (it) => {
    try {
      for (;;) if ((await it.next()).done) return "completed";
    } catch {
      return "error";
    }
  });
  return ends;
}

async function completesWithin(timeoutMs: number): Promise<number> {
  const start = Date.now();
  await waitFor(
    () =>
      sup.client.completions
        .create({ model: "stories260K", prompt: PROMPT, max_tokens: 8, temperature: 0 })
        .then(
          (r) => r.choices[0]!.text.length > 0,
          () => false,
        ),
    "a request to succeed",
    { timeoutMs, intervalMs: 250 },
  );
  return Date.now() - start;
}

async function killMidStream(service: string) {
  const ends = await openStreams(3);
  const before = sup.restarts.length;
  const killedAt = Date.now();
  process.kill(sup.pids[service]!, "SIGKILL");
  const outcomes = await Promise.all(ends);
  const endMs = Date.now() - killedAt;
  return { outcomes, endMs, killedAt, before };
}

describe("supervisor self-healing (kill -9 mid-stream)", () => {
  it("router: streams end with an error, 503 + Retry-After while down, then serves again", async () => {
    const { outcomes, endMs, before } = await killMidStream("router");
    expect(outcomes).toEqual(["error", "error", "error"]);
    expect(endMs).toBeLessThan(5000);
    // Inside the 2 s backoff no router listens: a new request is refused at once, never hangs.
    const t0 = Date.now();
    const res = await fetch(`${sup.baseURL}/completions`, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ model: "stories260K", prompt: PROMPT, max_tokens: 4 }),
    });
    expect(Date.now() - t0).toBeLessThan(3000);
    expect(res.status).toBe(503);
    expect(res.headers.get("retry-after")).toBe("1");
    const body = (await res.json()) as { error: { type: string; code: string } };
    expect(body.error).toMatchObject({ type: "server_error", code: "unavailable" });
    expect(await completesWithin(30_000)).toBeLessThan(30_000);
    expect(sup.restarts.slice(before)).toMatchObject([{ service: "router", cause: "SIGKILL" }]);
    expect(await sup.metrics()).toMatch(
      /kiln_supervisor_restarts_total\{service="router",cause="SIGKILL"\} 1/,
    );
  }, 60_000);

  it("worker: streams end with an error, the new worker re-registers and serves", async () => {
    const { outcomes, endMs, before } = await killMidStream("worker");
    expect(outcomes).toEqual(["error", "error", "error"]);
    expect(endMs).toBeLessThan(5000);
    expect(await completesWithin(30_000)).toBeLessThan(30_000);
    expect(sup.restarts.slice(before)).toMatchObject([{ service: "worker", cause: "SIGKILL" }]);
  }, 60_000);

  it("gateway: streams break, the supervisor restarts it on the same port", async () => {
    const { outcomes, endMs, before } = await killMidStream("gateway");
    expect(outcomes).toEqual(["error", "error", "error"]);
    expect(endMs).toBeLessThan(5000);
    expect(await completesWithin(30_000)).toBeLessThan(30_000);
    expect(sup.restarts.slice(before)).toMatchObject([{ service: "gateway", cause: "SIGKILL" }]);
    const metrics = await sup.metrics();
    for (const service of ["router", "worker", "gateway"]) {
      expect(metrics).toContain(`kiln_supervisor_up{service="${service}"} 1`);
    }
  }, 60_000);

  it("gateway SIGTERM: the running stream finishes, the gateway exits 0 and comes back", async () => {
    const ends = await openStreams(1, 150); // ~1.5 s, well inside the 5 s drain timeout
    const before = sup.restarts.length;
    process.kill(sup.pids.gateway!, "SIGTERM");
    // Draining: it refuses new connections (503 on one still open).
    await waitFor(
      () =>
        fetch(`${sup.baseURL}/models`).then(
          (res) => res.status === 503,
          () => true,
        ),
      "the gateway to stop accepting",
    );
    expect(await ends[0]).toBe("completed");
    expect(await completesWithin(30_000)).toBeLessThan(30_000);
    expect(sup.restarts.slice(before)).toMatchObject([{ service: "gateway", cause: "exit_0" }]);
  }, 60_000);

  it("router and worker killed together: both come back and find each other", async () => {
    const ends = await openStreams(2);
    const before = sup.restarts.length;
    process.kill(sup.pids.worker!, "SIGKILL");
    process.kill(sup.pids.router!, "SIGKILL");
    expect(await Promise.all(ends)).toEqual(["error", "error"]);
    expect(await completesWithin(30_000)).toBeLessThan(30_000);
    await waitFor(() => sup.restarts.length - before === 2, "both restarts");
    const restarted = sup.restarts.slice(before).map((r) => r.service);
    expect(restarted.sort()).toEqual(["router", "worker"]);
  }, 60_000);

  it("gives up after repeated crashes: exits 1 with the reason and stops every child", async () => {
    const pids = { ...sup.pids };
    // The worker's third crash within the window (the tests above caused two).
    process.kill(pids.worker!, "SIGKILL");
    const exit = await sup.child.exited;
    expect(exit.code).toBe(1);
    expect(sup.logs.join("\n")).toMatch(/worker crashed 3 times within 60 s .*giving up/);
    for (const pid of [pids.router!, pids.gateway!]) expect(() => process.kill(pid, 0)).toThrow();
  }, 60_000);
});

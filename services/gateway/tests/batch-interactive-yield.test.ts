import Fastify from "fastify";
import { describe, expect, it, vi } from "vitest";
import { InteractiveLoad } from "../src/batch/interactive-yield";
import { batchLineHeaders } from "../src/batch/priority";

// Batch lines yield to interactive generations in the gateway (ADR 0023): the batch worker's
// concurrency drops while any interactive generation runs, and comes back after a grace period.

describe("InteractiveLoad", () => {
  it("is busy from the first generation until the grace period after the last", () => {
    vi.useFakeTimers();
    try {
      const calls: boolean[] = [];
      const load = new InteractiveLoad((isBusy) => calls.push(isBusy), 500);
      const endA = load.begin();
      const endB = load.begin();
      expect(calls).toEqual([true]);
      endA();
      endA(); // idempotent
      vi.advanceTimersByTime(1000);
      expect(calls).toEqual([true]); // B still runs
      endB();
      vi.advanceTimersByTime(499);
      const endC = load.begin(); // a closed-loop client's next request: no flapping
      vi.advanceTimersByTime(1000);
      expect(calls).toEqual([true]);
      endC();
      vi.advanceTimersByTime(500);
      expect(calls).toEqual([true, false]);
    } finally {
      vi.useRealTimers();
    }
  });

  it("counts interactive generation requests only, not batch lines or other routes", async () => {
    const calls: boolean[] = [];
    const load = new InteractiveLoad((isBusy) => calls.push(isBusy), 10_000);
    const app = Fastify();
    load.register(app);
    app.post("/v1/completions", async () => ({ ok: true }));
    app.get("/v1/models", async () => ({ ok: true }));
    try {
      await app.inject({ method: "POST", url: "/v1/completions", headers: batchLineHeaders() });
      await app.inject({ method: "GET", url: "/v1/models" });
      expect(calls).toEqual([]);
      await app.inject({ method: "POST", url: "/v1/completions?x=1", payload: {} });
      expect(calls).toEqual([true]);
    } finally {
      load.close();
      await app.close();
    }
  });
});

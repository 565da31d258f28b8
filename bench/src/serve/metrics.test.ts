import { describe, expect, it } from "vitest";
import type { RequestOutput } from "./client";
import { computeMetrics, parseSlos, percentile, stats } from "./metrics";

function out(partial: Partial<RequestOutput>): RequestOutput {
  return {
    isSuccess: true,
    error: "",
    promptLen: 10,
    outputLen: 5,
    ttftMs: 100,
    itlMs: [10, 10, 10, 10],
    latencyMs: 140,
    startMs: 0,
    ...partial,
  };
}

describe("percentile", () => {
  it("interpolates linearly between closest ranks, as numpy does", () => {
    expect(percentile([1, 2, 3, 4], 50)).toBe(2.5);
    expect(percentile([1, 2, 3, 4], 99)).toBeCloseTo(3.97);
    expect(percentile([5], 99)).toBe(5);
    expect(percentile([], 50)).toBeNaN();
  });

  it("stats names the extra percentiles", () => {
    expect(stats([1, 2, 3, 4, 5], [50, 90]).percentiles).toEqual({ p50: 3, p90: 4.6 });
  });
});

describe("computeMetrics", () => {
  it("computes TPOT per request from latency and TTFT, and pools ITLs", () => {
    const m = computeMetrics(
      [out({}), out({ ttftMs: 200, latencyMs: 280, itlMs: [20, 20, 20, 20], startMs: 50 })],
      2,
      null,
    );
    expect(m.numCompleted).toBe(2);
    expect(m.totalOutputTokens).toBe(10);
    expect(m.outputThroughput).toBe(5);
    expect(m.requestThroughput).toBe(1);
    expect(m.totalTokenThroughput).toBe(15);
    expect(m.tpotMs.mean).toBe(15); // (40/4 + 80/4) / 2
    expect(m.itlMs.median).toBe(15);
    expect(m.ttftMs.median).toBe(150);
    expect(m.maxConcurrency).toBe(2);
    expect(m.goodput).toBeNull();
  });

  it("leaves failures out of latency and counts them", () => {
    const m = computeMetrics([out({}), out({ isSuccess: false, ttftMs: Number.NaN })], 1, null);
    expect(m.numFailed).toBe(1);
    expect(m.ttftMs.mean).toBe(100);
  });

  it("counts goodput as requests meeting every SLO per second", () => {
    const outputs = [out({}), out({ ttftMs: 300, latencyMs: 340 }), out({ latencyMs: 500 })];
    expect(computeMetrics(outputs, 2, { ttftMs: 200 }).goodput).toBe(1);
    expect(computeMetrics(outputs, 2, { ttftMs: 200, tpotMs: 20 }).goodput).toBe(0.5);
    expect(computeMetrics(outputs, 2, { e2elMs: 400 }).goodput).toBe(1);
  });
});

describe("parseSlos", () => {
  it("reads NAME:MS items separated by commas or spaces", () => {
    expect(parseSlos(["ttft:500,tpot:50", "e2el:9000"])).toEqual({
      ttftMs: 500,
      tpotMs: 50,
      e2elMs: 9000,
    });
    expect(parseSlos([])).toBeNull();
    expect(() => parseSlos(["itl:5"])).toThrow(/ttft, tpot and e2el/);
    expect(() => parseSlos(["ttft:x"])).toThrow(/NAME:MS/);
  });
});

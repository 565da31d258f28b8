import { describe, expect, it } from "vitest";
import { scheduleAheadOption, shouldScheduleAhead } from "./schedule-ahead";

const facts = (workerAddress: string, numComputeThreads: number, numCores = 2) => ({
  workerAddress,
  numComputeThreads,
  numCores,
  localHosts: new Set(["127.0.0.1", "::1", "localhost", "10.0.0.5"]),
});

describe("--schedule-ahead / KILN_SCHEDULE_AHEAD", () => {
  it("parses auto, on and off (auto when unset) and names the flag otherwise", () => {
    expect(scheduleAheadOption(undefined, "--schedule-ahead")).toBe("auto");
    expect(scheduleAheadOption(" ON ", "--schedule-ahead")).toBe("on");
    expect(scheduleAheadOption("off", "--schedule-ahead")).toBe("off");
    expect(() => scheduleAheadOption("1", "--schedule-ahead")).toThrow(
      '--schedule-ahead: expected auto, on or off, got "1"',
    );
  });

  it("on and off decide alone", () => {
    expect(shouldScheduleAhead("on", facts("127.0.0.1:9000", 2))).toBe(true);
    expect(shouldScheduleAhead("off", facts("10.9.9.9:9000", 0))).toBe(false);
  });

  it("auto: off only when the worker shares this machine and its threads take every core", () => {
    expect(shouldScheduleAhead("auto", facts("127.0.0.1:9000", 2))).toBe(false);
    expect(shouldScheduleAhead("auto", facts("10.0.0.5:9000", 4))).toBe(false);
    expect(shouldScheduleAhead("auto", facts("[::1]:9000", 2))).toBe(false);
    // A spare core, a GPU worker, or a worker on another machine: plan ahead.
    expect(shouldScheduleAhead("auto", facts("127.0.0.1:9000", 2, 4))).toBe(true);
    expect(shouldScheduleAhead("auto", facts("127.0.0.1:9000", 0))).toBe(true);
    expect(shouldScheduleAhead("auto", facts("worker-0.kiln:9000", 2))).toBe(true);
  });
});

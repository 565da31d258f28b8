import { describe, expect, it } from "vitest";
import { DEFAULT_MULTI_STEP, MultiStepPolicy } from "./multi-step";

describe("MultiStepPolicy", () => {
  it("runs one step until a decode step was measured, and after a reset", () => {
    const policy = new MultiStepPolicy(DEFAULT_MULTI_STEP);
    expect(policy.stepsFor(1)).toBe(1);
    policy.observe(1, 1, 6);
    expect(policy.stepsFor(1)).toBe(8);
    policy.reset();
    expect(policy.stepsFor(1)).toBe(1);
  });

  it("fills the time budget by the measured step time, within the step cap", () => {
    const policy = new MultiStepPolicy({ maxSteps: 8, maxBurstMs: 50 });
    policy.observe(1, 4, 4 * 12); // 12 ms a step
    expect(policy.stepsFor(1)).toBe(4);
    policy.observe(1, 1, 30);
    expect(policy.stepsFor(1)).toBe(1);
    policy.observe(1, 1, 80); // a step longer than the budget still runs
    expect(policy.stepsFor(1)).toBe(1);
    policy.observe(1, 8, 8);
    expect(policy.stepsFor(1)).toBe(8);
  });

  it("scales the step time up for a batch larger than the one measured", () => {
    const policy = new MultiStepPolicy({ maxSteps: 8, maxBurstMs: 50 });
    policy.observe(2, 5, 5 * 5); // 5 ms a step at 2 sequences
    expect(policy.stepsFor(2)).toBe(8);
    expect(policy.stepsFor(1)).toBe(8);
    expect(policy.stepsFor(8)).toBe(2); // about 20 ms a step
    expect(policy.stepsFor(64)).toBe(1);
  });

  it("never bursts with a cap of one step", () => {
    const policy = new MultiStepPolicy({ maxSteps: 1, maxBurstMs: 1000 });
    policy.observe(1, 1, 1);
    expect(policy.stepsFor(1)).toBe(1);
  });
});

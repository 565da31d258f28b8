import { describe, expect, it } from "vitest";
import { RestartBudget } from "./restart-policy";

const POLICY = { maxRestarts: 3, windowMs: 10_000, backoffInitialMs: 100, backoffMaxMs: 300 };

describe("RestartBudget", () => {
  it("doubles the delay per crash in the window, capped, and gives up past maxRestarts", () => {
    const budget = new RestartBudget(POLICY);
    expect(budget.tryRestartDelay(0)).toBe(100);
    expect(budget.tryRestartDelay(1000)).toBe(200);
    expect(budget.tryRestartDelay(2000)).toBe(300);
    expect(budget.tryRestartDelay(3000)).toBeNull();
  });

  it("forgets crashes older than the window", () => {
    const budget = new RestartBudget(POLICY);
    for (const t of [0, 1000, 2000]) budget.tryRestartDelay(t);
    // The first two crashes left the window: this is the second recent crash.
    expect(budget.tryRestartDelay(11_500)).toBe(200);
    expect(budget.numRecentCrashes).toBe(2);
  });
});

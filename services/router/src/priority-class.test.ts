import { PriorityClass } from "@kiln/proto";
import { describe, expect, it } from "vitest";
import { BATCH_PRIORITY_OFFSET, batchYieldConfig, schedulerPriority } from "./priority-class";

describe("schedulerPriority", () => {
  it("keeps interactive priorities and pushes batch lines behind every interactive one", () => {
    expect(schedulerPriority(0, PriorityClass.PRIORITY_CLASS_INTERACTIVE)).toBe(0);
    expect(schedulerPriority(5, PriorityClass.PRIORITY_CLASS_INTERACTIVE)).toBe(5);
    expect(schedulerPriority(0, PriorityClass.PRIORITY_CLASS_BATCH)).toBe(BATCH_PRIORITY_OFFSET);
    expect(schedulerPriority(0, PriorityClass.PRIORITY_CLASS_BATCH)).toBeGreaterThan(
      schedulerPriority(1000, PriorityClass.PRIORITY_CLASS_INTERACTIVE),
    );
  });

  it("makes every batch-class request batch work for the scheduler's yielding", () => {
    const config = batchYieldConfig(4);
    expect(config).toEqual({ batchPriority: BATCH_PRIORITY_OFFSET, maxBatchHoldSteps: 4 });
    const batch = schedulerPriority(0, PriorityClass.PRIORITY_CLASS_BATCH);
    const interactive = schedulerPriority(999_999, PriorityClass.PRIORITY_CLASS_INTERACTIVE);
    expect(batch).toBeGreaterThanOrEqual(config.batchPriority!);
    expect(interactive).toBeLessThan(config.batchPriority!);
    expect(batchYieldConfig(0)).toEqual({});
  });
});

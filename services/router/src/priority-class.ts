import { PriorityClass } from "@kiln/proto";

/**
 * Added to a batch request's priority. The scheduler runs lower priority values first, so every
 * interactive request (priority 0 by default, small values when callers set them) is admitted
 * before any batch line; batch lines fill the capacity interactive traffic leaves.
 */
export const BATCH_PRIORITY_OFFSET = 1_000_000;

/** The scheduler priority for a Generate request: its own priority shifted by its class. */
export function schedulerPriority(priority: number, priorityClass: PriorityClass): number {
  return priorityClass === PriorityClass.PRIORITY_CLASS_BATCH
    ? priority + BATCH_PRIORITY_OFFSET
    : priority;
}

/**
 * The scheduler settings that make batch-class prefill yield to interactive prefill
 * (engine-core batch-yield.ts, ADR 0023); none when `maxBatchHoldSteps` is 0.
 */
export function batchYieldConfig(maxBatchHoldSteps: number): {
  batchPriority?: number;
  maxBatchHoldSteps?: number;
} {
  return maxBatchHoldSteps > 0 ? { batchPriority: BATCH_PRIORITY_OFFSET, maxBatchHoldSteps } : {};
}

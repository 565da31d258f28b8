import type { EngineState } from "./engine-state";
import type { Sequence } from "./sequence";

/** Steps in a row batch prefill may be held back before it gets one step (no starvation). */
export const DEFAULT_MAX_BATCH_HOLD_STEPS = 4;

/**
 * Batch work yields to interactive prefill (issue 15). A sequence is batch work when its
 * priority is at least `config.batchPriority`. In a step where a sequence of better priority
 * waits for admission or has prompt left to prefill, batch sequences get no prefill: none is
 * admitted and running ones get no prefill chunk (their decodes go on: they are cheap and keep
 * their blocks busy). So an interactive request's first token is computed in a step no bigger
 * than it would be without the batch. At most `config.maxBatchHoldSteps` steps in a row are
 * held; then one step lets batch prefill through.
 *
 * Decides for the step being planned, and counts held steps in `state.batchYield`.
 */
export function holdsBatchPrefill<S>(state: EngineState<S>): boolean {
  const threshold = state.config.batchPriority;
  if (threshold === undefined) return false;
  const isInteractive = (seq: Sequence<S>) => seq.request.priority < threshold;
  const isPending =
    state.waiting.some(isInteractive) ||
    state.running.some((s) => isInteractive(s) && s.targetLen - s.numComputedTokens > 1);
  const maxHold = state.config.maxBatchHoldSteps ?? DEFAULT_MAX_BATCH_HOLD_STEPS;
  if (!isPending || state.batchYield.numHeldSteps >= maxHold) {
    state.batchYield.numHeldSteps = 0;
    return false;
  }
  state.batchYield.numHeldSteps++;
  return true;
}

/** Whether `seq` is batch work (its priority is at least config.batchPriority). */
export function isBatchSeq<S>(state: EngineState<S>, seq: Sequence<S>): boolean {
  const threshold = state.config.batchPriority;
  return threshold !== undefined && seq.request.priority >= threshold;
}

import type { AddResult, NewRequest, RejectReason, SchedulerConfig } from "./types";

const isCount = (value: number): boolean => Number.isInteger(value) && value >= 0;

/**
 * Why a request can never be served by this scheduler, or null when it can. Pure; O(prompt).
 * Duplicate ids are checked by the scheduler, which knows the unfinished requests.
 */
export function tryRejectRequest<S>(
  request: NewRequest<S>,
  config: SchedulerConfig,
): AddResult | null {
  const promptLen = request.promptTokenIds.length;
  if (promptLen === 0) return reject("EMPTY_PROMPT", "the prompt has no tokens");
  if (promptLen >= config.maxModelLen) {
    return reject(
      "PROMPT_TOO_LONG",
      `the prompt has ${promptLen} tokens; the context length is ${config.maxModelLen} and at least one must be generated`,
    );
  }
  if (!request.promptTokenIds.every(isCount)) {
    return reject("INVALID_PARAMS", "token ids are non-negative integers");
  }
  const n = request.n ?? 1;
  if (!Number.isInteger(n) || n < 1 || n > config.maxNumSeqs) {
    return reject("INVALID_PARAMS", `n must be an integer in [1, ${config.maxNumSeqs}]`);
  }
  const maxTokens = request.maxTokens ?? null;
  const minTokens = request.minTokens ?? 0;
  if (maxTokens !== null && !(isCount(maxTokens) && maxTokens >= 1)) {
    return reject("INVALID_PARAMS", "maxTokens must be a positive integer");
  }
  if (!isCount(minTokens) || (maxTokens !== null && minTokens > maxTokens)) {
    return reject("INVALID_PARAMS", "minTokens must be an integer in [0, maxTokens]");
  }
  if (!Number.isFinite(request.priority ?? 0) || !Number.isFinite(request.arrivalTime ?? 0)) {
    return reject("INVALID_PARAMS", "priority and arrivalTime must be finite");
  }
  const weight = request.tenantWeight ?? 1;
  if (!(Number.isFinite(weight) && weight > 0)) {
    return reject("INVALID_PARAMS", "tenantWeight must be finite and > 0");
  }
  return null;
}

export function reject(reason: RejectReason, message: string): AddResult {
  return { isAccepted: false, reason, message };
}

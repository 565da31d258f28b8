import type { SequenceResult, StepRequest, StepResponse } from "@kiln/proto";

const MAX_LOGPROB = 1e-3;

/**
 * Null when `res` can be the answer to `req` from a worker with a vocabulary of `vocabSize`:
 * the same step id, at most one result per scheduled sequence that samples and none for any
 * other, token ids inside the vocabulary, logprobs that are not NaN and not above 0, and failures only for
 * scheduled or new sequences. Otherwise a message: the worker is broken, and the replica fails.
 */
export function checkStepResponse(
  req: StepRequest,
  res: StepResponse,
  vocabSize: number,
): string | null {
  if (res.stepId !== req.stepId) return `answer to step ${res.stepId}, expected ${req.stepId}`;
  const sampling = new Set(req.sequences.filter((s) => s.doSample).map((s) => s.seqId));
  const seen = new Set<number>();
  for (const result of res.results) {
    if (!sampling.has(result.seqId) || seen.has(result.seqId)) {
      return `unexpected result for sequence ${result.seqId}`;
    }
    seen.add(result.seqId);
    const token = result.token;
    if (!token) return `result for sequence ${result.seqId} has no token`;
    const invalidRun = checkVerifiedRun(req, result);
    if (invalidRun) return invalidRun;
    const tokens = [token, ...token.topLogprobs, ...result.nextTokens];
    for (const t of tokens) {
      if (!Number.isInteger(t.tokenId) || t.tokenId < 0 || t.tokenId >= vocabSize) {
        return `sequence ${result.seqId}: token id ${t.tokenId} is outside the vocabulary`;
      }
      // Rounding may leave log(1) a hair above 0; NaN or a clearly positive value is a bug.
      if (!(t.logprob <= MAX_LOGPROB)) {
        return `sequence ${result.seqId}: logprob ${t.logprob} is not a log-probability`;
      }
    }
  }
  const scheduled = new Set(req.sequences.map((s) => s.seqId));
  for (const failure of res.failures) {
    if (!scheduled.has(failure.seqId)) return `failure for unscheduled sequence ${failure.seqId}`;
  }
  return null;
}

/**
 * Speculative decoding (ADR 0017): a verification's tokens (`token`, then `nextTokens`) are at
 * most drafts + 1, and every one but the last is the draft at its position. A multi-step decode's
 * are at most its steps.
 */
function checkVerifiedRun(req: StepRequest, result: SequenceResult): string | null {
  if (result.nextTokens.length === 0) return null;
  const scheduled = req.sequences.find((s) => s.seqId === result.seqId);
  // Multi-step decode (ADR 0028): one token per step, at most num_steps.
  const numSteps = Math.max(1, scheduled?.numSteps ?? 1);
  if (numSteps > 1) {
    if (result.nextTokens.length < numSteps) return null;
    return `sequence ${result.seqId}: ${result.nextTokens.length + 1} tokens for ${numSteps} steps`;
  }
  const drafts = scheduled?.draftTokenIds ?? [];
  if (result.nextTokens.length > drafts.length) {
    return `sequence ${result.seqId}: ${result.nextTokens.length + 1} tokens for ${drafts.length} drafts`;
  }
  const run = [result.token!, ...result.nextTokens];
  for (let j = 0; j < run.length - 1; j++) {
    if (run[j]!.tokenId !== drafts[j])
      return `sequence ${result.seqId}: token ${j} is not its draft`;
  }
  return null;
}

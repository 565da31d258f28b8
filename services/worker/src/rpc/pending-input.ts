import type { SequenceFailure, StepRequest } from "@kiln/proto";
import { type CheckedStep, dropRefused } from "./check-step";

/**
 * Overlapped steps (ADR 0021): the router planned this step before the previous one returned, so
 * a sequence with `isInputPending` decodes the token this worker sampled for it in that step,
 * which the router did not know yet. Fills it into `tokenIds`. A sequence with no such token
 * (refused or dropped by the previous step, or a step that resets) is refused alone, like a bad
 * sequence (check-step.ts): the router has ended its request already, or ends it now.
 * `lastSampledOf` reads the worker's state before this step changes it.
 */
export function fillPendingInputs(
  req: StepRequest,
  lastSampledOf: (seqId: number) => number | null,
): CheckedStep {
  if (!req.sequences.some((seq) => seq.isInputPending)) return { request: req, failures: [] };
  const failures: SequenceFailure[] = [];
  const sequences = req.sequences.map((seq) => {
    if (!seq.isInputPending) return seq;
    const tokenId = req.reset ? null : lastSampledOf(seq.seqId);
    if (tokenId === null || seq.tokenIds.length > 0) {
      failures.push({
        seqId: seq.seqId,
        message: "the step continues from a token this worker did not sample",
      });
      return seq;
    }
    return { ...seq, tokenIds: [tokenId], isInputPending: false };
  });
  return dropRefused({ ...req, sequences }, failures);
}

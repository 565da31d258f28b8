import { type DecodeSteps, isPlainDecodeInput, type StepInput } from "@kiln/kernels";
import { PoolingType, type StepRequest } from "@kiln/proto";
import { StepDeltaError } from "../sequence-table";

/** A multi-step decode's steps on one sequence (ScheduledSequence.num_steps; 0 counts as 1). */
export function numStepsOf(seq: StepRequest["sequences"][number]): number {
  return Math.max(1, seq.numSteps);
}

/**
 * Checks the multi-step decodes of a step (ADR 0028) before anything changes: each is a decode
 * (one query token, a sample, no drafts, no pooling) whose block table, `numBlocks` long after
 * this step's delta, holds the slots of all its steps within the context length.
 */
export function checkBurst(
  seq: StepRequest["sequences"][number],
  numBlocks: number,
  blockSize: number,
  maxModelLen: number,
): void {
  const numSteps = numStepsOf(seq);
  if (numSteps === 1) return;
  const isDecode =
    seq.tokenIds.length === 1 &&
    seq.doSample &&
    seq.draftTokenIds.length === 0 &&
    seq.pooling === PoolingType.POOLING_TYPE_NONE;
  if (!isDecode) {
    throw new StepDeltaError(`sequence ${seq.seqId}: only a plain decode runs ${numSteps} steps`);
  }
  const lastLen = seq.numComputedTokens + numSteps;
  if (lastLen > maxModelLen || numBlocks * blockSize < lastLen) {
    throw new StepDeltaError(
      `sequence ${seq.seqId}: ${numSteps} steps need ${lastLen} KV slots (${numBlocks} blocks held)`,
    );
  }
}

/**
 * The wire step of a multi-step decode's step `j` (1 for the second step, …): the sequences of
 * `req` with more than j steps whose last token (`lastTokenOf`, null when the sequence did not
 * run) is not one of its stop ids, each decoding that token one position further. Null when
 * none is left. The step carries no delta: blocks, copies, adapters and new sequences all came
 * with the first step.
 */
export function burstStep(
  req: StepRequest,
  j: number,
  lastTokenOf: (seqId: number) => number | null,
): StepRequest | null {
  const sequences: StepRequest["sequences"] = [];
  for (const seq of req.sequences) {
    const last = lastTokenOf(seq.seqId);
    if (numStepsOf(seq) <= j || last === null || seq.stopTokenIds.includes(last)) continue;
    sequences.push({
      ...seq,
      tokenIds: [last],
      numComputedTokens: seq.numComputedTokens + j,
      newBlockIds: [],
      numDroppedBlocks: 0,
      outputIndex: seq.outputIndex + j,
      isInputPending: false,
    });
  }
  if (sequences.length === 0) return null;
  return {
    ...req,
    reset: false,
    newSequences: [],
    removedSeqIds: [],
    blockCopies: [],
    loraLoads: [],
    sequences,
  };
}

/**
 * The backend's `decodeSteps` for a step whose sequences all decode unmasked (the backend then
 * runs the further steps on its thread), or null: no multi-step decode in it, or a sequence that
 * is not a plain decode or has a grammar mask (the worker runs those steps one by one).
 */
export function decodeStepsOf(req: StepRequest, input: StepInput): DecodeSteps | null {
  if (!req.sequences.some((seq) => numStepsOf(seq) > 1) || !isPlainDecodeInput(input)) {
    return null;
  }
  return {
    numSteps: Int32Array.from(req.sequences, numStepsOf),
    stopTokenIds: req.sequences.map((seq) => seq.stopTokenIds),
  };
}

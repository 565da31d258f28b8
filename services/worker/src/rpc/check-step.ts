import { checkSampling, checkTokenIds, type SequenceFailure, type StepRequest } from "@kiln/proto";
import { StepDeltaError } from "../sequence-table";
import { checkBurst } from "./burst";

/** What a Step is checked against: the backend's capacity and this process's identity. */
export interface StepCheckLimits {
  readonly numBlocks: number;
  readonly blockSize: number;
  readonly vocabSize: number;
  readonly maxModelLen: number;
  readonly instanceId: string;
}

/** The worker's state a Step is checked against, read-only. */
export interface StepCheckState {
  /** Step id of the last step accepted since the last reset, or null before any. */
  readonly lastStepId: number | null;
  /** Block-table length of a sequence the worker holds, or null when it holds none. */
  blockTableLenOf(seqId: number): number | null;
}

export interface CheckedStep {
  /** The request without the refused sequences (new, scheduled): what the worker runs. */
  readonly request: StepRequest;
  /** Sequences refused for their own content; the router fails just their requests. */
  readonly failures: readonly SequenceFailure[];
}

const isCount = (n: number) => Number.isInteger(n) && n >= 0;

/**
 * Checks a Step before the worker changes anything. Faults of the step as a whole (a stale
 * instance or step id, a sequence the worker does not hold, duplicate ids, block ids outside
 * the pool, a block table too short, impossible lengths) throw StepDeltaError: the router
 * answers with a reset. Faults of one sequence's content (token ids outside the vocabulary,
 * sampling parameters the sampler cannot use) drop that sequence alone and are reported as
 * failures, so one bad request never takes down the rest of the batch.
 */
export function checkStep(
  req: StepRequest,
  state: StepCheckState,
  limits: StepCheckLimits,
): CheckedStep {
  checkStepHeader(req, state, limits);
  const newIds = new Set<number>();
  for (const seq of req.newSequences) {
    if (newIds.has(seq.seqId)) throw new StepDeltaError(`new sequence ${seq.seqId} is repeated`);
    newIds.add(seq.seqId);
    const len = seq.promptTokenIds.length + seq.outputTokenIds.length;
    if (seq.promptTokenIds.length === 0 || len > limits.maxModelLen) {
      throw new StepDeltaError(`new sequence ${seq.seqId} has ${len} tokens`);
    }
  }
  const removed = new Set(req.removedSeqIds);
  const tableLenOf = (seqId: number): number | null => {
    if (newIds.has(seqId)) return 0;
    if (req.reset || removed.has(seqId)) return null;
    return state.blockTableLenOf(seqId);
  };
  const scheduledIds = new Set<number>();
  for (const seq of req.sequences) {
    if (scheduledIds.has(seq.seqId)) throw new StepDeltaError(`sequence ${seq.seqId} is repeated`);
    scheduledIds.add(seq.seqId);
    const tableLen = tableLenOf(seq.seqId);
    if (tableLen === null) throw new StepDeltaError(`step schedules unknown sequence ${seq.seqId}`);
    checkScheduledShape(seq, tableLen, limits);
  }
  checkBlockIds(req.blockCopies, limits, "block_copies");
  if (req.blockCopies.length % 2 !== 0) {
    throw new StepDeltaError("block_copies must hold (src, dst) pairs");
  }
  return dropRefused(req, contentFailures(req, limits.vocabSize));
}

function checkStepHeader(req: StepRequest, state: StepCheckState, limits: StepCheckLimits): void {
  if (req.instanceId !== "" && req.instanceId !== limits.instanceId) {
    throw new StepDeltaError(
      `step for worker instance ${req.instanceId.slice(0, 64)}; this is ${limits.instanceId}`,
    );
  }
  if (!req.reset && state.lastStepId !== null && req.stepId <= state.lastStepId) {
    throw new StepDeltaError(`stale step ${req.stepId}: step ${state.lastStepId} already ran`);
  }
  // Every sequence holds at least one block: more than numBlocks of them cannot be real.
  const numSeqs = req.sequences.length + req.newSequences.length;
  if (numSeqs > 2 * limits.numBlocks || req.blockCopies.length > 2 * limits.numBlocks) {
    throw new StepDeltaError(`step names ${numSeqs} sequences for ${limits.numBlocks} blocks`);
  }
}

function checkScheduledShape(
  seq: StepRequest["sequences"][number],
  tableLen: number,
  limits: StepCheckLimits,
): void {
  const contextLen = seq.numComputedTokens + seq.tokenIds.length;
  if (seq.tokenIds.length === 0 || !isCount(seq.numComputedTokens)) {
    throw new StepDeltaError(`sequence ${seq.seqId} has no query tokens or a bad computed count`);
  }
  if (contextLen > limits.maxModelLen) {
    throw new StepDeltaError(`sequence ${seq.seqId} reaches ${contextLen} tokens`);
  }
  checkBlockIds(seq.newBlockIds, limits, `sequence ${seq.seqId}`);
  checkDrafts(seq, tableLen);
  const numBlocks = tableLen - seq.numDroppedBlocks + seq.newBlockIds.length;
  if (numBlocks * limits.blockSize < contextLen) {
    throw new StepDeltaError(
      `sequence ${seq.seqId} needs ${contextLen} KV slots but holds ${numBlocks} blocks`,
    );
  }
  checkBurst(seq, numBlocks, limits.blockSize, limits.maxModelLen);
  if (!isCount(seq.outputIndex)) {
    throw new StepDeltaError(`sequence ${seq.seqId} has output index ${seq.outputIndex}`);
  }
}

/** Speculative decoding (ADR 0017): drafts are the sampled tail of the query. */
function checkDrafts(seq: StepRequest["sequences"][number], tableLen: number): void {
  if (!isCount(seq.numDroppedBlocks) || seq.numDroppedBlocks > tableLen) {
    throw new StepDeltaError(`sequence ${seq.seqId} drops ${seq.numDroppedBlocks} blocks`);
  }
  const drafts = seq.draftTokenIds;
  if (drafts.length === 0) return;
  const tail = seq.tokenIds.slice(seq.tokenIds.length - drafts.length);
  if (!seq.doSample || drafts.length >= seq.tokenIds.length || tail.join() !== drafts.join()) {
    throw new StepDeltaError(`sequence ${seq.seqId}: draft tokens are not its sampled query tail`);
  }
}

function checkBlockIds(ids: readonly number[], limits: StepCheckLimits, where: string): void {
  for (const id of ids) {
    if (!isCount(id) || id >= limits.numBlocks) {
      throw new StepDeltaError(`${where}: block id ${id} is outside 0..${limits.numBlocks - 1}`);
    }
  }
}

/** Sequences whose tokens or sampling parameters the backend cannot use. */
function contentFailures(req: StepRequest, vocabSize: number): SequenceFailure[] {
  const failures = new Map<number, string>();
  for (const seq of req.newSequences) {
    const message =
      checkTokenIds(seq.promptTokenIds, vocabSize, "prompt_token_ids") ??
      checkTokenIds(seq.outputTokenIds, vocabSize, "output_token_ids") ??
      checkSampling(seq.sampling, vocabSize);
    if (message) failures.set(seq.seqId, message);
  }
  for (const seq of req.sequences) {
    const message =
      checkTokenIds(seq.tokenIds, vocabSize, "token_ids") ??
      checkTokenIds(seq.bannedTokenIds, vocabSize, "banned_token_ids") ??
      checkTokenIds(seq.stopTokenIds, vocabSize, "stop_token_ids");
    if (message && !failures.has(seq.seqId)) failures.set(seq.seqId, message);
  }
  return [...failures].map(([seqId, message]) => ({ seqId, message }));
}

/** `req` without the refused sequences; those the worker held are removed. */
export function dropRefused(req: StepRequest, failures: readonly SequenceFailure[]): CheckedStep {
  if (failures.length === 0) return { request: req, failures };
  const refused = new Set(failures.map((f) => f.seqId));
  const request: StepRequest = {
    ...req,
    newSequences: req.newSequences.filter((s) => !refused.has(s.seqId)),
    sequences: req.sequences.filter((s) => !refused.has(s.seqId)),
    removedSeqIds: [...req.removedSeqIds, ...refused],
  };
  return { request, failures };
}

import type { ScheduledSeq, StepPlan } from "@kiln/engine-core";
import {
  type NewSequence,
  PoolingType,
  type SamplingParams,
  type ScheduledSequence,
  type StepRequest,
} from "@kiln/proto";
import type { RequestRecord } from "./request-record";

/**
 * A scheduler plan as the worker's StepRequest delta. Sequences the worker has not seen get a
 * NewSequence with the prompt and any tokens generated before a preemption, taken from the
 * router's request records. Sequence i of a request samples with seed + i, so n > 1 gives
 * n distinct, reproducible streams. `instanceId` names the worker process the step is for.
 */
export function planToWire(
  plan: StepPlan<SamplingParams>,
  idToRecord: ReadonlyMap<string, RequestRecord>,
  reset: boolean,
  instanceId = "",
): StepRequest {
  const newSequences: NewSequence[] = [];
  const sequences: ScheduledSequence[] = [];
  for (const seq of plan.seqs) {
    if (seq.isNew) newSequences.push(newSequence(seq, idToRecord));
    sequences.push({
      seqId: seq.seqId,
      tokenIds: [...seq.tokenIds],
      numComputedTokens: seq.contextLen - seq.queryLen,
      newBlockIds: [...seq.newBlockIds],
      doSample: seq.sample !== null,
      outputIndex: seq.sample?.outputIndex ?? 0,
      bannedTokenIds: seq.sample ? [...seq.sample.bannedTokenIds] : [],
      pooling: idToRecord.get(seq.requestId)?.pooling ?? PoolingType.POOLING_TYPE_NONE,
      loraSlot: seq.loraSlot + 1,
      draftTokenIds: [...(seq.sample?.draftTokenIds ?? [])],
      numDroppedBlocks: seq.numDroppedBlocks ?? 0,
      isInputPending: seq.isInputPending === true,
      numSteps: seq.numSteps ?? 1,
      stopTokenIds: [...(seq.stopTokenIds ?? [])],
    });
  }
  return {
    stepId: plan.stepId,
    reset,
    newSequences,
    removedSeqIds: [...plan.finishedSeqIds, ...plan.preemptedSeqIds],
    sequences,
    blockCopies: plan.blockCopies.flatMap((c) => [c.src, c.dst]),
    instanceId,
    loraLoads: plan.loraLoads.map((load) => ({
      slot: load.slot,
      name: load.adapterId,
      path: adapterPath(plan, load.adapterId, idToRecord),
    })),
  };
}

/** The directory of `adapterId`, from a request of the plan that uses it. */
function adapterPath(
  plan: StepPlan<SamplingParams>,
  adapterId: string,
  idToRecord: ReadonlyMap<string, RequestRecord>,
): string {
  for (const seq of plan.seqs) {
    if (seq.adapterId !== adapterId) continue;
    const adapter = idToRecord.get(seq.requestId)?.adapter;
    if (adapter) return adapter.path;
  }
  throw new Error(`plan loads adapter ${adapterId} but no scheduled request names its path`);
}

function newSequence(
  seq: ScheduledSeq<SamplingParams>,
  idToRecord: ReadonlyMap<string, RequestRecord>,
): NewSequence {
  const record = idToRecord.get(seq.requestId);
  if (!record) throw new Error(`plan schedules request ${seq.requestId} the router does not know`);
  return {
    seqId: seq.seqId,
    promptTokenIds: [...record.promptTokenIds],
    outputTokenIds: [...(record.outputTokenIds[seq.seqIndex] ?? [])],
    sampling: { ...record.sampling, seed: (record.sampling.seed + seq.seqIndex) >>> 0 },
    // Each sequence (n > 1 forks too) gets its own matcher; after a preemption the worker
    // replays outputTokenIds into it (ADR 0016).
    grammar: record.grammar,
  };
}

import type { SampledToken as BackendSampledToken, SamplingParams } from "@kiln/kernels";
import type { SampledToken, StepRequest, SamplingParams as WireSamplingParams } from "@kiln/proto";
import type { StepDelta } from "../sequence-table";

/** The wire's sampling parameters as the backend's; proto3 defaults (0) mean "off" for each knob. */
export function samplingFromWire(wire: WireSamplingParams | undefined): SamplingParams {
  const w = wire ?? ({} as Partial<WireSamplingParams>);
  const logitBias = new Map<number, number>();
  for (const [id, bias] of Object.entries(w.logitBias ?? {})) logitBias.set(Number(id), bias);
  return {
    temperature: w.temperature ?? 0,
    topK: w.topK ?? 0,
    topP: w.topP && w.topP > 0 ? w.topP : 1,
    minP: w.minP ?? 0,
    repetitionPenalty: w.repetitionPenalty && w.repetitionPenalty > 0 ? w.repetitionPenalty : 1,
    presencePenalty: w.presencePenalty ?? 0,
    frequencyPenalty: w.frequencyPenalty ?? 0,
    logitBias: logitBias.size > 0 ? logitBias : null,
    seed: w.seed ?? 0,
    numTopLogprobs: w.numTopLogprobs ?? 0,
  };
}

export function stepDeltaFromWire(req: StepRequest): StepDelta {
  return {
    reset: req.reset,
    removedSeqIds: req.removedSeqIds,
    blockCopies: req.blockCopies,
    newSequences: req.newSequences.map((seq) => ({
      seqId: seq.seqId,
      promptTokenIds: seq.promptTokenIds,
      outputTokenIds: seq.outputTokenIds,
      sampling: samplingFromWire(seq.sampling),
    })),
    sequences: req.sequences.map((seq) => ({
      seqId: seq.seqId,
      tokenIds: seq.tokenIds,
      numComputedTokens: seq.numComputedTokens,
      newBlockIds: seq.newBlockIds,
      doSample: seq.doSample,
      outputIndex: seq.outputIndex,
      bannedTokenIds: seq.bannedTokenIds,
      draftTokenIds: seq.draftTokenIds,
      numDroppedBlocks: seq.numDroppedBlocks,
    })),
  };
}

export function sampledToWire(token: BackendSampledToken): SampledToken {
  return {
    tokenId: token.tokenId,
    logprob: token.logprob,
    topLogprobs: token.topLogprobs.map((t) => ({ tokenId: t.tokenId, logprob: t.logprob })),
    embedding: [],
  };
}

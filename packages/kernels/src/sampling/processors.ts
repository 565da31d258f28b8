import type { SampleRequest, SamplingParams } from "../backend";
import type { SamplingScratch } from "./scratch";

/**
 * Logit processors that run before temperature (ADR 0006): logit bias, then vLLM's repetition
 * penalty, then OpenAI's presence and frequency penalties. Each touches only the tokens it names,
 * so the cost is O(bias entries + prompt + output), plus one copy of the row.
 */

/** True when bias or a penalty can change a logit, i.e. when `applyLogitProcessors` is needed. */
export function hasLogitProcessors(params: SamplingParams): boolean {
  return (
    (params.logitBias !== null && params.logitBias.size > 0) ||
    params.repetitionPenalty !== 1 ||
    params.presencePenalty !== 0 ||
    params.frequencyPenalty !== 0
  );
}

/**
 * Copies `logits` (one row, length `scratch.vocabSize`) into `scratch.logits`, applies the
 * processors there and returns `scratch.logits`. Never mutates `logits`. Throws a RangeError
 * when a token id (bias key, prompt or output token) is outside the vocabulary; the scratch's
 * zeroed buffers stay zeroed either way.
 */
export function applyLogitProcessors(
  logits: Float32Array,
  req: SampleRequest,
  scratch: SamplingScratch,
): Float32Array {
  const out = scratch.logits;
  out.set(logits);
  const { logitBias, repetitionPenalty, presencePenalty, frequencyPenalty } = req.params;
  if (logitBias !== null) {
    for (const [tokenId, bias] of logitBias) {
      checkTokenId(tokenId, scratch.vocabSize, "logitBias");
      out[tokenId] = out[tokenId]! + bias;
    }
  }
  if (repetitionPenalty !== 1 || presencePenalty !== 0 || frequencyPenalty !== 0) {
    applyPenalties(out, req, scratch);
  }
  return out;
}

function applyPenalties(out: Float32Array, req: SampleRequest, scratch: SamplingScratch): void {
  const { repetitionPenalty, presencePenalty, frequencyPenalty } = req.params;
  const { counts, flags, vocabSize } = scratch;
  const hasRepetition = repetitionPenalty !== 1;
  // The repetition penalty is the only one that reads the prompt (vLLM semantics).
  const prompt = hasRepetition ? req.promptTokenIds : EMPTY_IDS;
  const output = req.outputTokenIds;
  // Validate before touching counts/flags so a bad id cannot leave them dirty.
  for (let i = 0; i < prompt.length; i++) checkTokenId(prompt[i]!, vocabSize, "promptTokenIds");
  for (let i = 0; i < output.length; i++) checkTokenId(output[i]!, vocabSize, "outputTokenIds");

  for (let i = 0; i < output.length; i++) counts[output[i]!]!++;
  // Each distinct token is penalised once; `flags` marks the ones already done.
  const penalise = (tokenId: number): void => {
    if (flags[tokenId] !== 0) return;
    flags[tokenId] = 1;
    let x = out[tokenId]!;
    if (hasRepetition) x = x > 0 ? x / repetitionPenalty : x * repetitionPenalty;
    const count = counts[tokenId]!;
    if (count > 0) x -= presencePenalty + frequencyPenalty * count;
    out[tokenId] = x;
  };
  for (let i = 0; i < prompt.length; i++) penalise(prompt[i]!);
  for (let i = 0; i < output.length; i++) penalise(output[i]!);

  for (let i = 0; i < prompt.length; i++) flags[prompt[i]!] = 0;
  for (let i = 0; i < output.length; i++) {
    const tokenId = output[i]!;
    flags[tokenId] = 0;
    counts[tokenId] = 0;
  }
}

const EMPTY_IDS: ArrayLike<number> = [];

function checkTokenId(tokenId: number, vocabSize: number, where: string): void {
  if (!Number.isInteger(tokenId) || tokenId < 0 || tokenId >= vocabSize) {
    throw new RangeError(
      `${where}: token id ${tokenId} is outside the vocabulary [0, ${vocabSize})`,
    );
  }
}

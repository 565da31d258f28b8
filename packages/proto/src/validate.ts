import type { SamplingParams } from "./generated/kiln/v1/common";

/**
 * Checks of wire values shared by the router (at admission) and the worker (on every Step), so
 * one bad message is refused with INVALID_ARGUMENT instead of making a backend throw. Each
 * returns null when the value is valid, else a message naming the field. Pure.
 */

/** The most top logprobs a sequence may ask for per token (OpenAI's limit). */
export const MAX_TOP_LOGPROBS = 20;

/** Null when every id is an integer in [0, vocabSize). */
export function checkTokenIds(
  ids: readonly number[],
  vocabSize: number,
  field: string,
): string | null {
  for (const id of ids) {
    if (!Number.isInteger(id) || id < 0 || id >= vocabSize) {
      return `${field}: token id ${id} is outside the vocabulary [0, ${vocabSize})`;
    }
  }
  return null;
}

/**
 * Null when the backend can sample with `sampling` over a vocabulary of `vocabSize`. Proto3
 * zero values mean "off" (topP 0 and repetitionPenalty 0 stand for 1).
 */
export function checkSampling(
  sampling: SamplingParams | undefined,
  vocabSize: number,
): string | null {
  if (sampling === undefined) return null;
  const s = sampling;
  const isFiniteNum = Number.isFinite;
  if (!(isFiniteNum(s.temperature) && s.temperature >= 0)) {
    return `sampling.temperature must be a finite number >= 0, got ${s.temperature}`;
  }
  if (!(Number.isInteger(s.topK) && s.topK >= 0)) {
    return `sampling.top_k must be an integer >= 0, got ${s.topK}`;
  }
  if (!(s.topP >= 0 && s.topP <= 1)) return `sampling.top_p must be in [0, 1], got ${s.topP}`;
  if (!(s.minP >= 0 && s.minP <= 1)) return `sampling.min_p must be in [0, 1], got ${s.minP}`;
  if (!(isFiniteNum(s.repetitionPenalty) && s.repetitionPenalty >= 0)) {
    return `sampling.repetition_penalty must be a finite number >= 0, got ${s.repetitionPenalty}`;
  }
  if (!isFiniteNum(s.presencePenalty) || !isFiniteNum(s.frequencyPenalty)) {
    return "sampling.presence_penalty and frequency_penalty must be finite";
  }
  if (
    !(Number.isInteger(s.numTopLogprobs) && s.numTopLogprobs >= 0) ||
    s.numTopLogprobs > MAX_TOP_LOGPROBS
  ) {
    return `sampling.num_top_logprobs must be an integer in [0, ${MAX_TOP_LOGPROBS}], got ${s.numTopLogprobs}`;
  }
  for (const [id, bias] of Object.entries(s.logitBias ?? {})) {
    const tokenId = Number(id);
    if (!Number.isInteger(tokenId) || tokenId < 0 || tokenId >= vocabSize) {
      return `sampling.logit_bias: token id ${id} is outside the vocabulary [0, ${vocabSize})`;
    }
    if (!isFiniteNum(bias)) return `sampling.logit_bias[${id}] must be finite, got ${bias}`;
  }
  return null;
}

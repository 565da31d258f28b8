import type { SamplingParams } from "./generated/kiln/v1/common";

/**
 * Greedy decoding with every processor off (proto3's zero defaults are not "off" for top_p and
 * repetition_penalty): what internal requests use, such as a guard model's verdict or a draft
 * model's proposals.
 */
export const GREEDY_SAMPLING: SamplingParams = {
  temperature: 0,
  topK: 0,
  topP: 1,
  minP: 0,
  repetitionPenalty: 1,
  presencePenalty: 0,
  frequencyPenalty: 0,
  logitBias: {},
  seed: 0,
  numTopLogprobs: 0,
};

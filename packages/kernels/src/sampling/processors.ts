import type { SampleRequest } from "../backend";
import type { SamplingScratch } from "./scratch";

/**
 * Logit processors that run before temperature (ADR 0006): logit bias and banned tokens (−∞),
 * then vLLM's repetition penalty, then OpenAI's presence and frequency penalties. Each touches
 * only the tokens it names, so the cost is O(bias entries + prompt + output) plus one row copy.
 */

/** True when bias, a ban or a penalty can change a logit: `applyLogitProcessors` is needed. */
export function hasLogitProcessors(req: SampleRequest): boolean {
  const { params } = req;
  return (
    (params.logitBias !== null && params.logitBias.size > 0) ||
    (req.bannedTokenIds !== undefined && req.bannedTokenIds.length > 0) ||
    req.allowedTokenBitmask !== undefined ||
    params.repetitionPenalty !== 1 ||
    params.presencePenalty !== 0 ||
    params.frequencyPenalty !== 0
  );
}

/**
 * Copies `logits` (one row, length `scratch.vocabSize`) into `scratch.logits`, applies the
 * processors there and returns `scratch.logits`. Never mutates `logits`. Throws a RangeError
 * when a token id (bias key, banned, prompt or output token) is outside the vocabulary; the
 * scratch's zeroed buffers stay zeroed either way. Banning every token leaves nothing to sample:
 * greedy then returns token 0 (callers must not do that).
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
  const banned = req.bannedTokenIds;
  if (banned !== undefined) {
    for (let i = 0; i < banned.length; i++) {
      const tokenId = banned[i]!;
      checkTokenId(tokenId, scratch.vocabSize, "bannedTokenIds");
      // −∞ survives every later step: penalties scale or shift it, temperature divides it.
      out[tokenId] = Number.NEGATIVE_INFINITY;
    }
  }
  if (req.allowedTokenBitmask !== undefined) applyTokenBitmask(out, req.allowedTokenBitmask);
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

/** Sets every token whose bit is clear to −∞ (a grammar's disallowed tokens, ADR 0016). */
function applyTokenBitmask(out: Float32Array, bitmask: Int32Array): void {
  if (bitmask.length * 32 < out.length) {
    throw new RangeError(
      `allowedTokenBitmask: ${bitmask.length} words cannot cover ${out.length} tokens`,
    );
  }
  for (let word = 0; word < bitmask.length; word++) {
    const bits = bitmask[word]!;
    if (bits === -1) continue;
    const end = Math.min(out.length, (word + 1) * 32);
    for (let id = word * 32; id < end; id++) {
      if (((bits >>> (id & 31)) & 1) === 0) out[id] = Number.NEGATIVE_INFINITY;
    }
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

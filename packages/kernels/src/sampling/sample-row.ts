import type { SampledToken, SampleRequest, SamplingParams, TokenLogprob } from "../backend";
import { logprobOf, logSumExp, topLogprobs } from "./logprobs";
import { applyLogitProcessors, hasLogitProcessors } from "./processors";
import { uniform01 } from "./rng";
import { createSamplingScratch, type SamplingScratch } from "./scratch";
import { argmax, sampleTemperature } from "./truncation";

const NO_TOP_LOGPROBS: readonly TokenLogprob[] = Object.freeze([]);

/**
 * Samples the next token of one sequence from its row of vocabulary logits (ADR 0006).
 *
 * Order: logit bias, banned tokens and the grammar bitmask → repetition penalty → presence/frequency penalties →
 * greedy argmax when temperature is 0, else temperature → top-k → top-p → min-p → inverse CDF
 * at `uniform01(params.seed, req.outputIndex)`. `logprob` and `topLogprobs` come from
 * log_softmax of the raw `logits`, before any of those steps.
 *
 * `logits` (length = vocabulary size; a subarray view is fine) is never mutated. `scratch` must
 * match the vocabulary size; it is only needed when a processor is set or temperature > 0, and
 * one is allocated for this call when it is needed and not given. Greedy sampling without
 * processors allocates only the returned object. Throws a RangeError on invalid parameters or
 * token ids outside the vocabulary.
 */
export function sampleRow(
  logits: Float32Array,
  req: SampleRequest,
  scratch?: SamplingScratch,
): SampledToken {
  const { params } = req;
  checkSampleRequest(req);
  const vocabSize = logits.length;
  const hasProcessors = hasLogitProcessors(req);
  let work = scratch;
  if (hasProcessors || params.temperature > 0) {
    if (work === undefined) work = createSamplingScratch(vocabSize);
    else if (work.vocabSize !== vocabSize) {
      throw new RangeError(`scratch is for vocab ${work.vocabSize}, row has ${vocabSize} logits`);
    }
  }
  const row = hasProcessors ? applyLogitProcessors(logits, req, work!) : logits;
  const tokenId =
    params.temperature === 0
      ? argmax(row)
      : sampleTemperature(row, params, uniform01(params.seed, req.outputIndex), work!);
  const lse = logSumExp(logits);
  return {
    tokenId,
    logprob: logprobOf(logits, tokenId, lse),
    topLogprobs:
      params.numTopLogprobs > 0 ? topLogprobs(logits, params.numTopLogprobs, lse) : NO_TOP_LOGPROBS,
  };
}

/**
 * `sampleRow` over `reqs.length` consecutive rows of `logits` ([numRows × vocabSize], extra rows
 * ignored), sharing one scratch (the given one, or one allocated on first need). Rows are
 * independent: each result depends only on its own row and request.
 */
export function sampleRows(
  logits: Float32Array,
  vocabSize: number,
  reqs: readonly SampleRequest[],
  scratch?: SamplingScratch,
): SampledToken[] {
  if (logits.length < reqs.length * vocabSize) {
    throw new RangeError(
      `logits hold ${logits.length} values, ${reqs.length} rows of ${vocabSize} need more`,
    );
  }
  let work = scratch;
  const out: SampledToken[] = new Array(reqs.length);
  for (let r = 0; r < reqs.length; r++) {
    const req = reqs[r]!;
    if (work === undefined && (req.params.temperature > 0 || hasLogitProcessors(req))) {
      work = createSamplingScratch(vocabSize);
    }
    out[r] = sampleRow(logits.subarray(r * vocabSize, (r + 1) * vocabSize), req, work);
  }
  return out;
}

/** Misuse (the gateway validates user input first) is a RangeError naming the field. */
export function checkSampleRequest(req: SampleRequest): void {
  const p = req.params;
  check(Number.isInteger(req.outputIndex) && req.outputIndex >= 0, "outputIndex", req.outputIndex);
  check(
    p.temperature >= 0 && p.temperature < Number.POSITIVE_INFINITY,
    "temperature",
    p.temperature,
  );
  check(Number.isInteger(p.topK) && p.topK >= 0, "topK", p.topK);
  check(p.topP >= 0 && p.topP <= 1, "topP", p.topP);
  check(p.minP >= 0 && p.minP <= 1, "minP", p.minP);
  check(
    p.repetitionPenalty > 0 && p.repetitionPenalty < Number.POSITIVE_INFINITY,
    "repetitionPenalty",
    p.repetitionPenalty,
  );
  check(Number.isFinite(p.presencePenalty), "presencePenalty", p.presencePenalty);
  check(Number.isFinite(p.frequencyPenalty), "frequencyPenalty", p.frequencyPenalty);
  check(
    Number.isInteger(p.numTopLogprobs) && p.numTopLogprobs >= 0,
    "numTopLogprobs",
    p.numTopLogprobs,
  );
}

function check(isValid: boolean, field: keyof SamplingParams | "outputIndex", value: number): void {
  if (!isValid) throw new RangeError(`invalid sampling ${field}: ${value}`);
}

import type { SampledToken, SampleRequest, SamplingParams, TokenLogprob } from "../backend";
import { expNonPositive } from "./exp-non-positive";
import { logprobOf, logSumExp, topLogprobs } from "./logprobs";
import { applyLogitProcessors, hasLogitProcessors } from "./processors";
import { uniform01 } from "./rng";
import { sampleRow } from "./sample-row";
import { createSamplingScratch, type SamplingScratch } from "./scratch";
import { selectTopKTopP } from "./top-k-top-p";
import { argmax } from "./truncation";

/** Draws of the RNG stream (seed, outputIndex, drawIndex) that verification uses. */
const ACCEPT_DRAW = 1;
const RESIDUAL_DRAW = 2;
const NO_TOP_LOGPROBS: readonly TokenLogprob[] = Object.freeze([]);

/**
 * Verifies a sequence's draft tokens (speculative decoding, ADR 0017) from the target model's
 * logits at each verified position: `logits` holds k + 1 rows of `vocabSize` ([k + 1, vocab]),
 * row j the distribution after the sequence's last token and drafts d_0 … d_{j−1}, where k =
 * `req.draftTokenIds.length`. Returns 1 … k + 1 tokens: the accepted drafts, then one sampled.
 *
 * Drafts are deterministic proposals (prompt lookup, a draft model's greedy choice), so the draft
 * distribution q is a point mass on d_j and standard speculative sampling (Leviathan et al.
 * 2023, Chen et al. 2023) reduces to: accept d_j with probability min(1, p_j(d_j) / q_j(d_j)) =
 * p_j(d_j); on rejection, sample from the residual norm(max(0, p_j − q_j)), which is p_j without
 * d_j, renormalised; after k acceptances, sample the bonus token from p_k. The output then has
 * exactly the distribution of plain sampling. p_j is the distribution plain sampling draws from:
 * logit bias, banned ids and penalties (counting the drafts before j as generated), then
 * temperature, top-k, top-p, min-p. With temperature 0, p_j is the argmax's point mass, so
 * verification accepts while the draft equals the greedy token: greedy output is unchanged.
 *
 * Randomness is the sequence's counter-based stream (rng.ts): acceptance at output index i draws
 * uniform01(seed, i, 1), the residual uniform01(seed, i, 2), the bonus token the plain draw 0.
 * Logprobs are those of the raw logits of each emitted token's row, as for plain sampling.
 */
export function verifyDraftRows(
  logits: Float32Array,
  vocabSize: number,
  req: SampleRequest,
  scratch?: SamplingScratch,
): SampledToken[] {
  const drafts = req.draftTokenIds ?? [];
  const out: SampledToken[] = [];
  const work = scratch ?? createSamplingScratch(vocabSize);
  for (let j = 0; j <= drafts.length; j++) {
    const row = logits.subarray(j * vocabSize, (j + 1) * vocabSize);
    const rowReq = requestAt(req, j);
    if (j === drafts.length) {
      out.push(sampleRow(row, rowReq, work));
      break;
    }
    const draft = drafts[j]!;
    if (req.params.temperature === 0) {
      const token = sampleRow(row, rowReq, work);
      out.push(token);
      if (token.tokenId !== draft) break;
      continue;
    }
    const processed = hasLogitProcessors(rowReq) ? applyLogitProcessors(row, rowReq, work) : row;
    const dist = keptDistribution(processed, req.params, work);
    const pDraft = weightOf(dist, draft, work) / dist.mass;
    const outputIndex = rowReq.outputIndex;
    if (uniform01(req.params.seed, outputIndex, ACCEPT_DRAW) < pDraft) {
      out.push(tokenOf(row, draft, req.params.numTopLogprobs));
      continue;
    }
    const u = uniform01(req.params.seed, outputIndex, RESIDUAL_DRAW);
    out.push(tokenOf(row, sampleResidual(dist, draft, u, work), req.params.numTopLogprobs));
    break;
  }
  return out;
}

/** The request of verified row j: output index + j, drafts before j counted as generated. */
function requestAt(req: SampleRequest, j: number): SampleRequest {
  const drafts = req.draftTokenIds ?? [];
  if (j === 0) return { ...req, draftTokenIds: undefined };
  const outputTokenIds = Array.from(req.outputTokenIds);
  for (let i = 0; i < j; i++) outputTokenIds.push(drafts[i]!);
  return { ...req, outputIndex: req.outputIndex + j, outputTokenIds, draftTokenIds: undefined };
}

/**
 * The tokens plain sampling keeps (sample-row.ts / truncation.ts, same order and thresholds)
 * with their unnormalised weights in scratch.weights: `list` null means every token, weights
 * dense (0 for dropped ones); otherwise only `list`'s weights are meaningful.
 */
interface KeptDistribution {
  readonly list: Int32Array | null;
  readonly mass: number;
}

function keptDistribution(
  row: Float32Array,
  params: SamplingParams,
  scratch: SamplingScratch,
): KeptDistribution {
  const vocabSize = row.length;
  const maxLogit = row[argmax(row)]!;
  const { weights, candidates } = scratch;
  const invTemperature = 1 / params.temperature;
  if (!Number.isFinite(maxLogit)) {
    // Plain sampling falls back to argmax: a point mass.
    candidates[0] = argmax(row);
    weights[candidates[0]!] = 1;
    return { list: candidates.subarray(0, 1), mass: 1 };
  }
  const hasTopK = params.topK > 0 && params.topK < vocabSize;
  if (!hasTopK && params.topP >= 1) {
    let mass = 0;
    for (let i = 0; i < vocabSize; i++) {
      let w = expNonPositive((row[i]! - maxLogit) * invTemperature);
      if (w < params.minP) w = 0;
      weights[i] = w;
      mass += w;
    }
    return { list: null, mass };
  }
  let numKept = selectTopKTopP(row, maxLogit, invTemperature, params.topK, params.topP, scratch);
  if (params.minP > 0) {
    let numPassing = 0;
    for (let j = 0; j < numKept; j++) {
      const id = candidates[j]!;
      if (weights[id]! >= params.minP) candidates[numPassing++] = id;
    }
    numKept = numPassing;
  }
  const list = candidates.subarray(0, numKept);
  let mass = 0;
  for (let j = 0; j < numKept; j++) mass += weights[list[j]!]!;
  return { list, mass };
}

function weightOf(dist: KeptDistribution, tokenId: number, scratch: SamplingScratch): number {
  if (dist.list === null) return scratch.weights[tokenId]!;
  for (let j = 0; j < dist.list.length; j++) {
    if (dist.list[j] === tokenId) return scratch.weights[tokenId]!;
  }
  return 0;
}

/** Inverse CDF at u of the kept distribution without `excluded` (its mass is below 1 here). */
function sampleResidual(
  dist: KeptDistribution,
  excluded: number,
  u: number,
  scratch: SamplingScratch,
): number {
  const { weights } = scratch;
  const excludedWeight = weightOf(dist, excluded, scratch);
  const target = u * (dist.mass - excludedWeight);
  let cum = 0;
  let last = excluded;
  const numIds = dist.list === null ? weights.length : dist.list.length;
  for (let j = 0; j < numIds; j++) {
    const id = dist.list === null ? j : dist.list[j]!;
    const w = weights[id]!;
    if (id === excluded || w === 0) continue;
    cum += w;
    last = id;
    if (cum > target) return id;
  }
  return last;
}

function tokenOf(row: Float32Array, tokenId: number, numTopLogprobs: number): SampledToken {
  const lse = logSumExp(row);
  return {
    tokenId,
    logprob: logprobOf(row, tokenId, lse),
    topLogprobs: numTopLogprobs > 0 ? topLogprobs(row, numTopLogprobs, lse) : NO_TOP_LOGPROBS,
  };
}

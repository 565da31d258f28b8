import type { SampledToken, SampleRequest } from "../backend";
import { sampleRow } from "./sample-row";
import { createSamplingScratch, type SamplingScratch } from "./scratch";

/**
 * Verifies a sequence's draft tokens (speculative decoding, ADR 0017) from the target model's
 * logits at each verified position: `logits` holds k + 1 rows of `vocabSize` ([k + 1, vocab]),
 * row j the distribution after the sequence's last token and drafts d_0 … d_{j−1}, where k =
 * `req.draftTokenIds.length`. Returns 1 … k + 1 tokens: the accepted drafts, then one sampled.
 *
 * Row j is sampled exactly as plain sampling would sample output index outputIndex + j (the same
 * processors, with the drafts before j counted as generated, and the same RNG draw
 * uniform01(seed, outputIndex + j)); d_j is accepted when that token equals it, and the first
 * token that differs ends the run. Drafts are deterministic proposals (prompt lookup, a draft
 * model's greedy choice), so the draft distribution q_j is a point mass on d_j, and this is
 * standard speculative sampling (Leviathan et al. 2023, Chen et al. 2023) with one uniform
 * shared by the acceptance test and the residual draw: P(accept) = p_j(d_j) = min(1, p_j/q_j),
 * and on rejection the token follows p_j restricted to ≠ d_j, renormalised, i.e.
 * norm(max(0, p_j − q_j)). Because the draws are plain sampling's, a seeded sequence emits the
 * same tokens with or without speculation, whatever was drafted (the reproducibility contract
 * of ADR 0006 holds); greedy (temperature 0) accepts while the draft is the argmax. Logprobs are
 * those of each emitted token's own row, as for plain sampling.
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
    const token = sampleRow(row, requestAt(req, j), work);
    out.push(token);
    if (j === drafts.length || token.tokenId !== drafts[j]) break;
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

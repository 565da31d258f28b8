import type { SampledToken, SampleRequest, StepInput } from "../backend";
import { type SamplingScratch, sampleRow, verifyDraftRows } from "../sampling";

/** Logit rows a sequence's sample needs: 1, or 1 + its drafts for a verification (ADR 0017). */
export function numVerifiedRows(req: SampleRequest): number {
  return 1 + (req.draftTokenIds?.length ?? 0);
}

/**
 * Samples a step whose logits hold, per sequence with a sample, `numVerifiedRows` consecutive
 * rows ([Σ rows, vocabSize]). Returns null when no sequence has drafts (the caller samples one
 * row each, as before); otherwise, aligned with `input.samples`, each sequence's emitted tokens
 * (one for a plain sample, 1 … k + 1 for a verification) or null.
 */
export function sampleStepRows(
  input: StepInput,
  logits: Float32Array,
  vocabSize: number,
  scratch: SamplingScratch,
): (SampledToken[] | null)[] | null {
  if (!input.samples.some((req) => req !== null && numVerifiedRows(req) > 1)) return null;
  const out: (SampledToken[] | null)[] = [];
  let row = 0;
  for (const req of input.samples) {
    if (req === null) {
      out.push(null);
      continue;
    }
    const numRows = numVerifiedRows(req);
    const rows = logits.subarray(row * vocabSize, (row + numRows) * vocabSize);
    out.push(
      numRows === 1
        ? [sampleRow(rows, req, scratch)]
        : verifyDraftRows(rows, vocabSize, req, scratch),
    );
    row += numRows;
  }
  return out;
}

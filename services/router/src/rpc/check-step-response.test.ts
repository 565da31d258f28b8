import { ScheduledSequence, StepRequest } from "@kiln/proto";
import { describe, expect, it } from "vitest";
import { checkStepResponse } from "./check-step-response";

/** Step 7 scheduling sequence 1: a decode of token 5 unless `fields` say otherwise. */
function request(fields: Partial<ScheduledSequence>): StepRequest {
  const seq = ScheduledSequence.fromPartial({ seqId: 1, tokenIds: [5], doSample: true, ...fields });
  return StepRequest.fromPartial({ stepId: 7, sequences: [seq] });
}

const token = (tokenId: number) => ({ tokenId, logprob: -1, topLogprobs: [], embedding: [] });

function answer(tokenIds: number[]) {
  const [first, ...next] = tokenIds.map(token);
  return {
    stepId: 7,
    results: [{ seqId: 1, token: first, nextTokens: next }],
    computeSeconds: 0,
    failures: [],
  };
}

describe("checkStepResponse", () => {
  it("takes 1 … num_steps tokens for a multi-step decode, and no more", () => {
    const req = request({ numSteps: 4 });
    expect(checkStepResponse(req, answer([1]), 16)).toBeNull();
    expect(checkStepResponse(req, answer([1, 2, 3, 4]), 16)).toBeNull();
    expect(checkStepResponse(req, answer([1, 2, 3, 4, 5]), 16)).toMatch(/5 tokens for 4 steps/);
    expect(checkStepResponse(req, answer([1, 2, 99]), 16)).toMatch(/outside the vocabulary/);
  });

  it("takes one token for a single step, and a verification's accepted drafts", () => {
    expect(checkStepResponse(request({}), answer([1, 2]), 16)).toMatch(/2 tokens for 0 drafts/);
    const verify = request({ tokenIds: [5, 8, 9], draftTokenIds: [8, 9] });
    expect(checkStepResponse(verify, answer([8, 9, 3]), 16)).toBeNull();
    expect(checkStepResponse(verify, answer([8, 4, 3]), 16)).toMatch(/not its draft/);
  });
});

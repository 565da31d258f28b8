import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { DEFAULT_SAMPLING, type SampleRequest, type SamplingParams } from "../backend";
import { logSumExp } from "./logprobs";
import { sampleRow, sampleRows } from "./sample-row";
import { createSamplingScratch } from "./scratch";

function request(
  overrides: Partial<SamplingParams> = {},
  rest: Partial<Omit<SampleRequest, "params">> = {},
): SampleRequest {
  return {
    params: { ...DEFAULT_SAMPLING, ...overrides },
    outputIndex: 0,
    promptTokenIds: [],
    outputTokenIds: [],
    ...rest,
  };
}

const rowArb = fc
  .array(fc.float({ min: -10, max: 10, noNaN: true }), { minLength: 1, maxLength: 64 })
  .map((values) => Float32Array.from(values));

describe("greedy", () => {
  it("returns the argmax (lowest id on ties) with its raw logprob", () => {
    fc.assert(
      fc.property(rowArb, (row) => {
        const max = Math.max(...row);
        const { tokenId, logprob, topLogprobs } = sampleRow(row, request());
        expect(tokenId).toBe(row.indexOf(max));
        expect(logprob).toBe(max - logSumExp(row));
        expect(topLogprobs).toEqual([]);
      }),
      { numRuns: 200 },
    );
  });

  it("returns top logprobs that include the greedy token first", () => {
    const row = Float32Array.from([0.5, 3, 1, 3]);
    const result = sampleRow(row, request({ numTopLogprobs: 2 }));
    expect(result.tokenId).toBe(1);
    expect(result.topLogprobs.map((t) => t.tokenId)).toEqual([1, 3]);
    expect(result.topLogprobs[0]!.logprob).toBe(result.logprob);
  });
});

describe("logit processors", () => {
  const row = Float32Array.from([2, 1.5, -0.5, 1.9]);

  it("adds logit bias before anything else, without touching the input", () => {
    const before = Float32Array.from(row);
    const biased = sampleRow(row, request({ logitBias: new Map([[2, 3]]) }));
    expect(biased.tokenId).toBe(2);
    // Logprobs stay those of the raw logits.
    expect(biased.logprob).toBe(row[2]! - logSumExp(row));
    expect(row).toEqual(before);
    expect(sampleRow(row, request({ logitBias: new Map([[0, -100]]) })).tokenId).toBe(3);
  });

  it("never samples a banned token, greedy or not, and keeps its raw logprob", () => {
    const banned = request({ numTopLogprobs: 1 }, { bannedTokenIds: [0] });
    const greedy = sampleRow(row, banned);
    expect(greedy.tokenId).toBe(3);
    expect(greedy.topLogprobs[0]!.tokenId).toBe(0);
    const scratch = createSamplingScratch(row.length);
    for (let seed = 0; seed < 200; seed++) {
      const params = { temperature: 2, seed, repetitionPenalty: 1.3, presencePenalty: -2 };
      const req = request(params, { bannedTokenIds: [0, 3], outputTokenIds: [0, 3] });
      expect([1, 2]).toContain(sampleRow(row, req, scratch).tokenId);
    }
    expect(() => sampleRow(row, request({}, { bannedTokenIds: [4] }))).toThrow(RangeError);
  });

  it("applies the repetition penalty over prompt and output, dividing positives", () => {
    // 2 / 1.2 = 1.67 < 1.9: token 3 wins once token 0 was seen anywhere.
    const params = { repetitionPenalty: 1.2 };
    expect(sampleRow(row, request(params, { promptTokenIds: [0] })).tokenId).toBe(3);
    expect(sampleRow(row, request(params, { outputTokenIds: [0] })).tokenId).toBe(3);
    // Seen many times, penalised once.
    expect(
      sampleRow(row, request({ repetitionPenalty: 1.04 }, { promptTokenIds: [0, 0, 0] })).tokenId,
    ).toBe(0);
  });

  it("multiplies negative logits by the repetition penalty", () => {
    const negative = Float32Array.from([-1, -1.5]);
    const penalise = (repetitionPenalty: number, outputTokenIds: number[]) =>
      sampleRow(negative, request({ repetitionPenalty }, { outputTokenIds })).tokenId;
    expect(penalise(1.4, [0])).toBe(0); // -1.4 > -1.5
    expect(penalise(1.6, [0])).toBe(1); // -1.6 < -1.5
    expect(penalise(0.5, [1])).toBe(1); // a penalty below 1 rewards: -0.75
  });

  it("applies presence once and frequency per occurrence, over output tokens only", () => {
    const twice = { outputTokenIds: [0, 0] };
    expect(sampleRow(row, request({ frequencyPenalty: 0.3 }, twice)).tokenId).toBe(3); // 1.4
    expect(sampleRow(row, request({ frequencyPenalty: 0.04 }, twice)).tokenId).toBe(0); // 1.92
    expect(sampleRow(row, request({ presencePenalty: 0.2 }, twice)).tokenId).toBe(3); // 1.8
    expect(sampleRow(row, request({ presencePenalty: 0.05 }, twice)).tokenId).toBe(0); // 1.95
    expect(sampleRow(row, request({ presencePenalty: 5 }, { promptTokenIds: [0] })).tokenId).toBe(
      0,
    );
    // Negative penalties encourage repetition.
    expect(sampleRow(row, request({ presencePenalty: -3 }, { outputTokenIds: [2] })).tokenId).toBe(
      2,
    );
  });

  it("leaves the scratch clean, also after rejecting a bad token id", () => {
    const scratch = createSamplingScratch(row.length);
    const penalised = request(
      { frequencyPenalty: 1, repetitionPenalty: 2 },
      {
        promptTokenIds: [1, 3],
        outputTokenIds: [0, 0, 2],
      },
    );
    const first = sampleRow(row, penalised, scratch);
    expect(() =>
      sampleRow(row, request({ presencePenalty: 1 }, { outputTokenIds: [1, 9] }), scratch),
    ).toThrow(RangeError);
    expect(() => sampleRow(row, request({ logitBias: new Map([[-1, 1]]) }), scratch)).toThrow(
      RangeError,
    );
    expect(scratch.counts.every((c) => c === 0)).toBe(true);
    expect(scratch.flags.every((f) => f === 0)).toBe(true);
    expect(sampleRow(row, penalised, scratch)).toEqual(first);
  });
});

describe("seeded sampling", () => {
  const row = Float32Array.from([0.3, 1.2, -0.4, 0.9, 0.0, 1.5, -1.0, 0.6]);
  const temperature = 0.8;

  it("matches the softmax over many seeds (chi-square, fixed seeds)", () => {
    const numDraws = 4000;
    const counts = new Array<number>(row.length).fill(0);
    const scratch = createSamplingScratch(row.length);
    for (let seed = 0; seed < numDraws; seed++) {
      counts[sampleRow(row, request({ temperature, seed }), scratch).tokenId]!++;
    }
    const weights = Array.from(row, (x) => Math.exp(x / temperature));
    const total = weights.reduce((s, w) => s + w, 0);
    const chiSquare = weights.reduce((s, w, i) => {
      const expected = (w / total) * numDraws;
      return s + (counts[i]! - expected) ** 2 / expected;
    }, 0);
    // 7 degrees of freedom: 24.3 is the 0.001 critical value.
    expect(chiSquare).toBeLessThan(24.3);
  });

  it("gives the same token for the same (seed, outputIndex) at any batch composition", () => {
    const mine = request({ temperature: 1.5, seed: 99 }, { outputIndex: 5 });
    const alone = sampleRow(row, mine);
    const noise = Float32Array.from(row, (x) => -x);
    for (let numOthers = 0; numOthers < 4; numOthers++) {
      const reqs = Array.from({ length: numOthers }, (_, i) =>
        request({ temperature: 1, seed: i }, { outputIndex: i }),
      );
      reqs.splice(numOthers % 2, 0, mine);
      const logits = new Float32Array(reqs.length * row.length);
      for (let i = 0; i < reqs.length; i++) {
        logits.set(reqs[i] === mine ? row : noise, i * row.length);
      }
      expect(sampleRows(logits, row.length, reqs)[reqs.indexOf(mine)]).toEqual(alone);
    }
  });

  it("draws independently at different output indices", () => {
    const tokens = Array.from(
      { length: 64 },
      (_, outputIndex) =>
        sampleRow(row, request({ temperature: 5, seed: 1 }, { outputIndex })).tokenId,
    );
    // A flat distribution over 8 tokens: 64 draws visit all of them, not one repeated token.
    expect(new Set(tokens).size).toBe(row.length);
  });
});

describe("sampleRows and validation", () => {
  it("equals sampleRow on each row", () => {
    const vocabSize = 5;
    const logits = Float32Array.from({ length: 3 * vocabSize }, (_, i) => Math.sin(i * 1.7) * 3);
    const reqs = [
      request(),
      request({ temperature: 0.7, topK: 2, seed: 3, numTopLogprobs: 3 }),
      request({ temperature: 1.1, presencePenalty: 0.5 }, { outputTokenIds: [4], outputIndex: 2 }),
    ];
    const rows = sampleRows(logits, vocabSize, reqs);
    reqs.forEach((r, i) => {
      expect(rows[i]).toEqual(sampleRow(logits.slice(i * vocabSize, (i + 1) * vocabSize), r));
    });
    expect(() => sampleRows(logits, vocabSize + 1, reqs)).toThrow(RangeError);
  });

  it.each<[string, Partial<SamplingParams>]>([
    ["temperature", { temperature: -1 }],
    ["topK", { topK: 1.5 }],
    ["topP", { topP: 1.5 }],
    ["minP", { minP: -0.1 }],
    ["repetitionPenalty", { repetitionPenalty: 0 }],
    ["numTopLogprobs", { numTopLogprobs: -1 }],
  ])("rejects an invalid %s", (field, overrides) => {
    expect(() => sampleRow(Float32Array.from([1, 2]), request(overrides))).toThrow(field);
  });

  it("rejects a scratch of the wrong vocabulary size", () => {
    const row = Float32Array.from([1, 2]);
    expect(() => sampleRow(row, request({ temperature: 1 }), createSamplingScratch(3))).toThrow(
      RangeError,
    );
  });
});

import { loadGoldenCases, STORIES_DIR } from "@kiln/test-support";
import { beforeAll, describe, expect, it } from "vitest";
import { DEFAULT_SAMPLING, type SampleRequest, type SamplingParams } from "../src/backend";
import { type CpuModelRunner, loadCpuModelRunner } from "../src/cpu/model-runner";
import { sampleRow } from "../src/sampling";
import { buildStepInput, type ScheduledChunk } from "./helpers/step-driver";

/**
 * Speculative decoding's verification (ADR 0017) on stories260K: greedy verification reproduces
 * the golden continuation, and rejection sampling at temperature > 0 has exactly the output
 * distribution of plain sampling (chi-square goodness of fit against the model's probabilities).
 */
const BS = 16;
const NUM_BLOCKS = 2048;
let runner: CpuModelRunner;
const golden = loadGoldenCases()[0]!;

beforeAll(async () => {
  runner = await loadCpuModelRunner(STORIES_DIR, { numBlocks: NUM_BLOCKS, blockSize: BS });
});

function request(params: SamplingParams, drafts: readonly number[], seed = 0): SampleRequest {
  return {
    params: { ...params, seed },
    outputIndex: 0,
    promptTokenIds: golden.prompt_ids,
    outputTokenIds: [],
    draftTokenIds: drafts,
  };
}

/** One step: each sequence prefills the prompt plus its drafts in its own blocks. */
function verifyBatch(reqs: readonly SampleRequest[]) {
  const chunks: ScheduledChunk[] = reqs.map((sample, i) => {
    const tokenIds = [...golden.prompt_ids, ...(sample.draftTokenIds as number[])];
    const numBlocks = Math.ceil(tokenIds.length / BS);
    const blocks = Array.from({ length: numBlocks }, (_, b) => i * numBlocks + b);
    return { tokenIds, startPos: 0, blocks, sample };
  });
  const out = runner.step(buildStepInput(chunks, BS));
  return out.verified ?? out.sampled.map((t) => (t === null ? null : [t]));
}

/** Raw logits after `tokens` (a plain prefill). */
function logitsAfter(tokens: readonly number[]): Float32Array {
  const blocks = Array.from({ length: Math.ceil(tokens.length / BS) }, (_, b) => b);
  const sample = { ...request(DEFAULT_SAMPLING, []), draftTokenIds: undefined };
  const input = buildStepInput([{ tokenIds: tokens, startPos: 0, blocks, sample }], BS);
  return runner.step({ ...input, returnLogits: true }).logits!;
}

function softmax(logits: Float32Array, temperature: number): Float64Array {
  let max = Number.NEGATIVE_INFINITY;
  for (const v of logits) max = Math.max(max, v);
  const p = new Float64Array(logits.length);
  let sum = 0;
  for (let i = 0; i < logits.length; i++) sum += p[i] = Math.exp((logits[i]! - max) / temperature);
  for (let i = 0; i < p.length; i++) p[i]! /= sum;
  return p;
}

/**
 * Pearson's chi-square statistic of `counts` against `probs` (bins with expected < 5 pooled)
 * and the 0.999 quantile of its distribution (Wilson–Hilferty), for a test at α = 0.001.
 */
function chiSquare(counts: ArrayLike<number>, probs: Float64Array, n: number) {
  let stat = 0;
  let numBins = 0;
  let pooledObserved = 0;
  let pooledExpected = 0;
  for (let i = 0; i < probs.length; i++) {
    const expected = n * probs[i]!;
    if (expected < 5) {
      pooledObserved += counts[i] ?? 0;
      pooledExpected += expected;
      continue;
    }
    stat += ((counts[i] ?? 0) - expected) ** 2 / expected;
    numBins++;
  }
  if (pooledExpected > 0) {
    stat += (pooledObserved - pooledExpected) ** 2 / Math.max(pooledExpected, 1e-9);
    numBins++;
  }
  const df = numBins - 1;
  const z = 3.09;
  const critical = df * (1 - 2 / (9 * df) + z * Math.sqrt(2 / (9 * df))) ** 3;
  return { stat, df, critical };
}

describe("draft verification on stories260K", () => {
  it("greedy: accepts the golden drafts, replaces the first wrong one by the golden token", () => {
    const g = golden.greedy_ids;
    const [right, wrong] = verifyBatch([
      request(DEFAULT_SAMPLING, g.slice(0, 4)),
      request(DEFAULT_SAMPLING, [g[0]!, g[1]!, (g[2]! + 1) % 512, g[3]!]),
    ]);
    expect(right!.map((t) => t.tokenId)).toEqual(g.slice(0, 5));
    expect(wrong!.map((t) => t.tokenId)).toEqual(g.slice(0, 3));
  });

  it("rejection sampling: first and second tokens follow plain sampling's distribution", () => {
    const T = 1.5;
    const params: SamplingParams = { ...DEFAULT_SAMPLING, temperature: T };
    const p0 = softmax(logitsAfter(golden.prompt_ids), T);
    // A draft of moderate probability, so both acceptance and rejection happen often.
    const order = [...p0.keys()].sort((a, b) => p0[b]! - p0[a]!);
    const d0 = order[1]!;
    const row1 = new Float32Array(logitsAfter([...golden.prompt_ids, d0]));
    const p1 = softmax(row1, T);
    const d1 = [...p1.keys()].sort((a, b) => p1[b]! - p1[a]!)[0]!;
    const N = 6000;
    const first = new Int32Array(512);
    const second = new Int32Array(512);
    let numSecond = 0;
    let numAccepted = 0;
    const row0 = new Float32Array(logitsAfter(golden.prompt_ids));
    for (let from = 0; from < N; from += 500) {
      const reqs = Array.from({ length: 500 }, (_, i) => request(params, [d0, d1], from + i));
      const verified = verifyBatch(reqs);
      verified.forEach((tokens, i) => {
        const emitted = tokens!.map((t) => t.tokenId);
        first[emitted[0]!]!++;
        // Seeded reproducibility: each emitted token is the one plain sampling draws there.
        expect(emitted[0]).toBe(sampleRow(row0, reqs[i]!).tokenId);
        if (emitted[0] === d0) {
          numAccepted++;
          second[emitted[1]!]!++;
          numSecond++;
          const plain1 = { ...reqs[i]!, outputIndex: 1, outputTokenIds: [d0] };
          expect(emitted[1]).toBe(sampleRow(row1, plain1).tokenId);
        } else {
          expect(emitted).toHaveLength(1);
        }
      });
    }
    const chiFirst = chiSquare(first, p0, N);
    const chiSecond = chiSquare(second, p1, numSecond);
    expect(chiFirst.stat).toBeLessThan(chiFirst.critical);
    expect(chiSecond.stat).toBeLessThan(chiSecond.critical);
    // The acceptance rate of d0 is its probability (min(1, p/q) with q a point mass).
    expect(Math.abs(numAccepted / N - p0[d0]!)).toBeLessThan(4 * Math.sqrt(p0[d0]! / N));
    // The test has power: counting d0 1.3 times as often as the model would be caught.
    const biased = Int32Array.from(first, (c, id) => (id === d0 ? Math.round(c * 1.3) : c));
    expect(chiSquare(biased, p0, N).stat).toBeGreaterThan(chiFirst.critical);
  });
});

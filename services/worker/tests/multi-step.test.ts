/**
 * Multi-step decode (ADR 0028) on a real worker process and model: one Step whose sequence has
 * num_steps = k must answer exactly the tokens (and logprobs) of k single decode steps, for
 * greedy and for seeded sampling with penalties; it stops after a stop id; and the worker refuses
 * a burst it cannot run (a prefill chunk, a block table too short for every step).
 */
import { status } from "@grpc/grpc-js";
import {
  type GrammarSpec,
  type SampledToken,
  type SamplingParams,
  ScheduledSequence,
  StepRequest,
  type WorkerInfo,
} from "@kiln/proto";
import { loadGoldenCases } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  sendStep,
  startWorkerUnderTest,
  stopWorkerUnderTest,
  type WorkerUnderTest,
} from "./worker-process";

const golden = loadGoldenCases();
const NUM_STEPS = 6;

let worker: WorkerUnderTest;
let info: WorkerInfo;
let nextStepId = 1;
let nextSeqId = 1;

beforeAll(async () => {
  worker = await startWorkerUnderTest();
  info = worker.info;
}, 60_000);

afterAll(() => stopWorkerUnderTest(worker));

function step(partial: Parameters<typeof StepRequest.fromPartial>[0]) {
  const stepId = nextStepId++;
  const req = StepRequest.fromPartial({ stepId, instanceId: info.instanceId, ...partial });
  return sendStep(worker.client, req);
}

/** A decode step's sequence (it samples), as the router would schedule it. */
const scheduled = (fields: Partial<ScheduledSequence>) =>
  ScheduledSequence.fromPartial({ doSample: true, numSteps: 1, ...fields });

/** The grammar new sequences get (undefined: none); set by the grammar test. */
let grammar: GrammarSpec | undefined;

/** Blocks for a sequence of `numTokens`, from a fresh range per sequence (the pool is large). */
let nextBlock = 0;
function blocksFor(numTokens: number): number[] {
  const n = Math.ceil(numTokens / info.blockSize);
  const blocks = Array.from({ length: n }, (_, i) => nextBlock + i);
  nextBlock += n;
  if (nextBlock > info.numBlocks) throw new Error("test ran out of blocks");
  return blocks;
}

/** Prefills `prompt` as a new sequence; returns its id and first token. */
async function prefill(prompt: number[], sampling: Partial<SamplingParams>, blocks: number[]) {
  const seqId = nextSeqId++;
  const newSequences = [{ seqId, promptTokenIds: prompt, outputTokenIds: [], sampling, grammar }];
  const sequences = [scheduled({ seqId, tokenIds: prompt, newBlockIds: blocks })];
  const { code, res } = await step({ newSequences, sequences });
  expect(code).toBeNull();
  return { seqId, first: res!.results[0]!.token! };
}

/** The tokens after the first: `k` single decode steps. */
async function singleSteps(prompt: number[], sampling: Partial<SamplingParams>, k: number) {
  const { seqId, first } = await prefill(prompt, sampling, blocksFor(prompt.length + k));
  const tokens: SampledToken[] = [first];
  for (let j = 0; j < k; j++) {
    const seq = scheduled({
      seqId,
      tokenIds: [tokens.at(-1)!.tokenId],
      numComputedTokens: prompt.length + j,
      outputIndex: j + 1,
    });
    const { code, res } = await step({ sequences: [seq] });
    expect(code).toBeNull();
    tokens.push(res!.results[0]!.token!);
  }
  return tokens;
}

/** The tokens after the first: one Step of `k` steps (stopping on `stopTokenIds`). */
async function burst(
  prompt: number[],
  sampling: Partial<SamplingParams>,
  k: number,
  stopTokenIds: number[] = [],
) {
  const { seqId, first } = await prefill(prompt, sampling, blocksFor(prompt.length + k));
  const seq = scheduled({
    seqId,
    tokenIds: [first.tokenId],
    numComputedTokens: prompt.length,
    outputIndex: 1,
    numSteps: k,
    stopTokenIds,
  });
  const { code, res } = await step({ sequences: [seq] });
  expect(code).toBeNull();
  const result = res!.results[0]!;
  return [first, result.token!, ...result.nextTokens];
}

/** Sampling setups and the steps of the burst compared against single steps. */
const SAMPLINGS: [string, Partial<SamplingParams>, number][] = [
  ["greedy", {}, NUM_STEPS],
  [
    "seeded sampling with penalties and logprobs",
    {
      temperature: 0.9,
      topP: 0.9,
      seed: 11,
      repetitionPenalty: 1.3,
      frequencyPenalty: 0.5,
      numTopLogprobs: 3,
    },
    NUM_STEPS,
  ],
  // Long enough that greedy would repeat a token: each step must see the tokens before it.
  ["greedy with presence and frequency penalties", { presencePenalty: 5, frequencyPenalty: 5 }, 24],
];

describe("a multi-step decode on the worker", () => {
  it.each(SAMPLINGS)("answers the tokens of single steps (%s)", async (_, sampling, k) => {
    // Case 1's greedy continuation repeats a token at index 8 (the penalties have work).
    const prompt = golden[1]!.prompt_ids;
    const single = await singleSteps(prompt, sampling, k);
    const burstTokens = await burst(prompt, sampling, k);
    expect(burstTokens).toHaveLength(k + 1);
    expect(burstTokens).toEqual(single);
  });

  it("applies penalties to the tokens of the burst's earlier steps", async () => {
    // The penalised greedy run differs from the plain one: the check above can fail.
    const [, sampling, k] = SAMPLINGS[2]!;
    const c = golden[1]!;
    const tokens = (await burst(c.prompt_ids, sampling, k)).map((t) => t.tokenId);
    expect(c.greedy_ids.length).toBeGreaterThan(k);
    expect(tokens).not.toEqual(c.greedy_ids.slice(0, k + 1));
  });

  it("reproduces a golden continuation in bursts", async () => {
    const c = golden[1]!;
    const tokens = await burst(c.prompt_ids, {}, c.greedy_ids.length - 1);
    expect(tokens.map((t) => t.tokenId)).toEqual(c.greedy_ids);
  });

  it("masks every step of a sequence with a grammar as single steps do", async () => {
    // Masked steps run one by one on the worker's main thread (each mask needs the token before).
    // Digits only: never what the model writes unconstrained, so an unmasked step shows.
    grammar = { kind: "regex", text: "[0-9]{10,60}", strict: false };
    try {
      const prompt = golden[1]!.prompt_ids;
      const single = await singleSteps(prompt, {}, NUM_STEPS);
      const burstTokens = await burst(prompt, {}, NUM_STEPS);
      expect(burstTokens).toEqual(single);
      expect(single.map((t) => t.tokenId)).not.toEqual(golden[1]!.greedy_ids.slice(0, 7));
    } finally {
      grammar = undefined;
    }
  });

  it("stops after sampling one of its stop ids", async () => {
    const c = golden[0]!;
    const stopId = c.greedy_ids[3]!;
    const firstAt = c.greedy_ids.indexOf(stopId, 1);
    const tokens = await burst(c.prompt_ids, {}, NUM_STEPS, [stopId]);
    expect(tokens.map((t) => t.tokenId)).toEqual(c.greedy_ids.slice(0, firstAt + 1));
    expect(tokens.length).toBeLessThan(NUM_STEPS + 1);
  });

  it("refuses a burst on a prefill chunk or without the slots of every step", async () => {
    const prompt = golden[0]!.prompt_ids;
    const seqId = nextSeqId++;
    const newSequences = [{ seqId, promptTokenIds: prompt, outputTokenIds: [] }];
    const blocks = blocksFor(prompt.length);
    const chunk = scheduled({ seqId, tokenIds: prompt, newBlockIds: blocks, numSteps: 2 });
    expect((await step({ newSequences, sequences: [chunk] })).code).toBe(status.INVALID_ARGUMENT);
    // The table holds the prompt's blocks only; the burst would run past them.
    const numSteps = blocks.length * info.blockSize - prompt.length + 2;
    const decode = scheduled({
      seqId,
      tokenIds: [prompt.at(-1)!],
      numComputedTokens: prompt.length - 1,
      newBlockIds: blocks,
      numSteps,
    });
    const refused = await step({ reset: true, newSequences, sequences: [decode] });
    expect(refused.code).toBe(status.INVALID_ARGUMENT);
    const fitting = { ...decode, numSteps: numSteps - 1 };
    const ran = await step({ reset: true, newSequences, sequences: [fitting] });
    expect(ran.code).toBeNull();
    expect(ran.res!.results[0]!.nextTokens).toHaveLength(numSteps - 2);
  });
});

import { credentials, Metadata, makeGenericClientConstructor } from "@grpc/grpc-js";
import {
  PoolingType,
  type ScheduledSequence,
  StepRequest,
  type WorkerClient,
  type WorkerInfo,
} from "@kiln/proto";
import { loadGoldenCases } from "@kiln/test-support";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  sendStep,
  startWorkerUnderTest,
  stopWorkerUnderTest,
  type WorkerUnderTest,
} from "./worker-process";

const golden = loadGoldenCases();
const GOLDEN_SEQ_ID = 1_000_000;

let worker: WorkerUnderTest;
let client: WorkerClient;
let info: WorkerInfo;

beforeAll(async () => {
  worker = await startWorkerUnderTest();
  ({ client, info } = worker);
}, 60_000);

afterAll(() => stopWorkerUnderTest(worker));

const step = (req: StepRequest) => sendStep(client, req);

function health(): Promise<boolean> {
  return new Promise((resolve) => {
    client.health({}, new Metadata(), { deadline: Date.now() + 2000 }, (err, res) =>
      resolve(!err && res.serving),
    );
  });
}

/**
 * Drives one greedy sequence through the worker step by step, as the router would, on blocks
 * [0, numGoldenBlocks). `between` runs after the prefill and after every decode step (the fuzz
 * goes there) and returns the next step id to use.
 */
async function runGolden(
  caseIndex: number,
  numGoldenBlocks: number,
  between: (nextStepId: number) => Promise<number>,
): Promise<number[]> {
  const c = golden[caseIndex]!;
  const prompt = [...c.prompt_ids];
  const blocks = Array.from({ length: numGoldenBlocks }, (_, i) => i);
  const output: number[] = [];
  let stepId = 1;
  let scheduled: ScheduledSequence = {
    seqId: GOLDEN_SEQ_ID,
    tokenIds: prompt,
    numComputedTokens: 0,
    newBlockIds: blocks,
    doSample: true,
    outputIndex: 0,
    bannedTokenIds: [],
    pooling: PoolingType.POOLING_TYPE_NONE,
    loraSlot: 0,
    draftTokenIds: [],
    numDroppedBlocks: 0,
    isInputPending: false,
    numSteps: 1,
    stopTokenIds: [],
  };
  const newSequences = [
    { seqId: GOLDEN_SEQ_ID, promptTokenIds: prompt, outputTokenIds: [], sampling: undefined },
  ];
  let req = StepRequest.fromPartial({ stepId, reset: true, newSequences, sequences: [scheduled] });
  for (let i = 0; i < c.greedy_ids.length; i++) {
    const { code, res } = await step(req);
    expect(code, `golden step ${i}`).toBeNull();
    const token = res!.results.find((r) => r.seqId === GOLDEN_SEQ_ID)!.token!;
    output.push(token.tokenId);
    stepId = await between(stepId + 1);
    scheduled = {
      ...scheduled,
      tokenIds: [token.tokenId],
      numComputedTokens: prompt.length + i,
      newBlockIds: [],
      outputIndex: i + 1,
    };
    req = StepRequest.fromPartial({ stepId, instanceId: info.instanceId, sequences: [scheduled] });
  }
  return output;
}

const STALE = "a-stale-instance";

/**
 * Steps that mostly break the worker's rules (unknown, repeated or the golden sequence's ids,
 * block ids outside the pool or the golden blocks, tables too short, bad tokens and sampling,
 * stale instance or step ids) and sometimes are valid. Never `reset`, never removes the golden
 * sequence and never writes its blocks with a valid step: whatever they are, the golden sequence
 * must come out token for token.
 */
function fuzzStep(numBlocks: number, firstFreeBlock: number) {
  const blockId = fc.oneof(
    fc.integer({ min: firstFreeBlock, max: numBlocks - 1 }),
    fc.integer({ min: -3, max: -1 }),
    fc.integer({ min: numBlocks, max: numBlocks + 3 }),
    fc.constant(2 ** 31 - 1),
  );
  const tokenId = fc.oneof(
    { weight: 4, arbitrary: fc.integer({ min: 0, max: 511 }) },
    fc.integer({ min: -2, max: 600 }),
  );
  const seqId = fc.integer({ min: 1, max: 4 });
  const sampling = fc.option(
    fc.record({
      temperature: fc.oneof(fc.constant(0), fc.float()),
      topK: fc.integer({ min: -1, max: 600 }),
      topP: fc.oneof(fc.constant(1), fc.float()),
      minP: fc.oneof(fc.constant(0), fc.float()),
      repetitionPenalty: fc.oneof(fc.constant(1), fc.float()),
      presencePenalty: fc.float(),
      frequencyPenalty: fc.float(),
      logitBias: fc.constant({}),
      seed: fc.nat(),
      numTopLogprobs: fc.integer({ min: -1, max: 30 }),
    }),
    { nil: undefined },
  );
  return fc.record({
    stepOffset: fc.integer({ min: -2, max: 3 }),
    instance: fc.constantFrom("", "current", STALE),
    newSequences: fc.array(
      fc.record({
        seqId,
        promptTokenIds: fc.array(tokenId, { maxLength: 20 }),
        outputTokenIds: fc.array(tokenId, { maxLength: 3 }),
        sampling,
      }),
      { maxLength: 3 },
    ),
    removedSeqIds: fc.array(seqId, { maxLength: 2 }),
    sequences: fc.array(
      fc.record({
        seqId: fc.oneof({ weight: 4, arbitrary: seqId }, fc.constant(GOLDEN_SEQ_ID)),
        tokenIds: fc.array(tokenId, { maxLength: 20 }),
        numComputedTokens: fc.integer({ min: -1, max: 40 }),
        newBlockIds: fc.array(blockId, { maxLength: 3 }),
        doSample: fc.boolean(),
        outputIndex: fc.integer({ min: -1, max: 3 }),
        bannedTokenIds: fc.array(tokenId, { maxLength: 2 }),
      }),
      { maxLength: 3 },
    ),
    blockCopies: fc.array(blockId, { maxLength: 3 }),
  });
}

type FuzzStep = ReturnType<typeof fuzzStep> extends fc.Arbitrary<infer T> ? T : never;

function toRequest(f: FuzzStep, stepId: number): StepRequest {
  const instanceId = f.instance === "current" ? info.instanceId : f.instance;
  // A valid step naming the golden sequence would be a real decode of it: keep those invalid.
  const sequences = f.sequences.map((s) =>
    s.seqId === GOLDEN_SEQ_ID ? { ...s, numComputedTokens: -1 } : s,
  );
  return StepRequest.fromPartial({ ...f, stepId, instanceId, sequences, reset: false });
}

describe("fuzzed Step messages to a real worker (fast-check)", () => {
  it("are refused or run without touching other sequences; the worker stays healthy", async () => {
    const numGoldenBlocks = Math.ceil(
      (golden[0]!.prompt_ids.length + golden[0]!.greedy_ids.length) / info.blockSize,
    );
    const samples = fc.sample(fuzzStep(info.numBlocks, numGoldenBlocks), {
      numRuns: 160,
      seed: 19,
    });
    const codes = new Map<string, number>();
    let next = 0;
    const output = await runGolden(0, numGoldenBlocks, async (nextStepId) => {
      let stepId = nextStepId;
      for (let k = 0; k < 3 && next < samples.length; k++) {
        const f = samples[next++]!;
        const usedId =
          f.stepOffset <= 0 ? Math.max(0, stepId - 2 + f.stepOffset) : stepId + f.stepOffset;
        const { code, details } = await step(toRequest(f, usedId));
        codes.set(String(code), (codes.get(String(code)) ?? 0) + 1);
        expect(
          code === null || code === 3,
          `step code ${code}: ${details} ${JSON.stringify(f)}`,
        ).toBe(true);
        if (code === null) stepId = Math.max(stepId, usedId + 1);
        expect(await health()).toBe(true);
      }
      return stepId;
    });
    expect(output).toEqual(golden[0]!.greedy_ids);
    // Both kinds happened: refused steps (INVALID_ARGUMENT = 3) and steps that ran.
    expect(codes.get("3")).toBeGreaterThan(10);
    expect(codes.get("null")).toBeGreaterThan(0);
  }, 120_000);

  it("refuses raw bytes that are no StepRequest and still serves a golden run", async () => {
    const RawWorker = makeGenericClientConstructor({}, "RawWorker");
    const raw = new RawWorker(`127.0.0.1:${worker.process.port}`, credentials.createInsecure());
    await fc.assert(
      fc.asyncProperty(fc.uint8Array({ minLength: 1, maxLength: 128 }), async (bytes) => {
        const code = await new Promise<number | null>((resolve) => {
          raw.makeUnaryRequest(
            "/kiln.v1.Worker/Step",
            (b: Buffer) => b,
            (b: Buffer) => b,
            Buffer.from(bytes),
            new Metadata(),
            { deadline: Date.now() + 5000 },
            (err) => resolve(err ? err.code : null),
          );
        });
        // Bytes that happen to decode are a (mostly empty) step: refused or harmless.
        expect(code === null || code === 3 || code === 13).toBe(true);
      }),
      { numRuns: 80, seed: 19 },
    );
    raw.close();
    expect(await health()).toBe(true);
    const output = await runGolden(2, 8, async (stepId) => stepId);
    expect(output).toEqual(golden[2]!.greedy_ids);
  }, 60_000);
});

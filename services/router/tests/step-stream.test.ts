import { availableParallelism } from "node:os";
import { Metadata, status } from "@grpc/grpc-js";
import { type ScheduledSequence, StepRequest, type StepResponse } from "@kiln/proto";
import { loadGoldenCases, STORIES_DIR } from "@kiln/test-support";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WorkerConnection } from "../src/worker-connection";
import { type ServiceProcess, startService } from "./processes";

/**
 * The router's steps on the worker's StepStream (one long-lived gRPC stream instead of a Step
 * call each): answers in order, a failed step rejects with the worker's status and the next
 * step opens a new stream, a missed deadline rejects, and traced steps keep the unary call.
 */
const golden = loadGoldenCases()[0]!;
let worker: ServiceProcess;
let connection: WorkerConnection;

beforeAll(async () => {
  worker = await startService("worker", ["--model", STORIES_DIR, "--kv-cache-memory", "2MiB"]);
  connection = new WorkerConnection(`127.0.0.1:${worker.port}`);
}, 60_000);

afterAll(async () => {
  connection?.close();
  await worker?.stop();
});

function scheduled(tokenIds: number[], numComputedTokens: number): Partial<ScheduledSequence> {
  return {
    seqId: 1,
    tokenIds,
    numComputedTokens,
    newBlockIds: numComputedTokens === 0 ? [0, 1, 2, 3, 4, 5, 6, 7] : [],
    doSample: true,
    outputIndex: numComputedTokens === 0 ? 0 : numComputedTokens - golden.prompt_ids.length + 1,
  };
}

/** Step `stepId`: resets the worker and prefills `prompt` as sequence 1. */
function prefillRequest(prompt: number[], instanceId?: string, stepId = 1): StepRequest {
  return StepRequest.fromPartial({
    stepId,
    reset: true,
    instanceId,
    newSequences: [{ seqId: 1, promptTokenIds: prompt }],
    sequences: [scheduled(prompt, 0)],
  });
}

/** A step the worker refuses: sequence 2's block id lies outside the pool. */
function refusedRequest(stepId: number, instanceId: string): StepRequest {
  return StepRequest.fromPartial({
    stepId,
    instanceId,
    newSequences: [{ seqId: 2, promptTokenIds: [1] }],
    sequences: [{ ...scheduled([1], 0), seqId: 2, newBlockIds: [1_000_000] }],
  });
}

describe("WorkerConnection's step stream against a worker process", () => {
  it("decodes the golden greedy tokens, survives a refused step and a traced step", async () => {
    const prompt = [...golden.prompt_ids];
    const first = await connection.step(prefillRequest(prompt), 10_000);
    const info = await connection.info(5_000);
    const output = [first.results[0]!.token!.tokenId];
    let stepId = 2;
    const decode = (traced: boolean) => {
      const metadata = new Metadata();
      if (traced)
        metadata.set("traceparent", "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01");
      return connection.step(
        StepRequest.fromPartial({
          stepId: stepId++,
          instanceId: info.instanceId,
          sequences: [scheduled([output.at(-1)!], prompt.length + output.length - 1)],
        }),
        10_000,
        metadata,
      );
    };
    for (let i = 1; i < golden.greedy_ids.length; i++) {
      if (i === 5) {
        // A step the worker refuses (a block id outside the pool) fails with its status...
        const refused = connection.step(refusedRequest(stepId++, info.instanceId), 10_000);
        await expect(refused).rejects.toMatchObject({ code: status.INVALID_ARGUMENT });
      }
      // ...and the next one opens a new stream; step 9 goes as a unary call with trace context.
      const res = await decode(i === 9);
      output.push(res.results[0]!.token!.tokenId);
    }
    expect(output).toEqual(golden.greedy_ids);
    // One stream until the refusal, one after it; the traced step did not open another.
    expect(connection.stepStreamsOpened).toBe(2);
  });

  it("a step past its deadline rejects with DEADLINE_EXCEEDED; the next one gets through", async () => {
    const prompt = Array.from({ length: 120 }, (_, i) => 1 + ((i * 37) % 500));
    const streamsBefore = connection.stepStreamsOpened;
    const slow = connection.step(prefillRequest(prompt), 0);
    await expect(slow).rejects.toMatchObject({ code: status.DEADLINE_EXCEEDED });
    // The worker may still be running the abandoned step: wait until it takes a new one.
    let answered = false;
    for (let attempt = 0; attempt < 50 && !answered; attempt++) {
      answered = await connection
        .step(StepRequest.fromPartial({ stepId: 1, reset: true }), 10_000)
        .then(
          () => true,
          () => false,
        );
      if (!answered) await new Promise((r) => setTimeout(r, 20));
    }
    expect(answered).toBe(true);
    // The missed deadline dropped the stream: the steps after it opened at least one more.
    expect(connection.stepStreamsOpened).toBeGreaterThan(streamsBefore);
  });
});

describe("steps planned ahead on the stream (async scheduling, ADR 0021)", () => {
  it("decodes the golden tokens with each step sent before the one before it returns", async () => {
    const prompt = [...golden.prompt_ids];
    const info = await connection.info(5_000);
    // No --threads: one compute thread per core, reported for the router's --schedule-ahead auto.
    expect(info.numComputeThreads).toBe(availableParallelism());
    let stepId = 1;
    const prefill = connection.step(prefillRequest(prompt, info.instanceId, stepId++), 10_000);
    // Step k + 1 continues from the token step k samples, which the sender never sees first.
    const ahead = (k: number) =>
      connection.step(
        StepRequest.fromPartial({
          stepId: stepId++,
          instanceId: info.instanceId,
          sequences: [{ ...scheduled([], prompt.length + k - 1), isInputPending: true }],
        }),
        10_000,
      );
    const answers = [prefill];
    for (let k = 1; k < golden.greedy_ids.length; k++) {
      answers.push(ahead(k)); // two steps in flight: the last one sent and this one
      await answers[k - 1];
    }
    // A step with nothing to compute (only a removal) queued behind a computing one: the worker
    // starts queued steps before it writes an answer, and must still answer in order.
    const last = ahead(golden.greedy_ids.length);
    const removal = connection.step(
      StepRequest.fromPartial({
        stepId: stepId++,
        instanceId: info.instanceId,
        removedSeqIds: [1],
      }),
      10_000,
    );
    answers.push(last, removal);
    const all = await Promise.all(answers);
    expect(all.map((res) => res.stepId)).toEqual(all.map((_, i) => i + 1));
    const output = all
      .slice(0, golden.greedy_ids.length)
      .map((res) => res.results[0]!.token!.tokenId);
    expect(output).toEqual(golden.greedy_ids);
  });

  it("answers a step before the error of a bad step queued behind it", async () => {
    const info = await connection.info(5_000);
    // A long prefill, so that the bad step is queued on the worker before it ends.
    const prompt = Array.from({ length: 120 }, (_, i) => 1 + ((i * 37) % 500));
    const long = connection.step(prefillRequest(prompt, info.instanceId), 10_000);
    const bad = connection.step(refusedRequest(2, info.instanceId), 10_000);
    const [answered, refused] = await Promise.allSettled([long, bad]);
    expect(answered).toMatchObject({ status: "fulfilled", value: { stepId: 1 } });
    expect((answered as PromiseFulfilledResult<StepResponse>).value.results).toHaveLength(1);
    expect(refused).toMatchObject({
      status: "rejected",
      reason: { code: status.INVALID_ARGUMENT },
    });
  });

  it("refuses just a pending input the worker holds no sampled token for", async () => {
    const info = await connection.info(5_000);
    const prompt = [...golden.prompt_ids];
    const res = await connection.step(prefillRequest(prompt, info.instanceId), 10_000);
    const stranger = connection.step(
      StepRequest.fromPartial({
        stepId: 2,
        instanceId: info.instanceId,
        newSequences: [{ seqId: 2, promptTokenIds: [1, 2] }],
        sequences: [
          { ...scheduled([], prompt.length), isInputPending: true },
          // Sequence 2 never sampled: its pending input cannot be filled.
          { ...scheduled([], 2), seqId: 2, newBlockIds: [8], outputIndex: 1, isInputPending: true },
        ],
      }),
      10_000,
    );
    const answer = await stranger;
    expect(answer.failures.map((f) => f.seqId)).toEqual([2]);
    expect(answer.results.map((r) => [r.seqId, r.token!.tokenId])).toEqual([
      [1, golden.greedy_ids[1]],
    ]);
    expect(res.results[0]!.token!.tokenId).toBe(golden.greedy_ids[0]);
  });
});
